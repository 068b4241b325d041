//! `arenaxl worker`: one process per accelerator, claiming jobs from the shared database
//! and writing images to the shared image store. SIGTERM (or Ctrl-C) finishes the current
//! image and hands the rest of the job back to the queue.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::config::Settings;
use crate::db::Db;
use crate::jobs::{runners_for, RunnerOptions, Worker, WorkerConfig};
use crate::study::images::ImageStore;

use super::database::{open_database, DbArgs};

#[derive(Debug, Args, Clone)]
pub struct WorkerArgs {
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Job kinds this worker runs, comma-separated (generate, distill).
    #[arg(long, value_delimiter = ',', default_value = "generate")]
    pub kinds: Vec<String>,
    /// Relative model folders of registered models are looked up here.
    #[arg(long, env = "ARENAXL_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// GiB of model weights kept loaded on the device between jobs.
    #[arg(long, default_value_t = 16.0)]
    pub memory_budget_gib: f64,
    /// Milliseconds a claim lasts without a heartbeat.
    #[arg(long, default_value_t = 60_000)]
    pub lease_ms: u64,
    /// Milliseconds between heartbeats while a job runs.
    #[arg(long, default_value_t = 10_000)]
    pub heartbeat_ms: u64,
    /// Longest wait for work between polls, in milliseconds (notifications wake it sooner).
    #[arg(long, default_value_t = 2_000)]
    pub poll_ms: u64,
    /// First retry delay of a failed job in milliseconds; doubles with each attempt.
    #[arg(long, default_value_t = 10_000)]
    pub backoff_ms: u64,
    /// Exit once no job of this worker's kinds is queued or running.
    #[arg(long)]
    pub exit_when_idle: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

impl WorkerArgs {
    /// Defaults for an in-process worker (`serve --worker`, `demo`).
    pub fn in_process(db: DbArgs) -> WorkerArgs {
        WorkerArgs {
            device: "cpu".into(),
            kinds: vec!["generate".into()],
            // The same models directory the web server registers relative folders under.
            models_dir: crate::jobs::models::models_dir_from_env(),
            memory_budget_gib: 16.0,
            lease_ms: 60_000,
            heartbeat_ms: 10_000,
            poll_ms: 2_000,
            backoff_ms: 10_000,
            exit_when_idle: false,
            db,
        }
    }

    pub fn build(&self, db: Db, store: ImageStore) -> anyhow::Result<Worker> {
        anyhow::ensure!(
            self.heartbeat_ms > 0 && self.heartbeat_ms < self.lease_ms,
            "--heartbeat-ms ({}) must be positive and shorter than --lease-ms ({})",
            self.heartbeat_ms,
            self.lease_ms
        );
        anyhow::ensure!(
            self.memory_budget_gib.is_finite() && self.memory_budget_gib > 0.0,
            "--memory-budget-gib must be positive"
        );
        let mut config = WorkerConfig::new(&self.device);
        config.lease = Duration::from_millis(self.lease_ms);
        config.heartbeat = Duration::from_millis(self.heartbeat_ms);
        config.poll = Duration::from_millis(self.poll_ms.max(10));
        config.backoff = Duration::from_millis(self.backoff_ms);
        config.exit_when_idle = self.exit_when_idle;
        let runners = runners_for(
            &self.kinds,
            &RunnerOptions {
                models_dir: self.models_dir.clone(),
                memory_budget_bytes: (self.memory_budget_gib * (1u64 << 30) as f64) as u64,
                data_dir: self.db.data_dir.clone(),
            },
        )?;
        Worker::new(config, db, store, runners).with_context(|| format!("device {}", self.device))
    }
}

/// Sets `flag` on SIGTERM or Ctrl-C.
pub fn stop_on_signals(flag: Arc<AtomicBool>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping: finishing the current image, handing the rest back");
        flag.store(true, Ordering::Release);
    });
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let database = open_database(&args.db).await?;
    let settings = Settings::new("127.0.0.1:0", args.db.data_dir.clone())?;
    let store = ImageStore::new(settings.image_dir());
    let worker = args.build(database.db.clone(), store)?;
    println!(
        "worker {} on {} running {} (images in {})",
        worker.config.id,
        worker.config.device,
        args.kinds.join(","),
        settings.image_dir().display()
    );
    stop_on_signals(worker.shutdown_flag());
    let thread = worker
        .spawn(tokio::runtime::Handle::current())
        .context("cannot start the worker thread")?;
    let (stats, runners) = tokio::task::spawn_blocking(move || thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the worker thread panicked"))?;
    println!(
        "worker stopped: {} succeeded, {} failed, {} cancelled, {} handed back, {} lost",
        stats.succeeded, stats.failed, stats.cancelled, stats.released, stats.lost
    );
    for r in runners {
        let s = r.stats();
        if !s.is_null() {
            println!("{}: {s}", r.kind());
        }
    }
    drop(database);
    Ok(())
}
