//! Background work: a job queue in Postgres, workers that claim jobs under a lease, and
//! the runners that do each kind of job (`generate` images for a study, `distill` a student
//! from a teacher; `noop` exists for tests and the queue benchmark).
//!
//! Workers need nothing but the database and the shared image store: claiming is one
//! `FOR UPDATE SKIP LOCKED` statement, a lease that the holder's heartbeat extends says who
//! may write, and an expired lease puts the job back in the queue for another worker.

pub mod compare;
pub mod context;
pub mod distill;
pub mod generate;
pub mod models;
pub mod noop;
pub mod worker;

pub use crate::queue::{Job, JobStatus, Lease, NewJob, QueueError, CHANNEL};
pub use context::{JobContext, Stop};
pub use worker::{Worker, WorkerConfig};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Store(crate::db::DbError),
    /// The payload cannot be run; retrying cannot help.
    #[error("invalid {kind} job payload: {message}")]
    Payload { kind: String, message: String },
    /// A failure that retrying cannot fix (an unregistered model, a deleted study).
    #[error("{0}")]
    Permanent(String),
    /// A failure that may pass (a model folder on a flaky mount, a full disk).
    #[error("{0}")]
    Failed(String),
    #[error("{}", .0.describe())]
    Engine(#[from] crate::engine::EngineError),
    /// A training run's error, kept whole; `retryable` says whether trying again can help.
    #[error("{0}")]
    Distill(#[from] crate::distill::DistillError),
    #[error("{0}")]
    Study(#[from] crate::study::StudyError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("job stopped: {0}")]
    Stopped(Stop),
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl JobError {
    /// Whether running the job again can succeed: not for a payload that cannot run, a
    /// permanent failure, or a distillation whose plan, files or settings are wrong (a
    /// tensor or I/O failure may pass: a full disk, a busy GPU).
    pub fn retryable(&self) -> bool {
        use crate::distill::DistillError;
        match self {
            JobError::Payload { .. } | JobError::Permanent(_) => false,
            JobError::Distill(e) => !matches!(
                e,
                DistillError::Plan { .. }
                    | DistillError::Json { .. }
                    | DistillError::Data { .. }
                    | DistillError::Training(_)
            ),
            _ => true,
        }
    }
}

impl From<crate::db::DbError> for JobError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::Sql(e) => JobError::Db(e),
            crate::db::DbError::LeaseLost => JobError::Stopped(Stop::LeaseLost),
            other => JobError::Store(other),
        }
    }
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
