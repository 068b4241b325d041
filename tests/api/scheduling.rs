//! Scheduling: votes balanced across model pairs and prompts, sides balanced per model
//! pair, and never the same prompt and model pair twice for one participant.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::common::{TestApp, METRICS_TOKEN};

#[tokio::test]
async fn pairs_prompts_and_sides_are_balanced_and_never_repeated() {
    let app = TestApp::spawn().await;
    // 6 prompts x 3 model pairs = 18 pairs; 12 participants x 6 votes = 72 votes.
    app.ready_study("balance", 6, 0.0, 6, &["m1", "m2", "m3"])
        .await;
    for p in 0..12 {
        let token = app.join("balance", &format!("P{p}")).await;
        loop {
            let next = app.next(&token).await;
            if next["done"] == true {
                break;
            }
            let choice = ["left", "right", "tie"][p % 3];
            app.vote(&token, next["assignment_id"].as_str().unwrap(), choice)
                .await;
        }
    }
    let rows: Vec<(Uuid, Uuid, Uuid, Uuid, Uuid)> = sqlx::query_as(
        "SELECT a.participant_id, a.prompt_id, a.model_pair_id, a.left_image, p.image_a \
         FROM assignments a JOIN pairs p ON p.id = a.pair_id JOIN votes v ON v.assignment_id = a.id",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 72);
    let mut per_model_pair: HashMap<Uuid, i64> = HashMap::new();
    let mut per_prompt: HashMap<Uuid, i64> = HashMap::new();
    let mut a_left: HashMap<Uuid, i64> = HashMap::new();
    let mut seen = HashSet::new();
    for (participant, prompt, model_pair, left, image_a) in rows {
        assert!(
            seen.insert((participant, prompt, model_pair)),
            "a participant saw a prompt and model pair twice"
        );
        *per_model_pair.entry(model_pair).or_default() += 1;
        *per_prompt.entry(prompt).or_default() += 1;
        *a_left.entry(model_pair).or_default() += if left == image_a { 1 } else { -1 };
    }
    let spread = |m: &HashMap<Uuid, i64>| m.values().max().unwrap() - m.values().min().unwrap();
    assert_eq!(per_model_pair.len(), 3);
    assert_eq!(spread(&per_model_pair), 0, "{per_model_pair:?}");
    assert_eq!(per_prompt.len(), 6);
    assert!(spread(&per_prompt) <= 1, "{per_prompt:?}");
    for (mp, diff) in a_left {
        assert!(
            diff.abs() <= 1,
            "sides of model pair {mp} are off by {diff}"
        );
    }
    // Stored pair counters agree with the votes.
    assert_eq!(app.count("SELECT sum(votes)::bigint FROM pairs").await, 72);
}

#[tokio::test]
async fn a_participant_who_has_seen_everything_is_done_early() {
    let app = TestApp::spawn().await;
    // 2 prompts x 1 model pair: only two distinct comparisons exist.
    app.ready_study("small", 10, 0.0, 2, &["a", "b"]).await;
    let token = app.join("small", "P1").await;
    for _ in 0..2 {
        let next = app.next(&token).await;
        app.vote(&token, next["assignment_id"].as_str().unwrap(), "left")
            .await;
    }
    let next = app.next(&token).await;
    assert_eq!(next["done"], true);
}

#[tokio::test]
async fn new_images_reach_a_running_study() {
    let app = TestApp::spawn().await;
    let study = app.ready_study("growing", 10, 0.0, 1, &["a", "b"]).await;
    let token = app.join("growing", "P1").await;
    let next = app.next(&token).await;
    app.vote(&token, next["assignment_id"].as_str().unwrap(), "left")
        .await;
    // Scheduler state is cached; a new import must still be seen.
    let dir = app.data_dir.path().join("more");
    crate::common::write_manifest_dir(&dir, 3, &["a", "b"]);
    arenaxl::study::images::import_dir(&app.db, &study, &dir, &app.store)
        .await
        .unwrap();
    let next = app.next(&token).await;
    assert!(
        next["assignment_id"].is_string(),
        "expected a new pair, got {next}"
    );
}

/// Three server processes on one database, requests spread over them (as a load balancer
/// without sticky sessions would): one balance of model pairs and sides, as one process keeps it.
#[tokio::test]
async fn three_servers_on_one_database_keep_one_balance() {
    let app = TestApp::spawn().await;
    app.ready_study("scale", 4, 0.0, 12, &["m1", "m2", "m3"])
        .await;
    let servers = [
        app.address.clone(),
        app.spawn_peer().await,
        app.spawn_peer().await,
    ];
    let client = reqwest::Client::new();
    // 90 participants, 15 at a time.
    for batch in 0..6 {
        futures_util::future::join_all(
            (0..15).map(|i| take_part(&client, "scale", &servers, batch * 15 + i)),
        )
        .await;
    }
    let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT a.model_pair_id, count(*), sum(CASE WHEN a.left_image = p.image_a THEN 1 ELSE -1 END) \
         FROM assignments a JOIN pairs p ON p.id = a.pair_id JOIN votes v ON v.assignment_id = a.id \
         GROUP BY a.model_pair_id",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 3);
    let counts: Vec<i64> = rows.iter().map(|r| r.1).collect();
    assert_eq!(counts.iter().sum::<i64>(), 360);
    let spread = counts.iter().max().unwrap() - counts.iter().min().unwrap();
    eprintln!(
        "three servers: votes per model pair {counts:?}, side skews {:?}",
        rows.iter().map(|r| r.2).collect::<Vec<_>>()
    );
    assert!(spread <= 2, "votes per model pair {counts:?}");
    for (mp, _, skew) in &rows {
        assert!(
            skew.abs() <= 2,
            "sides of model pair {mp} are off by {skew}"
        );
    }
    // They found each other: the counts were re-read from the database.
    let mut rereads = 0;
    for server in &servers {
        rereads += scheduler_rereads(&client, server).await;
    }
    assert!(
        rereads > 0,
        "three servers balanced without re-reading the counts"
    );
}

/// A server alone on a study never re-reads its counts (its own are exact), even when its
/// first requests arrive all at once: concurrent first loads of the plan once made it take
/// its own comparisons for another process's and re-read every few milliseconds.
#[tokio::test]
async fn a_server_alone_never_rereads_the_counts() {
    let app = TestApp::spawn().await;
    app.ready_study("solo", 4, 0.0, 12, &["m1", "m2", "m3"])
        .await;
    let client = reqwest::Client::new();
    let servers = [app.address.clone()];
    futures_util::future::join_all((0..48).map(|p| take_part(&client, "solo", &servers, p))).await;
    let votes: i64 = sqlx::query_scalar("SELECT count(*) FROM votes")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(votes, 48 * 4);
    assert_eq!(scheduler_rereads(&client, &app.address).await, 0);
}

/// One participant of study `slug` joins and votes "left" until done, each request going
/// to one of `servers` in turn (as a load balancer without sticky sessions would).
async fn take_part(client: &reqwest::Client, slug: &str, servers: &[String], p: usize) {
    let pick = |k: usize| servers[(p * 7 + k * 5) % servers.len()].clone();
    let joined: serde_json::Value = client
        .post(format!("{}/api/v1/studies/{slug}/participants", pick(0)))
        .json(&serde_json::json!({ "external": { "PROLIFIC_PID": format!("S{p}") } }))
        .send()
        .await
        .expect("join")
        .json()
        .await
        .expect("token");
    let token = joined["participant_token"]
        .as_str()
        .expect("token")
        .to_string();
    for k in 1..20 {
        let next: serde_json::Value = client
            .get(format!("{}/api/v1/next", pick(2 * k)))
            .bearer_auth(&token)
            .send()
            .await
            .expect("next")
            .json()
            .await
            .expect("json");
        if next["done"] == true {
            return;
        }
        let id = next["assignment_id"].as_str().expect("assignment");
        let resp = client
            .post(format!("{}/api/v1/assignments/{id}/vote", pick(2 * k + 1)))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "choice": "left", "response_ms": 1500 }))
            .send()
            .await
            .expect("vote");
        assert_eq!(resp.status().as_u16(), 200);
    }
}

/// `arenaxl_scheduler_rereads_total` from a server's `/metrics`.
async fn scheduler_rereads(client: &reqwest::Client, server: &str) -> u64 {
    let text = client
        .get(format!("{server}/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    text.lines()
        .find_map(|l| l.strip_prefix("arenaxl_scheduler_rereads_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no re-read counter in /metrics:\n{text}"))
}
