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
        .client
        .post(app.url("/admin/studies/s1/status"))
        .form(&[("status", "open")])
        .send()
        .await
        .unwrap();
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
        .client
        .post(app.url("/admin/login"))
        .form(&[
            ("email", ADMIN_EMAIL),
            ("password", "wrong password"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let without_csrf = app
        .client
        .post(app.url("/admin/login"))
        .form(&[
            ("email", ADMIN_EMAIL),
            ("password", crate::common::ADMIN_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
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
        .client
        .post(app.url("/admin/login"))
        .form(&[
            ("email", ADMIN_EMAIL),
            ("password", crate::common::ADMIN_PASSWORD),
            ("csrf", &csrf_of(&page)),
        ])
        .send()
        .await
        .unwrap();
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
        .client
        .post(app.url("/admin/studies/new"))
        .form(&fields("not-the-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    assert_eq!(app.count("SELECT count(*) FROM studies").await, 0);
    let invalid = app
        .client
        .post(app.url("/admin/studies/new"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("slug", "Bad Slug!"),
            ("title", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status().as_u16(), 422);
    assert!(invalid.text().await.unwrap().contains("slug"));
    let created = app
        .client
        .post(app.url("/admin/studies/new"))
        .form(&fields(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 303);
    assert_eq!(created.headers()["location"], "/admin/studies/ssd-vs-sdxl");
    let (votes, gold, tie, both_bad): (i32, f64, bool, bool) = sqlx::query_as(
        "SELECT votes_per_participant, gold_rate, allow_tie, allow_both_bad FROM studies",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((votes, gold, tie, both_bad), (15, 0.2, true, false));
    let duplicate = app
        .client
        .post(app.url("/admin/studies/new"))
        .form(&fields(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(duplicate.status().as_u16(), 409);

    let open = app
        .client
        .post(app.url("/admin/studies/ssd-vs-sdxl/status"))
        .form(&[("csrf", csrf.as_str()), ("status", "open")])
        .send()
        .await
        .unwrap();
    assert_eq!(open.status().as_u16(), 303);
    assert_eq!(
        app.count("SELECT count(*) FROM studies WHERE status = 'open'")
            .await,
        1
    );
    let no_csrf = app
        .client
        .post(app.url("/admin/studies/ssd-vs-sdxl/status"))
        .form(&[("status", "closed")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status().as_u16(), 403);
    assert_eq!(
        app.count("SELECT count(*) FROM studies WHERE status = 'open'")
            .await,
        1
    );

    let mut edit = fields(&csrf);
    edit[2].1 = "SSD-1B versus SDXL".into();
    let edited = app
        .client
        .post(app.url("/admin/studies/ssd-vs-sdxl/edit"))
        .form(&edit)
        .send()
        .await
        .unwrap();
    assert_eq!(edited.status().as_u16(), 303);
    let title: String = sqlx::query_scalar("SELECT title FROM studies")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(title, "SSD-1B versus SDXL");

    let imported = app
        .client
        .post(app.url("/admin/studies/ssd-vs-sdxl/prompts"))
        .form(&[("csrf", csrf.as_str()), ("format", "auto"), ("content", "Prompt\tCategory\tChallenge\tNote\na fox\tAnimals\tBasic\t\na car\tVehicles\tBasic\t\n")])
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status().as_u16(), 200);
    assert!(imported
        .text()
        .await
        .unwrap()
        .contains("Imported 2 new prompts"));
    let bad = app
        .client
        .post(app.url("/admin/studies/ssd-vs-sdxl/prompts"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("format", "csv"),
            ("content", "text\nno prompt column\n"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 422);
    assert_eq!(app.count("SELECT count(*) FROM prompts").await, 2);

    let logout = app
        .client
        .post(app.url("/admin/logout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
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
    assert_eq!(lines.next(), Some("participant_id,prompt_id,model_left,model_right,choice,category,gold,response_ms,created_at"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 12);
    for row in rows {
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!(f.len(), 9, "{row}");
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
