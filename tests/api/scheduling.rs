//! Scheduling: votes balanced across model pairs and prompts, sides balanced per model
//! pair, and never the same prompt and model pair twice for one participant.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::common::TestApp;

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
