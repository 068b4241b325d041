//! Admin pages of generation: login and CSRF on every page and form, model registration,
//! the generate form (validation, jobs queued in the request's transaction), cancel and
//! retry, workers, and the unblinded gallery once a worker has generated the images.

use uuid::Uuid;

use crate::common::{csrf_of, TestApp};

fn tiny_model(app: &TestApp, preset: &str) -> std::path::PathBuf {
    let dir = app.data_dir.path().join(format!("model-{preset}"));
    arenaxl::engine::presets::init_model_folder(preset, &dir, 3).expect("init preset");
    dir
}

async fn post(app: &TestApp, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let resp = app.post_form(path, form).await;
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

#[tokio::test]
async fn generation_pages_require_login() {
    let app = TestApp::spawn().await;
    app.create_study("s1", 3, 0.0).await;
    let job = Uuid::new_v4();
    for path in [
        "/admin/models".to_string(),
        "/admin/jobs".to_string(),
        format!("/admin/jobs/{job}"),
        "/admin/workers".to_string(),
        "/admin/distill".to_string(),
        "/admin/studies/s1/generate".to_string(),
        "/admin/studies/s1/gallery".to_string(),
        format!("/admin/images/{job}"),
    ] {
        let resp = app.client.get(app.url(&path)).send().await.expect("get");
        assert_eq!(resp.status().as_u16(), 303, "{path}");
        assert_eq!(resp.headers()["location"], "/admin/login", "{path}");
    }
    for path in [
        "/admin/studies/s1/generate".to_string(),
        "/admin/models".to_string(),
        format!("/admin/jobs/{job}/cancel"),
        "/admin/distill".to_string(),
        format!("/admin/jobs/{job}/compare"),
    ] {
        let resp = app.post_form(&path, &[("model", "x")]).await;
        assert_eq!(resp.status().as_u16(), 303, "{path}");
    }
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 0);
}

#[tokio::test]
async fn forms_refuse_a_missing_or_wrong_csrf_token() {
    let app = TestApp::spawn().await;
    app.create_study("s1", 3, 0.0).await;
    app.login(&app.client).await;
    let folder = tiny_model(&app, "tiny-sdxl");
    let folder = folder.to_string_lossy();
    let (status, _) = post(&app, "/admin/models", &[("name", "m"), ("folder", &folder)]).await;
    assert_eq!(status, 403);
    let (status, _) = post(
        &app,
        "/admin/models",
        &[("csrf", "forged"), ("name", "m"), ("folder", &folder)],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(app.count("SELECT count(*) FROM models").await, 0);
    let (status, _) = post(
        &app,
        "/admin/studies/s1/generate",
        &[("model", "m"), ("seeds", "1")],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 0);
}

#[tokio::test]
async fn register_generate_cancel_retry_and_validation() {
    let app = TestApp::spawn().await;
    let study = app.create_study("s1", 3, 0.0).await;
    app.login(&app.client).await;
    let good = tiny_model(&app, "tiny-sdxl");
    let (status, html) = app
        .register_model("sdxl-tiny", &good.to_string_lossy())
        .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Registered"), "{html}");
    let hash: String =
        sqlx::query_scalar("SELECT weights_hash FROM models WHERE name = 'sdxl-tiny'")
            .fetch_one(&app.db.pool)
            .await
            .expect("registered");
    assert_eq!(hash.len(), 64);
    let (status, html) = app.register_model("nowhere", "/definitely/not/here").await;
    assert_eq!(status, 422);
    assert!(
        html.contains("/definitely/not/here"),
        "names the folder: {html}"
    );
    let broken = app.data_dir.path().join("broken");
    std::fs::create_dir_all(broken.join("unet")).expect("dir");
    let (status, html) = app
        .register_model("broken", &broken.to_string_lossy())
        .await;
    assert_eq!(status, 422);
    assert!(
        html.contains("unet/config.json"),
        "names the missing file: {html}"
    );

    // Prompts, two categories.
    let (_, html) = app.page("/admin/studies/s1/prompts").await;
    let (status, _) = post(
        &app,
        "/admin/studies/s1/prompts",
        &[
            ("csrf", &csrf_of(&html)),
            ("format", "csv"),
            (
                "content",
                "prompt,category\na cat,Animals\na dog,Animals\na pie,Food\n",
            ),
        ],
    )
    .await;
    assert_eq!(status, 200);

    let (status, html) = app.page("/admin/studies/s1/generate").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("sdxl-tiny") && html.contains("Animals (2)"),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let base = [
        ("csrf", csrf.as_str()),
        ("seeds", "2"),
        ("steps", "2"),
        ("guidance", "3"),
        ("scheduler", ""),
        ("width", "64"),
        ("height", "64"),
        ("dtype", "f32"),
        ("batch", "8"),
    ];
    for (field, value, message) in [
        ("steps", "abc", "steps"),
        ("width", "65", "width"),
        ("seeds", "0", "seeds per prompt"),
        ("dtype", "f8", "dtype"),
    ] {
        let mut form: Vec<(&str, &str)> =
            base.iter().copied().filter(|(k, _)| *k != field).collect();
        form.push((field, value));
        form.push(("model", "sdxl-tiny"));
        let (status, html) = post(&app, "/admin/studies/s1/generate", &form).await;
        assert_eq!(status, 422, "{field}={value}");
        assert!(html.contains(message), "{field}: {html}");
    }
    let mut unknown: Vec<(&str, &str)> = base.to_vec();
    unknown.push(("model", "no-such-model"));
    let (status, html) = post(&app, "/admin/studies/s1/generate", &unknown).await;
    assert_eq!(status, 422);
    assert!(html.contains("no-such-model"));
    assert_eq!(
        app.count("SELECT count(*) FROM jobs").await,
        0,
        "nothing queued by bad requests"
    );

    let mut ok: Vec<(&str, &str)> = base.to_vec();
    ok.push(("model", "sdxl-tiny"));
    ok.push(("category", "Animals"));
    let resp = app.post_form("/admin/studies/s1/generate", &ok).await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()["location"], "/admin/jobs");
    let (id, prompts): (Uuid, i32) = sqlx::query_as(
        "SELECT id, jsonb_array_length(payload->'prompt_ids') FROM jobs WHERE study_id = $1",
    )
    .bind(study.id)
    .fetch_one(&app.db.pool)
    .await
    .expect("one job");
    assert_eq!(prompts, 2, "only the Animals prompts");
    // The same request again queues nothing new.
    app.post_form("/admin/studies/s1/generate", &ok).await;
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 1);

    let (status, html) = app.page("/admin/jobs").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("sdxl-tiny · 2 prompts × 2 seeds") && html.contains("http-equiv=\"refresh\""),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let (status, _) = post(
        &app,
        &format!("/admin/jobs/{id}/cancel"),
        &[("csrf", "wrong")],
    )
    .await;
    assert_eq!(status, 403);
    let resp = app
        .post_form(&format!("/admin/jobs/{id}/cancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        app.count("SELECT count(*) FROM jobs WHERE status = 'cancelled'")
            .await,
        1
    );
    app.post_form(&format!("/admin/jobs/{id}/retry"), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        app.count("SELECT count(*) FROM jobs WHERE status = 'queued'")
            .await,
        1
    );
    let (status, html) = app.page(&format!("/admin/jobs/{id}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("retried by an admin"), "{html}");
    let (status, _) = app.page("/admin/jobs/not-a-uuid").await;
    assert_eq!(status, 404);
    let (status, _) = app.page(&format!("/admin/jobs/{}", Uuid::new_v4())).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_fills_the_study_and_the_gallery_shows_every_model() {
    let app = TestApp::spawn().await;
    let study = app.create_study("s1", 2, 0.0).await;
    app.login(&app.client).await;
    for (name, preset) in [("sdxl", "tiny-sdxl"), ("vega", "tiny-vega")] {
        let (status, html) = app
            .register_model(name, &tiny_model(&app, preset).to_string_lossy())
            .await;
        assert_eq!(status, 200, "{html}");
    }
    let (_, html) = app.page("/admin/studies/s1/prompts").await;
    post(
        &app,
        "/admin/studies/s1/prompts",
        &[
            ("csrf", &csrf_of(&html)),
            ("format", "text"),
            ("content", "a red apple\na blue car\n"),
        ],
    )
    .await;
    let (_, html) = app.page("/admin/studies/s1/generate").await;
    let csrf = csrf_of(&html);
    let form = [
        ("csrf", csrf.as_str()),
        ("model", "sdxl"),
        ("model", "vega"),
        ("seeds", "1"),
        ("steps", "2"),
        ("guidance", "3"),
        ("width", "64"),
        ("height", "64"),
        ("dtype", "f32"),
        ("batch", "1"),
    ];
    let resp = app.post_form("/admin/studies/s1/generate", &form).await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        app.count("SELECT count(*) FROM jobs").await,
        4,
        "2 models x 2 batches of 1 prompt"
    );

    let stats = app.run_worker(&["generate"]).await;
    assert_eq!(stats.succeeded, 4);
    assert_eq!(app.count("SELECT count(*) FROM pairs").await, 2);

    let (status, html) = app.page("/admin/studies/s1/gallery").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("a red apple")
            && html.contains("<strong>sdxl</strong>")
            && html.contains("<strong>vega</strong>"),
        "{html}"
    );
    let first_img = html
        .split("src=\"/admin/images/")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("an image");
    let resp = app
        .client
        .get(app.url(&format!("/admin/images/{first_img}")))
        .send()
        .await
        .expect("image");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    sqlx::query("INSERT INTO workers (id, host, device, kinds, status, last_heartbeat) VALUES ('gone-1', 'h', 'cuda:3', '{generate}', 'running', now() - interval '5 minutes')")
        .execute(&app.db.pool)
        .await
        .expect("silent worker");
    let (status, html) = app.page("/admin/workers").await;
    assert!(
        html.contains("not responding (was running)") && html.contains("cuda:3"),
        "{html}"
    );
    assert_eq!(status, 200);
    assert!(html.contains("stopped") && html.contains("cpu"), "{html}");

    // Participants get the generated pairs.
    app.open("s1").await;
    let token = app.join("s1", "p1").await;
    let next = app.next(&token).await;
    assert!(
        next["assignment_id"].is_string() || next["assignment"].is_object(),
        "{next}"
    );
    let _ = study;
}
