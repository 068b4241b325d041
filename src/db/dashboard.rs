//! Read-only aggregates for the admin dashboard and the votes export.

use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::report::votes::{Choice, VoteRecord, BROKEN_MARKER};
use crate::study::StudyError;

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

pub async fn model_pairs(pool: &PgPool, study_id: Uuid) -> Result<Vec<ModelPairCount>, StudyError> {
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

pub async fn prompts(pool: &PgPool, study_id: Uuid) -> Result<Vec<PromptCount>, StudyError> {
    Ok(sqlx::query_as(
        "SELECT pr.text AS prompt, pr.category, COALESCE(sum(p.votes), 0)::bigint AS votes \
         FROM prompts pr LEFT JOIN pairs p ON p.prompt_id = pr.id \
         WHERE pr.study_id = $1 GROUP BY pr.id ORDER BY votes ASC, pr.text LIMIT 500",
    )
    .bind(study_id)
    .fetch_all(pool)
    .await?)
}

pub async fn totals(pool: &PgPool, study_id: Uuid) -> Result<Totals, StudyError> {
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
pub async fn vote_records(pool: &PgPool, study_id: Uuid) -> Result<Vec<VoteRecord>, StudyError> {
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
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.participant_id, COALESCE(pr.external_id, pr.id::text) AS prompt_id, \
           ml.name || CASE WHEN a.gold_broken_side = 'left' THEN $2 ELSE '' END AS model_left, \
           mr.name || CASE WHEN a.gold_broken_side = 'right' THEN $2 ELSE '' END AS model_right, \
           v.choice, pr.category, a.gold, v.response_ms, v.created_at \
         FROM votes v JOIN assignments a ON a.id = v.assignment_id JOIN prompts pr ON pr.id = a.prompt_id \
         JOIN images il ON il.id = a.left_image JOIN models ml ON ml.id = il.model_id \
         JOIN images ir ON ir.id = a.right_image JOIN models mr ON mr.id = ir.model_id \
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
                .map_err(|e: String| StudyError::Conflict(format!("stored vote has {e}")))?;
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
            })
        })
        .collect()
}

/// One non-gold vote with what a published dataset needs: the prompt, both images by
/// content hash, their models and the answer.
#[derive(Debug, Clone, FromRow)]
pub struct DatasetRow {
    pub prompt: String,
    pub left_sha256: String,
    pub right_sha256: String,
    pub left_file: String,
    pub right_file: String,
    pub model_left: String,
    pub model_right: String,
    pub choice: String,
    pub participant_id: Uuid,
    pub assignment_id: Uuid,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn dataset_rows(pool: &PgPool, study_id: Uuid) -> Result<Vec<DatasetRow>, StudyError> {
    Ok(sqlx::query_as(
        "SELECT pr.text AS prompt, il.sha256 AS left_sha256, ir.sha256 AS right_sha256, il.file AS left_file, \
           ir.file AS right_file, ml.name AS model_left, mr.name AS model_right, v.choice, a.participant_id, \
           a.id AS assignment_id, v.created_at \
         FROM votes v JOIN assignments a ON a.id = v.assignment_id JOIN prompts pr ON pr.id = a.prompt_id \
         JOIN images il ON il.id = a.left_image JOIN models ml ON ml.id = il.model_id \
         JOIN images ir ON ir.id = a.right_image JOIN models mr ON mr.id = ir.model_id \
         WHERE a.study_id = $1 AND NOT a.gold ORDER BY v.created_at, v.id",
    )
    .bind(study_id)
    .fetch_all(pool)
    .await?)
}
