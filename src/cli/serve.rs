//! `arenaxl serve`: the settings, the database, the web application and, with `--worker`,
//! a job worker in the same process.

use std::path::PathBuf;

use std::collections::HashMap;

use anyhow::Context;
use clap::Args;

use super::database::{open_database_at, DbArgs};
use crate::config::{Layer, Settings};
use crate::startup::Application;

/// `serve`'s flags: the last layer of the settings (defaults < `--config` TOML <
/// `ARENAXL_*` environment < these). See the README's settings table.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file of settings (keys as in the README's settings table).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub bind: Option<String>,
    /// Where images, the cookie secret and (without DATABASE_URL) the embedded database live
    /// [default: data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where relative model folders live; an import root for the admin area.
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    /// A server folder the admin area may read (model folders, datasets, prompt files); repeat.
    #[arg(long = "import-root")]
    pub import_roots: Vec<PathBuf>,
    /// A reverse proxy whose X-Forwarded-For / Forwarded headers are believed (CIDR); repeat.
    #[arg(long = "trusted-proxy")]
    pub trusted_proxies: Vec<String>,
    /// Mark cookies Secure and send HSTS (serving behind HTTPS).
    #[arg(long)]
    pub cookie_secure: bool,
    /// Serve /metrics (without a token) on this separate address only.
    #[arg(long)]
    pub metrics_bind: Option<String>,
    /// Also run a job worker in this process (single-machine use; generate and distill jobs).
    #[arg(long)]
    pub worker: bool,
    /// Device of the in-process worker (cpu or cuda:N).
    #[arg(long, default_value = "cpu", requires = "worker")]
    pub worker_device: String,
}

fn some_vec<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    (!v.is_empty()).then(|| v.to_vec())
}

impl ServeArgs {
    fn layer(&self) -> Layer {
        Layer {
            bind: self.bind.clone(),
            data_dir: self.data_dir.clone(),
            models_dir: self.models_dir.clone(),
            import_roots: some_vec(&self.import_roots),
            trusted_proxies: some_vec(&self.trusted_proxies),
            cookie_secure: self.cookie_secure.then_some(true),
            metrics_bind: self.metrics_bind.clone(),
            ..Layer::default()
        }
    }
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let settings = Settings::load(args.config.as_deref(), &env, args.layer())?;
    tracing::debug!(?settings, "settings");
    let database = open_database_at(settings.database_url.as_deref(), &settings.data_dir).await?;
    let db_args = DbArgs {
        data_dir: settings.data_dir.clone(),
    };
    let models_dir = settings.models_dir.clone();
    let store = crate::study::images::ImageStore::new(settings.image_dir());
    let app = Application::build(settings, database.db.clone())?;
    let worker = if args.worker {
        let mut wargs = super::worker::WorkerArgs::in_process(db_args);
        wargs.device = args.worker_device.clone();
        wargs.models_dir = models_dir;
        // One machine does everything: images and distillations.
        wargs.kinds = vec!["generate".into(), "distill".into()];
        let worker = wargs.build(database.db.clone(), store)?;
        let flag = worker.shutdown_flag();
        let thread = worker
            .spawn(tokio::runtime::Handle::current())
            .context("cannot start the worker thread")?;
        Some((flag, thread))
    } else {
        None
    };
    if let Some(pg) = &database.embedded {
        // Other tools (psql, a second arenaxl) reach the same cluster with this URL.
        println!("Embedded Postgres: {}", pg.url());
    }
    if let Some(addr) = app.metrics_addr() {
        println!("Metrics: http://{addr}/metrics");
    }
    println!(
        "ArenaXL listening on http://{}/ (admin area: /admin{})",
        app.local_addr(),
        if args.worker {
            ", with an in-process worker"
        } else {
            ""
        }
    );
    let served = app.run_until_stopped().await;
    if let Some((flag, thread)) = worker {
        flag.store(true, std::sync::atomic::Ordering::Release);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    served?;
    drop(database);
    Ok(())
}
