//! `arenaxl migrate`, and the database connection every command that needs one shares:
//! `DATABASE_URL` when set, else an embedded cluster in the data directory.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::db::embedded::EmbeddedPostgres;
use crate::db::{options_from_url, Db};

#[derive(Debug, Args, Clone)]
pub struct DbArgs {
    /// Where images, the cookie secret and (without DATABASE_URL) the embedded database live.
    #[arg(long, env = "ARENAXL_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

/// An open database, and the embedded cluster behind it if one was started (stopped on drop).
pub struct Database {
    pub db: Db,
    pub embedded: Option<EmbeddedPostgres>,
}

/// Connects (starting the embedded cluster when there is no `DATABASE_URL`) and migrates.
pub async fn open_database(args: &DbArgs) -> anyhow::Result<Database> {
    // The operator's one-shot commands take the URL from the environment at start.
    let url = std::env::var("DATABASE_URL").ok();
    open_database_at(url.as_deref(), &args.data_dir).await
}

/// Connects to `url`, or without one to the data dir's embedded cluster (joining a running
/// one, else starting it), and migrates.
pub async fn open_database_at(url: Option<&str>, data_dir: &Path) -> anyhow::Result<Database> {
    let args = DbArgs {
        data_dir: data_dir.to_path_buf(),
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let (options, embedded) = match url {
        Some(url) if !url.trim().is_empty() => (options_from_url(url.trim())?, None),
        _ => {
            let pg = EmbeddedPostgres::start(&args.data_dir).await?;
            if pg.owned() {
                tracing::info!(
                    "started embedded Postgres under {}: {}",
                    args.data_dir.join("postgres").display(),
                    pg.url()
                );
            }
            (pg.options(), Some(pg))
        }
    };
    let db = Db::connect(options)
        .await
        .context("cannot connect to the database")?;
    db.migrate().await.context("cannot apply migrations")?;
    Ok(Database { db, embedded })
}

pub async fn migrate(args: DbArgs) -> anyhow::Result<()> {
    let _database = open_database(&args).await?;
    println!("migrations applied");
    Ok(())
}
