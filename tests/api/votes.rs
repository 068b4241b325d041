//! Votes: exactly once per assignment, only by its participant, only with offered choices;
//! bad input answered with JSON 4xx, never a 500.

use serde_json::Value;

use crate::common::TestApp;

#[tokio::test]
async fn a_repeated_vote_is_acknowledged_but_counted_once() {
    let app = TestApp::spawn().await;
    app.ready_study("idem", 3, 0.0, 3, &["a", "b"]).await;
    let token = app.join("idem", "P1").await;
    let next = app.next(&token).await;
    let id = next["assignment_id"].as_str().unwrap();
    let first: Value = app.vote(&token, id, "left").await.json().await.unwrap();
    assert_eq!(first["recorded"], true);
    // A retry, even with another choice, changes nothing.
    let second = app.vote(&token, id, "right").await;
    assert_eq!(second.status().as_u16(), 200);
    let second: Value = second.json().await.unwrap();
    assert_eq!(
        second,
        serde_json::json!({ "recorded": false, "reason": "already_recorded" })
    );
    assert_eq!(app.count("SELECT count(*) FROM votes").await, 1);
    let choice: String = sqlx::query_scalar("SELECT choice FROM votes")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(choice, "left");
    let done: i32 = sqlx::query_scalar("SELECT votes_done FROM participants")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(done, 1);
}

#[tokio::test]
async fn concurrent_double_submissions_store_one_vote() {
    let app = TestApp::spawn().await;
    app.ready_study("race", 3, 0.0, 3, &["a", "b"]).await;
    let token = app.join("race", "P1").await;
    let next = app.next(&token).await;
    let id = next["assignment_id"].as_str().unwrap().to_string();
    let sends = (0..8).map(|_| app.vote(&token, &id, "tie"));
    let results = futures_util::future::join_all(sends).await;
    let mut recorded = 0;
    for r in results {
        assert_eq!(r.status().as_u16(), 200);
        if r.json::<Value>().await.unwrap()["recorded"] == true {
            recorded += 1;
        }
    }
    assert_eq!(recorded, 1);
    assert_eq!(app.count("SELECT count(*) FROM votes").await, 1);
}

#[tokio::test]
async fn a_vote_on_another_participants_assignment_is_refused() {
    let app = TestApp::spawn().await;
    app.ready_study("foreign", 3, 0.0, 3, &["a", "b"]).await;
    let alice = app.join("foreign", "alice").await;
    let mallory = app.join("foreign", "mallory").await;
    let next = app.next(&alice).await;
    let resp = app
        .vote(&mallory, next["assignment_id"].as_str().unwrap(), "left")
        .await;
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
    assert_eq!(app.count("SELECT count(*) FROM votes").await, 0);
    // Through the pages too: a form post with someone else's assignment id.
    let page_client = app.new_client();
    page_client
        .post(app.url("/s/foreign/start"))
        .form(&[("PROLIFIC_PID", "eve")])
        .send()
        .await
        .unwrap();
    let resp = page_client
        .post(app.url("/s/foreign/vote"))
        .form(&[
            ("assignment_id", next["assignment_id"].as_str().unwrap()),
            ("choice", "left"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(app.count("SELECT count(*) FROM votes").await, 0);
}

#[tokio::test]
async fn bad_input_gets_json_4xx_never_500() {
    let app = TestApp::spawn().await;
    let study = app.create_study("strict", 3, 0.0).await;
    app.import_images(&study, 2, &["a", "b"]).await;
    // Tie and both-bad not offered in this study.
    sqlx::query("UPDATE studies SET allow_tie = FALSE, allow_both_bad = FALSE, status = 'open'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let token = app.join("strict", "P1").await;
    let next = app.next(&token).await;
    assert_eq!(next["choices"], serde_json::json!(["left", "right"]));
    let id = next["assignment_id"].as_str().unwrap();
    let url = app.url(&format!("/api/v1/assignments/{id}/vote"));
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            app.client
                .post(&url)
                .bearer_auth(&token)
                .json(&serde_json::json!({ "choice": "tie" })),
            422,
            "invalid_input",
        ),
        (
            app.client
                .post(&url)
                .bearer_auth(&token)
                .json(&serde_json::json!({ "choice": "maybe" })),
            400,
            "invalid_body",
        ),
        (
            app.client
                .post(&url)
                .bearer_auth(&token)
                .json(&serde_json::json!({ "choice": "left", "response_ms": -5 })),
            422,
            "invalid_input",
        ),
        (
            app.client
                .post(&url)
                .bearer_auth(&token)
                .json(&serde_json::json!({ "choice": "left", "response_ms": 1e12 })),
            400,
            "invalid_body",
        ),
        (
            app.client
                .post(&url)
                .bearer_auth(&token)
                .json(&serde_json::json!({ "choice": "left", "extra": 1 })),
            400,
            "invalid_body",
        ),
        (
            app.client
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("{not json"),
            400,
            "invalid_body",
        ),
        (
            app.client
                .post(&url)
                .json(&serde_json::json!({ "choice": "left" })),
            401,
            "unauthenticated",
        ),
        (
            app.client
                .post(app.url("/api/v1/assignments/not-a-uuid/vote"))
                .bearer_auth(&token)
                .json(&serde_json::json!({ "choice": "left" })),
            404,
            "not_found",
        ),
        (
            app.client
                .post(app.url(&format!(
                    "/api/v1/assignments/{}/vote",
                    uuid::Uuid::new_v4()
                )))
                .bearer_auth(&token)
                .json(&serde_json::json!({ "choice": "left" })),
            404,
            "not_found",
        ),
        (
            app.client.get(app.url("/api/v1/next")),
            401,
            "unauthenticated",
        ),
        (
            app.client
                .get(app.url("/api/v1/next"))
                .bearer_auth("forged-token"),
            401,
            "unauthenticated",
        ),
        (
            app.client
                .post(app.url("/api/v1/studies/none/participants"))
                .json(&serde_json::json!({})),
            404,
            "not_found",
        ),
        (
            app.client
                .post(app.url("/api/v1/studies/strict/participants"))
                .json(&serde_json::json!({ "external": { "PROLIFIC_PID": "x".repeat(500) } })),
            422,
            "invalid_input",
        ),
        (
            app.client
                .post(app.url("/api/v1/studies/strict/participants"))
                .header("content-type", "application/json")
                .body("x".repeat(100_000)),
            413,
            "invalid_body",
        ),
        (
            app.client
                .post(app.url("/api/v1/studies/strict/participants"))
                .header("content-type", "application/json")
                .body("[1, 2]"),
            400,
            "invalid_body",
        ),
        (
            app.client.get(app.url("/api/v2/whatever")),
            404,
            "not_found",
        ),
    ];
    for (i, (request, status, code)) in cases.into_iter().enumerate() {
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "case {i}");
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("case {i}: not JSON: {e}"));
        assert_eq!(body["error"], code, "case {i}: {body}");
        assert!(body["detail"].is_string(), "case {i}");
    }
    assert_eq!(app.count("SELECT count(*) FROM votes").await, 0);
}

#[tokio::test]
async fn participant_creation_is_rate_limited_per_client() {
    let app = TestApp::spawn_with(arenaxl::config::RateLimits::default()).await;
    app.ready_study("limited", 3, 0.0, 2, &["a", "b"]).await;
    let burst = arenaxl::config::RateLimits::default().participants_burst as usize;
    let mut statuses = Vec::new();
    for i in 0..burst + 40 {
        let resp = app
            .client
            .post(app.url("/api/v1/studies/limited/participants"))
            .json(&serde_json::json!({ "external": { "PROLIFIC_PID": format!("p{i}") } }))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert!(statuses[..burst].iter().all(|s| *s == 201), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429));
}

#[tokio::test]
async fn gold_checks_compare_an_image_with_its_broken_version_and_record_the_answer() {
    let app = TestApp::spawn().await;
    app.ready_study("gold", 4, 1.0, 3, &["a", "b"]).await;
    let token = app.join("gold", "P1").await;
    for i in 0..4 {
        let next = app.next(&token).await;
        let id: uuid::Uuid = next["assignment_id"].as_str().unwrap().parse().unwrap();
        let (broken_side,): (String,) =
            sqlx::query_as("SELECT gold_broken_side FROM assignments WHERE id = $1 AND gold")
                .bind(id)
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        let left = app
            .client
            .get(app.url(next["left_url"].as_str().unwrap()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let right = app
            .client
            .get(app.url(next["right_url"].as_str().unwrap()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_ne!(left, right, "a gold check shows two different images");
        // Pass the first two checks, fail the others.
        let intact = if broken_side == "left" {
            "right"
        } else {
            "left"
        };
        let choice = if i < 2 { intact } else { broken_side.as_str() };
        app.vote(&token, &id.to_string(), choice).await;
    }
    let totals = arenaxl::db::dashboard::totals(
        &app.db.pool,
        sqlx::query_scalar("SELECT id FROM studies")
            .fetch_one(&app.db.pool)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!((totals.gold_votes, totals.gold_failed), (4, 2));
}

/// Several votes in one statement (what the vote writer does under load): each gets the
/// outcome it would get alone, in order — a repeat in the same batch is not counted twice,
/// a foreign token and an unknown assignment record nothing — and the counters of the one
/// pair they share are raised by the number of votes stored, not once per statement.
#[tokio::test]
async fn a_batch_of_votes_is_recorded_as_each_alone() {
    use arenaxl::db::participation::{record_votes, VoteInput};
    use arenaxl::domain::Choice;
    use arenaxl::study::participation::ParticipantToken;
    let app = TestApp::spawn().await;
    // One prompt, two models: every participant sees the same pair.
    app.ready_study("batch", 3, 0.0, 1, &["a", "b"]).await;
    let mut people = Vec::new();
    for pid in ["P1", "P2", "P3"] {
        let token = app.join("batch", pid).await;
        let next = app.next(&token).await;
        let id: uuid::Uuid = next["assignment_id"].as_str().unwrap().parse().unwrap();
        people.push((ParticipantToken(token).hash(), id));
    }
    let vote = |who: usize, of: usize, choice: Choice| VoteInput {
        assignment_id: people[of].1,
        token_hash: people[who].0.clone(),
        choice,
        response_ms: Some(1500),
    };
    let unknown = VoteInput {
        assignment_id: uuid::Uuid::new_v4(),
        ..vote(0, 0, Choice::Left)
    };
    let batch = [
        vote(0, 0, Choice::Left),
        vote(0, 0, Choice::Right),
        vote(2, 1, Choice::Left),
        vote(2, 2, Choice::Tie),
        unknown,
    ];
    let rows = record_votes(&app.db.pool, &batch.iter().collect::<Vec<_>>())
        .await
        .unwrap();
    let flags: Vec<(bool, bool, bool)> =
        rows.iter().map(|r| (r.found, r.mine, r.inserted)).collect();
    assert_eq!(
        flags,
        [
            (true, true, true),
            (true, true, false),
            (true, false, false),
            (true, true, true),
            (false, false, false)
        ]
    );
    assert_eq!(app.count("SELECT count(*) FROM votes").await, 2);
    assert_eq!(
        app.count("SELECT count(*) FROM votes WHERE choice = 'left'")
            .await,
        1
    );
    assert_eq!(app.count("SELECT votes::bigint FROM pairs").await, 2);
    // Model A's side counted for both stored votes.
    let a_left = app
        .count(
            "SELECT count(*) FROM votes v JOIN assignments a ON a.id = v.assignment_id \
             JOIN pairs p ON p.id = a.pair_id WHERE a.left_image = p.image_a",
        )
        .await;
    assert_eq!(app.count("SELECT a_left::bigint FROM pairs").await, a_left);
    assert_eq!(
        app.count("SELECT sum(votes_done)::bigint FROM participants")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT count(*) FROM assignments WHERE closed_at IS NULL")
            .await,
        1
    );
    // P2 still votes on their own assignment afterwards.
    let p2 = [vote(1, 1, Choice::Right)];
    let rows = record_votes(&app.db.pool, &p2.iter().collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(rows[0].inserted);
    assert_eq!(app.count("SELECT votes::bigint FROM pairs").await, 3);
}
