//! `arenaxl export --study SLUG --format votes-csv|participants-csv|pickapic|report-json [--out PATH]`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::db::studies;
use crate::report::ReportSettings;
use crate::study::export;
use crate::study::images::ImageStore;

use super::database::{open_database, DbArgs};

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long)]
    pub study: String,
    /// votes-csv: every vote, as `arenaxl report` reads it; participants-csv: one line per
    /// participant with their crowd ID, progress, gold results and status; pickapic: a folder with
    /// data.jsonl in the shape of the Pick-a-Pic preference data and the images;
    /// report-json: the significance report with default settings.
    #[arg(long, default_value = "votes-csv")]
    pub format: String,
    /// Output file (standard output when not given); a folder for pickapic (required).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
}

pub async fn run(a: ExportArgs) -> anyhow::Result<()> {
    if !matches!(
        a.format.as_str(),
        "votes-csv" | "participants-csv" | "pickapic" | "report-json"
    ) {
        anyhow::bail!(
            "unknown export format '{}' (votes-csv, participants-csv, pickapic, report-json)",
            a.format
        );
    }
    let database = open_database(&a.db).await?;
    let study = studies::by_slug(&database.db.pool, &a.study).await?;
    let body = match a.format.as_str() {
        "pickapic" => {
            let dir = a
                .out
                .as_ref()
                .context("--out FOLDER is required for the pickapic format")?;
            let store = ImageStore::new(a.db.data_dir.join("images"));
            let n = export::write_pickapic_dir(&database.db, &study, &store, dir).await?;
            eprintln!(
                "wrote {n} comparisons to {}/data.jsonl with their images",
                dir.display()
            );
            return Ok(());
        }
        "report-json" => {
            let report =
                export::live_report(&database.db, &study, ReportSettings::default()).await?;
            crate::report::render::to_json(&report)
        }
        "participants-csv" => export::participants_csv(&database.db, &study).await?,
        _ => export::votes_csv(&database.db, &study).await?,
    };
    match &a.out {
        Some(path) => std::fs::write(path, body)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{body}"),
    }
    Ok(())
}
