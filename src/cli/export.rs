//! `arenaxl export --study SLUG --format votes-csv [--out PATH]`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::db::studies;

use super::serve::{open_database, DbArgs};

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long)]
    pub study: String,
    /// votes-csv: every vote in the shape `arenaxl report` reads.
    #[arg(long, default_value = "votes-csv")]
    pub format: String,
    /// Output file (standard output when not given).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
}

pub async fn run(a: ExportArgs) -> anyhow::Result<()> {
    let database = open_database(&a.db).await?;
    let study = studies::by_slug(&database.db.pool, &a.study).await?;
    let body = match a.format.as_str() {
        "votes-csv" | "csv" => crate::study::export::votes_csv(&database.db, &study).await?,
        other => anyhow::bail!("unknown export format '{other}' (votes-csv)"),
    };
    match &a.out {
        Some(path) => std::fs::write(path, body)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{body}"),
    }
    Ok(())
}
