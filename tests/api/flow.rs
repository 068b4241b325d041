//! The whole participant flow, through the JSON API and through the pages without script.

use serde_json::Value;

use crate::common::{hidden, TestApp};

#[tokio::test]
async fn health_metrics_and_openapi_are_served() {
    let app = TestApp::spawn().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let spec: Value = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spec["openapi"], "3.0.3");
    for path in [
        "/api/v1/studies/{slug}/participants",
        "/api/v1/next",
        "/api/v1/assignments/{assignment_id}/vote",
    ] {
        assert!(spec["paths"][path].is_object(), "OpenAPI lacks {path}");
    }
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(crate::common::METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("arenaxl_votes_recorded_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("arenaxl_http_requests_total{route=\"/healthz\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("arenaxl_http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn api_participant_votes_until_done_and_gets_the_completion_code() {
    let app = TestApp::spawn().await;
    app.ready_study("flow", 5, 0.0, 4, &["sdxl", "ssd-1b", "vega"])
        .await;
    let token = app.join("flow", "PID-1").await;
    for i in 0..5 {
        let next = app.next(&token).await;
        assert_eq!(next["progress"]["done"], i);
        assert_eq!(next["progress"]["target"], 5);
        assert!(next["prompt"]
            .as_str()
            .unwrap()
            .starts_with("test prompt number"));
        assert_eq!(next["question"], arenaxl::study::DEFAULT_QUESTION);
        // Asking again before voting returns the same comparison.
        let again = app.next(&token).await;
        assert_eq!(again["assignment_id"], next["assignment_id"]);
        let image = app
            .client
            .get(app.url(next["left_url"].as_str().unwrap()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(image.headers()["content-type"], "image/png");
        let resp = app
            .vote(&token, next["assignment_id"].as_str().unwrap(), "left")
            .await;
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.json::<Value>().await.unwrap(),
            serde_json::json!({ "recorded": true })
        );
    }
    let done = app.next(&token).await;
    assert_eq!(done["done"], true);
    assert_eq!(done["completion_code"], "CODE-123");
    assert_eq!(
        done["redirect_url"],
        "https://app.prolific.com/submissions/complete?cc=CODE-123"
    );
    assert_eq!(app.count("SELECT count(*) FROM votes").await, 5);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(crate::common::METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("arenaxl_votes_recorded_total 5"),
        "{metrics}"
    );
}

#[tokio::test]
async fn pages_work_without_javascript_from_link_to_completion() {
    let app = TestApp::spawn().await;
    app.ready_study("pages", 3, 0.0, 3, &["a", "b"]).await;
    let intro = app
        .client
        .get(app.url("/s/pages?PROLIFIC_PID=P9&STUDY_ID=S9&SESSION_ID=X9"))
        .send()
        .await
        .unwrap();
    assert_eq!(intro.status().as_u16(), 200);
    let intro = intro.text().await.unwrap();
    assert!(intro.contains("Consent") && intro.contains("I agree, start"));
    assert_eq!(hidden(&intro, "PROLIFIC_PID").as_deref(), Some("P9"));
    let start = app
        .post_form(
            "/s/pages/start",
            &[
                ("PROLIFIC_PID", "P9"),
                ("STUDY_ID", "S9"),
                ("SESSION_ID", "X9"),
            ],
        )
        .await;
    assert_eq!(start.status().as_u16(), 303);
    let cookie = start.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    for i in 1..=3 {
        let page = app
            .client
            .get(app.url("/s/pages/vote"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains(&format!("{i} / 3")), "progress {i} missing");
        assert!(
            page.contains("Left is better")
                && page.contains("Right is better")
                && page.contains("Tie")
                && page.contains("Both bad")
        );
        let assignment = hidden(&page, "assignment_id").expect("assignment id");
        // No script: response_ms is empty and the server times the answer.
        let voted = app
            .post_form(
                "/s/pages/vote",
                &[
                    ("assignment_id", assignment.as_str()),
                    ("choice", "right"),
                    ("response_ms", ""),
                ],
            )
            .await;
        assert_eq!(voted.status().as_u16(), 303);
    }
    let last = app
        .client
        .get(app.url("/s/pages/vote"))
        .send()
        .await
        .unwrap();
    assert_eq!(last.status().as_u16(), 303);
    assert_eq!(last.headers()["location"], "/s/pages/done");
    let done = app
        .client
        .get(app.url("/s/pages/done"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(done.contains("CODE-123"));
    assert!(done.contains("https://app.prolific.com/submissions/complete?cc=CODE-123"));
    let pid: String = sqlx::query_scalar("SELECT prolific_pid FROM participants")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(pid, "P9");
    assert_eq!(
        app.count("SELECT count(*) FROM votes WHERE choice = 'right' AND response_ms >= 0")
            .await,
        3
    );
}

#[tokio::test]
async fn closed_unknown_and_expired_get_clear_pages() {
    let app = TestApp::spawn().await;
    app.create_study("draft", 3, 0.0).await;
    let unknown = app.client.get(app.url("/s/nope")).send().await.unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    assert!(unknown.text().await.unwrap().contains("Check the link"));
    let closed = app.client.get(app.url("/s/draft")).send().await.unwrap();
    assert_eq!(closed.status().as_u16(), 409);
    assert!(closed
        .text()
        .await
        .unwrap()
        .contains("This study is closed"));
    let expired = app
        .new_client()
        .get(app.url("/s/draft/vote"))
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status().as_u16(), 401);
    assert!(expired
        .text()
        .await
        .unwrap()
        .contains("Your session has expired"));
    let bad_cookie = reqwest::Client::new()
        .get(app.url("/s/draft/vote"))
        .header("Cookie", "axl_participant=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_cookie.status().as_u16(), 401);
    // Joining a draft study through the API is refused with JSON.
    let join = app
        .client
        .post(app.url("/api/v1/studies/draft/participants"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(join.status().as_u16(), 409);
    let body: Value = join.json().await.unwrap();
    assert_eq!(body["error"], "study_not_open");
}

#[tokio::test]
async fn closing_a_study_stops_voting() {
    let app = TestApp::spawn().await;
    app.ready_study("closing", 3, 0.0, 2, &["a", "b"]).await;
    let token = app.join("closing", "P1").await;
    let next = app.next(&token).await;
    arenaxl::db::studies::set_status(&app.db.pool, "closing", arenaxl::study::StudyStatus::Closed)
        .await
        .unwrap();
    let resp = app
        .vote(&token, next["assignment_id"].as_str().unwrap(), "left")
        .await;
    assert_eq!(resp.status().as_u16(), 409);
    assert_eq!(app.count("SELECT count(*) FROM votes").await, 0);
}

#[tokio::test]
async fn an_open_study_without_images_gives_no_completion_code() {
    let app = TestApp::spawn().await;
    app.create_study("empty", 3, 0.0).await;
    // Opening needs a live pair now; a study opened before that rule (or whose images were
    // deleted) must still not pay anyone for no work.
    sqlx::query("UPDATE studies SET status = 'open' WHERE slug = 'empty'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let token = app.join("empty", "P1").await;
    let resp = app
        .client
        .get(app.url("/api/v1/next"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "nothing_to_compare");
    assert!(!body.to_string().contains("CODE-123"));
    let client = app.new_client();
    client
        .post(app.url("/s/empty/start"))
        .form(&[("PROLIFIC_PID", "P2")])
        .send()
        .await
        .unwrap();
    let page = client.get(app.url("/s/empty/vote")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 503);
    let html = page.text().await.unwrap();
    assert!(html.contains("Not ready yet") && !html.contains("CODE-123"));
}
