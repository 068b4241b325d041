//! `arenaxl prompts import`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::db::studies;
use crate::study::prompts::{import_prompts, parse_prompts, PromptFormat};

use super::database::{open_database, DbArgs};

#[derive(Debug, Subcommand)]
pub enum PromptsCommand {
    /// Import prompts: PartiPrompts TSV, CSV with prompt[,category], or text (one a line).
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[arg(long)]
    pub study: String,
    /// tsv, csv or text; detected from the file when not given.
    #[arg(long)]
    pub format: Option<String>,
    pub file: PathBuf,
    #[command(flatten)]
    pub db: DbArgs,
}

pub async fn run(cmd: PromptsCommand) -> anyhow::Result<()> {
    match cmd {
        PromptsCommand::Import(a) => {
            let content = std::fs::read_to_string(&a.file)
                .with_context(|| format!("cannot read {}", a.file.display()))?;
            let name = a.file.display().to_string();
            let format = match &a.format {
                Some(f) => PromptFormat::parse(f)?,
                None => PromptFormat::detect(&name, &content),
            };
            let prompts = parse_prompts(&name, &content, format)?;
            let database = open_database(&a.db).await?;
            let study = studies::by_slug(&database.db.pool, &a.study).await?;
            let count = import_prompts(&database.db, &study, &prompts).await?;
            println!(
                "imported {} new prompts into '{}' ({} already there)",
                count.added, study.slug, count.existing
            );
        }
    }
    Ok(())
}
