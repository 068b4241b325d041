//! `arenaxl jobs …`: the admin pages' generation actions from the command line (register a
//! model, queue a study's generation, list, cancel and retry jobs), for scripted setups.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use uuid::Uuid;

use crate::db::{generation, jobs as q, studies};
use crate::jobs::generate::{enqueue_generation, GenerationRequest, Sampling};
use crate::jobs::models;

use super::serve::{open_database, DbArgs};

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Register (or re-register) a diffusers model folder under a name.
    RegisterModel(RegisterArgs),
    /// Queue the generation of a study's images: models × prompts × seeds.
    Generate(GenerateArgs),
    /// The most recent jobs.
    List(ListArgs),
    /// Cancel a queued or running job.
    Cancel(IdArgs),
    /// Queue a failed or cancelled job again.
    Retry(IdArgs),
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[arg(long)]
    pub name: String,
    /// Absolute, or relative to --models-dir.
    #[arg(long)]
    pub folder: PathBuf,
    #[arg(long, env = "ARENAXL_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Study slug.
    #[arg(long)]
    pub study: String,
    /// Registered model names, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub models: Vec<String>,
    /// Only prompts of these categories (comma-separated); all prompts by default.
    #[arg(long, value_delimiter = ',')]
    pub categories: Vec<String>,
    /// Seeds per prompt (seeds 0..n).
    #[arg(long, default_value_t = 2)]
    pub seeds: i64,
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    #[arg(long, default_value_t = 5.0)]
    pub guidance: f64,
    /// euler, ddim, dpmpp-2m or euler-a (default: the model's own).
    #[arg(long)]
    pub scheduler: Option<String>,
    #[arg(long, default_value_t = 1024)]
    pub width: usize,
    #[arg(long, default_value_t = 1024)]
    pub height: usize,
    #[arg(long, default_value = "f16")]
    pub dtype: String,
    /// Prompts per job.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 0)]
    pub priority: i32,
    #[arg(long, default_value_t = 3)]
    pub max_attempts: i32,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    pub id: Uuid,
    #[command(flatten)]
    pub db: DbArgs,
}

pub async fn run(cmd: JobsCommand) -> anyhow::Result<()> {
    match cmd {
        JobsCommand::RegisterModel(a) => {
            let database = open_database(&a.db).await?;
            let m =
                models::register(&database.db, &a.name, &a.folder, a.models_dir.as_deref()).await?;
            println!(
                "registered {} ({}), weights sha256 {}",
                m.name,
                m.folder.unwrap_or_default(),
                m.weights_hash.unwrap_or_default()
            );
        }
        JobsCommand::Generate(a) => {
            anyhow::ensure!((1..=64).contains(&a.seeds), "--seeds must be 1-64");
            let database = open_database(&a.db).await?;
            let db = &database.db;
            let study = studies::by_slug(&db.pool, &a.study).await?;
            let prompt_ids =
                generation::study_prompt_ids(&db.pool, study.id, &a.categories).await?;
            let mut tx = db.pool.begin().await?;
            let (ids, new) = enqueue_generation(
                &mut tx,
                &GenerationRequest {
                    study_id: study.id,
                    models: a.models.clone(),
                    prompt_ids,
                    seeds: (0..a.seeds).collect(),
                    sampling: Sampling {
                        steps: a.steps,
                        guidance: a.guidance,
                        scheduler: a.scheduler.clone(),
                        width: a.width,
                        height: a.height,
                        dtype: a.dtype.clone(),
                    },
                    batch: a.batch,
                    priority: a.priority,
                    max_attempts: a.max_attempts,
                },
            )
            .await?;
            // Unknown models are refused here too, before anything commits.
            for m in &a.models {
                generation::model_by_name(&db.pool, m)
                    .await?
                    .and_then(|r| r.folder)
                    .with_context(|| format!("--models: '{m}' is not a registered model"))?;
            }
            tx.commit().await?;
            println!("{} jobs ({new} new) for study {}", ids.len(), a.study);
        }
        JobsCommand::List(a) => {
            let database = open_database(&a.db).await?;
            for j in q::recent(&database.db.pool, a.limit).await? {
                println!(
                    "{}  {:<9} {:<9} {:>4}/{:<4} attempts {}/{}  {}",
                    j.id,
                    j.kind,
                    j.status,
                    j.progress_done,
                    j.progress_total,
                    j.attempts,
                    j.max_attempts,
                    j.last_error.unwrap_or_default()
                );
            }
        }
        JobsCommand::Cancel(a) => {
            let database = open_database(&a.db).await?;
            match q::cancel(&database.db.pool, a.id).await? {
                Some(s) => println!(
                    "job {} {}",
                    a.id,
                    if s.as_str() == "running" {
                        "will stop at its next step"
                    } else {
                        "cancelled"
                    }
                ),
                None => anyhow::bail!("job {} is not queued or running", a.id),
            }
        }
        JobsCommand::Retry(a) => {
            let database = open_database(&a.db).await?;
            anyhow::ensure!(
                q::retry(&database.db.pool, a.id).await?,
                "job {} is not failed or cancelled",
                a.id
            );
            println!("job {} queued again", a.id);
        }
    }
    Ok(())
}
