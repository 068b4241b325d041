//! Queries of the job queue and the workers table. Every statement a worker runs on a job
//! it holds names the job, the worker and the lease token: an update from a worker whose
//! lease expired or was taken over matches no row.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use super::{Job, JobStatus, Lease, NewJob, QueueError};

const JOB_COLUMNS: &str = "id, kind, payload, status, priority, attempts, max_attempts, run_after, \
    worker_id, lease_token, lease_expires_at, cancel_requested, progress_done, progress_total, \
    progress_message, last_error, log, idempotency_key, study_id, created_at, started_at, finished_at";

#[derive(FromRow)]
struct JobRow {
    id: Uuid,
    kind: String,
    payload: serde_json::Value,
    status: String,
    priority: i32,
    attempts: i32,
    max_attempts: i32,
    run_after: DateTime<Utc>,
    worker_id: Option<String>,
    lease_token: Option<Uuid>,
    lease_expires_at: Option<DateTime<Utc>>,
    cancel_requested: bool,
    progress_done: i32,
    progress_total: i32,
    progress_message: String,
    last_error: Option<String>,
    log: String,
    idempotency_key: Option<String>,
    study_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<JobRow> for Job {
    type Error = QueueError;
    fn try_from(r: JobRow) -> Result<Job, QueueError> {
        Ok(Job {
            id: r.id,
            kind: r.kind,
            payload: r.payload,
            status: r.status.parse()?,
            priority: r.priority,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            run_after: r.run_after,
            worker_id: r.worker_id,
            lease_token: r.lease_token,
            lease_expires_at: r.lease_expires_at,
            cancel_requested: r.cancel_requested,
            progress_done: r.progress_done,
            progress_total: r.progress_total,
            progress_message: r.progress_message,
            last_error: r.last_error,
            log: r.log,
            idempotency_key: r.idempotency_key,
            study_id: r.study_id,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        })
    }
}

/// Enqueues a job; with an idempotency key already in the queue, returns the existing job's
/// id and `false` instead. Pass a transaction to enqueue atomically with other changes.
pub async fn enqueue(conn: &mut PgConnection, job: &NewJob) -> Result<(Uuid, bool), QueueError> {
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO jobs (id, kind, payload, priority, max_attempts, idempotency_key, study_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(Uuid::new_v4())
    .bind(&job.kind)
    .bind(&job.payload)
    .bind(job.priority)
    .bind(job.max_attempts)
    .bind(&job.idempotency_key)
    .bind(job.study_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = inserted {
        return Ok((id, true));
    }
    let id: Uuid = sqlx::query_scalar("SELECT id FROM jobs WHERE idempotency_key = $1")
        .bind(&job.idempotency_key)
        .fetch_one(&mut *conn)
        .await?;
    Ok((id, false))
}

/// Claims the next ready job of one of `kinds` in one statement, committed on return:
/// SKIP LOCKED lets concurrent claimers pass over each other's rows instead of waiting.
pub async fn claim(
    pool: &PgPool,
    worker_id: &str,
    kinds: &[String],
    lease_ms: i64,
) -> Result<Option<Job>, QueueError> {
    let row: Option<JobRow> = sqlx::query_as(&format!(
        "UPDATE jobs SET status = 'running', worker_id = $1, lease_token = $2, \
           lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond', \
           attempts = attempts + 1, started_at = now(), updated_at = now(), finished_at = NULL, \
           progress_done = 0, progress_message = '' \
         WHERE id = (SELECT id FROM jobs WHERE status = 'queued' AND run_after <= now() \
                       AND kind = ANY($4) \
                     ORDER BY priority DESC, run_after, created_at \
                     FOR UPDATE SKIP LOCKED LIMIT 1) \
         RETURNING {JOB_COLUMNS}"
    ))
    .bind(worker_id)
    .bind(Uuid::new_v4())
    .bind(lease_ms as f64)
    .bind(kinds)
    .fetch_optional(pool)
    .await?;
    row.map(Job::try_from).transpose()
}

/// What a holder learns when it extends its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Still ours; carry on.
    Held,
    /// Still ours, but an admin asked to cancel: stop at this step.
    CancelRequested,
    /// No longer ours (expired and reclaimed, or finished by someone else): stop now.
    Lost,
}

/// Extends the lease and optionally records progress; only the holder's update counts.
pub async fn heartbeat(
    pool: &PgPool,
    lease: &Lease,
    lease_ms: i64,
    progress: Option<(i32, i32, &str)>,
) -> Result<LeaseState, QueueError> {
    let (done, total, message) = match progress {
        Some((d, t, m)) => (Some(d), Some(t), Some(m)),
        None => (None, None, None),
    };
    let cancel: Option<bool> = sqlx::query_scalar(
        "UPDATE jobs SET lease_expires_at = clock_timestamp() + $4 * interval '1 millisecond', \
           updated_at = now(), progress_done = COALESCE($5, progress_done), \
           progress_total = COALESCE($6, progress_total), \
           progress_message = COALESCE($7, progress_message) \
         WHERE id = $1 AND worker_id = $2 AND lease_token = $3 AND status = 'running' \
         RETURNING cancel_requested",
    )
    .bind(lease.job_id)
    .bind(&lease.worker_id)
    .bind(lease.token)
    .bind(lease_ms as f64)
    .bind(done)
    .bind(total)
    .bind(message)
    .fetch_optional(pool)
    .await?;
    Ok(match cancel {
        None => LeaseState::Lost,
        Some(true) => LeaseState::CancelRequested,
        Some(false) => LeaseState::Held,
    })
}

/// Appends a line to the job's log (holder only).
pub async fn append_log(pool: &PgPool, lease: &Lease, line: &str) -> Result<bool, QueueError> {
    let done = sqlx::query(
        "UPDATE jobs SET log = right(log || to_char(now() AT TIME ZONE 'UTC', 'HH24:MI:SS ') || $4 || E'\\n', 65536) \
         WHERE id = $1 AND worker_id = $2 AND lease_token = $3 AND status = 'running'",
    )
    .bind(lease.job_id)
    .bind(&lease.worker_id)
    .bind(lease.token)
    .bind(line)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Locks the job's row if the lease is still ours, inside `tx`: a runner writes its results
/// in the same transaction, so a worker that lost its lease cannot store anything.
pub async fn lock_if_held(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    lease: &Lease,
) -> Result<bool, QueueError> {
    let held: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM jobs WHERE id = $1 AND worker_id = $2 AND lease_token = $3 AND status = 'running' FOR UPDATE",
    )
    .bind(lease.job_id)
    .bind(&lease.worker_id)
    .bind(lease.token)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(held.is_some())
}

/// How a holder ends its job.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded,
    /// Failed; retried after `backoff_ms` while attempts remain and `retry` is true.
    Failed {
        error: String,
        retry: bool,
        backoff_ms: i64,
    },
    /// Stopped because an admin cancelled it.
    Cancelled,
    /// Handed back unfinished (worker shutting down): queued again, the attempt not counted.
    Released,
}

/// Ends the job; false when the lease was no longer ours (nothing changed).
pub async fn finish(pool: &PgPool, lease: &Lease, outcome: &Outcome) -> Result<bool, QueueError> {
    const HOLDER: &str =
        "WHERE id = $1 AND worker_id = $2 AND lease_token = $3 AND status = 'running'";
    const CLEAR: &str =
        "worker_id = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = now()";
    let sql = match outcome {
        Outcome::Succeeded => format!(
            "UPDATE jobs SET status = 'succeeded', finished_at = now(), {CLEAR} {HOLDER} RETURNING 1"
        ),
        Outcome::Cancelled => format!(
            "UPDATE jobs SET status = 'cancelled', finished_at = now(), {CLEAR} {HOLDER} RETURNING 1"
        ),
        Outcome::Released => format!(
            "UPDATE jobs SET status = 'queued', attempts = greatest(attempts - 1, 0), run_after = now(), {CLEAR} {HOLDER} RETURNING 1"
        ),
        Outcome::Failed { .. } => format!(
            "UPDATE jobs SET \
               status = CASE WHEN $5 AND attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
               finished_at = CASE WHEN $5 AND attempts < max_attempts THEN NULL ELSE now() END, \
               run_after = now() + $6 * interval '1 millisecond', last_error = $4, \
               log = right(log || to_char(now() AT TIME ZONE 'UTC', 'HH24:MI:SS ') || 'error: ' || $4 || E'\\n', 65536), \
               {CLEAR} {HOLDER} RETURNING 1"
        ),
    };
    let q = sqlx::query_scalar::<_, i32>(&sql);
    let q = q
        .bind(lease.job_id)
        .bind(&lease.worker_id)
        .bind(lease.token);
    let q = match outcome {
        Outcome::Failed {
            error,
            retry,
            backoff_ms,
        } => q.bind(error.clone()).bind(*retry).bind(*backoff_ms as f64),
        _ => q,
    };
    Ok(q.fetch_optional(pool).await?.is_some())
}

/// Returns jobs whose lease expired to the queue (after a backoff that doubles with each
/// attempt), fails those whose attempts are used up, and ends cancelled ones. Returns how
/// many jobs it touched. Any worker may run it; it is idempotent.
pub async fn reap_expired(pool: &PgPool, backoff_base_ms: i64) -> Result<u64, QueueError> {
    let done = sqlx::query(
        "UPDATE jobs SET \
           status = CASE WHEN cancel_requested THEN 'cancelled' \
                         WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
           finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN now() END, \
           run_after = now() + least($1 * power(2, greatest(attempts - 1, 0)), 600000) * interval '1 millisecond', \
           last_error = 'lease expired: worker ' || coalesce(worker_id, '?') || ' stopped renewing it (attempt ' || attempts || ' of ' || max_attempts || ')', \
           log = right(log || to_char(now() AT TIME ZONE 'UTC', 'HH24:MI:SS ') || 'lease of worker ' || coalesce(worker_id, '?') || E' expired\\n', 65536), \
           worker_id = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = now() \
         WHERE status = 'running' AND lease_expires_at < clock_timestamp()",
    )
    .bind(backoff_base_ms as f64)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Cancels a job: a queued one at once, a running one at its holder's next step.
pub async fn cancel(pool: &PgPool, id: Uuid) -> Result<Option<JobStatus>, QueueError> {
    let status: Option<String> = sqlx::query_scalar(
        "UPDATE jobs SET \
           status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END, \
           finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END, \
           cancel_requested = (status = 'running'), updated_at = now() \
         WHERE id = $1 AND status IN ('queued', 'running') RETURNING status",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    status.map(|s| s.parse()).transpose()
}

/// Queues a failed or cancelled job again with fresh attempts.
pub async fn retry(pool: &PgPool, id: Uuid) -> Result<bool, QueueError> {
    let done = sqlx::query(
        "UPDATE jobs SET status = 'queued', attempts = 0, run_after = now(), cancel_requested = FALSE, \
           finished_at = NULL, updated_at = now(), \
           log = log || to_char(now() AT TIME ZONE 'UTC', 'HH24:MI:SS ') || E'retried by an admin\\n' \
         WHERE id = $1 AND status IN ('failed', 'cancelled')",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Job, QueueError> {
    let row: Option<JobRow> =
        sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?;
    row.ok_or(QueueError::NotFound(id))?.try_into()
}

/// The columns of a list of jobs: the log (up to 64 KiB a job) is left out — lists do not
/// show it, and the jobs page reloads every few seconds.
fn list_columns() -> String {
    JOB_COLUMNS.replace(" log,", " '' AS log,")
}

/// The most recent jobs, newest first, without their logs.
pub async fn recent(pool: &PgPool, limit: i64) -> Result<Vec<Job>, QueueError> {
    let rows: Vec<JobRow> = sqlx::query_as(&format!(
        "SELECT {} FROM jobs ORDER BY created_at DESC, id LIMIT $1",
        list_columns()
    ))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Job::try_from).collect()
}

/// The most recent jobs of one kind, without their logs.
pub async fn recent_of_kind(pool: &PgPool, kind: &str, limit: i64) -> Result<Vec<Job>, QueueError> {
    let rows: Vec<JobRow> = sqlx::query_as(&format!(
        "SELECT {} FROM jobs WHERE kind = $1 ORDER BY created_at DESC, id LIMIT $2",
        list_columns()
    ))
    .bind(kind)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Job::try_from).collect()
}

/// Job counts by status.
pub async fn counts(pool: &PgPool) -> Result<Vec<(String, i64)>, QueueError> {
    Ok(
        sqlx::query_as("SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status")
            .fetch_all(pool)
            .await?,
    )
}

/// A worker as the workers page shows it.
#[derive(Debug, Clone, FromRow)]
pub struct WorkerRow {
    pub id: String,
    pub host: String,
    pub device: String,
    pub kinds: Vec<String>,
    pub current_job: Option<Uuid>,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub last_heartbeat: DateTime<Utc>,
}

/// Records that a worker is alive (and what it is doing).
pub async fn worker_beat(pool: &PgPool, w: &WorkerRow) -> Result<(), QueueError> {
    sqlx::query(
        "INSERT INTO workers (id, host, device, kinds, current_job, status, started_at, last_heartbeat) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
         ON CONFLICT (id) DO UPDATE SET current_job = EXCLUDED.current_job, status = EXCLUDED.status, \
           last_heartbeat = now()",
    )
    .bind(&w.id)
    .bind(&w.host)
    .bind(&w.device)
    .bind(&w.kinds)
    .bind(w.current_job)
    .bind(&w.status)
    .bind(w.started_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn workers(pool: &PgPool) -> Result<Vec<WorkerRow>, QueueError> {
    Ok(sqlx::query_as(
        "SELECT id, host, device, kinds, current_job, status, started_at, last_heartbeat \
         FROM workers ORDER BY last_heartbeat DESC LIMIT 200",
    )
    .fetch_all(pool)
    .await?)
}

/// Marks a worker alive and what it runs now (cheaper than a full `worker_beat`).
pub async fn worker_touch(pool: &PgPool, id: &str, job: Option<Uuid>) -> Result<(), QueueError> {
    sqlx::query(
        "UPDATE workers SET last_heartbeat = now(), current_job = $2, \
           status = CASE WHEN $2 IS NULL THEN 'idle' ELSE 'running' END WHERE id = $1",
    )
    .bind(id)
    .bind(job)
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets workers not heard of for a day (each worker process has a row of its own).
pub async fn prune_workers(pool: &PgPool) -> Result<u64, QueueError> {
    let done = sqlx::query("DELETE FROM workers WHERE last_heartbeat < now() - interval '1 day'")
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_leave_the_log_out() {
        let cols = super::list_columns();
        assert!(cols.contains("'' AS log"), "{cols}");
        assert!(!cols.contains("last_error, log,"), "{cols}");
    }
}
