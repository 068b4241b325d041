//! Queries of distillation jobs: their loss curves (written by the lease holder only), and
//! the distill jobs an admin sees.

use sqlx::PgPool;
use uuid::Uuid;

use crate::jobs::{JobError, Lease};

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
) -> Result<bool, JobError> {
    if points.is_empty() {
        return Ok(true);
    }
    let mut tx = pool.begin().await?;
    if !super::jobs::lock_if_held(&mut tx, lease).await? {
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
pub async fn points(pool: &PgPool, job_id: Uuid) -> Result<Vec<Point>, JobError> {
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

/// Adds keys to a registered model's info (where a distilled student came from).
pub async fn annotate_model(
    pool: &PgPool,
    name: &str,
    extra: &serde_json::Value,
) -> Result<(), JobError> {
    sqlx::query("UPDATE models SET info = COALESCE(info, '{}'::jsonb) || $2 WHERE name = $1")
        .bind(name)
        .bind(extra)
        .execute(pool)
        .await?;
    Ok(())
}
