//! The worker loop. One thread owns the device and the runners (and so the loaded models);
//! database calls from it go through the tokio runtime's handle. While a job runs, a task
//! on the runtime extends the lease and raises a flag when the job was cancelled or taken
//! over. Waiting for work uses LISTEN/NOTIFY with polling as the fallback, so a lost
//! notification or a dropped connection costs at most one poll interval.
//!
//! Claims, heartbeats and completions commit without waiting for the WAL flush (the
//! `relaxed` pool): losing one in a server crash only makes a job run again, and running
//! a job again is safe because its results (image rows) are committed durably and skipped
//! when already there.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::postgres::PgListener;
use tokio::runtime::Handle;

use crate::db::Db;
use crate::queue::store::{self as jobs, LeaseState, Outcome, WorkerRow};
use crate::study::images::ImageStore;

use super::context::{SIGNAL_CANCEL, SIGNAL_LOST, SIGNAL_NONE};
use super::{Job, JobContext, JobError, JobRunner, Stop, CHANNEL};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique among workers; appears in the jobs it holds.
    pub id: String,
    /// "cpu" or "cuda:N".
    pub device: String,
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// How often the lease is extended while a job runs.
    pub heartbeat: Duration,
    /// The longest wait for work without a notification.
    pub poll: Duration,
    /// First retry delay of a failed job; doubles with each attempt.
    pub backoff: Duration,
    /// Return once no job of our kinds is queued or running (tests, demo, benchmarks).
    pub exit_when_idle: bool,
}

impl WorkerConfig {
    pub fn new(device: &str) -> WorkerConfig {
        let host = hostname();
        WorkerConfig {
            id: format!(
                "{host}-{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..6]
            ),
            device: device.to_string(),
            lease: Duration::from_secs(60),
            heartbeat: Duration::from_secs(10),
            poll: Duration::from_secs(2),
            backoff: Duration::from_secs(10),
            exit_when_idle: false,
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string())
}

/// What a worker did, for logs and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkerStats {
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub released: u64,
    pub lost: u64,
}

/// A worker running on its own thread; joining gives its statistics and runners back.
pub type WorkerThread = std::thread::JoinHandle<(WorkerStats, Vec<Box<dyn JobRunner>>)>;

pub struct Worker {
    pub config: WorkerConfig,
    db: Db,
    store: ImageStore,
    device: candle_core::Device,
    runners: Vec<Box<dyn JobRunner>>,
    shutdown: Arc<AtomicBool>,
}

impl Worker {
    pub fn new(
        config: WorkerConfig,
        db: Db,
        store: ImageStore,
        runners: Vec<Box<dyn JobRunner>>,
    ) -> Result<Worker, JobError> {
        let device = crate::engine::device::parse_device(&config.device)?;
        Ok(Worker {
            config,
            db,
            store,
            device,
            runners,
            shutdown: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Set it to stop: the current job stops at its next step and goes back to the queue.
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
    }

    pub fn kinds(&self) -> Vec<String> {
        self.runners.iter().map(|r| r.kind().to_string()).collect()
    }

    /// Runs on a thread of its own until shut down (or idle, with `exit_when_idle`).
    /// Returns the runners so that callers can read their statistics.
    pub fn spawn(self, handle: Handle) -> std::io::Result<WorkerThread> {
        std::thread::Builder::new()
            .name(format!("worker-{}", self.config.device))
            .spawn(move || self.run(handle))
    }

    /// The loop; blocking. Call from a thread that is not a runtime worker.
    pub fn run(mut self, handle: Handle) -> (WorkerStats, Vec<Box<dyn JobRunner>>) {
        // Some sqlx types (the listener) spawn tasks when dropped: keep the runtime entered.
        let _runtime = handle.enter();
        let kinds = self.kinds();
        let mut stats = WorkerStats::default();
        let mut listener: Option<PgListener> = None;
        let started_at = Utc::now();
        let mut row = WorkerRow {
            id: self.config.id.clone(),
            host: hostname(),
            device: self.config.device.clone(),
            kinds: kinds.clone(),
            current_job: None,
            status: "idle".into(),
            started_at,
            last_heartbeat: started_at,
        };
        tracing::info!(worker = %self.config.id, ?kinds, "worker started");
        // Housekeeping (the workers row, reaping expired leases) runs at most once a
        // second, so that a busy worker spends its round trips on claims.
        let mut housekeeping_at: Option<Instant> = None;
        let backoff_ms = self.config.backoff.as_millis() as i64;
        let lease_ms = self.config.lease.as_millis() as i64;
        while !self.shutdown.load(Ordering::Acquire) {
            if housekeeping_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                housekeeping_at = Some(Instant::now());
                if let Err(e) = handle.block_on(jobs::worker_beat(&self.db.pool, &row)) {
                    tracing::warn!("cannot record the worker's heartbeat: {e}");
                }
                if let Err(e) = handle.block_on(jobs::reap_expired(&self.db.pool, backoff_ms)) {
                    tracing::warn!("cannot reap expired leases: {e}");
                }
                let _ = handle.block_on(jobs::prune_workers(&self.db.relaxed));
                if listener.is_none() {
                    listener = handle.block_on(listen(&self.db));
                }
            }
            let claimed = handle.block_on(jobs::claim(
                &self.db.relaxed,
                &self.config.id,
                &kinds,
                lease_ms,
            ));
            match claimed {
                Ok(Some(job)) => {
                    row.current_job = Some(job.id);
                    row.status = "running".into();
                    self.run_job(&handle, job, &mut stats);
                    row.current_job = None;
                    row.status = "idle".into();
                }
                Ok(None) => {
                    if self.config.exit_when_idle && handle.block_on(idle(&self.db, &kinds)) {
                        break;
                    }
                    // Reap before sleeping: an expired job may be the only work left.
                    housekeeping_at = None;
                    wait(&handle, &mut listener, self.config.poll, &self.shutdown);
                }
                Err(e) => {
                    tracing::warn!("cannot claim a job (retrying): {e}");
                    std::thread::sleep(self.config.poll.min(Duration::from_millis(500)));
                }
            }
        }
        row.status = "stopped".into();
        let _ = handle.block_on(jobs::worker_beat(&self.db.pool, &row));
        tracing::info!(worker = %self.config.id, ?stats, "worker stopped");
        (stats, std::mem::take(&mut self.runners))
    }

    fn run_job(&mut self, handle: &Handle, job: Job, stats: &mut WorkerStats) {
        let Some(lease) = job.lease() else {
            return;
        };
        let signal = Arc::new(AtomicU8::new(SIGNAL_NONE));
        let lease_ms = self.config.lease.as_millis() as i64;
        let _ = handle.block_on(jobs::worker_touch(
            &self.db.relaxed,
            &self.config.id,
            Some(job.id),
        ));
        let beat = handle.spawn(heartbeat_task(
            self.db.clone(),
            lease.clone(),
            lease_ms,
            self.config.heartbeat,
            signal.clone(),
        ));
        let mut ctx = JobContext {
            db: self.db.clone(),
            store: self.store.clone(),
            lease: lease.clone(),
            device: self.device.clone(),
            device_name: self.config.device.clone(),
            handle: handle.clone(),
            lease_ms,
            signal,
            shutdown: self.shutdown.clone(),
        };
        let result = match self.runners.iter_mut().find(|r| r.kind() == job.kind) {
            Some(runner) => runner.run(&job, &mut ctx),
            None => Err(JobError::Permanent(format!(
                "this worker cannot run '{}' jobs",
                job.kind
            ))),
        };
        beat.abort();
        let backoff_ms = (self.config.backoff.as_millis() as i64)
            .saturating_mul(1i64 << (job.attempts - 1).clamp(0, 16));
        let outcome = match result {
            Ok(()) => Outcome::Succeeded,
            Err(JobError::Stopped(Stop::Cancelled)) => Outcome::Cancelled,
            Err(JobError::Stopped(Stop::Shutdown)) => Outcome::Released,
            Err(JobError::Stopped(Stop::LeaseLost)) => {
                tracing::warn!(job = %job.id, "lease lost; leaving the job to its new holder");
                stats.lost += 1;
                return;
            }
            Err(e) => Outcome::Failed {
                error: e.to_string(),
                retry: e.retryable(),
                backoff_ms,
            },
        };
        // The end of a job must reach the database; a dropped connection is retried.
        for attempt in 0..FINISH_TRIES {
            match handle.block_on(jobs::finish(&self.db.relaxed, &lease, &outcome)) {
                Ok(true) => {
                    match outcome {
                        Outcome::Succeeded => stats.succeeded += 1,
                        Outcome::Failed { .. } => stats.failed += 1,
                        Outcome::Cancelled => stats.cancelled += 1,
                        Outcome::Released => stats.released += 1,
                    }
                    return;
                }
                Ok(false) => {
                    tracing::warn!(job = %job.id, "lease lost before the job could be finished");
                    stats.lost += 1;
                    return;
                }
                Err(e) => {
                    tracing::warn!(job = %job.id, "cannot finish the job (try {attempt}): {e}");
                    std::thread::sleep(Duration::from_millis(200 << attempt.min(4)));
                }
            }
        }
        tracing::error!(
            job = %job.id,
            "gave up finishing the job after {FINISH_TRIES} tries; when its lease expires the \
             queue hands it out again"
        );
        stats.lost += 1;
    }
}

/// How often a worker tries to record the end of a job before leaving it to lease expiry.
const FINISH_TRIES: u32 = 10;

async fn listen(db: &Db) -> Option<PgListener> {
    let mut l = match PgListener::connect_with(&db.pool).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("cannot LISTEN for jobs (polling instead): {e}");
            return None;
        }
    };
    match l.listen(CHANNEL).await {
        Ok(()) => Some(l),
        Err(e) => {
            tracing::warn!("cannot LISTEN for jobs (polling instead): {e}");
            None
        }
    }
}

/// Waits for a notification or the poll interval, in slices so that a shutdown is seen
/// within a quarter second; drops a broken listener (it is made again on the next loop).
fn wait(handle: &Handle, listener: &mut Option<PgListener>, poll: Duration, shutdown: &AtomicBool) {
    let until = Instant::now() + poll;
    loop {
        let now = Instant::now();
        if now >= until || shutdown.load(Ordering::Acquire) {
            return;
        }
        let slice = (until - now).min(Duration::from_millis(250));
        match listener {
            Some(l) => {
                let got =
                    handle.block_on(async { tokio::time::timeout(slice, l.try_recv()).await });
                match got {
                    Ok(Ok(Some(_))) => return,
                    Err(_) => {}
                    // None: the connection was lost; Err: it failed. Poll from now on.
                    Ok(Ok(None)) | Ok(Err(_)) => {
                        *listener = None;
                        return;
                    }
                }
            }
            None => std::thread::sleep(slice),
        }
    }
}

/// True when nothing of `kinds` is queued or running.
async fn idle(db: &Db, kinds: &[String]) -> bool {
    let pending: Result<bool, sqlx::Error> = sqlx::query_scalar(
        "SELECT NOT EXISTS (SELECT 1 FROM jobs WHERE kind = ANY($1) AND status IN ('queued', 'running'))",
    )
    .bind(kinds)
    .fetch_one(&db.pool)
    .await;
    pending.unwrap_or(false)
}

async fn heartbeat_task(
    db: Db,
    lease: crate::jobs::Lease,
    lease_ms: i64,
    every: Duration,
    signal: Arc<AtomicU8>,
) {
    loop {
        tokio::time::sleep(every).await;
        let _ = jobs::worker_touch(&db.pool, &lease.worker_id, Some(lease.job_id)).await;
        match jobs::heartbeat(&db.relaxed, &lease, lease_ms, None).await {
            Ok(LeaseState::Held) => {}
            Ok(LeaseState::CancelRequested) => signal.store(SIGNAL_CANCEL, Ordering::Release),
            Ok(LeaseState::Lost) => {
                signal.store(SIGNAL_LOST, Ordering::Release);
                return;
            }
            Err(e) => tracing::warn!(job = %lease.job_id, "heartbeat failed (retrying): {e}"),
        }
    }
}
