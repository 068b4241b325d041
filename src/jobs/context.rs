//! What a runner can reach while it holds a job: the database, the image store, the device,
//! and the lease, with `progress`/`check` telling it when to stop.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;

use crate::db::Db;
use crate::queue::store::{self as jobs, LeaseState};
use crate::study::images::ImageStore;

use super::{JobError, Lease};

/// Why a runner must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// An admin cancelled the job.
    Cancelled,
    /// Another worker holds the job now (our lease expired); write nothing more.
    LeaseLost,
    /// This worker is shutting down; the job goes back to the queue.
    Shutdown,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stop::Cancelled => "cancelled",
            Stop::LeaseLost => "lease lost to another worker",
            Stop::Shutdown => "worker shutting down",
        })
    }
}

/// Set by the heartbeat task, read by the runner between steps.
pub(crate) const SIGNAL_NONE: u8 = 0;
pub(crate) const SIGNAL_CANCEL: u8 = 1;
pub(crate) const SIGNAL_LOST: u8 = 2;

pub struct JobContext {
    pub db: Db,
    pub store: ImageStore,
    pub lease: Lease,
    pub device: candle_core::Device,
    /// How the device is named in provenance ("cpu", "cuda:0").
    pub device_name: String,
    pub(crate) handle: Handle,
    pub(crate) lease_ms: i64,
    pub(crate) signal: Arc<AtomicU8>,
    pub(crate) shutdown: Arc<AtomicBool>,
}

impl JobContext {
    /// A context for running a runner outside a worker loop (tests, tools): no heartbeat
    /// task, so progress calls are what extend the lease.
    pub fn new(
        db: Db,
        store: ImageStore,
        lease: Lease,
        device_name: &str,
        lease_ms: i64,
    ) -> Result<JobContext, JobError> {
        Ok(JobContext {
            db,
            store,
            lease,
            device: crate::engine::device::parse_device(device_name)?,
            device_name: device_name.to_string(),
            handle: Handle::try_current()
                .map_err(|e| JobError::Invalid(format!("no tokio runtime: {e}")))?,
            lease_ms,
            signal: Arc::new(AtomicU8::new(SIGNAL_NONE)),
            shutdown: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Runs a database future from the device thread.
    pub fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        self.handle.block_on(fut)
    }

    /// Err(Stopped) when the job must stop now; cheap (no database round trip).
    pub fn check(&self) -> Result<(), JobError> {
        match self.signal.load(Ordering::Acquire) {
            SIGNAL_LOST => return Err(JobError::Stopped(Stop::LeaseLost)),
            SIGNAL_CANCEL => return Err(JobError::Stopped(Stop::Cancelled)),
            _ => {}
        }
        if self.shutdown.load(Ordering::Acquire) {
            return Err(JobError::Stopped(Stop::Shutdown));
        }
        Ok(())
    }

    /// Records progress (which also extends the lease) and says whether to go on. A
    /// database error here is not fatal: the heartbeat keeps trying, and if the database
    /// stays away the lease expires and the job is retried elsewhere.
    pub fn progress(&self, done: usize, total: usize, message: &str) -> Result<(), JobError> {
        let state = self.block_on(jobs::heartbeat(
            &self.db.relaxed,
            &self.lease,
            self.lease_ms,
            Some((done as i32, total as i32, message)),
        ));
        match state {
            Ok(LeaseState::Lost) => self.signal.store(SIGNAL_LOST, Ordering::Release),
            Ok(LeaseState::CancelRequested) => self.signal.store(SIGNAL_CANCEL, Ordering::Release),
            Ok(LeaseState::Held) => {}
            Err(e) => tracing::warn!(job = %self.lease.job_id, "cannot record progress: {e}"),
        }
        self.check()
    }

    /// Appends a line to the job's log (best effort).
    pub fn log(&self, line: &str) {
        tracing::info!(job = %self.lease.job_id, "{line}");
        if let Err(e) = self.block_on(jobs::append_log(&self.db.pool, &self.lease, line)) {
            tracing::warn!(job = %self.lease.job_id, "cannot append to the job log: {e}");
        }
    }
}
