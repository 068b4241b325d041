//! `arenaxl images import`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::db::studies;
use crate::study::images::{import_dir_limited, ImageStore};

use super::database::{open_database, DbArgs};

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Import images listed in DIR/manifest.jsonl (file, model, prompt, and optionally
    /// prompt_id, category, seed, steps, guidance, scheduler). All or nothing.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[arg(long)]
    pub study: String,
    #[arg(long)]
    pub dir: PathBuf,
    /// Refuse images with more pixels than this (read from the header, before decoding).
    #[arg(long, default_value_t = crate::study::images::DEFAULT_MAX_IMAGE_PIXELS)]
    pub max_image_pixels: u64,
    #[command(flatten)]
    pub db: DbArgs,
}

pub async fn run(cmd: ImagesCommand) -> anyhow::Result<()> {
    match cmd {
        ImagesCommand::Import(a) => {
            let database = open_database(&a.db).await?;
            let study = studies::by_slug(&database.db.pool, &a.study).await?;
            let store = ImageStore::new(a.db.data_dir.join("images"));
            let count =
                import_dir_limited(&database.db, &study, &a.dir, &store, a.max_image_pixels)
                    .await?;
            println!(
                "imported {} new images into '{}' ({} already there); the study has {} candidate pairs",
                count.images_added, study.slug, count.images_existing, count.pairs_total
            );
        }
    }
    Ok(())
}
