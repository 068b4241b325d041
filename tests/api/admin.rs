//! The admin area: login, sessions, CSRF on every form, studies, imports, downloads.

use crate::common::{csrf_of, TestApp, ADMIN_EMAIL};

#[tokio::test]
async fn admin_pages_require_login() {
    let app = TestApp::spawn().await;
    app.create_study("s1", 3, 0.0).await;
    for path in [
        "/admin",
        "/admin/studies/new",
        "/admin/studies/s1",
        "/admin/studies/s1/votes.csv",
        "/admin/studies/s1/prompts",
    ] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 303, "{path}");
        assert_eq!(resp.headers()["location"], "/admin/login", "{path}");
    }
    let resp = app
        .post_form("/admin/studies/s1/status", &[("status", "open")])
        .await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        app.count("SELECT count(*) FROM studies WHERE status = 'open'")
            .await,
        0
    );
}

#[tokio::test]
async fn login_checks_password_and_csrf_and_sets_a_safe_cookie() {
    let app = TestApp::spawn().await;
    let page = app
        .client
        .get(app.url("/admin/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let wrong = app
        .post_form(
            "/admin/login",
            &[
                ("email", ADMIN_EMAIL),
                ("password", "wrong password"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(wrong.status().as_u16(), 401);
    let without_csrf = app
        .post_form(
            "/admin/login",
            &[
                ("email", ADMIN_EMAIL),
                ("password", crate::common::ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(without_csrf.status().as_u16(), 403);
    let page = app
        .client
        .get(app.url("/admin/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ok = app
        .post_form(
            "/admin/login",
            &[
                ("email", ADMIN_EMAIL),
                ("password", crate::common::ADMIN_PASSWORD),
                ("csrf", &csrf_of(&page)),
            ],
        )
        .await;
    assert_eq!(ok.status().as_u16(), 303);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("axl_admin="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let home = app.client.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(home.status().as_u16(), 200);
    // A forged (unsigned) session cookie is not a login.
    let forged = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
        .get(app.url("/admin"))
        .header("Cookie", "axl_admin=%7B%22admin_id%22%3A%22%5C%2200000000-0000-0000-0000-000000000000%5C%22%22%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 303);
}

#[tokio::test]
async fn researcher_creates_opens_and_edits_a_study_with_csrf_checked_forms() {
    let app = TestApp::spawn().await;
    app.login(&app.client).await;
    let form_page = app
        .client
        .get(app.url("/admin/studies/new"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&form_page);
    let fields = |csrf: &str| {
        vec![
            ("csrf", csrf.to_string()),
            ("slug", "ssd-vs-sdxl".to_string()),
            ("title", "SSD-1B vs SDXL".to_string()),
            ("votes_per_participant", "15".to_string()),
            ("gold_rate", "0.2".to_string()),
            ("allow_tie", "on".to_string()),
        ]
    };
    let forged = app
        .post_form("/admin/studies/new", &fields("not-the-token"))
        .await;
    assert_eq!(forged.status().as_u16(), 403);
    assert_eq!(app.count("SELECT count(*) FROM studies").await, 0);
    let invalid = app
        .post_form(
            "/admin/studies/new",
            &[
                ("csrf", csrf.as_str()),
                ("slug", "Bad Slug!"),
                ("title", "x"),
            ],
        )
        .await;
    assert_eq!(invalid.status().as_u16(), 422);
    assert!(invalid.text().await.unwrap().contains("slug"));
    let created = app.post_form("/admin/studies/new", &fields(&csrf)).await;
    assert_eq!(created.status().as_u16(), 303);
    assert_eq!(created.headers()["location"], "/admin/studies/ssd-vs-sdxl");
    let (votes, gold, tie, both_bad): (i32, f64, bool, bool) = sqlx::query_as(
        "SELECT votes_per_participant, gold_rate, allow_tie, allow_both_bad FROM studies",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((votes, gold, tie, both_bad), (15, 0.2, true, false));
    let duplicate = app.post_form("/admin/studies/new", &fields(&csrf)).await;
    assert_eq!(duplicate.status().as_u16(), 409);

    // A study opens once it has something to compare.
    let study = arenaxl::db::studies::by_slug(&app.db.pool, "ssd-vs-sdxl")
        .await
        .unwrap();
    app.import_images(&study, 2, &["sdxl", "ssd-1b"]).await;
    let open = app
        .post_form(
            "/admin/studies/ssd-vs-sdxl/status",
            &[("csrf", csrf.as_str()), ("status", "open")],
        )
        .await;
    assert_eq!(open.status().as_u16(), 303);
    assert_eq!(
        app.count("SELECT count(*) FROM studies WHERE status = 'open'")
            .await,
        1
    );
    let no_csrf = app
        .post_form("/admin/studies/ssd-vs-sdxl/status", &[("status", "closed")])
        .await;
    assert_eq!(no_csrf.status().as_u16(), 403);
    assert_eq!(
        app.count("SELECT count(*) FROM studies WHERE status = 'open'")
            .await,
        1
    );

    let mut edit = fields(&csrf);
    edit[2].1 = "SSD-1B versus SDXL".into();
    let edited = app
        .post_form("/admin/studies/ssd-vs-sdxl/edit", &edit)
        .await;
    assert_eq!(edited.status().as_u16(), 303);
    let title: String = sqlx::query_scalar("SELECT title FROM studies")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(title, "SSD-1B versus SDXL");

    let imported = app.post_form("/admin/studies/ssd-vs-sdxl/prompts", &[("csrf", csrf.as_str()), ("format", "auto"), ("content", "Prompt\tCategory\tChallenge\tNote\na fox\tAnimals\tBasic\t\na car\tVehicles\tBasic\t\n")]).await;
    assert_eq!(imported.status().as_u16(), 200);
    assert!(imported
        .text()
        .await
        .unwrap()
        .contains("Imported 2 new prompts"));
    let bad = app
        .post_form(
            "/admin/studies/ssd-vs-sdxl/prompts",
            &[
                ("csrf", csrf.as_str()),
                ("format", "csv"),
                ("content", "text\nno prompt column\n"),
            ],
        )
        .await;
    assert_eq!(bad.status().as_u16(), 422);
    assert_eq!(
        app.count("SELECT count(*) FROM prompts WHERE text NOT LIKE 'test prompt number%'")
            .await,
        2
    );

    let logout = app
        .post_form("/admin/logout", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(logout.status().as_u16(), 303);
    let after = app.client.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(after.status().as_u16(), 303);
}

#[tokio::test]
async fn dashboard_and_votes_csv_show_what_participants_did() {
    let app = TestApp::spawn().await;
    app.ready_study("dash", 4, 0.0, 4, &["sdxl", "vega"]).await;
    for p in 0..3 {
        let token = app.join("dash", &format!("P{p}")).await;
        for _ in 0..4 {
            let next = app.next(&token).await;
            app.vote(&token, next["assignment_id"].as_str().unwrap(), "left")
                .await;
        }
    }
    app.login(&app.client).await;
    let page = app
        .client
        .get(app.url("/admin/studies/dash"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("sdxl") && html.contains("vega") && html.contains("Votes per prompt"));
    let csv = app
        .client
        .get(app.url("/admin/studies/dash/votes.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status().as_u16(), 200);
    assert!(csv.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("dash-votes.csv"));
    let text = csv.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("participant_id,prompt_id,model_left,model_right,choice,category,gold,response_ms,created_at,platform,external_id,fast"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 12);
    for row in rows {
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!(f.len(), 12, "{row}");
        assert_eq!(f[9], "prolific", "{row}");
        assert!(
            matches!((f[2], f[3]), ("sdxl", "vega") | ("vega", "sdxl")),
            "{row}"
        );
        assert_eq!(f[4], "left");
        assert!(f[5] == "Animals" || f[5] == "Vehicles");
        assert_eq!(f[6], "false");
        assert_eq!(f[7], "1200");
    }
}

#[tokio::test]
async fn live_report_and_exports_agree_with_the_votes() {
    let app = TestApp::spawn().await;
    app.ready_study("rep", 5, 0.4, 5, &["sdxl", "vega"]).await;
    for p in 0..4 {
        let token = app.join("rep", &format!("P{p}")).await;
        loop {
            let next = app.next(&token).await;
            if next["done"] == true {
                break;
            }
            let id: uuid::Uuid = next["assignment_id"].as_str().unwrap().parse().unwrap();
            // Vote for whichever side shows sdxl (or the intact side of a gold check).
            let (left_model, broken): (String, Option<String>) = sqlx::query_as(
                "SELECT m.name, a.gold_broken_side FROM assignments a JOIN images i ON i.id = a.left_image \
                 JOIN models m ON m.id = i.model_id WHERE a.id = $1",
            )
            .bind(id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
            let choice = match broken.as_deref() {
                Some("left") => "right",
                Some(_) => "left",
                None if left_model == "sdxl" => "left",
                None => "right",
            };
            app.vote(&token, &id.to_string(), choice).await;
        }
    }
    app.login(&app.client).await;
    let csv = app
        .client
        .get(app.url("/admin/studies/rep/votes.csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let votes = arenaxl::report::votes::read_votes_csv(csv.as_bytes(), "votes.csv")
        .expect("the export reads back");
    assert_eq!(votes.len(), 20);
    let gold: Vec<_> = votes.iter().filter(|v| v.gold).collect();
    assert!(
        gold.iter().all(|v| v.gold_passed() == Some(true)),
        "every gold check was passed"
    );
    let decisive = votes.iter().filter(|v| !v.gold).count() as u64;

    let json: serde_json::Value = app
        .client
        .get(app.url("/admin/studies/rep/report.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["pairs"][0]["model_a"], "sdxl");
    assert_eq!(json["pairs"][0]["model_b"], "vega");
    assert_eq!(json["pairs"][0]["wins_a"], decisive);
    assert_eq!(json["pairs"][0]["wins_b"], 0);
    assert_eq!(json["models"][0]["name"], "sdxl");
    let html = app
        .client
        .get(app.url("/admin/studies/rep/report"))
        .send()
        .await
        .unwrap();
    assert_eq!(html.status().as_u16(), 200);
    let html = html.text().await.unwrap();
    assert!(
        html.contains("<svg") && html.contains("sdxl"),
        "report page lacks charts"
    );

    let jsonl = app
        .client
        .get(app.url("/admin/studies/rep/pickapic.jsonl"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len() as u64, decisive);
    for r in rows {
        let winner = if r["label_0"] == 1.0 {
            &r["model_0"]
        } else {
            &r["model_1"]
        };
        assert_eq!(winner, "sdxl");
        // A random image id, not a content hash.
        assert!(uuid::Uuid::parse_str(r["image_0_uid"].as_str().unwrap()).is_ok());
    }
    let dir = app.data_dir.path().join("dataset");
    let study = arenaxl::db::studies::by_slug(&app.db.pool, "rep")
        .await
        .unwrap();
    let n = arenaxl::study::export::write_pickapic_dir(&app.db, &study, &app.store, &dir)
        .await
        .unwrap();
    assert_eq!(n as u64, decisive);
    assert_eq!(
        std::fs::read_dir(dir.join("images")).unwrap().count(),
        10,
        "5 prompts x 2 models"
    );
}

#[tokio::test]
async fn researcher_imports_an_image_folder_from_the_admin_area() {
    let app = TestApp::spawn().await;
    app.create_study("imgs", 3, 0.0).await;
    app.login(&app.client).await;
    let page = app
        .client
        .get(app.url("/admin/studies/imgs/images"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let dir = app.data_dir.path().join("incoming");
    crate::common::write_manifest_dir(&dir, 2, &["a", "b"]);
    let dir = dir.to_string_lossy().to_string();
    let no_csrf = app
        .post_form("/admin/studies/imgs/images", &[("dir", dir.as_str())])
        .await;
    assert_eq!(no_csrf.status().as_u16(), 403);
    assert_eq!(app.count("SELECT count(*) FROM images").await, 0);
    let missing = app
        .post_form(
            "/admin/studies/imgs/images",
            &[("csrf", csrf.as_str()), ("dir", "/nonexistent/folder")],
        )
        .await;
    assert_eq!(missing.status().as_u16(), 422);
    assert!(missing
        .text()
        .await
        .unwrap()
        .contains("not inside the folders"));
    let empty = app.data_dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let no_manifest = app
        .post_form(
            "/admin/studies/imgs/images",
            &[("csrf", csrf.as_str()), ("dir", &empty.to_string_lossy())],
        )
        .await;
    assert_eq!(no_manifest.status().as_u16(), 422);
    assert!(no_manifest.text().await.unwrap().contains("manifest.jsonl"));
    let ok = app
        .post_form(
            "/admin/studies/imgs/images",
            &[("csrf", csrf.as_str()), ("dir", dir.as_str())],
        )
        .await;
    assert_eq!(ok.status().as_u16(), 200);
    assert!(ok.text().await.unwrap().contains("Imported 4 new images"));
    assert_eq!(app.count("SELECT count(*) FROM pairs").await, 2);
}
