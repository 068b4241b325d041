//! `arenaxl demo`: a running platform with an open demo study, on a fresh machine with no
//! GPU and no downloads. It makes tiny random-weight SDXL-, SSD-1B- and Vega-shaped
//! pipelines, registers them, queues the generation of the study's images and runs an
//! in-process worker that generates them; every participant page says the models have
//! random weights.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::config::Settings;
use crate::db::{generation, studies};
use crate::engine::presets::init_model_folder;
use crate::jobs::generate::{enqueue_generation, GenerationRequest, Sampling};
use crate::jobs::models;
use crate::startup::Application;
use crate::study::images::ImageStore;
use crate::study::prompts::{import_prompts, parse_prompts, NewPrompt, PromptFormat};
use crate::study::{admins, Study, StudyForm, StudySettings, StudyStatus};

use super::database::{open_database, DbArgs};
use super::worker::WorkerArgs;

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Data directory of the demo (kept between runs).
    #[arg(long, env = "ARENAXL_DATA_DIR", default_value = "data/demo")]
    pub data_dir: PathBuf,
    /// Prompt file; by default 12 PartiPrompts from ../shared/data/PartiPrompts.tsv when present.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Number of prompts to use.
    #[arg(long, default_value_t = 12)]
    pub prompt_count: usize,
    /// Seeds (images) per prompt and model.
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// Denoising steps of the demo's generation.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Image size in pixels (a multiple of 8).
    #[arg(long, default_value_t = 128)]
    pub size: usize,
}

pub const DEMO_SLUG: &str = "demo";
pub const DEMO_ADMIN: &str = "admin@arenaxl.local";
const DEMO_NOTICE: &str = "Demo study: the three models here have random weights (tiny SDXL-, SSD-1B- and Vega-shaped networks made on this machine), so their images are abstract noise. The study shows how the platform works, not how these models compare.";

const FALLBACK_PROMPTS: [&str; 12] = [
    "a red apple on a wooden table",
    "a lighthouse on a cliff at sunset",
    "an astronaut riding a horse",
    "a bowl of ramen with chopsticks",
    "a watercolor painting of a fox in the snow",
    "a city skyline at night reflected in a river",
    "a cat wearing a tiny wizard hat",
    "a vintage bicycle leaning against a brick wall",
    "a mountain lake with pine trees",
    "a robot reading a book in a library",
    "a teapot shaped like an elephant",
    "a field of sunflowers under a stormy sky",
];

/// 12 (or `count`) prompts, one per category where the file has categories.
fn demo_prompts(args: &DemoArgs) -> anyhow::Result<Vec<NewPrompt>> {
    let candidates: Vec<PathBuf> = match &args.prompts {
        Some(p) => vec![p.clone()],
        None => vec![
            PathBuf::from("../shared/data/PartiPrompts.tsv"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/PartiPrompts.tsv"),
        ],
    };
    for path in candidates {
        if !path.is_file() {
            if args.prompts.is_some() {
                anyhow::bail!("prompt file {} does not exist", path.display());
            }
            continue;
        }
        let content = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let name = path.display().to_string();
        let all = parse_prompts(&name, &content, PromptFormat::detect(&name, &content))?;
        let mut chosen: Vec<NewPrompt> = Vec::new();
        for p in &all {
            if chosen.len() < args.prompt_count && !chosen.iter().any(|c| c.category == p.category)
            {
                chosen.push(p.clone());
            }
        }
        for p in &all {
            if chosen.len() < args.prompt_count && !chosen.contains(p) {
                chosen.push(p.clone());
            }
        }
        return Ok(chosen);
    }
    Ok(FALLBACK_PROMPTS
        .iter()
        .take(args.prompt_count)
        .map(|t| NewPrompt {
            text: t.to_string(),
            category: None,
            challenge: None,
            external_id: None,
        })
        .collect())
}

/// The demo's models: tiny random-weight pipelines shaped like each real one.
const MODELS: [(&str, &str); 3] = [
    ("sdxl-tiny-random", "tiny-sdxl"),
    ("ssd-1b-tiny-random", "tiny-ssd-1b"),
    ("vega-tiny-random", "tiny-vega"),
];

/// Creates (or reuses) the demo study, its prompts and its random-weight models, and
/// queues the generation of its images. Returns the study.
pub async fn prepare_demo(db: &crate::db::Db, args: &DemoArgs) -> anyhow::Result<Study> {
    let settings = StudySettings::try_from(StudyForm {
        slug: DEMO_SLUG.into(),
        title: "Which image is better? (ArenaXL demo)".into(),
        notice: Some(DEMO_NOTICE.into()),
        votes_per_participant: Some(10),
        gold_rate: Some(0.1),
        completion_code: Some("DEMO-DONE".into()),
        allow_tie: true,
        allow_both_bad: true,
        ..StudyForm::default()
    })?;
    let study = match studies::by_slug(&db.pool, DEMO_SLUG).await {
        // An older demo study keeps its votes but gets the current notice.
        Ok(s) => studies::update(&db.pool, s.id, &settings).await?,
        Err(crate::db::DbError::NotFound(_)) => studies::insert(&db.pool, &settings).await?,
        Err(e) => return Err(e.into()),
    };
    let prompts = demo_prompts(args)?;
    import_prompts(db, &study, &prompts).await?;

    let models_dir = args.data_dir.join("models");
    for (name, preset) in MODELS {
        let dir = models_dir.join(preset);
        if !dir.join("model_index.json").is_file() {
            println!(
                "Creating random-weight model {name} ({preset}) in {}",
                dir.display()
            );
            let (tmp, out) = (models_dir.join(format!(".{preset}.tmp")), dir.clone());
            let _ = std::fs::remove_dir_all(&tmp);
            let tmp_c = tmp.clone();
            tokio::task::spawn_blocking(move || init_model_folder(preset, &tmp_c, 0)).await??;
            std::fs::rename(&tmp, &out)
                .with_context(|| format!("cannot move the model into {}", out.display()))?;
        }
        models::register(db, name, &dir, None).await?;
    }
    let prompt_ids = generation::study_prompt_ids(&db.pool, study.id, &[]).await?;
    let mut tx = db.pool.begin().await?;
    enqueue_generation(
        &mut tx,
        &GenerationRequest {
            study_id: study.id,
            models: MODELS.iter().map(|(n, _)| n.to_string()).collect(),
            prompt_ids,
            seeds: (0..args.seeds as i64).collect(),
            sampling: Sampling {
                steps: args.steps,
                guidance: 5.0,
                scheduler: None,
                width: args.size,
                height: args.size,
                dtype: "f32".into(),
            },
            batch: 4,
            priority: 0,
            max_attempts: 3,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(study)
}

/// Prints progress until no generation job of the study is queued or running.
async fn wait_for_images(db: &crate::db::Db, study: &Study) -> anyhow::Result<()> {
    let mut last = (-1, -1);
    loop {
        let (pending, images, pairs): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM jobs WHERE study_id = $1 AND status IN ('queued', 'running')), \
                    (SELECT count(*) FROM images WHERE study_id = $1), \
                    (SELECT count(*) FROM pairs WHERE study_id = $1)",
        )
        .bind(study.id)
        .fetch_one(&db.pool)
        .await?;
        if (images, pairs) != last {
            println!("  {images} images, {pairs} pairs ready");
            last = (images, pairs);
        }
        if pending == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let db_args = DbArgs {
        data_dir: args.data_dir.clone(),
    };
    let database = open_database(&db_args).await?;
    let settings = Settings::new(args.bind.clone(), args.data_dir.clone())?;
    let store = ImageStore::new(settings.image_dir());
    let study = prepare_demo(&database.db, &args).await?;
    let mut wargs = WorkerArgs::in_process(db_args);
    wargs.poll_ms = 200;
    let worker = wargs.build(database.db.clone(), store)?;
    let stop = worker.shutdown_flag();
    let thread = worker
        .spawn(tokio::runtime::Handle::current())
        .context("cannot start the worker thread")?;
    let mut bytes = [0u8; 9];
    rand::thread_rng().fill_bytes(&mut bytes);
    let password = hex::encode(bytes);
    admins::create_or_update(&database.db, DEMO_ADMIN, &password).await?;
    let app = Application::build(settings, database.db.clone())?;
    let base = format!("http://127.0.0.1:{}", app.port());
    println!("Generating the demo images on the CPU (admin area: {base}/admin/jobs) ...");
    let server = tokio::spawn(app.run_until_stopped());
    wait_for_images(&database.db, &study).await?;
    studies::set_status(&database.db.pool, DEMO_SLUG, StudyStatus::Open).await?;
    println!();
    println!(
        "ArenaXL demo is running, ready in {:.0} s. Its models have random weights: the images are noise.",
        started.elapsed().as_secs_f64()
    );
    println!("  Participant: {base}/s/{DEMO_SLUG}?PROLIFIC_PID=demo-participant&STUDY_ID=demo&SESSION_ID=demo-session");
    println!("  Admin:       {base}/admin  (jobs: {base}/admin/jobs, gallery: {base}/admin/studies/{DEMO_SLUG}/gallery)");
    println!("  Login:       {DEMO_ADMIN} / {password}");
    println!("Press Ctrl-C to stop.");
    let served = server.await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    served??;
    drop(database);
    Ok(())
}
