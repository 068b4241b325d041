//! A server remembers the participants it served last (their seen pairs, their study) and
//! hands out their next comparison in one statement. What it remembers can go stale —
//! another server served them, an admin closed the study, new pairs were imported — and
//! none of that may change what a participant gets.

use std::collections::HashSet;

use arenaxl::domain::StudyStatus;

use crate::common::TestApp;

/// A participant whose requests alternate between two servers sees every pair of a small
/// study exactly once, with the right progress each time, and is then done — although
/// each server's memory of them misses what the other one handed out.
#[tokio::test]
async fn a_participant_served_by_two_servers_sees_each_pair_once_with_true_progress() {
    let app = TestApp::spawn().await;
    // 2 prompts x 3 model pairs = 6 pairs; the target is all of them.
    app.ready_study("twice", 6, 0.0, 2, &["m1", "m2", "m3"])
        .await;
    let servers = [app.address.clone(), app.spawn_peer().await];
    let token = app.join("twice", "P1").await;
    let mut shown = HashSet::new();
    for k in 0..6 {
        // Three requests per vote, so each server's turn shifts: next and vote land on
        // different servers half of the time.
        let server = &servers[k % 2];
        let next = app.next_at(server, &token).await;
        assert_eq!(
            next["progress"]["done"], k,
            "progress before vote {k}: {next}"
        );
        let id = next["assignment_id"]
            .as_str()
            .expect("a comparison")
            .to_string();
        assert!(shown.insert(id.clone()), "assignment {id} handed out twice");
        let again = app.next_at(&servers[(k + 1) % 2], &token).await;
        assert_eq!(
            again["assignment_id"], next["assignment_id"],
            "the open one again"
        );
        let voted = app
            .vote_at(&servers[(k / 2) % 2], &token, &id, "left")
            .await;
        assert_eq!(voted.status().as_u16(), 200);
        let voted: serde_json::Value = voted.json().await.expect("json");
        assert_eq!(voted["recorded"], true);
    }
    for server in &servers {
        let end = app.next_at(server, &token).await;
        assert_eq!(end["done"], true, "{end}");
    }
    let distinct: i64 = app
        .count(
            "SELECT count(DISTINCT (a.prompt_id, a.model_pair_id)) FROM assignments a \
             JOIN votes v ON v.assignment_id = a.id",
        )
        .await;
    assert_eq!(distinct, 6);
    assert_eq!(app.count("SELECT count(*) FROM assignments").await, 6);
}

/// A study closed by an admin while the server remembers a participant ends their session
/// at their next request: no comparison is handed out from memory.
#[tokio::test]
async fn a_study_closed_while_a_participant_is_remembered_gives_them_their_code() {
    let app = TestApp::spawn().await;
    app.ready_study("closes", 5, 0.0, 4, &["m1", "m2"]).await;
    let token = app.join("closes", "P1").await;
    let next = app.next(&token).await;
    let id = next["assignment_id"]
        .as_str()
        .expect("a comparison")
        .to_string();
    assert_eq!(app.vote(&token, &id, "left").await.status().as_u16(), 200);
    arenaxl::db::studies::set_status(&app.db.pool, "closes", StudyStatus::Closed)
        .await
        .expect("close");
    let end = app.next(&token).await;
    assert_eq!(end["done"], true, "{end}");
    assert_eq!(end["ended_early"], true, "{end}");
    assert_eq!(end["completion_code"], "CODE-123");
    assert_eq!(app.count("SELECT count(*) FROM assignments").await, 1);
}

/// Pairs imported into an open study while a participant is remembered are offered to
/// them: the plan their memory points at is outdated, and the server reloads it.
#[tokio::test]
async fn pairs_imported_while_a_participant_is_remembered_reach_them() {
    let app = TestApp::spawn().await;
    // One prompt, two models: a single pair, and a target of two votes.
    let study = app.ready_study("grows", 2, 0.0, 1, &["m1", "m2"]).await;
    let token = app.join("grows", "P1").await;
    let first = app.next(&token).await;
    let id = first["assignment_id"]
        .as_str()
        .expect("a comparison")
        .to_string();
    assert_eq!(app.vote(&token, &id, "left").await.status().as_u16(), 200);
    // A second prompt for both models: one new pair.
    app.import_images(&study, 2, &["m1", "m2"]).await;
    let second = app.next(&token).await;
    assert!(
        second["assignment_id"].is_string(),
        "the imported pair was not offered: {second}"
    );
    assert_ne!(second["prompt"], first["prompt"]);
}
