//! Distillation from the admin area: the start form (validation against the teacher, the
//! dataset and the hyper-parameters; nothing queued on bad input), a real worker running
//! the `distill` job to a registered student with loss curves on its page, and "compare
//! with teacher" creating an open study whose generated pairs participants can vote on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{csrf_of, join_worker, TestApp};

fn imagefolder(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut meta = String::new();
    for i in 0..n {
        let img = image::RgbImage::from_fn(40, 40, |x, y| {
            image::Rgb([(x * 5 + i as u32 * 40) as u8, (y * 6) as u8, (i * 60) as u8])
        });
        img.save(dir.join(format!("{i}.png"))).expect("png");
        meta.push_str(&format!(
            "{{\"file_name\": \"{i}.png\", \"text\": \"sample {i}\"}}\n"
        ));
    }
    std::fs::write(dir.join("metadata.jsonl"), meta).expect("metadata");
}

/// A logged-in app with a registered tiny teacher and a 6-image dataset.
async fn setup() -> (TestApp, PathBuf) {
    let app = TestApp::spawn().await;
    app.login(&app.client).await;
    let teacher = app.data_dir.path().join("teacher");
    arenaxl::engine::presets::init_model_folder("tiny-sdxl", &teacher, 3).expect("teacher");
    let (status, _) = app
        .register_model("tiny-teacher", &teacher.to_string_lossy())
        .await;
    assert_eq!(status, 200);
    let data = app.data_dir.path().join("data");
    imagefolder(&data, 6);
    (app, data)
}

fn start_form<'a>(csrf: &'a str, data: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("teacher", "tiny-teacher"),
        ("student", "tiny-vega"),
        ("plan", "vega"),
        ("stage_teacher", "original"),
        ("keep", "first"),
        ("data", data),
        ("steps", "6"),
        ("batch_size", "2"),
        ("grad_accum", "1"),
        ("lr", "0.0001"),
        ("weight_decay", "0"),
        ("warmup", "0"),
        ("max_grad_norm", "1"),
        ("ema_decay", ""),
        ("lambda_task", "1"),
        ("lambda_out", "0.5"),
        ("lambda_feat", "0.5"),
        ("features", "layer"),
        ("resolution", "64"),
        ("held_out", "2"),
        ("eval_every", "3"),
        ("checkpoint_every", "3"),
        ("dtype", "f32"),
        ("seed", "0"),
    ]
}

fn with<'a>(form: &[(&'a str, &'a str)], key: &'a str, value: &'a str) -> Vec<(&'a str, &'a str)> {
    form.iter()
        .map(|&(k, v)| if k == key { (k, value) } else { (k, v) })
        .collect()
}

#[tokio::test]
async fn bad_distillation_requests_are_refused_with_the_reason_and_queue_nothing() {
    let (app, data) = setup().await;
    let (status, html) = app.page("/admin/distill").await;
    assert_eq!(status, 200);
    assert!(html.contains("tiny-teacher") && html.contains("Start distillation"));
    let csrf = csrf_of(&html);
    let data = data.to_string_lossy().to_string();
    let good = start_form(&csrf, &data);
    let missing = app
        .data_dir
        .path()
        .join("nope")
        .to_string_lossy()
        .to_string();
    let bad_plan = r#"{"down": [null, [1]], "up": [[1, 1, 1], [1, 1, 1]], "mid": "resnet"}"#;
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            with(&good, "teacher", "no-such-model"),
            "not a registered model",
        ),
        (with(&good, "student", "tiny-teacher"), "student"),
        (with(&good, "student", ""), "student"),
        (with(&good, "plan", "tiny-plan"), "neither a built-in plan"),
        (with(&good, "plan", bad_plan), "plan"),
        (with(&good, "plan", "{not json"), "inline JSON"),
        (with(&good, "data", &missing), "metadata.jsonl"),
        (with(&good, "held_out", "6"), "leaves none for training"),
        (with(&good, "steps", "0"), "steps must be"),
        (with(&good, "steps", "many"), "is not a valid number"),
        (with(&good, "lr", "-1"), "lr must be"),
        (with(&good, "lambda_out", "NaN"), "lambda_out must be"),
        (
            with(&good, "resolution", "60"),
            "resolution must be a multiple of 8",
        ),
        (with(&good, "features", "blocks"), "features"),
        (with(&good, "dtype", "f8"), "dtype"),
    ];
    for (form, expected) in cases {
        let resp = app.post_form("/admin/distill", &form).await;
        let status = resp.status().as_u16();
        let body = resp.text().await.expect("body");
        assert_eq!(status, 422, "{form:?}: {body}");
        assert!(
            body.contains(expected),
            "{form:?}: expected '{expected}' in the error: {body}"
        );
    }
    let no_csrf = with(&good, "csrf", "forged");
    assert_eq!(
        app.post_form("/admin/distill", &no_csrf)
            .await
            .status()
            .as_u16(),
        403
    );
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 0);
}

#[tokio::test]
async fn a_distillation_job_ends_with_a_registered_student_and_a_comparison_study() {
    let (app, data) = setup().await;
    let (_, html) = app.page("/admin/distill").await;
    let csrf = csrf_of(&html);
    let data = data.to_string_lossy().to_string();
    let form = start_form(&csrf, &data);
    let resp = app.post_form("/admin/distill", &form).await;
    assert_eq!(resp.status().as_u16(), 303);
    let location = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    // The same request twice (a double click) queues one job.
    assert_eq!(
        app.post_form("/admin/distill", &form)
            .await
            .status()
            .as_u16(),
        303
    );
    assert_eq!(
        app.count("SELECT count(*) FROM jobs WHERE kind = 'distill'")
            .await,
        1
    );
    let (_, queued) = app.page(&location).await;
    assert!(queued.contains("queued") && !queued.contains("Compare with teacher"));

    let stats = app.run_worker(&["distill"]).await;
    assert_eq!(stats.succeeded, 1, "{stats:?}");

    // The student is registered with where it came from, and loads in the engine.
    let (folder, info): (String, serde_json::Value) =
        sqlx::query_as("SELECT folder, info FROM models WHERE name = 'tiny-vega'")
            .fetch_one(&app.db.pool)
            .await
            .expect("student registered");
    assert_eq!(info["distilled_from"], "tiny-teacher");
    assert!(info["held_out"]["output_mse"].as_f64().is_some(), "{info}");
    assert!(Path::new(&folder).join("unet/config.json").is_file());
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&folder).join("unet/config.json")).expect("config"),
    )
    .expect("json");
    assert_eq!(
        cfg["mid_block_type"], "UNetMidBlock2D",
        "vega drops the mid attention"
    );
    // One point per step and one per evaluation (steps 3, 6 and the final one).
    assert_eq!(
        app.count("SELECT count(*) FROM distill_points WHERE kind = 'train'")
            .await,
        6
    );
    assert!(
        app.count("SELECT count(*) FROM distill_points WHERE kind = 'eval'")
            .await
            >= 2
    );

    let (status, html) = app.page(&location).await;
    assert_eq!(status, 200);
    assert!(html.contains("succeeded"), "{html}");
    assert!(html.contains("<svg") && html.contains("Training loss per step"));
    assert!(html.contains("Held-out MSE against the teacher") && html.contains("polyline"));
    assert!(html.contains("Compare with teacher"), "{html}");
    assert!(
        html.contains("tiny-vega-vs-tiny-teacher"),
        "default slug: {html}"
    );

    // Comparison: bad input first (nothing created), then the real one.
    let csrf = csrf_of(&html);
    let compare = location.clone() + "/compare";
    let base = vec![
        ("csrf", csrf.as_str()),
        ("title", "Vega student vs teacher"),
        ("slug", "vega-vs-teacher"),
        ("prompts_file", ""),
        ("prompts_text", "a red apple\na blue car\na green tree"),
        ("categories", ""),
        ("max_prompts", "2"),
        ("seeds", "1"),
        ("steps", "2"),
        ("guidance", "3"),
        ("scheduler", ""),
        ("width", "64"),
        ("height", "64"),
        ("dtype", "f32"),
        ("batch", "1"),
    ];
    for (form, expected) in [
        (with(&base, "prompts_text", ""), "prompts"),
        (with(&base, "prompts_file", "/no/such/prompts.tsv"), "both"),
        (with(&base, "slug", "Not A Slug!"), "slug"),
        (with(&base, "width", "65"), "width must be"),
        (
            with(&base, "categories", "Animals"),
            "none in the categories",
        ),
    ] {
        let resp = app.post_form(&compare, &form).await;
        let status = resp.status().as_u16();
        let body = resp.text().await.expect("body");
        assert_eq!(status, 422, "{form:?}: {body}");
        assert!(body.contains(expected), "{form:?}: '{expected}' in {body}");
    }
    assert_eq!(app.count("SELECT count(*) FROM studies").await, 0);

    let resp = app.post_form(&compare, &base).await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()["location"], "/admin/studies/vega-vs-teacher");
    assert_eq!(
        app.count("SELECT count(*) FROM prompts p JOIN studies s ON s.id = p.study_id WHERE s.slug = 'vega-vs-teacher'")
            .await,
        2,
        "max_prompts samples 2 of 3"
    );
    let status: String =
        sqlx::query_scalar("SELECT status FROM studies WHERE slug = 'vega-vs-teacher'")
            .fetch_one(&app.db.pool)
            .await
            .expect("study");
    // Nothing to compare yet: the study waits in draft and opens itself with its first pair.
    assert_eq!(status, "draft");
    assert_eq!(
        app.count("SELECT count(*) FROM jobs WHERE kind = 'generate'")
            .await,
        4,
        "2 models x 2 prompts, one prompt per job"
    );
    // The same slug again is a conflict, not a second study.
    let resp = app.post_form(&compare, &base).await;
    assert_eq!(resp.status().as_u16(), 422);
    assert!(resp.text().await.expect("body").contains("already exists"));

    let stats = app.run_worker(&["generate"]).await;
    assert_eq!(stats.succeeded, 4, "{stats:?}");
    assert_eq!(
        app.count("SELECT count(*) FROM pairs pa JOIN studies s ON s.id = pa.study_id WHERE s.slug = 'vega-vs-teacher'")
            .await,
        2
    );
    let status: String =
        sqlx::query_scalar("SELECT status FROM studies WHERE slug = 'vega-vs-teacher'")
            .fetch_one(&app.db.pool)
            .await
            .expect("study");
    assert_eq!(status, "open", "opened by its first pair");
    // A participant gets a comparison of the two and votes.
    let token = app.join("vega-vs-teacher", "p-distill").await;
    let next = app.next(&token).await;
    let assignment = next["assignment_id"].as_str().expect("an assignment");
    let voted = app.vote(&token, assignment, "left").await;
    assert!(voted.status().is_success(), "{}", voted.status());
    assert_eq!(app.count("SELECT count(*) FROM votes").await, 1);
}

#[tokio::test]
async fn comparing_needs_a_finished_distillation() {
    let (app, data) = setup().await;
    let (_, html) = app.page("/admin/distill").await;
    let csrf = csrf_of(&html);
    let data = data.to_string_lossy().to_string();
    let resp = app
        .post_form("/admin/distill", &start_form(&csrf, &data))
        .await;
    let location = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let resp = app
        .post_form(
            &(location + "/compare"),
            &[
                ("csrf", csrf.as_str()),
                ("title", "t"),
                ("slug", "early"),
                ("prompts_text", "a red apple"),
                ("max_prompts", "0"),
                ("seeds", "1"),
                ("steps", "2"),
                ("guidance", "3"),
                ("width", "64"),
                ("height", "64"),
                ("dtype", "f32"),
                ("batch", "1"),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 422);
    assert!(resp.text().await.expect("body").contains("not finished"));
    assert_eq!(app.count("SELECT count(*) FROM studies").await, 0);
}

/// Queues a distillation of `steps` steps through the library (as the form does).
async fn queue(app: &TestApp, data: &Path, student: &str, steps: u64) -> uuid::Uuid {
    use arenaxl::distill::run::{StageTeacher, Stages};
    use arenaxl::jobs::distill::{enqueue_distillation, DistillPayload};
    let mut train = arenaxl::distill::train::TrainConfig {
        steps,
        batch_size: 2,
        seed: 5,
        ..Default::default()
    };
    train.adamw.lr = 1e-4;
    let payload = DistillPayload {
        teacher: "tiny-teacher".into(),
        stages: Stages::single("vega", StageTeacher::Original),
        data: data.to_string_lossy().to_string(),
        student: student.into(),
        train,
        resolution: 64,
        held_out: 2,
        keep: Default::default(),
        dtype: Some("f32".into()),
    };
    let mut tx = app.db.pool.begin().await.expect("tx");
    let (id, new) = enqueue_distillation(&mut tx, &app.db, &payload, None)
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    assert!(new);
    id
}

fn student_weights(app: &TestApp, job: uuid::Uuid) -> std::collections::HashMap<String, Vec<f32>> {
    let file = app.data_dir.path().join(format!(
        "distilled/{job}/stage-0/model/unet/diffusion_pytorch_model.safetensors"
    ));
    candle_core::safetensors::load(&file, &candle_core::Device::Cpu)
        .expect("student weights")
        .into_iter()
        .map(|(k, v)| {
            let flat = v
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("f32");
            (k, flat)
        })
        .collect()
}

/// A worker that shuts down mid-run saves a checkpoint and hands the job back; the next
/// worker resumes from it and ends with exactly the weights of an uninterrupted run.
#[tokio::test]
async fn a_distillation_handed_back_mid_run_resumes_to_the_same_student() {
    let (app, data) = setup().await;
    let steps = 60;
    let job = queue(&app, &data, "resumed", steps).await;

    let worker = app.worker(&["distill"], false);
    let stop = worker.shutdown_flag();
    let thread = worker
        .spawn(tokio::runtime::Handle::current())
        .expect("thread");
    // Stop once training has recorded progress (the first flush is a second in).
    let mut waited = 0;
    while app
        .count(&format!(
            "SELECT count(*) FROM distill_points WHERE job_id = '{job}' AND kind = 'train'"
        ))
        .await
        == 0
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
        assert!(waited < 2400, "no training progress within 2 minutes");
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let stats = join_worker(thread).await;
    assert_eq!(stats.released, 1, "{stats:?}");
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_one(&app.db.pool)
            .await
            .expect("job");
    assert_eq!(
        (status.as_str(), attempts),
        ("queued", 0),
        "handed back uncounted"
    );
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            app.data_dir
                .path()
                .join(format!("distilled/{job}/stage-0/checkpoint/state.json")),
        )
        .expect("a checkpoint was saved on the way out"),
    )
    .expect("state json");
    let stopped_at = state["step"].as_u64().expect("step");
    assert!(
        stopped_at > 0 && stopped_at < steps,
        "stopped at {stopped_at}"
    );

    let stats = app.run_worker(&["distill"]).await;
    assert_eq!(stats.succeeded, 1, "{stats:?}");
    assert!(app
        .data_dir
        .path()
        .join(format!("distilled/{job}/stage-0/model"))
        .is_dir());
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM distill_points WHERE job_id = '{job}' AND kind = 'train'"
        ))
        .await,
        steps as i64,
        "every step once on the curve"
    );

    let straight = queue(&app, &data, "straight", steps).await;
    let stats = app.run_worker(&["distill"]).await;
    assert_eq!(stats.succeeded, 1, "{stats:?}");
    let (a, b) = (student_weights(&app, job), student_weights(&app, straight));
    assert_eq!(a.len(), b.len());
    for (k, v) in &a {
        assert!(
            v == &b[k],
            "{k} differs between the resumed and the uninterrupted run"
        );
    }
}

/// A plan given as a file travels inside the job (workers need not see the file); a student
/// name is reserved by a queued job; a model registered under that name meanwhile is never
/// replaced by the student (the job fails and says where the student is).
#[tokio::test]
async fn plan_files_are_inlined_names_are_reserved_and_never_overwritten() {
    let (app, data) = setup().await;
    let plan_file = app.data_dir.path().join("plan.json");
    std::fs::write(
        &plan_file,
        r#"{"down": [null, [1, 1], [2, 2]], "up": [[2, 2, 2], [1, 1, 1], null], "mid": "resnet"}"#,
    )
    .expect("plan file");
    let (_, html) = app.page("/admin/distill").await;
    let csrf = csrf_of(&html);
    let data = data.to_string_lossy().to_string();
    let plan = plan_file.to_string_lossy().to_string();
    let form = with(&start_form(&csrf, &data), "plan", &plan);
    assert_eq!(
        app.post_form("/admin/distill", &form)
            .await
            .status()
            .as_u16(),
        303
    );
    std::fs::remove_file(&plan_file).expect("the worker must not need the file");
    let payload: serde_json::Value = sqlx::query_scalar("SELECT payload FROM jobs")
        .fetch_one(&app.db.pool)
        .await
        .expect("payload");
    let stored = payload["stages"]["stages"][0]["plan"]
        .as_str()
        .expect("plan");
    assert!(
        stored.starts_with('{') && stored.contains("\"mid\""),
        "{stored}"
    );

    let other = with(&start_form(&csrf, &data), "steps", "7");
    let resp = app.post_form("/admin/distill", &other).await;
    assert_eq!(resp.status().as_u16(), 422);
    assert!(resp
        .text()
        .await
        .expect("body")
        .contains("already going to register"));
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 1);

    // Someone registers a model under the student's name while the job waits.
    let squatter = app.data_dir.path().join("squatter");
    arenaxl::engine::presets::init_model_folder("tiny-vega", &squatter, 9).expect("model");
    let (status, _) = app
        .register_model("tiny-vega", &squatter.to_string_lossy())
        .await;
    assert_eq!(status, 200);
    let stats = app.run_worker(&["distill"]).await;
    assert_eq!(stats.failed, 1, "{stats:?}");
    let (status, error): (String, String) = sqlx::query_as("SELECT status, last_error FROM jobs")
        .fetch_one(&app.db.pool)
        .await
        .expect("job");
    assert_eq!(status, "failed", "a name clash is not retried");
    assert!(
        error.contains("was registered while this job ran"),
        "{error}"
    );
    let folder: String = sqlx::query_scalar("SELECT folder FROM models WHERE name = 'tiny-vega'")
        .fetch_one(&app.db.pool)
        .await
        .expect("model");
    assert!(
        folder.ends_with("squatter"),
        "the other model is untouched: {folder}"
    );
}
