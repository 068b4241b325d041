//! `arenaxl serve` and `arenaxl migrate`, and the database connection every command that
//! needs one shares: `DATABASE_URL` when set, else an embedded cluster in the data directory.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::config::Settings;
use crate::db::embedded::EmbeddedPostgres;
use crate::db::{options_from_url, Db};
use crate::startup::Application;

#[derive(Debug, Args, Clone)]
pub struct DbArgs {
    /// Where images, the cookie secret and (without DATABASE_URL) the embedded database live.
    #[arg(long, env = "ARENAXL_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: String,
    #[command(flatten)]
    pub db: DbArgs,
    /// Also run a job worker in this process (single-machine use; generate and distill jobs).
    #[arg(long)]
    pub worker: bool,
    /// Device of the in-process worker (cpu or cuda:N).
    #[arg(long, default_value = "cpu", requires = "worker")]
    pub worker_device: String,
}

/// An open database, and the embedded cluster behind it if one was started (stopped on drop).
pub struct Database {
    pub db: Db,
    pub embedded: Option<EmbeddedPostgres>,
}

/// Connects (starting the embedded cluster when there is no `DATABASE_URL`) and migrates.
pub async fn open_database(args: &DbArgs) -> anyhow::Result<Database> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let (options, embedded) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => (options_from_url(url.trim())?, None),
        _ => {
            let pg = EmbeddedPostgres::start(&args.data_dir).await?;
            tracing::info!(
                "started embedded Postgres under {}",
                args.data_dir.join("postgres").display()
            );
            (pg.options(), Some(pg))
        }
    };
    let db = Db::connect(options)
        .await
        .context("cannot connect to the database")?;
    db.migrate().await.context("cannot apply migrations")?;
    Ok(Database { db, embedded })
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let database = open_database(&args.db).await?;
    let settings = Settings::new(args.bind, args.db.data_dir.clone())?;
    let store = crate::study::images::ImageStore::new(settings.image_dir());
    let app = Application::build(settings, database.db.clone())?;
    let worker = if args.worker {
        let mut wargs = super::worker::WorkerArgs::in_process(args.db.clone());
        wargs.device = args.worker_device.clone();
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
    println!(
        "ArenaXL listening on http://127.0.0.1:{}/ (admin area: /admin{})",
        app.port(),
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

pub async fn migrate(args: DbArgs) -> anyhow::Result<()> {
    let _database = open_database(&args).await?;
    println!("migrations applied");
    Ok(())
}
