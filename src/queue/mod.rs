//! A job queue in Postgres that knows no job kind: jobs, their states, leases and the SQL
//! that claims, heartbeats, finishes, cancels, retries and reaps them (`store`). The kinds
//! of work and the worker that runs them are built on top, in `crate::jobs`.
//!
//! It imports nothing from the rest of the crate.

pub mod store;

use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The postgres channel workers LISTEN on (the jobs table's trigger NOTIFYs it).
pub const CHANNEL: &str = "arenaxl_jobs";

/// What can go wrong in the queue itself.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("job {0} does not exist")]
    NotFound(Uuid),
    #[error("unknown job status '{0}' in the database")]
    BadStatus(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = QueueError;
    fn from_str(s: &str) -> Result<Self, QueueError> {
        Ok(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            other => return Err(QueueError::BadStatus(other.to_string())),
        })
    }
}

/// A row of the queue.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: Uuid,
    pub kind: String,
    pub payload: serde_json::Value,
    pub status: JobStatus,
    pub priority: i32,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_after: DateTime<Utc>,
    pub worker_id: Option<String>,
    pub lease_token: Option<Uuid>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub progress_done: i32,
    pub progress_total: i32,
    pub progress_message: String,
    pub last_error: Option<String>,
    pub log: String,
    pub idempotency_key: Option<String>,
    pub study_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Job {
    /// The lease a claim returned; None for a job that is not running.
    pub fn lease(&self) -> Option<Lease> {
        Some(Lease {
            job_id: self.id,
            worker_id: self.worker_id.clone()?,
            token: self.lease_token?,
        })
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: serde_json::Value,
    pub priority: i32,
    pub max_attempts: i32,
    /// Enqueueing twice with the same key creates one job.
    pub idempotency_key: Option<String>,
    pub study_id: Option<Uuid>,
}

impl NewJob {
    pub fn new(kind: &str, payload: serde_json::Value) -> NewJob {
        NewJob {
            kind: kind.to_string(),
            payload,
            priority: 0,
            max_attempts: 3,
            idempotency_key: None,
            study_id: None,
        }
    }
}

/// Who holds a running job: the worker and the token of its claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job_id: Uuid,
    pub worker_id: String,
    pub token: Uuid,
}
