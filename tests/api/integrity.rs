//! Study integrity for paid crowd studies: one person is one participant, the target holds
//! under concurrency, both images of a pair are served with the same length, exports carry
//! crowd IDs, fast votes are flagged, and a study can close while people are in it.

use std::collections::HashSet;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{hidden, TestApp};

const MODELS: [&str; 3] = ["sdxl", "ssd-1b", "vega"];

async fn next_raw(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .get(app.url("/api/v1/next"))
        .bearer_auth(token)
        .send()
        .await
        .expect("next")
}

/// Joins through the pages with a fresh browser-like client: the intro link, then Start.
async fn join_pages(app: &TestApp, slug: &str, pid: &str) -> reqwest::Client {
    let client = app.new_client();
    let intro = client
        .get(app.url(&format!(
            "/s/{slug}?PROLIFIC_PID={pid}&STUDY_ID=S&SESSION_ID=X"
        )))
        .send()
        .await
        .expect("intro");
    assert_eq!(intro.status().as_u16(), 200, "intro for {pid}");
    let start = client
        .post(app.url(&format!("/s/{slug}/start")))
        .form(&[
            ("PROLIFIC_PID", pid),
            ("STUDY_ID", "S"),
            ("SESSION_ID", "X"),
        ])
        .send()
        .await
        .expect("start");
    assert_eq!(start.status().as_u16(), 303, "start for {pid}");
    client
}

async fn vote_page(app: &TestApp, client: &reqwest::Client, slug: &str) -> (u16, String) {
    let resp = client
        .get(app.url(&format!("/s/{slug}/vote")))
        .send()
        .await
        .expect("vote page");
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_string);
    let body = resp.text().await.expect("body");
    match location {
        Some(l) => (status, l),
        None => (status, body),
    }
}

#[tokio::test]
async fn the_same_prolific_id_is_one_participant_through_api_and_pages_before_and_after_completion()
{
    let app = TestApp::spawn().await;
    app.ready_study("once", 4, 0.0, 4, &MODELS).await;
    // Two votes through the API.
    let token = app.join("once", "PID-1").await;
    let first = app.next(&token).await;
    for _ in 0..2 {
        let next = app.next(&token).await;
        let id = next["assignment_id"].as_str().expect("assignment");
        assert_eq!(app.vote(&token, id, "left").await.status().as_u16(), 200);
    }
    // Another browser with the same PID continues at 3 / 4, with the same open assignment.
    let open = app.next(&token).await;
    let browser = join_pages(&app, "once", "PID-1").await;
    let (status, html) = vote_page(&app, &browser, "once").await;
    assert_eq!(status, 200);
    assert!(html.contains("3 / 4"), "progress is kept: {html}");
    assert_eq!(
        hidden(&html, "assignment_id").as_deref(),
        open["assignment_id"].as_str(),
        "the same open assignment"
    );
    assert_ne!(first["assignment_id"], open["assignment_id"]);
    // Joining through the API again resumes too (a new token, the same person).
    let token2 = app.join("once", "PID-1").await;
    assert_ne!(token, token2);
    assert_eq!(
        app.next(&token2).await["assignment_id"],
        open["assignment_id"]
    );
    // Finish in the browser.
    let mut html = html;
    for _ in 0..2 {
        let id = hidden(&html, "assignment_id").expect("assignment on the page");
        let resp = browser
            .post(app.url("/s/once/vote"))
            .form(&[
                ("assignment_id", id.as_str()),
                ("choice", "right"),
                ("response_ms", "1500"),
            ])
            .send()
            .await
            .expect("vote");
        assert_eq!(resp.status().as_u16(), 303);
        html = vote_page(&app, &browser, "once").await.1;
    }
    assert_eq!(html, "/s/once/done");
    assert_eq!(app.count("SELECT count(*) FROM participants").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM votes").await, 4);
    // After completion: the same code again, never a fresh run — by API and by pages.
    let token3 = app.join("once", "PID-1").await;
    let done = app.next(&token3).await;
    assert_eq!(done["done"], true);
    assert_eq!(done["completion_code"], "CODE-123");
    let again = join_pages(&app, "once", "PID-1").await;
    let (_, location) = vote_page(&app, &again, "once").await;
    assert_eq!(location, "/s/once/done");
    let page = again
        .get(app.url("/s/once/done"))
        .send()
        .await
        .expect("done")
        .text()
        .await
        .expect("body");
    assert!(page.contains("CODE-123"));
    assert_eq!(app.count("SELECT count(*) FROM participants").await, 1);
    assert_eq!(
        app.count("SELECT max(votes_done)::bigint FROM participants")
            .await,
        4
    );
    // MTurk's worker ID is an identity too; a different PID is a different person.
    let a = app
        .client
        .post(app.url("/api/v1/studies/once/participants"))
        .json(&serde_json::json!({ "external": { "workerId": "W1", "assignmentId": "A1" } }))
        .send()
        .await
        .expect("join");
    assert_eq!(a.status().as_u16(), 201);
    let b = app
        .client
        .post(app.url("/api/v1/studies/once/participants"))
        .json(&serde_json::json!({ "external": { "workerId": "W1", "assignmentId": "A2" } }))
        .send()
        .await
        .expect("join");
    assert_eq!(b.status().as_u16(), 201);
    app.join("once", "PID-2").await;
    assert_eq!(app.count("SELECT count(*) FROM participants").await, 3);
}

#[tokio::test]
async fn forty_concurrent_next_calls_share_one_assignment_and_the_target_holds() {
    let app = TestApp::spawn().await;
    app.ready_study("conc", 10, 0.2, 12, &MODELS).await;
    let token = app.join("conc", "PID-C").await;
    let calls = (0..40).map(|_| next_raw(&app, &token));
    let mut answers: Vec<Value> = Vec::new();
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.status().as_u16(), 200);
        answers.push(r.json().await.expect("json"));
    }
    let ids: HashSet<String> = answers
        .iter()
        .map(|a| a["assignment_id"].as_str().expect("assignment").to_string())
        .collect();
    assert_eq!(ids.len(), 1, "one open assignment, not {ids:?}");
    assert_eq!(
        app.count("SELECT count(*) FROM assignments").await,
        1,
        "one assignment stored"
    );
    // Rounds of 20 concurrent /next, each answer voted on concurrently: never past 10.
    for _ in 0..14 {
        let answers = futures_util::future::join_all((0..20).map(|_| next_raw(&app, &token))).await;
        let mut ids = HashSet::new();
        for a in answers {
            let body: Value = a.json().await.expect("json");
            if let Some(id) = body["assignment_id"].as_str() {
                ids.insert(id.to_string());
            }
        }
        let votes = ids.iter().map(|id| app.vote(&token, id, "left"));
        for v in futures_util::future::join_all(votes).await {
            assert_eq!(v.status().as_u16(), 200);
        }
    }
    assert_eq!(
        app.count("SELECT max(votes_done)::bigint FROM participants")
            .await,
        10
    );
    assert_eq!(app.count("SELECT count(*) FROM votes").await, 10);
    assert_eq!(app.next(&token).await["done"], true);
}

#[tokio::test]
async fn many_participants_at_once_never_get_a_spurious_503() {
    let app = TestApp::spawn().await;
    app.ready_study("busy", 5, 0.1, 10, &MODELS).await;
    let mut tokens = Vec::new();
    for i in 0..100 {
        tokens.push(app.join("busy", &format!("P{i}")).await);
    }
    // 400 concurrent /next: four per participant.
    let calls = tokens
        .iter()
        .flat_map(|t| (0..4).map(move |_| t))
        .map(|t| next_raw(&app, t));
    let statuses: Vec<u16> = futures_util::future::join_all(calls)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    let bad: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(bad.is_empty(), "{} of 400 failed: {bad:?}", bad.len());
    assert_eq!(app.count("SELECT count(*) FROM assignments").await, 100);
}

#[tokio::test]
async fn both_images_are_served_with_equal_lengths_only_to_their_holder() {
    let app = TestApp::spawn().await;
    app.ready_study("bytes", 12, 0.25, 6, &MODELS).await;
    let token = app.join("bytes", "PID-B").await;
    let other = app.join("bytes", "PID-OTHER").await;
    let anonymous = reqwest::Client::new();
    let mut served = Vec::new();
    for _ in 0..12 {
        let next = app.next(&token).await;
        let id = next["assignment_id"]
            .as_str()
            .expect("assignment")
            .to_string();
        let mut lengths = Vec::new();
        for side in ["left_url", "right_url"] {
            let url = app.url(next[side].as_str().expect("url"));
            let mine = anonymous
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .expect("image");
            assert_eq!(mine.status().as_u16(), 200);
            let bytes = mine.bytes().await.expect("bytes").to_vec();
            image::load_from_memory(&bytes).expect("a valid image");
            lengths.push(bytes.len());
            served.push(hex::encode(Sha256::digest(&bytes)));
            // The same image again: the same length, other bytes.
            let again = anonymous
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .expect("image");
            let again = again.bytes().await.expect("bytes");
            assert_eq!(again.len(), bytes.len());
            assert_ne!(&again[..], &bytes[..]);
            // Nobody else gets it: no token, another participant's token.
            assert_eq!(
                anonymous
                    .get(&url)
                    .send()
                    .await
                    .expect("get")
                    .status()
                    .as_u16(),
                404
            );
            let foreign = anonymous
                .get(&url)
                .bearer_auth(&other)
                .send()
                .await
                .expect("get");
            assert_eq!(foreign.status().as_u16(), 404);
        }
        assert_eq!(lengths[0], lengths[1], "assignment {id}: {lengths:?}");
        assert_eq!(app.vote(&token, &id, "left").await.status().as_u16(), 200);
    }
    // The published dataset maps no served bytes (and no stored file) to a model.
    let study = arenaxl::db::studies::by_slug(&app.db.pool, "bytes")
        .await
        .expect("study");
    let (jsonl, _) = arenaxl::study::export::pickapic_jsonl(&app.db, &study)
        .await
        .expect("export");
    let stored: Vec<String> = sqlx::query_scalar("SELECT sha256 FROM images")
        .fetch_all(&app.db.pool)
        .await
        .expect("hashes");
    for h in served.iter().chain(stored.iter()) {
        assert!(!jsonl.contains(h.as_str()), "the export holds hash {h}");
    }
    // Every pair of the study, not just the ones this participant saw: equal pixel sizes,
    // so equal served lengths follow from the rule above.
    assert_eq!(
        app.count(
            "SELECT count(*) FROM pairs p JOIN images a ON a.id = p.image_a JOIN images b ON b.id = p.image_b \
             WHERE a.width <> b.width OR a.height <> b.height"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn exports_carry_crowd_ids_and_flag_fast_votes() {
    let app = TestApp::spawn().await;
    app.ready_study("ids", 3, 0.0, 4, &MODELS).await;
    let token = app.join("ids", "PROLIFIC-AAA").await;
    // A fast vote (the client says 150 ms), a vote the client claims is slow although the
    // server saw both images served just now, and a normal one.
    let mut ids = Vec::new();
    for (i, ms) in [150, 5000, 2500].into_iter().enumerate() {
        let next = app.next(&token).await;
        let id = next["assignment_id"]
            .as_str()
            .expect("assignment")
            .to_string();
        if i == 1 {
            for side in ["left_url", "right_url"] {
                let url = app.url(next[side].as_str().expect("url"));
                app.client
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("image");
            }
        } else if i == 2 {
            sqlx::query(
                "UPDATE assignments SET left_served_at = now() - interval '3 seconds', \
                 right_served_at = now() - interval '3 seconds' WHERE id = $1::uuid",
            )
            .bind(&id)
            .execute(&app.db.pool)
            .await
            .expect("backdate");
        }
        let resp = app
            .client
            .post(app.url(&format!("/api/v1/assignments/{id}/vote")))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "choice": "left", "response_ms": ms }))
            .send()
            .await
            .expect("vote");
        assert_eq!(resp.status().as_u16(), 200);
        ids.push(id);
    }
    let fast: Vec<bool> = sqlx::query_scalar(
        "SELECT v.fast FROM votes v JOIN assignments a ON a.id = v.assignment_id ORDER BY v.created_at",
    )
    .fetch_all(&app.db.pool)
    .await
    .expect("flags");
    assert_eq!(fast, vec![true, true, false]);
    let server_ms: Option<i32> =
        sqlx::query_scalar("SELECT v.server_ms FROM votes v WHERE v.assignment_id = $1::uuid")
            .bind(&ids[2])
            .fetch_one(&app.db.pool)
            .await
            .expect("server ms");
    assert!(server_ms.is_some_and(|ms| ms >= 3000), "{server_ms:?}");

    let study = arenaxl::db::studies::by_slug(&app.db.pool, "ids")
        .await
        .expect("study");
    let votes = arenaxl::study::export::votes_csv(&app.db, &study)
        .await
        .expect("csv");
    let mut lines = votes.lines();
    assert_eq!(
        lines.next(),
        Some("participant_id,prompt_id,model_left,model_right,choice,category,gold,response_ms,created_at,platform,external_id,fast")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter().all(|r| r.contains(",prolific,PROLIFIC-AAA,")),
        "{votes}"
    );
    assert_eq!(rows.iter().filter(|r| r.ends_with(",true")).count(), 2);
    // The report reads it back, lists the fast participant by crowd ID and can drop fast votes.
    let records =
        arenaxl::report::votes::read_votes_csv(votes.as_bytes(), "votes.csv").expect("reads back");
    let settings = arenaxl::report::ReportSettings {
        bootstrap: 0,
        ..Default::default()
    };
    let all = arenaxl::report::build_report(&records, &settings).expect("report");
    assert_eq!(all.n_votes, 3);
    assert_eq!(all.participants.fast_votes, 2);
    assert_eq!(all.participants.fast_participant_ids, vec!["PROLIFIC-AAA"]);
    let kept = arenaxl::report::build_report(
        &records,
        &arenaxl::report::ReportSettings {
            exclude_fast: true,
            ..settings
        },
    )
    .expect("report");
    assert_eq!(kept.n_votes, 1);
    assert_eq!(kept.participants.excluded_fast_votes, 2);

    let participants = arenaxl::study::export::participants_csv(&app.db, &study)
        .await
        .expect("participants");
    let mut lines = participants.lines();
    assert_eq!(
        lines.next(),
        Some("platform,external_id,participant_id,started,finished,votes,gold_passed,gold_failed,median_response_ms,fast_votes,status")
    );
    let row = lines.next().expect("one participant");
    assert!(row.starts_with("prolific,PROLIFIC-AAA,"), "{row}");
    assert!(row.ends_with(",3,0,0,2500,2,completed"), "{row}");
    // The Pick-a-Pic export names the crowd ID too.
    let (jsonl, _) = arenaxl::study::export::pickapic_jsonl(&app.db, &study)
        .await
        .expect("pickapic");
    assert!(
        jsonl
            .lines()
            .all(|l| l.contains("\"user_id\":\"PROLIFIC-AAA\"")),
        "{jsonl}"
    );
    // And the admin download.
    app.login(&app.client).await;
    let (status, body) = app.page("/admin/studies/ids/participants.csv").await;
    assert_eq!(status, 200);
    assert_eq!(body, participants);
    let (status, html) = app.page("/admin/studies/ids/report?exclude_fast=1").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("2 excluded") && html.contains("PROLIFIC-AAA"),
        "{html}"
    );
}

#[tokio::test]
async fn closing_lets_people_in_progress_finish_and_closed_hands_them_their_code() {
    let app = TestApp::spawn().await;
    app.ready_study("life", 3, 0.0, 4, &MODELS).await;
    let early = app.join("life", "EARLY").await;
    let late = app.join("life", "LATE").await;
    let first = app.next(&early).await;
    let first_id = first["assignment_id"]
        .as_str()
        .expect("assignment")
        .to_string();
    assert_eq!(
        app.vote(&early, &first_id, "left").await.status().as_u16(),
        200
    );
    let late_next = app.next(&late).await;
    arenaxl::db::studies::set_status(&app.db.pool, "life", arenaxl::study::StudyStatus::Closing)
        .await
        .expect("closing");
    // No new participants...
    let resp = app
        .client
        .post(app.url("/api/v1/studies/life/participants"))
        .json(&serde_json::json!({ "external": { "PROLIFIC_PID": "NEW" } }))
        .send()
        .await
        .expect("join");
    assert_eq!(resp.status().as_u16(), 409);
    let (status, _) = app.page("/s/life?PROLIFIC_PID=NEW").await;
    assert_eq!(status, 409);
    // ...but those in progress finish, and may come back by their link.
    let (status, _) = app.page("/s/life?PROLIFIC_PID=EARLY").await;
    assert_eq!(status, 200);
    for _ in 0..2 {
        let next = app.next(&early).await;
        let id = next["assignment_id"].as_str().expect("assignment");
        assert_eq!(app.vote(&early, id, "right").await.status().as_u16(), 200);
    }
    let done = app.next(&early).await;
    assert_eq!(done["done"], true);
    assert_eq!(done["ended_early"], false);
    // Closed now: LATE, in progress, gets the code with word that the study ended early.
    arenaxl::db::studies::set_status(&app.db.pool, "life", arenaxl::study::StudyStatus::Closed)
        .await
        .expect("close");
    let ended = app.next(&late).await;
    assert_eq!(ended["done"], true);
    assert_eq!(ended["ended_early"], true);
    assert_eq!(ended["completion_code"], "CODE-123");
    let browser = join_pages(&app, "life", "LATE").await;
    let page = browser
        .get(app.url("/s/life/done"))
        .send()
        .await
        .expect("done")
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("ended early") && page.contains("CODE-123"),
        "{page}"
    );
    // Their open assignment can no longer be answered, but a retry of a recorded vote is
    // acknowledged, not a conflict.
    let late_id = late_next["assignment_id"].as_str().expect("assignment");
    assert_eq!(
        app.vote(&late, late_id, "left").await.status().as_u16(),
        409
    );
    let retry = app.vote(&early, &first_id, "left").await;
    assert_eq!(retry.status().as_u16(), 200);
    assert_eq!(
        retry.json::<Value>().await.expect("json"),
        serde_json::json!({ "recorded": false, "reason": "already_recorded" })
    );
}

#[tokio::test]
async fn a_study_opens_only_with_a_live_pair() {
    let app = TestApp::spawn().await;
    let study = app.create_study("empty-open", 3, 0.0).await;
    let err = arenaxl::db::studies::set_status(
        &app.db.pool,
        "empty-open",
        arenaxl::study::StudyStatus::Open,
    )
    .await
    .expect_err("nothing to compare");
    assert!(err.to_string().contains("no pair of images"), "{err}");
    // One model's images are still no pair.
    app.import_images(&study, 2, &["sdxl"]).await;
    assert!(arenaxl::db::studies::set_status(
        &app.db.pool,
        "empty-open",
        arenaxl::study::StudyStatus::Open
    )
    .await
    .is_err());
    app.import_images(&study, 2, &["vega"]).await;
    app.open("empty-open").await;
    // The admin's button says the same.
    app.create_study("empty-admin", 3, 0.0).await;
    app.login(&app.client).await;
    let (_, html) = app.page("/admin/studies/empty-admin").await;
    let csrf = crate::common::csrf_of(&html);
    let resp = app
        .post_form(
            "/admin/studies/empty-admin/status",
            &[("csrf", csrf.as_str()), ("status", "open")],
        )
        .await;
    let body = resp.text().await.expect("body");
    assert!(body.contains("no pair of images"), "{body}");
    assert_eq!(
        app.count("SELECT count(*) FROM studies WHERE slug = 'empty-admin' AND status = 'draft'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_vote_on_a_lost_assignment_moves_the_participant_on() {
    let app = TestApp::spawn().await;
    app.ready_study("lost", 3, 0.0, 4, &MODELS).await;
    let browser = join_pages(&app, "lost", "PID-L").await;
    let (_, html) = vote_page(&app, &browser, "lost").await;
    let id = hidden(&html, "assignment_id").expect("assignment");
    // The database crashed before the (relaxed) assignment insert reached the disk.
    sqlx::query("DELETE FROM assignments WHERE id = $1::uuid")
        .bind(&id)
        .execute(&app.db.pool)
        .await
        .expect("lose it");
    let resp = browser
        .post(app.url("/s/lost/vote"))
        .form(&[("assignment_id", id.as_str()), ("choice", "left")])
        .send()
        .await
        .expect("vote");
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()["location"], "/s/lost/vote");
    let (status, html) = vote_page(&app, &browser, "lost").await;
    assert_eq!(status, 200);
    let fresh = hidden(&html, "assignment_id").expect("a fresh comparison");
    assert_ne!(fresh, id);
    assert!(html.contains("1 / 3"));
}

#[tokio::test]
async fn abandoned_assignments_expire_and_the_balance_counts_votes() {
    let app = TestApp::spawn().await;
    app.ready_study("expire", 1, 0.0, 6, &MODELS).await;
    sqlx::query("UPDATE studies SET assignment_timeout_s = 1 WHERE slug = 'expire'")
        .execute(&app.db.pool)
        .await
        .expect("short timeout");
    // Someone takes a comparison and leaves.
    let gone = app.join("expire", "GONE").await;
    app.next(&gone).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // Six others vote once each: two per model pair, as if the first had never come.
    for i in 0..6 {
        let token = app.join("expire", &format!("P{i}")).await;
        let next = app.next(&token).await;
        let id = next["assignment_id"].as_str().expect("assignment");
        assert_eq!(app.vote(&token, id, "left").await.status().as_u16(), 200);
    }
    let per_pair: Vec<i64> = sqlx::query_scalar(
        "SELECT count(v.id) FROM model_pairs mp LEFT JOIN assignments a ON a.model_pair_id = mp.id \
         LEFT JOIN votes v ON v.assignment_id = a.id GROUP BY mp.id ORDER BY 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .expect("counts");
    assert_eq!(per_pair, vec![2, 2, 2]);
}
