//! Several assignments stored in one statement (what the issuing writer does under load):
//! each gets the outcome it would get alone.

use arenaxl::db::issuing::{issue_many, Issue, Issued, Stored};
use arenaxl::study::participation::ParticipantToken;
use uuid::Uuid;

use crate::common::TestApp;

struct Person {
    id: Uuid,
    token: String,
    hash: String,
}

async fn person(app: &TestApp, pid: &str) -> Person {
    let token = app.join("issuing", pid).await;
    let id = sqlx::query_scalar("SELECT id FROM participants WHERE external_id = $1")
        .bind(pid)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let hash = ParticipantToken(token.clone()).hash();
    Person { id, token, hash }
}

/// The study's pairs as (pair, prompt, model pair, image A, image B), by prompt text.
async fn pairs(app: &TestApp) -> Vec<(Uuid, Uuid, Uuid, Uuid, Uuid)> {
    sqlx::query_as(
        "SELECT p.id, p.prompt_id, p.model_pair_id, p.image_a, p.image_b FROM pairs p \
         JOIN prompts pr ON pr.id = p.prompt_id ORDER BY pr.text",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

fn outcome(s: &Stored) -> &'static str {
    match s {
        Stored::Stored(_) => "stored",
        Stored::Refused => "refused",
        Stored::AlreadyOpen => "open",
        Stored::Seen => "seen",
    }
}

/// A batch holding a second assignment for one participant, a foreign token, a stale pairs
/// version and a gold check: only what would be stored alone is stored, the model pair's
/// side counter counts the comparisons stored, and two consecutive comparisons of one model
/// pair show model A once on each side. A second batch finds a pair already seen and an
/// assignment still open in the database.
#[tokio::test]
async fn a_batch_of_assignments_is_stored_as_each_alone() {
    let app = TestApp::spawn().await;
    app.ready_study("issuing", 5, 0.0, 2, &["a", "b"]).await;
    let (p1, p2, p3) = (
        person(&app, "P1").await,
        person(&app, "P2").await,
        person(&app, "P3").await,
    );
    let pairs = pairs(&app).await;
    assert_eq!(pairs.len(), 2);
    let study: Uuid = app_scalar(&app, "SELECT id FROM studies").await;
    let version: i64 = app_scalar(&app, "SELECT pairs_version FROM studies").await;
    let (image, image_prompt): (Uuid, Uuid) =
        sqlx::query_as("SELECT id, prompt_id FROM images ORDER BY id LIMIT 1")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    let issuer = Uuid::new_v4();
    let comparison = |who: &Person, pair: usize| Issue {
        id: Uuid::new_v4(),
        participant_id: who.id,
        token_hash: who.hash.clone(),
        study_id: study,
        pairs_version: version,
        what: Issued::Pair {
            pair_id: pairs[pair].0,
            prompt_id: pairs[pair].1,
            model_pair_id: pairs[pair].2,
            image_a: pairs[pair].3,
            image_b: pairs[pair].4,
            issuer,
            since: chrono::Utc::now(),
        },
    };
    let gold = Issue {
        what: Issued::Gold {
            prompt_id: image_prompt,
            image,
            broken_left: true,
        },
        ..comparison(&p2, 0)
    };
    let foreign = Issue {
        token_hash: p3.hash.clone(),
        ..comparison(&p2, 0)
    };
    let stale = Issue {
        pairs_version: version - 1,
        ..comparison(&p2, 0)
    };
    let batch = vec![
        comparison(&p1, 0),
        comparison(&p1, 1),
        foreign,
        stale,
        comparison(&p3, 0),
        gold,
    ];
    let ids: Vec<Uuid> = batch.iter().map(|i| i.id).collect();
    let out = issue_many(&app.db.relaxed, batch).await.unwrap();
    let names: Vec<&str> = out.iter().map(outcome).collect();
    assert_eq!(
        names,
        ["stored", "open", "refused", "refused", "stored", "stored"]
    );
    assert_eq!(app.count("SELECT count(*) FROM assignments").await, 3);
    assert_eq!(
        app.count("SELECT count(*) FROM assignments WHERE gold AND gold_broken_side = 'left'")
            .await,
        1
    );
    // The counter numbers comparisons only, and the two stored ones are one block of two.
    assert_eq!(app.count("SELECT sides FROM model_pairs").await, 2);
    let sides: Vec<bool> = sqlx::query_scalar(
        "SELECT a.left_image = p.image_a FROM assignments a JOIN pairs p ON p.id = a.pair_id \
         WHERE a.id = ANY($1) ORDER BY a.issued_at, a.id",
    )
    .bind(&ids)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(sides.len(), 2);
    assert_ne!(sides[0], sides[1], "model A on one side twice in a block");
    // Each stored row tells the caller the side the database chose.
    for (i, o) in out.iter().enumerate() {
        if let (Stored::Stored(row), 0 | 4) = (o, i) {
            let stored: bool = sqlx::query_scalar(
                "SELECT a.left_image = p.image_a FROM assignments a JOIN pairs p ON p.id = a.pair_id \
                 WHERE a.id = $1",
            )
            .bind(ids[i])
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
            assert_eq!(row.a_left, stored);
        }
    }

    // P1 answers; the same pair again is seen. P3's is still open.
    let vote = app.vote(&p1.token, &ids[0].to_string(), "left").await;
    assert!(vote.status().is_success());
    let out = issue_many(
        &app.db.relaxed,
        vec![comparison(&p1, 0), comparison(&p3, 1), comparison(&p1, 1)],
    )
    .await
    .unwrap();
    let names: Vec<&str> = out.iter().map(outcome).collect();
    assert_eq!(names, ["seen", "open", "stored"]);
    assert_eq!(app.count("SELECT sides FROM model_pairs").await, 3);
    assert_eq!(app.count("SELECT count(*) FROM assignments").await, 4);
}

async fn app_scalar<T>(app: &TestApp, sql: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}
