//! Queries behind the participant flow: participants, assignments and votes. Each step is
//! one statement, so a vote cycle costs three round trips.

use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::study::scheduler::PairRow;
use crate::study::{Choice, ExternalIds, StudyError};

pub async fn insert_participant(
    pool: &PgPool,
    study_id: Uuid,
    token_hash: &str,
    ext: &ExternalIds,
) -> Result<Uuid, StudyError> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO participants (id, study_id, token_hash, prolific_pid, prolific_study_id, prolific_session_id, \
         mturk_worker_id, mturk_assignment_id, mturk_hit_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(study_id)
    .bind(token_hash)
    .bind(&ext.prolific_pid)
    .bind(&ext.prolific_study_id)
    .bind(&ext.prolific_session_id)
    .bind(&ext.mturk_worker_id)
    .bind(&ext.mturk_assignment_id)
    .bind(&ext.mturk_hit_id)
    .execute(pool)
    .await?;
    Ok(id)
}

/// Everything `next` needs to know about a participant, in one row.
#[derive(Debug, FromRow)]
pub struct ParticipantState {
    pub participant_id: Uuid,
    pub study_id: Uuid,
    pub slug: String,
    pub status: String,
    pub pairs_version: i64,
    pub votes_done: i32,
    pub is_prolific: bool,
    pub open_assignment: Option<Uuid>,
    pub open_prompt: Option<String>,
    pub seen_prompts: Vec<Uuid>,
    pub seen_model_pairs: Vec<Uuid>,
}

pub async fn participant_state(
    pool: &PgPool,
    token_hash: &str,
) -> Result<Option<ParticipantState>, StudyError> {
    let row = sqlx::query_as::<_, ParticipantState>(
        "SELECT p.id AS participant_id, s.id AS study_id, s.slug, s.status, s.pairs_version, p.votes_done, \
           p.prolific_pid IS NOT NULL AS is_prolific, \
           o.id AS open_assignment, o.text AS open_prompt, \
           ARRAY(SELECT a.prompt_id FROM assignments a WHERE a.participant_id = p.id AND NOT a.gold ORDER BY a.id) AS seen_prompts, \
           ARRAY(SELECT a.model_pair_id FROM assignments a WHERE a.participant_id = p.id AND NOT a.gold ORDER BY a.id) AS seen_model_pairs \
         FROM participants p JOIN studies s ON s.id = p.study_id \
         LEFT JOIN LATERAL ( \
           SELECT a.id, pr.text FROM assignments a JOIN prompts pr ON pr.id = a.prompt_id \
           WHERE a.participant_id = p.id AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.assignment_id = a.id) \
           ORDER BY a.issued_at DESC LIMIT 1) o ON TRUE \
         WHERE p.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    Ok(row)
}

/// Stores an assignment; `Ok(false)` when the participant already has this prompt and
/// model pair (a concurrent request won the race).
#[allow(clippy::too_many_arguments)]
pub async fn insert_assignment(
    pool: &PgPool,
    id: Uuid,
    participant_id: Uuid,
    study_id: Uuid,
    pair_id: Option<Uuid>,
    prompt_id: Uuid,
    model_pair_id: Option<Uuid>,
    left_image: Uuid,
    right_image: Uuid,
    gold_broken_side: Option<&str>,
) -> Result<bool, StudyError> {
    let result = sqlx::query(
        "INSERT INTO assignments (id, participant_id, study_id, pair_id, prompt_id, model_pair_id, left_image, \
         right_image, gold, gold_broken_side) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id)
    .bind(participant_id)
    .bind(study_id)
    .bind(pair_id)
    .bind(prompt_id)
    .bind(model_pair_id)
    .bind(left_image)
    .bind(right_image)
    .bind(gold_broken_side.is_some())
    .bind(gold_broken_side)
    .execute(pool)
    .await;
    match result {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// What happened to a vote, as one statement saw it.
#[derive(Debug, FromRow)]
pub struct VoteResult {
    pub found: bool,
    pub mine: bool,
    pub study_open: bool,
    pub allowed: bool,
    pub inserted: bool,
    pub pair_id: Option<Uuid>,
    pub study_id: Option<Uuid>,
}

/// Records a vote if the assignment exists, belongs to the token's participant, its study
/// is open, the choice is offered and no vote is there yet; counts it in the same statement.
/// `response_ms` None means "time since the assignment was issued" (pages without script).
pub async fn record_vote(
    pool: &PgPool,
    assignment_id: Uuid,
    token_hash: &str,
    choice: Choice,
    response_ms: Option<i32>,
) -> Result<VoteResult, StudyError> {
    let row = sqlx::query_as::<_, VoteResult>(
        "WITH a AS ( \
           SELECT a.id, a.participant_id, a.pair_id, a.study_id, a.issued_at, p.token_hash = $2 AS mine, \
             s.status = 'open' AS study_open, \
             ($3 IN ('left', 'right') OR ($3 = 'tie' AND s.allow_tie) OR ($3 = 'both_bad' AND s.allow_both_bad)) AS allowed \
           FROM assignments a JOIN participants p ON p.id = a.participant_id JOIN studies s ON s.id = a.study_id \
           WHERE a.id = $1), \
         ins AS ( \
           INSERT INTO votes (id, assignment_id, choice, response_ms) \
           SELECT $5, a.id, $3, COALESCE($4, LEAST(extract(epoch FROM now() - a.issued_at) * 1000, 2147483647)::int) \
           FROM a WHERE a.mine AND a.study_open AND a.allowed \
           ON CONFLICT (assignment_id) DO NOTHING RETURNING assignment_id), \
         up AS ( \
           UPDATE participants SET votes_done = votes_done + 1 \
           WHERE id = (SELECT participant_id FROM a) AND EXISTS (SELECT 1 FROM ins) RETURNING id), \
         upp AS ( \
           UPDATE pairs SET votes = votes + 1 \
           WHERE id = (SELECT pair_id FROM a) AND EXISTS (SELECT 1 FROM ins) RETURNING id) \
         SELECT EXISTS (SELECT 1 FROM a) AS found, COALESCE((SELECT mine FROM a), FALSE) AS mine, \
           COALESCE((SELECT study_open FROM a), FALSE) AS study_open, COALESCE((SELECT allowed FROM a), FALSE) AS allowed, \
           EXISTS (SELECT 1 FROM ins) AS inserted, (SELECT pair_id FROM a) AS pair_id, (SELECT study_id FROM a) AS study_id",
    )
    .bind(assignment_id)
    .bind(token_hash)
    .bind(choice.as_str())
    .bind(response_ms)
    .bind(Uuid::new_v4())
    .fetch_one(pool)
    .await?;
    Ok(row)
}

/// The stored file shown on one side of an assignment (the broken one for a gold check).
pub async fn image_file(
    pool: &PgPool,
    assignment_id: Uuid,
    left: bool,
) -> Result<Option<String>, StudyError> {
    let side = if left { "left" } else { "right" };
    let file: Option<String> = sqlx::query_scalar(
        "SELECT CASE WHEN a.gold AND a.gold_broken_side = $2 THEN i.broken_file ELSE i.file END \
         FROM assignments a JOIN images i ON i.id = CASE WHEN $2 = 'left' THEN a.left_image ELSE a.right_image END \
         WHERE a.id = $1",
    )
    .bind(assignment_id)
    .bind(side)
    .fetch_optional(pool)
    .await?;
    Ok(file)
}

/// Loads a study's pairs with their assignment and vote counts, and the images usable
/// for gold checks.
pub async fn load_plan_rows(
    pool: &PgPool,
    study_id: Uuid,
) -> Result<(Vec<PairRow>, Vec<(Uuid, Uuid, String)>), StudyError> {
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
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT p.id, p.prompt_id, pr.text, p.model_pair_id, p.image_a, p.image_b, p.votes, \
           (SELECT count(*) FROM assignments a WHERE a.pair_id = p.id) AS issued \
         FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id WHERE p.study_id = $1 ORDER BY p.id",
    )
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
        })
        .collect();
    Ok((pairs, gold))
}

pub async fn pairs_version(pool: &PgPool, study_id: Uuid) -> Result<i64, StudyError> {
    Ok(
        sqlx::query_scalar("SELECT pairs_version FROM studies WHERE id = $1")
            .bind(study_id)
            .fetch_one(pool)
            .await?,
    )
}
