//! Queries behind handing out comparisons: storing a participant's next assignment (the
//! scheduler's pick, checked against the database in the same statement), and what the
//! schedulers read back of a study's pairs, counts and open assignments.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::studies::{StudyRow, COLUMNS_OF_S};
use super::DbError;
use crate::domain::content::PairRow;

/// An assignment to store as a participant's open one, on behalf of the holder of
/// `token_hash`.
#[derive(Debug, Clone)]
pub struct Issue<'a> {
    pub id: Uuid,
    pub participant_id: Uuid,
    pub token_hash: &'a str,
    pub study_id: Uuid,
    /// The version of the study's pairs the pick was made from.
    pub pairs_version: i64,
    pub what: Issued,
}

/// What an assignment shows.
#[derive(Debug, Clone, Copy)]
pub enum Issued {
    /// A comparison of the pair's two images; which goes left is decided in the statement.
    Pair {
        pair_id: Uuid,
        prompt_id: Uuid,
        model_pair_id: Uuid,
        image_a: Uuid,
        image_b: Uuid,
        /// This process (`model_pairs.last_issuer`) and when it read its plan.
        issuer: Uuid,
        since: DateTime<Utc>,
    },
    /// A gold check: an image beside its broken version.
    Gold {
        prompt_id: Uuid,
        image: Uuid,
        broken_left: bool,
    },
}

/// The participant and study as the storing statement saw them.
#[derive(Debug, FromRow)]
pub struct IssuedRow {
    #[sqlx(flatten)]
    pub study: StudyRow,
    pub votes_done: i32,
    pub is_prolific: bool,
    /// Model A went to the left (comparisons).
    pub a_left: bool,
    /// Another process issued this model pair's previous comparison after `since`.
    pub other: bool,
}

/// What became of an assignment the scheduler chose.
#[derive(Debug)]
pub enum Stored {
    Stored(Box<IssuedRow>),
    /// The participant may not get one now: their token, their target, the study's
    /// status or its pairs changed since the caller last read them.
    Refused,
    /// The participant already has an open assignment (a concurrent request stored it).
    AlreadyOpen,
    /// The participant has already had this prompt and model pair.
    Seen,
}

/// The token still names the participant, the study takes votes, the participant's target
/// is not reached and the pairs are those the pick was made from: what a caller knew of
/// the participant (possibly from an earlier request) still holds.
macro_rules! still_valid {
    ($token:literal, $version:literal) => {
        concat!(
            "g AS (SELECT {COLUMNS_OF_S}, p.votes_done, p.prolific_pid IS NOT NULL AS is_prolific \
               FROM participant_tokens t JOIN participants p ON p.id = t.participant_id \
                 JOIN studies s ON s.id = p.study_id \
               WHERE t.token_hash = ",
            $token,
            " AND p.id = $2 AND s.id = $3 AND s.pairs_version = ",
            $version,
            " AND s.status IN ('open', 'closing') AND p.votes_done < s.votes_per_participant)"
        )
    };
}

/// Stores an assignment in one statement, if what the caller knew still holds (else
/// [`Stored::Refused`]). The unique indexes decide races: one open assignment per
/// participant, never the same prompt and model pair twice.
///
/// A comparison's sides are decided here: the model pair's `sides` counter (one for every
/// process on the database) numbers its comparisons, and in each block of two consecutive
/// ones model A is once on the left and once on the right, the first side drawn from a
/// hash of the model pair and the block (not guessable without the pair's random id). The
/// model pair is marked as last issued by `issuer`; the row says whether another process
/// had issued its previous comparison at or after `since`: then the study is shared.
pub async fn issue(pool: &PgPool, issue: &Issue<'_>) -> Result<Stored, DbError> {
    let result = match issue.what {
        Issued::Pair {
            pair_id,
            prompt_id,
            model_pair_id,
            image_a,
            image_b,
            issuer,
            since,
        } => {
            sqlx::query_as::<_, IssuedRow>(&format!(
                concat!(
                    "WITH ",
                    still_valid!("$11", "$12"),
                    ", prev AS (SELECT last_issuer <> $9 AND last_issued_at >= $10 AS other \
                       FROM model_pairs WHERE id = $6), \
                     n AS (UPDATE model_pairs SET sides = sides + 1, last_issuer = $9, last_issued_at = now() \
                       WHERE id = $6 AND EXISTS (SELECT 1 FROM g) RETURNING sides - 1 AS k), \
                     side AS (SELECT (get_byte(decode(md5($6::text || ':' || (k / 2)::text), 'hex'), 0) % 2 = 1) \
                       <> (k % 2 = 1) AS a_left FROM n), \
                     ins AS (INSERT INTO assignments (id, participant_id, study_id, pair_id, prompt_id, \
                       model_pair_id, left_image, right_image, gold, gold_broken_side) \
                       SELECT $1, $2, $3, $4, $5, $6, CASE WHEN side.a_left THEN $7 ELSE $8 END, \
                         CASE WHEN side.a_left THEN $8 ELSE $7 END, FALSE, NULL FROM side \
                       RETURNING left_image = $7 AS a_left) \
                   SELECT g.*, ins.a_left, COALESCE((SELECT other FROM prev), FALSE) AS other FROM g, ins"
                ),
                COLUMNS_OF_S = COLUMNS_OF_S
            ))
            .bind(issue.id)
            .bind(issue.participant_id)
            .bind(issue.study_id)
            .bind(pair_id)
            .bind(prompt_id)
            .bind(model_pair_id)
            .bind(image_a)
            .bind(image_b)
            .bind(issuer)
            .bind(since)
            .bind(issue.token_hash)
            .bind(issue.pairs_version)
            .fetch_optional(pool)
            .await
        }
        Issued::Gold {
            prompt_id,
            image,
            broken_left,
        } => {
            sqlx::query_as::<_, IssuedRow>(&format!(
                concat!(
                    "WITH ",
                    still_valid!("$7", "$8"),
                    ", ins AS (INSERT INTO assignments (id, participant_id, study_id, pair_id, prompt_id, \
                       model_pair_id, left_image, right_image, gold, gold_broken_side) \
                       SELECT $1, $2, $3, NULL, $4, NULL, $5, $5, TRUE, $6 FROM g RETURNING id) \
                   SELECT g.*, TRUE AS a_left, FALSE AS other FROM g, ins"
                ),
                COLUMNS_OF_S = COLUMNS_OF_S
            ))
            .bind(issue.id)
            .bind(issue.participant_id)
            .bind(issue.study_id)
            .bind(prompt_id)
            .bind(image)
            .bind(if broken_left { "left" } else { "right" })
            .bind(issue.token_hash)
            .bind(issue.pairs_version)
            .fetch_optional(pool)
            .await
        }
    };
    match result {
        Ok(Some(row)) => Ok(Stored::Stored(Box::new(row))),
        Ok(None) => Ok(Stored::Refused),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            if e.constraint() == Some("assignments_one_open") {
                Ok(Stored::AlreadyOpen)
            } else {
                Ok(Stored::Seen)
            }
        }
        Err(e) => Err(e.into()),
    }
}

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
