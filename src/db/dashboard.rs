//! Read-only aggregates for the admin dashboard and the votes export.

use super::DbError;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::domain::votes::{Choice, VoteRecord, BROKEN_MARKER};

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct ModelPairCount {
    pub model_a: String,
    pub model_b: String,
    pub pairs: i64,
    pub votes: i64,
    pub wins_a: i64,
    pub wins_b: i64,
    pub ties: i64,
    pub both_bad: i64,
}

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct PromptCount {
    pub prompt: String,
    pub category: Option<String>,
    pub votes: i64,
}

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct Totals {
    pub prompts: i64,
    pub images: i64,
    pub pairs: i64,
    pub participants: i64,
    pub completed: i64,
    pub votes: i64,
    pub gold_votes: i64,
    pub gold_failed: i64,
    pub median_response_ms: Option<f64>,
}

pub async fn model_pairs(pool: &PgPool, study_id: Uuid) -> Result<Vec<ModelPairCount>, DbError> {
    Ok(sqlx::query_as(
        "SELECT ma.name AS model_a, mb.name AS model_b, \
           (SELECT count(*) FROM pairs p WHERE p.model_pair_id = mp.id) AS pairs, \
           count(v.id) AS votes, \
           count(v.id) FILTER (WHERE (v.choice = 'left') = (ia.model_id = mp.model_a) AND v.choice IN ('left', 'right')) AS wins_a, \
           count(v.id) FILTER (WHERE (v.choice = 'left') <> (ia.model_id = mp.model_a) AND v.choice IN ('left', 'right')) AS wins_b, \
           count(v.id) FILTER (WHERE v.choice = 'tie') AS ties, \
           count(v.id) FILTER (WHERE v.choice = 'both_bad') AS both_bad \
         FROM model_pairs mp JOIN models ma ON ma.id = mp.model_a JOIN models mb ON mb.id = mp.model_b \
         LEFT JOIN assignments a ON a.model_pair_id = mp.id \
         LEFT JOIN images ia ON ia.id = a.left_image \
         LEFT JOIN votes v ON v.assignment_id = a.id \
         WHERE mp.study_id = $1 GROUP BY mp.id, ma.name, mb.name ORDER BY ma.name, mb.name",
    )
    .bind(study_id)
    .fetch_all(pool)
    .await?)
}

pub async fn prompts(pool: &PgPool, study_id: Uuid) -> Result<Vec<PromptCount>, DbError> {
    Ok(sqlx::query_as(
        "SELECT pr.text AS prompt, pr.category, COALESCE(sum(p.votes), 0)::bigint AS votes \
         FROM prompts pr LEFT JOIN pairs p ON p.prompt_id = pr.id \
         WHERE pr.study_id = $1 GROUP BY pr.id ORDER BY votes ASC, pr.text LIMIT 500",
    )
    .bind(study_id)
    .fetch_all(pool)
    .await?)
}

pub async fn totals(pool: &PgPool, study_id: Uuid) -> Result<Totals, DbError> {
    Ok(sqlx::query_as(
        "SELECT \
           (SELECT count(*) FROM prompts WHERE study_id = $1) AS prompts, \
           (SELECT count(*) FROM images WHERE study_id = $1) AS images, \
           (SELECT count(*) FROM pairs WHERE study_id = $1) AS pairs, \
           (SELECT count(*) FROM participants WHERE study_id = $1) AS participants, \
           (SELECT count(*) FROM participants p JOIN studies s ON s.id = p.study_id \
              WHERE p.study_id = $1 AND p.votes_done >= s.votes_per_participant) AS completed, \
           count(v.id) AS votes, \
           count(v.id) FILTER (WHERE a.gold) AS gold_votes, \
           count(v.id) FILTER (WHERE a.gold AND v.choice <> CASE a.gold_broken_side WHEN 'left' THEN 'right' ELSE 'left' END) AS gold_failed, \
           percentile_cont(0.5) WITHIN GROUP (ORDER BY v.response_ms) AS median_response_ms \
         FROM assignments a JOIN votes v ON v.assignment_id = a.id WHERE a.study_id = $1",
    )
    .bind(study_id)
    .fetch_one(pool)
    .await?)
}

/// Every vote of a study in the votes-CSV shape. Gold checks name the broken side's model
/// with [`BROKEN_MARKER`], so analyses can tell a pass from a failure without the database.
pub async fn vote_records(pool: &PgPool, study_id: Uuid) -> Result<Vec<VoteRecord>, DbError> {
    #[derive(FromRow)]
    struct Row {
        participant_id: Uuid,
        prompt_id: String,
        model_left: String,
        model_right: String,
        choice: String,
        category: Option<String>,
        gold: bool,
        response_ms: i32,
        created_at: chrono::DateTime<chrono::Utc>,
        platform: Option<String>,
        external_id: Option<String>,
        fast: bool,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.participant_id, \
           COALESCE(pa.platform, CASE WHEN pa.prolific_pid IS NOT NULL THEN 'prolific' \
             WHEN pa.mturk_worker_id IS NOT NULL THEN 'mturk' END) AS platform, \
           COALESCE(pa.external_id, pa.prolific_pid, pa.mturk_worker_id) AS external_id, v.fast, COALESCE(pr.external_id, pr.id::text) AS prompt_id, \
           ml.name || CASE WHEN a.gold_broken_side = 'left' THEN $2 ELSE '' END AS model_left, \
           mr.name || CASE WHEN a.gold_broken_side = 'right' THEN $2 ELSE '' END AS model_right, \
           v.choice, pr.category, a.gold, v.response_ms, v.created_at \
         FROM votes v JOIN assignments a ON a.id = v.assignment_id JOIN prompts pr ON pr.id = a.prompt_id \
         JOIN images il ON il.id = a.left_image JOIN models ml ON ml.id = il.model_id \
         JOIN images ir ON ir.id = a.right_image JOIN models mr ON mr.id = ir.model_id \
         JOIN participants pa ON pa.id = a.participant_id \
         WHERE a.study_id = $1 ORDER BY v.created_at, v.id",
    )
    .bind(study_id)
    .bind(BROKEN_MARKER)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            let choice: Choice = r
                .choice
                .parse()
                .map_err(|e: String| DbError::Corrupt(format!("stored vote has {e}")))?;
            Ok(VoteRecord {
                participant_id: r.participant_id.to_string(),
                prompt_id: r.prompt_id,
                model_left: r.model_left,
                model_right: r.model_right,
                choice,
                category: r.category,
                gold: r.gold,
                response_ms: Some(r.response_ms as i64),
                created_at: Some(
                    r.created_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                ),
                platform: r.platform,
                external_id: r.external_id,
                fast: r.fast,
            })
        })
        .collect()
}

/// One non-gold vote with what a published dataset needs: the prompt, both images (by
/// their random image id, never a hash of any bytes a participant was served), their
/// models and the answer.
#[derive(Debug, Clone, FromRow)]
pub struct DatasetRow {
    pub prompt: String,
    pub left_image: Uuid,
    pub right_image: Uuid,
    pub left_file: String,
    pub right_file: String,
    pub model_left: String,
    pub model_right: String,
    pub choice: String,
    pub participant_id: Uuid,
    pub platform: Option<String>,
    pub external_id: Option<String>,
    /// The vote's id: not the assignment's, which was in the participant's image URLs.
    pub ranking_id: Uuid,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn dataset_rows(pool: &PgPool, study_id: Uuid) -> Result<Vec<DatasetRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT pr.text AS prompt, il.id AS left_image, ir.id AS right_image, il.file AS left_file, \
           ir.file AS right_file, ml.name AS model_left, mr.name AS model_right, v.choice, a.participant_id, \
           pa.platform, pa.external_id, v.id AS ranking_id, v.created_at \
         FROM votes v JOIN assignments a ON a.id = v.assignment_id JOIN prompts pr ON pr.id = a.prompt_id \
         JOIN images il ON il.id = a.left_image JOIN models ml ON ml.id = il.model_id \
         JOIN images ir ON ir.id = a.right_image JOIN models mr ON mr.id = ir.model_id \
         JOIN participants pa ON pa.id = a.participant_id \
         WHERE a.study_id = $1 AND NOT a.gold ORDER BY v.created_at, v.id",
    )
    .bind(study_id)
    .fetch_all(pool)
    .await?)
}

/// One participant of a study with what a researcher needs to approve or reject them.
#[derive(Debug, Clone, FromRow)]
pub struct ParticipantRow {
    pub participant_id: Uuid,
    pub platform: Option<String>,
    pub external_id: Option<String>,
    pub started: chrono::DateTime<chrono::Utc>,
    pub last_vote: Option<chrono::DateTime<chrono::Utc>>,
    pub last_issued: Option<chrono::DateTime<chrono::Utc>>,
    pub votes: i32,
    pub gold_passed: i64,
    pub gold_failed: i64,
    pub median_response_ms: Option<f64>,
    pub fast_votes: i64,
}

pub async fn participant_rows(
    pool: &PgPool,
    study_id: Uuid,
) -> Result<Vec<ParticipantRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT p.id AS participant_id, \
           COALESCE(p.platform, CASE WHEN p.prolific_pid IS NOT NULL THEN 'prolific' \
             WHEN p.mturk_worker_id IS NOT NULL THEN 'mturk' END) AS platform, \
           COALESCE(p.external_id, p.prolific_pid, p.mturk_worker_id) AS external_id, \
           p.created_at AS started, p.votes_done AS votes, x.last_vote, \
           (SELECT max(a.issued_at) FROM assignments a WHERE a.participant_id = p.id) AS last_issued, \
           COALESCE(x.gold_passed, 0) AS gold_passed, COALESCE(x.gold_failed, 0) AS gold_failed, \
           x.median_response_ms, COALESCE(x.fast_votes, 0) AS fast_votes \
         FROM participants p LEFT JOIN LATERAL ( \
           SELECT max(v.created_at) AS last_vote, \
             count(*) FILTER (WHERE a.gold AND ((v.choice = 'left' AND a.gold_broken_side = 'right') \
               OR (v.choice = 'right' AND a.gold_broken_side = 'left'))) AS gold_passed, \
             count(*) FILTER (WHERE a.gold AND NOT ((v.choice = 'left' AND a.gold_broken_side = 'right') \
               OR (v.choice = 'right' AND a.gold_broken_side = 'left'))) AS gold_failed, \
             percentile_cont(0.5) WITHIN GROUP (ORDER BY v.response_ms) AS median_response_ms, \
             count(*) FILTER (WHERE v.fast) AS fast_votes \
           FROM votes v JOIN assignments a ON a.id = v.assignment_id WHERE a.participant_id = p.id) x ON TRUE \
         WHERE p.study_id = $1 ORDER BY p.created_at, p.id",
    )
    .bind(study_id)
    .fetch_all(pool)
    .await?)
}
