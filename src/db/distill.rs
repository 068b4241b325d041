//! Queries of distillation jobs: their loss curves (written by the lease holder only), and
//! the distill jobs an admin sees.

use super::DbError;
use sqlx::PgPool;
use uuid::Uuid;

use super::generation::ModelRow;
use crate::queue::Lease;

/// One point of a curve: stage, step and what was measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub stage: i32,
    /// "train" or "eval".
    pub kind: String,
    pub step: i64,
    pub data: serde_json::Value,
}

/// Stores points if the lease is still ours; returns false (storing nothing) otherwise. A
/// step already stored (a resumed run repeats the steps after its last checkpoint) is
/// replaced.
pub async fn insert_points(
    pool: &PgPool,
    lease: &Lease,
    points: &[Point],
) -> Result<bool, DbError> {
    if points.is_empty() {
        return Ok(true);
    }
    let mut tx = pool.begin().await?;
    if !crate::queue::store::lock_if_held(&mut tx, lease).await? {
        return Ok(false);
    }
    let stages: Vec<i32> = points.iter().map(|p| p.stage).collect();
    let kinds: Vec<String> = points.iter().map(|p| p.kind.clone()).collect();
    let steps: Vec<i64> = points.iter().map(|p| p.step).collect();
    let data: Vec<serde_json::Value> = points.iter().map(|p| p.data.clone()).collect();
    sqlx::query(
        "INSERT INTO distill_points (job_id, stage, kind, step, data) \
         SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::bigint[], $5::jsonb[]) \
         ON CONFLICT (job_id, stage, kind, step) DO UPDATE SET data = EXCLUDED.data",
    )
    .bind(lease.job_id)
    .bind(&stages)
    .bind(&kinds)
    .bind(&steps)
    .bind(&data)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Every point of a job, by stage, kind and step.
pub async fn points(pool: &PgPool, job_id: Uuid) -> Result<Vec<Point>, DbError> {
    let rows: Vec<(i32, String, i64, serde_json::Value)> = sqlx::query_as(
        "SELECT stage, kind, step, data FROM distill_points WHERE job_id = $1 \
         ORDER BY stage, kind, step",
    )
    .bind(job_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(stage, kind, step, data)| Point {
            stage,
            kind,
            step,
            data,
        })
        .collect())
}

/// Registers a distilled student under `name`, only while the lease is ours and only if
/// the name is free or already this job's (a retried job re-registers its own student; a
/// model someone else registered meanwhile is never replaced). Ok(None): the name is taken.
pub async fn register_student(
    pool: &PgPool,
    lease: &Lease,
    name: &str,
    folder: &str,
    weights_hash: &str,
    info: &serde_json::Value,
) -> Result<Option<ModelRow>, DbError> {
    let mut tx = pool.begin().await?;
    if !crate::queue::store::lock_if_held(&mut tx, lease).await? {
        return Err(DbError::LeaseLost);
    }
    let row: Option<ModelRow> = sqlx::query_as(
        "INSERT INTO models (id, name, folder, weights_hash, info, registered_at) \
         VALUES ($1, $2, $3, $4, $5, now()) \
         ON CONFLICT (name) DO UPDATE SET folder = EXCLUDED.folder, \
           weights_hash = EXCLUDED.weights_hash, info = EXCLUDED.info, registered_at = now() \
         WHERE models.info->>'distill_job' = $6 \
         RETURNING id, name, folder, weights_hash, info",
    )
    .bind(Uuid::new_v4())
    .bind(name)
    .bind(folder)
    .bind(weights_hash)
    .bind(info)
    .bind(lease.job_id.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// A queued or running distillation (other than the one with `key`) that will register a
/// student under `name`.
pub async fn pending_student(
    pool: &PgPool,
    kind: &str,
    name: &str,
    key: &str,
) -> Result<Option<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM jobs WHERE kind = $3 AND status IN ('queued', 'running') \
         AND payload->>'student' = $1 AND idempotency_key IS DISTINCT FROM $2 LIMIT 1",
    )
    .bind(name)
    .bind(key)
    .bind(kind)
    .fetch_optional(pool)
    .await?)
}
