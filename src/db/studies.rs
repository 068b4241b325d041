//! Queries on studies.

use super::DbError;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::domain::{Allocation, Study, StudySettings, StudyStatus};

/// A study as stored; other queries embed it (`#[sqlx(flatten)]`) with [`COLUMNS_OF_S`].
#[derive(FromRow, Debug)]
pub struct StudyRow {
    id: Uuid,
    slug: String,
    title: String,
    question: String,
    instructions: String,
    consent_text: String,
    notice: String,
    votes_per_participant: i32,
    allow_tie: bool,
    allow_both_bad: bool,
    gold_rate: f64,
    completion_code: String,
    completion_url: String,
    status: String,
    pairs_version: i64,
    fast_vote_ms: i32,
    assignment_timeout_s: i32,
    allocation: String,
    stop_when_decided: bool,
    vote_budget: Option<i32>,
}

impl TryFrom<StudyRow> for Study {
    type Error = DbError;
    fn try_from(r: StudyRow) -> Result<Self, DbError> {
        Ok(Study {
            id: r.id,
            slug: r.slug,
            title: r.title,
            question: r.question,
            instructions: r.instructions,
            consent_text: r.consent_text,
            notice: r.notice,
            votes_per_participant: r.votes_per_participant,
            allow_tie: r.allow_tie,
            allow_both_bad: r.allow_both_bad,
            gold_rate: r.gold_rate,
            completion_code: r.completion_code,
            completion_url: r.completion_url,
            status: StudyStatus::parse(&r.status)?,
            pairs_version: r.pairs_version,
            fast_vote_ms: r.fast_vote_ms,
            assignment_timeout_s: r.assignment_timeout_s,
            allocation: Allocation::parse(&r.allocation)?,
            stop_when_decided: r.stop_when_decided,
            vote_budget: r.vote_budget,
        })
    }
}

/// [`COLUMNS`] of a query's `studies s`.
pub const COLUMNS_OF_S: &str =
    "s.id, s.slug, s.title, s.question, s.instructions, s.consent_text, s.notice, s.votes_per_participant, \
    s.allow_tie, s.allow_both_bad, s.gold_rate, s.completion_code, s.completion_url, s.status, s.pairs_version, \
    s.fast_vote_ms, s.assignment_timeout_s, s.allocation, s.stop_when_decided, s.vote_budget";

const COLUMNS: &str =
    "id, slug, title, question, instructions, consent_text, notice, votes_per_participant, \
    allow_tie, allow_both_bad, gold_rate, completion_code, completion_url, status, pairs_version, fast_vote_ms, \
    assignment_timeout_s, allocation, stop_when_decided, vote_budget";

type StudyQuery<'q> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, StudyRow, sqlx::postgres::PgArguments>;

/// Binds the settings an insert and an update both write, in this order: title, question,
/// instructions, consent text, notice, votes per participant, allow tie, allow both bad,
/// gold rate, completion code, completion URL, fast-vote threshold, assignment timeout,
/// allocation, stop when decided, vote budget.
fn bind_settings<'q>(q: StudyQuery<'q>, s: &'q StudySettings) -> StudyQuery<'q> {
    q.bind(&s.title)
        .bind(&s.question)
        .bind(&s.instructions)
        .bind(&s.consent_text)
        .bind(&s.notice)
        .bind(s.votes_per_participant)
        .bind(s.allow_tie)
        .bind(s.allow_both_bad)
        .bind(s.gold_rate)
        .bind(&s.completion_code)
        .bind(&s.completion_url)
        .bind(s.fast_vote_ms)
        .bind(s.assignment_timeout_s)
        .bind(s.allocation.as_str())
        .bind(s.stop_when_decided)
        .bind(s.vote_budget)
}

pub async fn insert(pool: impl sqlx::PgExecutor<'_>, s: &StudySettings) -> Result<Study, DbError> {
    let sql = format!(
        "INSERT INTO studies (id, slug, title, question, instructions, consent_text, notice, \
         votes_per_participant, allow_tie, allow_both_bad, gold_rate, completion_code, completion_url, \
         fast_vote_ms, assignment_timeout_s, allocation, stop_when_decided, vote_budget) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) RETURNING {COLUMNS}"
    );
    let query = sqlx::query_as(&sql)
        .bind(Uuid::new_v4())
        .bind(s.slug.as_str());
    let row: Result<StudyRow, sqlx::Error> = bind_settings(query, s).fetch_one(pool).await;
    match row {
        Ok(row) => row.try_into(),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(DbError::Conflict(
            format!("a study with slug '{}' already exists", s.slug),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Updates a study's settings; the slug cannot change (it is in participants' links).
pub async fn update(pool: &PgPool, id: Uuid, s: &StudySettings) -> Result<Study, DbError> {
    let sql = format!(
        "UPDATE studies SET title = $2, question = $3, instructions = $4, consent_text = $5, notice = $6, \
         votes_per_participant = $7, allow_tie = $8, allow_both_bad = $9, gold_rate = $10, \
         completion_code = $11, completion_url = $12, fast_vote_ms = $13, assignment_timeout_s = $14, \
         allocation = $15, stop_when_decided = $16, vote_budget = $17 WHERE id = $1 RETURNING {COLUMNS}"
    );
    let query = sqlx::query_as(&sql).bind(id);
    let row: StudyRow = bind_settings(query, s)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| DbError::NotFound("study".into()))?;
    row.try_into()
}

pub async fn by_slug(pool: &PgPool, slug: &str) -> Result<Study, DbError> {
    let row: Option<StudyRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM studies WHERE slug = $1"))
            .bind(slug)
            .fetch_optional(pool)
            .await?;
    row.ok_or_else(|| DbError::NotFound(format!("study '{slug}'")))?
        .try_into()
}

pub async fn by_id(pool: &PgPool, id: Uuid) -> Result<Study, DbError> {
    let row: Option<StudyRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM studies WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?;
    row.ok_or_else(|| DbError::NotFound("study".into()))?
        .try_into()
}

pub async fn list(pool: &PgPool) -> Result<Vec<Study>, DbError> {
    let rows: Vec<StudyRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM studies ORDER BY created_at DESC"
    ))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Study::try_from).collect()
}

/// Sets a study's status. Opening needs at least one live pair (two images of the same
/// prompt from different models): participants of a study with nothing to compare could
/// only be turned away.
pub async fn set_status(
    pool: impl sqlx::PgExecutor<'_>,
    slug: &str,
    status: StudyStatus,
) -> Result<(), DbError> {
    let row: Option<(bool,)> = sqlx::query_as(
        "WITH s AS (SELECT id, status, EXISTS (SELECT 1 FROM pairs p WHERE p.study_id = studies.id) AS live \
                    FROM studies WHERE slug = $1), \
         up AS (UPDATE studies SET status = $2 FROM s \
                WHERE studies.id = s.id AND ($2 <> 'open' OR s.live OR s.status = 'open') RETURNING studies.id) \
         SELECT EXISTS (SELECT 1 FROM up) FROM s",
    )
    .bind(slug)
    .bind(status.as_str())
    .fetch_optional(pool)
    .await?;
    match row {
        None => Err(DbError::NotFound(format!("study '{slug}'"))),
        Some((true,)) => Ok(()),
        Some((false,)) => Err(DbError::Conflict(format!(
            "study '{slug}' has no pair of images to compare yet (two images of one prompt from \
             different models); import or generate images before opening it"
        ))),
    }
}

/// Marks a draft study to open itself as soon as its first pair of images exists.
pub async fn open_when_ready(pool: impl sqlx::PgExecutor<'_>, id: Uuid) -> Result<(), DbError> {
    sqlx::query("UPDATE studies SET open_when_ready = TRUE WHERE id = $1 AND status = 'draft'")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// The stopping rule fired: no new participants from now on. (Closes the study; with a
/// "closing" state, participants in progress would finish first.) Only an open study
/// changes, so a study an admin closed or reopened meanwhile is left as it is.
pub async fn close_study_when_decided(pool: &PgPool, study_id: Uuid) -> Result<bool, DbError> {
    let done =
        sqlx::query("UPDATE studies SET status = 'closing' WHERE id = $1 AND status = 'open'")
            .bind(study_id)
            .execute(pool)
            .await?;
    Ok(done.rows_affected() > 0)
}

/// Decisive outcomes per candidate pair: (pair id, votes for image A, votes for image B);
/// ties, both-bad and gold checks are not counted.
pub async fn pair_outcomes(
    pool: &PgPool,
    study_id: Uuid,
) -> Result<Vec<(Uuid, u64, u64)>, DbError> {
    let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT p.id, \
           count(*) FILTER (WHERE (v.choice = 'left' AND a.left_image = p.image_a) \
                               OR (v.choice = 'right' AND a.right_image = p.image_a)), \
           count(*) FILTER (WHERE (v.choice = 'left' AND a.left_image = p.image_b) \
                               OR (v.choice = 'right' AND a.right_image = p.image_b)) \
         FROM pairs p JOIN assignments a ON a.pair_id = p.id JOIN votes v ON v.assignment_id = a.id \
         WHERE p.study_id = $1 GROUP BY p.id",
    )
    .bind(study_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, a, b)| (id, a.max(0) as u64, b.max(0) as u64))
        .collect())
}
