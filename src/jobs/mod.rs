//! Background work: a job queue in Postgres, workers that claim jobs under a lease, and
//! the runners that do each kind of job (`generate` images for a study, `distill` a student
//! from a teacher; `noop` exists for tests and the queue benchmark).
//!
//! Workers need nothing but the database and the shared image store: claiming is one
//! `FOR UPDATE SKIP LOCKED` statement, a lease that the holder's heartbeat extends says who
//! may write, and an expired lease puts the job back in the queue for another worker.

pub mod context;
pub mod distill;
pub mod generate;
pub mod models;
pub mod noop;
pub mod worker;

use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use context::{JobContext, Stop};
pub use worker::{Worker, WorkerConfig};

/// The postgres channel workers LISTEN on (the jobs table's trigger NOTIFYs it).
pub const CHANNEL: &str = "arenaxl_jobs";

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
    type Err = JobError;
    fn from_str(s: &str) -> Result<Self, JobError> {
        Ok(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            other => return Err(JobError::BadStatus(other.to_string())),
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

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("job {0} does not exist")]
    NotFound(Uuid),
    #[error("unknown job status '{0}' in the database")]
    BadStatus(String),
    /// The payload cannot be run; retrying cannot help.
    #[error("invalid {kind} job payload: {message}")]
    Payload { kind: String, message: String },
    /// A failure that retrying cannot fix (an unregistered model, a deleted study).
    #[error("{0}")]
    Permanent(String),
    /// A failure that may pass (a model folder on a flaky mount, a full disk).
    #[error("{0}")]
    Failed(String),
    #[error("model folder: {0}")]
    Engine(#[from] crate::engine::EngineError),
    #[error("{0}")]
    Study(#[from] crate::study::StudyError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("job stopped: {0}")]
    Stopped(Stop),
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl From<crate::domain::Invalid> for JobError {
    fn from(e: crate::domain::Invalid) -> Self {
        JobError::Invalid(e.to_string())
    }
}

/// One kind of job. A runner lives on the worker's device thread for the worker's whole
/// life, so it can keep models loaded between jobs.
pub trait JobRunner: Send {
    fn kind(&self) -> &'static str;
    /// Does the job. Call `ctx.progress` (or `ctx.check`) between steps: it returns
    /// `Err(JobError::Stopped(..))` when the job was cancelled, the lease lost or the worker
    /// is shutting down, which the runner must pass on at once.
    fn run(&mut self, job: &Job, ctx: &mut JobContext) -> Result<(), JobError>;
    /// Figures about the work done so far, for logs and benchmarks.
    fn stats(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Options of the runners a worker builds.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Relative model folders are resolved against this directory.
    pub models_dir: Option<std::path::PathBuf>,
    /// Bytes of weights kept loaded on the device before the least recently used go.
    pub memory_budget_bytes: u64,
    /// Distillation runs write under `<models_dir or data_dir>/distilled/<job id>`.
    pub data_dir: std::path::PathBuf,
}

/// The runners for `kinds` ("generate", "distill", "noop").
pub fn runners_for(
    kinds: &[String],
    opts: &RunnerOptions,
) -> Result<Vec<Box<dyn JobRunner>>, JobError> {
    let mut out: Vec<Box<dyn JobRunner>> = Vec::new();
    for kind in kinds {
        match kind.as_str() {
            generate::KIND => out.push(Box::new(generate::GenerateRunner::new(
                opts.memory_budget_bytes,
                opts.models_dir.clone(),
            ))),
            distill::KIND => out.push(Box::new(distill::DistillRunner::new(
                opts.models_dir.clone(),
                &opts.data_dir,
            ))),
            "noop" => out.push(Box::new(noop::NoopRunner)),
            other => {
                return Err(JobError::Invalid(format!(
                "no runner for job kind '{other}' in this build (known: generate, distill, noop)"
            )))
            }
        }
    }
    if out.is_empty() {
        return Err(JobError::Invalid(
            "a worker needs at least one job kind".into(),
        ));
    }
    Ok(out)
}
