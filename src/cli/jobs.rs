//! `arenaxl jobs …`: the admin pages' job actions from the command line (register a model,
//! queue a study's generation, queue a distillation and compare its student with the
//! teacher, list, cancel and retry jobs), for scripted setups.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use uuid::Uuid;

use crate::db::{generation, studies};
use crate::domain::{ModelName, DEFAULT_SAMPLING};
use crate::jobs::generate::{enqueue_generation, GenerationRequest, Sampling};
use crate::jobs::models;
use crate::queue::store as q;

use super::database::{open_database, DbArgs};

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Register (or re-register) a diffusers model folder under a name.
    RegisterModel(RegisterArgs),
    /// Queue the generation of a study's images: models × prompts × seeds.
    Generate(GenerateArgs),
    /// Queue a distillation of a registered teacher (a worker with --kinds distill runs it).
    Distill(Box<DistillJobArgs>),
    /// Create an open study of a finished distillation's student against its teacher.
    Compare(CompareArgs),
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
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[arg(long, default_value_t = 0)]
    pub priority: i32,
    #[arg(long, default_value_t = 3)]
    pub max_attempts: i32,
    #[command(flatten)]
    pub db: DbArgs,
}

/// How images are generated, shared by `jobs generate` and `jobs compare`.
#[derive(Debug, Args)]
pub struct SamplingArgs {
    #[arg(long, default_value_t = DEFAULT_SAMPLING.steps)]
    pub steps: usize,
    #[arg(long, default_value_t = DEFAULT_SAMPLING.guidance)]
    pub guidance: f64,
    /// euler, ddim, dpmpp-2m or euler-a (default: the model's own).
    #[arg(long)]
    pub scheduler: Option<String>,
    #[arg(long, default_value_t = DEFAULT_SAMPLING.width)]
    pub width: usize,
    #[arg(long, default_value_t = DEFAULT_SAMPLING.height)]
    pub height: usize,
    #[arg(long, default_value = DEFAULT_SAMPLING.dtype)]
    pub dtype: String,
    /// Prompts per job.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
}

impl SamplingArgs {
    fn sampling(&self) -> Sampling {
        Sampling {
            steps: self.steps,
            guidance: self.guidance,
            scheduler: self.scheduler.clone(),
            width: self.width,
            height: self.height,
            dtype: self.dtype.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct DistillJobArgs {
    /// Registered model name of the teacher.
    #[arg(long)]
    pub teacher: String,
    /// Name to register the student under.
    #[arg(long)]
    pub student: String,
    /// A built-in plan (ssd-1b, vega) or a plan's JSON text.
    #[arg(long, conflicts_with = "stages", required_unless_present = "stages")]
    pub plan: Option<String>,
    /// Stages JSON file (its plans: built-in names or JSON text).
    #[arg(long)]
    pub stages: Option<PathBuf>,
    /// Hugging Face imagefolder on the workers' machines (relative: under --models-dir).
    #[arg(long)]
    pub data: String,
    #[command(flatten)]
    pub hyper: super::distill::HyperArgs,
    #[arg(long, env = "ARENAXL_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The finished distill job.
    #[arg(long)]
    pub job: Uuid,
    #[arg(long)]
    pub slug: String,
    #[arg(long)]
    pub title: String,
    /// Prompts file: PartiPrompts TSV, CSV or text.
    #[arg(long)]
    pub prompts: PathBuf,
    /// Only prompts of these categories (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub categories: Vec<String>,
    /// At most this many prompts, a seeded sample (0: all).
    #[arg(long, default_value_t = 200)]
    pub max_prompts: usize,
    /// Seeds per prompt (seeds 0..n).
    #[arg(long, default_value_t = 1)]
    pub seeds: i64,
    #[command(flatten)]
    pub sampling: SamplingArgs,
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
            crate::domain::rules::check_seeds_per_prompt(a.seeds)
                .map_err(|e| anyhow::anyhow!("--{e}"))?;
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
                    sampling: a.sampling.sampling(),
                    batch: a.sampling.batch,
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
        JobsCommand::Distill(a) => {
            use crate::jobs::distill::{enqueue_distillation, DistillPayload};
            let h = &a.hyper;
            let payload = DistillPayload {
                teacher: a.teacher.clone(),
                stages: h.stages(a.plan.as_deref(), a.stages.as_deref())?,
                data: a.data.clone(),
                student: ModelName::parse("--student", &a.student)?.into_string(),
                train: h.train_config()?,
                resolution: h.resolution,
                held_out: h.held_out,
                keep: h.keep,
                dtype: h.dtype.clone(),
            };
            let database = open_database(&a.db).await?;
            let mut tx = database.db.pool.begin().await?;
            let (id, new) =
                enqueue_distillation(&mut tx, &database.db, &payload, a.models_dir.as_deref())
                    .await?;
            tx.commit().await?;
            println!(
                "distill job {id}{} ({} steps)",
                if new { "" } else { " (already queued)" },
                payload.stages.total_steps(&payload.train)
            );
        }
        JobsCommand::Compare(a) => {
            use crate::jobs::compare::{choose_prompts, compare_with_teacher, CompareRequest};
            use crate::study::prompts::{parse_prompts, PromptFormat};
            let text = std::fs::read_to_string(&a.prompts)
                .with_context(|| format!("reading {}", a.prompts.display()))?;
            let name = a.prompts.to_string_lossy();
            let prompts = parse_prompts(&name, &text, PromptFormat::detect(&name, &text))?;
            let req = CompareRequest {
                study: crate::study::StudySettings::try_from(crate::study::StudyForm {
                    slug: a.slug.clone(),
                    title: a.title.clone(),
                    allow_tie: true,
                    allow_both_bad: true,
                    ..Default::default()
                })?,
                prompts: choose_prompts(prompts, &a.categories, a.max_prompts, 0)?,
                seeds: a.seeds,
                sampling: a.sampling.sampling(),
                batch: a.sampling.batch,
            };
            let database = open_database(&a.db).await?;
            let (study, jobs) = compare_with_teacher(&database.db, a.job, &req).await?;
            println!(
                "study {} created: {} prompts, {jobs} generation jobs queued; it opens with its first pair of images",
                study.slug,
                req.prompts.len()
            );
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
