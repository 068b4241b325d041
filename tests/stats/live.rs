//! Live stopping against a running server and a fresh database: a study with
//! `stop_when_decided` closes itself exactly when every model pair is decided by the
//! anytime-valid test, or when its vote budget is reached, and not before; an adaptive
//! study still hands a participant exactly one open assignment.

use crate::common::TestApp;
use arenaxl::study::{Study, StudyForm, StudySettings};
use uuid::Uuid;

async fn study(app: &TestApp, slug: &str, form: StudyForm, models: &[&str]) -> Study {
    let settings = StudySettings::try_from(StudyForm {
        slug: slug.into(),
        title: format!("Study {slug}"),
        completion_code: Some("CODE-1".into()),
        allow_tie: true,
        allow_both_bad: true,
        ..form
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let study = arenaxl::db::studies::insert(&app.db.pool, &settings)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.import_images(&study, 30, models).await;
    app.open(slug).await;
    study
}

async fn status(app: &TestApp, slug: &str) -> String {
    sqlx::query_scalar("SELECT status FROM studies WHERE slug = $1")
        .bind(slug)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Takes the participant's next comparison and votes for `model`'s image (or `choice`
/// when it is tie or both_bad).
async fn vote_for(app: &TestApp, token: &str, model: &str, choice: Option<&str>) {
    let next = app.next(token).await;
    let id = next["assignment_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no comparison: {next}"));
    let left_model: String = sqlx::query_scalar(
        "SELECT m.name FROM assignments a JOIN images i ON i.id = a.left_image \
         JOIN models m ON m.id = i.model_id WHERE a.id = $1",
    )
    .bind(Uuid::parse_str(id).unwrap_or_else(|e| panic!("{e}")))
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let choice = choice.unwrap_or(if left_model == model { "left" } else { "right" });
    let resp = app.vote(token, id, choice).await;
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
}

#[tokio::test]
async fn study_closes_exactly_when_every_pair_is_decided() {
    let app = TestApp::spawn().await;
    let form = StudyForm {
        votes_per_participant: Some(20),
        gold_rate: Some(0.0),
        allocation: Some("adaptive".into()),
        stop_when_decided: true,
        ..StudyForm::default()
    };
    study(&app, "stops", form, &["a", "b"]).await;
    let token = app.join("stops", "P1").await;
    // One pair, straight wins for a: Λ after n votes is 2^n / (n + 1); it first exceeds
    // 1/alpha = 20 at n = 8 (256 / 9), not at n = 7 (128 / 8).
    for n in 1..=7 {
        vote_for(&app, &token, "a", None).await;
        assert_eq!(
            status(&app, "stops").await,
            "open",
            "closed after {n} votes"
        );
    }
    vote_for(&app, &token, "a", None).await;
    // Closing: no one new joins, people in progress may finish.
    assert_eq!(status(&app, "stops").await, "closing");
    // The dashboard says so per model pair.
    app.login(&app.client).await;
    let (code, page) = app.page("/admin/studies/stops").await;
    assert_eq!(code, 200);
    assert!(page.contains("decided: a preferred"), "{page}");
    // No one new can join a closing study.
    let resp = app
        .client
        .post(app.url("/api/v1/studies/stops/participants"))
        .json(&serde_json::json!({ "external": { "PROLIFIC_PID": "P2" } }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(resp.status().is_client_error(), "{}", resp.status());
}

#[tokio::test]
async fn without_the_setting_a_decided_study_stays_open() {
    let app = TestApp::spawn().await;
    let form = StudyForm {
        votes_per_participant: Some(20),
        gold_rate: Some(0.0),
        ..StudyForm::default()
    };
    study(&app, "keeps", form, &["a", "b"]).await;
    let token = app.join("keeps", "P1").await;
    for _ in 0..3 {
        vote_for(&app, &token, "a", None).await;
    }
    app.login(&app.client).await;
    let (_, page) = app.page("/admin/studies/keeps").await;
    assert!(page.contains("open (anytime p, Holm: "), "{page}");
    for _ in 0..9 {
        vote_for(&app, &token, "a", None).await;
    }
    assert_eq!(status(&app, "keeps").await, "open");
}

#[tokio::test]
async fn study_closes_at_its_vote_budget() {
    let app = TestApp::spawn().await;
    let form = StudyForm {
        votes_per_participant: Some(20),
        gold_rate: Some(0.0),
        stop_when_decided: true,
        vote_budget: Some(5),
        ..StudyForm::default()
    };
    study(&app, "budget", form, &["a", "b", "c"]).await;
    let token = app.join("budget", "P1").await;
    // Ties decide nothing; only the budget can stop this study.
    for n in 1..=4 {
        vote_for(&app, &token, "a", Some("tie")).await;
        assert_eq!(
            status(&app, "budget").await,
            "open",
            "closed after {n} votes"
        );
    }
    vote_for(&app, &token, "a", Some("tie")).await;
    assert_eq!(status(&app, "budget").await, "closing");
}

#[tokio::test]
async fn adaptive_study_hands_out_one_open_assignment_at_a_time() {
    let app = TestApp::spawn().await;
    let form = StudyForm {
        votes_per_participant: Some(10),
        gold_rate: Some(0.0),
        allocation: Some("adaptive".into()),
        ..StudyForm::default()
    };
    study(&app, "one-open", form, &["a", "b", "c"]).await;
    let token = app.join("one-open", "P1").await;
    for _ in 0..5 {
        let first = app.next(&token).await;
        let again = app.next(&token).await;
        assert_eq!(first["assignment_id"], again["assignment_id"]);
        vote_for(&app, &token, "a", None).await;
    }
    let open = app
        .count(
            "SELECT count(*) FROM assignments a WHERE NOT EXISTS \
             (SELECT 1 FROM votes v WHERE v.assignment_id = a.id)",
        )
        .await;
    assert_eq!(open, 0);
    assert_eq!(app.count("SELECT count(*) FROM votes").await, 5);
}

#[tokio::test]
async fn study_settings_reject_an_unknown_allocation_and_a_zero_budget() {
    for (form, field) in [
        (
            StudyForm {
                allocation: Some("greedy".into()),
                ..StudyForm::default()
            },
            "allocation",
        ),
        (
            StudyForm {
                vote_budget: Some(0),
                ..StudyForm::default()
            },
            "vote_budget",
        ),
    ] {
        let err = StudySettings::try_from(StudyForm {
            slug: "s".into(),
            title: "t".into(),
            ..form
        })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains(field), "{field}: {err}");
    }
}
