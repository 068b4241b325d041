//! What the schedulers read back of a study's pairs, counts and open assignments (storing
//! the assignments they pick is `super::issuing`).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::DbError;
use crate::domain::content::PairRow;

/// An unanswered assignment that still counts in the balance, with its age.
#[derive(Debug, Clone, FromRow)]
pub struct OpenRow {
    pub id: Uuid,
    pub pair_id: Uuid,
    pub age_ms: i64,
    /// Model A of the pair is on the left.
    pub a_left: bool,
}

macro_rules! open_rows {
    () => {
        "SELECT a.id, a.pair_id, (extract(epoch FROM now() - a.issued_at) * 1000)::bigint AS age_ms, \
       a.left_image = p.image_a AS a_left \
     FROM assignments a JOIN studies s ON s.id = a.study_id JOIN pairs p ON p.id = a.pair_id \
     WHERE a.study_id = $1 AND a.closed_at IS NULL \
       AND a.issued_at > now() - make_interval(secs => s.assignment_timeout_s) \
     ORDER BY a.issued_at"
    };
}
const OPEN_ROWS: &str = open_rows!();

/// What every process's scheduler re-reads to keep one balance: each pair's votes (and
/// those with model A on the left) and the study's open assignments.
pub struct Counts {
    pub votes: Vec<(Uuid, i64, i64)>,
    pub open: Vec<OpenRow>,
}

pub async fn load_counts(pool: &PgPool, study_id: Uuid) -> Result<Counts, DbError> {
    // One statement, so one snapshot: read apart, a vote landing between the two reads
    // would be neither a vote nor open, and the balance would miss it.
    #[derive(FromRow)]
    struct Row {
        is_open: bool,
        id: Uuid,
        votes: i64,
        a_left: i64,
        pair_id: Uuid,
        age_ms: i64,
        open_a_left: bool,
    }
    let rows: Vec<Row> = sqlx::query_as(concat!(
        "SELECT false AS is_open, id, votes, a_left, id AS pair_id, 0::bigint AS age_ms, \
           false AS open_a_left FROM pairs WHERE study_id = $1 \
         UNION ALL \
         SELECT true, o.id, 0, 0, o.pair_id, o.age_ms, o.a_left FROM (",
        open_rows!(),
        ") o"
    ))
    .bind(study_id)
    .fetch_all(pool)
    .await?;
    let mut counts = Counts {
        votes: Vec::with_capacity(rows.len()),
        open: Vec::new(),
    };
    for r in rows {
        if r.is_open {
            counts.open.push(OpenRow {
                id: r.id,
                pair_id: r.pair_id,
                age_ms: r.age_ms,
                a_left: r.open_a_left,
            });
        } else {
            counts.votes.push((r.id, r.votes, r.a_left));
        }
    }
    Ok(counts)
}

/// A study's pairs with their counts (votes, plus open assignments younger than the
/// study's timeout), those open assignments, and the images usable for gold checks.
pub struct PlanRows {
    pub pairs: Vec<PairRow>,
    /// The database's clock when the plan was read: comparisons another process issues
    /// from then on show that the study is shared.
    pub loaded_at: DateTime<Utc>,
    pub open: Vec<OpenRow>,
    pub gold: Vec<(Uuid, Uuid, String)>,
}

pub async fn load_plan_rows(pool: &PgPool, study_id: Uuid) -> Result<PlanRows, DbError> {
    // Before the counts: a comparison stored after this instant may be missing from them.
    let loaded_at: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await?;
    #[derive(FromRow)]
    struct Row {
        id: Uuid,
        prompt_id: Uuid,
        text: String,
        model_pair_id: Uuid,
        image_a: Uuid,
        image_b: Uuid,
        issued: i64,
        votes: i64,
        a_left: i64,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT p.id, p.prompt_id, pr.text, p.model_pair_id, p.image_a, p.image_b, p.votes, p.a_left, \
           p.votes + (SELECT count(*) FROM assignments a WHERE a.pair_id = p.id AND a.closed_at IS NULL \
             AND a.issued_at > now() - make_interval(secs => s.assignment_timeout_s)) AS issued \
         FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id JOIN studies s ON s.id = p.study_id \
         WHERE p.study_id = $1 ORDER BY p.id",
    )
    .bind(study_id)
    .fetch_all(pool)
    .await?;
    let open: Vec<OpenRow> = sqlx::query_as(OPEN_ROWS)
        .bind(study_id)
        .fetch_all(pool)
        .await?;
    let gold: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
        "SELECT i.id, i.prompt_id, pr.text FROM images i JOIN prompts pr ON pr.id = i.prompt_id \
         WHERE i.study_id = $1 ORDER BY i.id",
    )
    .bind(study_id)
    .fetch_all(pool)
    .await?;
    let pairs = rows
        .into_iter()
        .map(|r| PairRow {
            id: r.id,
            prompt_id: r.prompt_id,
            prompt_text: r.text,
            model_pair_id: r.model_pair_id,
            image_a: r.image_a,
            image_b: r.image_b,
            issued: r.issued.max(0) as u64,
            votes: r.votes.max(0) as u64,
            a_left: r.a_left.max(0) as u64,
        })
        .collect();
    Ok(PlanRows {
        pairs,
        loaded_at,
        open,
        gold,
    })
}

pub async fn pairs_version(pool: &PgPool, study_id: Uuid) -> Result<i64, DbError> {
    Ok(
        sqlx::query_scalar("SELECT pairs_version FROM studies WHERE id = $1")
            .bind(study_id)
            .fetch_one(pool)
            .await?,
    )
}
