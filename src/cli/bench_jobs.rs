//! `bench queue` and `bench generate`: throughput of the job queue, and where the time of
//! image generation goes (inside the model versus loading, encoding and storing).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use uuid::Uuid;

use crate::db::embedded::EmbeddedPostgres;
use crate::db::{self, studies, Db};
use crate::jobs::generate::{enqueue_generation, GenerationRequest, Sampling};
use crate::jobs::{runners_for, RunnerOptions, Worker, WorkerConfig};
use crate::queue::store::{self as q, Outcome};
use crate::study::images::ImageStore;
use crate::study::prompts::{import_prompts, NewPrompt};
use crate::study::{StudyForm, StudySettings};

#[derive(Debug, Args)]
pub struct BenchQueueArgs {
    /// No-op jobs to enqueue.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Concurrent workers claiming and completing.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
}

#[derive(Debug, Args)]
pub struct BenchGenerateArgs {
    /// Model preset (random weights), made in a temporary folder.
    #[arg(long, default_value = "tiny-sdxl")]
    pub preset: String,
    #[arg(long, default_value_t = 8)]
    pub prompts: usize,
    #[arg(long, default_value_t = 2)]
    pub seeds: usize,
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

/// A fresh database on DATABASE_URL's server or in an embedded cluster under `dir`; the
/// returned closure data drops it.
struct BenchDb {
    db: Db,
    admin: sqlx::postgres::PgConnectOptions,
    name: String,
    _embedded: Option<EmbeddedPostgres>,
}

impl BenchDb {
    async fn create(dir: &Path) -> anyhow::Result<BenchDb> {
        let (admin, embedded) = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => (db::options_from_url(url.trim())?, None),
            _ => {
                let pg = EmbeddedPostgres::start(dir).await?;
                (pg.options(), Some(pg))
            }
        };
        let name = format!("arenaxl_bench_{}", Uuid::new_v4().simple());
        let options = db::create_database(&admin, &name).await?;
        let db = Db::connect(options).await?;
        db.migrate().await?;
        Ok(BenchDb {
            db,
            admin,
            name,
            _embedded: embedded,
        })
    }

    async fn drop_db(self) {
        self.db.pool.close().await;
        self.db.relaxed.close().await;
        db::drop_database(&self.admin, &self.name).await.ok();
    }
}

async fn insert_noops(db: &Db, n: usize) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO jobs (id, kind, payload) SELECT gen_random_uuid(), 'noop', '{}' FROM generate_series(1, $1)",
    )
    .bind(n as i64)
    .execute(&db.pool)
    .await?;
    sqlx::query("ANALYZE jobs").execute(&db.pool).await?;
    Ok(())
}

pub async fn bench_queue(args: BenchQueueArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.jobs > 0 && args.workers > 0,
        "need jobs ≥ 1 and workers ≥ 1"
    );
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let bench = BenchDb::create(tmp.path()).await?;
    let db = bench.db.clone();
    let kinds = vec!["noop".to_string()];

    // 1. The queue itself: each worker claims (one statement) and completes (one statement).
    insert_noops(&db, args.jobs).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.workers {
        let (pool, kinds) = (db.relaxed.clone(), kinds.clone());
        tasks.push(tokio::spawn(async move {
            let me = format!("bench-{w}");
            let mut n = 0u64;
            while let Some(job) = q::claim(&pool, &me, &kinds, 60_000).await? {
                if let Some(lease) = job.lease() {
                    anyhow::ensure!(
                        q::finish(&pool, &lease, &Outcome::Succeeded).await?,
                        "lost a lease"
                    );
                }
                n += 1;
            }
            Ok::<u64, anyhow::Error>(n)
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await??;
    }
    let raw = started.elapsed().as_secs_f64();

    // 2. Full worker loops (heartbeat task, worker row, runner) with the noop runner.
    sqlx::query("DELETE FROM jobs").execute(&db.pool).await?;
    insert_noops(&db, args.jobs).await?;
    let started = Instant::now();
    let mut threads = Vec::new();
    for _ in 0..args.workers {
        let mut config = WorkerConfig::new("cpu");
        config.exit_when_idle = true;
        config.poll = Duration::from_millis(50);
        let runners = runners_for(
            &kinds,
            &RunnerOptions {
                models_dir: None,
                memory_budget_bytes: 0,
                data_dir: std::env::temp_dir(),
            },
        )?;
        let store = ImageStore::new(tmp.path().join("images"));
        let worker = Worker::new(config, db.clone(), store, runners)?;
        threads.push(worker.spawn(tokio::runtime::Handle::current())?);
    }
    let mut loop_done = 0;
    for t in threads {
        let (stats, _) = tokio::task::spawn_blocking(move || t.join())
            .await?
            .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
        loop_done += stats.succeeded;
    }
    let looped = started.elapsed().as_secs_f64();
    let double: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE status <> 'succeeded' OR attempts <> 1",
    )
    .fetch_one(&db.pool)
    .await?;
    bench.drop_db().await;

    println!(
        "bench queue: {} no-op jobs, {} concurrent workers, {} CPU cores",
        args.jobs,
        args.workers,
        cores()
    );
    println!(
        "  claim + complete:   {done} jobs in {raw:.2} s = {:.0} jobs/s",
        done as f64 / raw
    );
    println!(
        "  full worker loop:   {loop_done} jobs in {looped:.2} s = {:.0} jobs/s",
        loop_done as f64 / looped
    );
    println!("  jobs not succeeded exactly once: {double}");
    anyhow::ensure!(
        double == 0 && done as usize == args.jobs,
        "some jobs were lost or run twice"
    );
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub async fn bench_generate(args: BenchGenerateArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let model_dir = tmp.path().join("model");
    crate::engine::presets::init_model_folder(&args.preset, &model_dir, 0)?;
    let bench = BenchDb::create(tmp.path()).await?;
    let db = bench.db.clone();
    crate::jobs::models::register(&db, &args.preset, &model_dir, None).await?;
    let study = studies::insert(
        &db.pool,
        &StudySettings::try_from(StudyForm {
            slug: "bench-generate".into(),
            title: "Generation benchmark".into(),
            ..StudyForm::default()
        })?,
    )
    .await?;
    let prompts: Vec<NewPrompt> = (0..args.prompts)
        .map(|i| NewPrompt {
            text: format!("a photo of object number {i} on a table"),
            category: None,
            challenge: None,
            external_id: None,
        })
        .collect();
    import_prompts(&db, &study, &prompts).await?;
    let prompt_ids = crate::db::generation::study_prompt_ids(&db.pool, study.id, &[]).await?;
    let mut tx = db.pool.begin().await?;
    enqueue_generation(
        &mut tx,
        &GenerationRequest {
            study_id: study.id,
            models: vec![args.preset.clone()],
            prompt_ids,
            seeds: (0..args.seeds as i64).collect(),
            sampling: Sampling {
                steps: args.steps,
                guidance: 5.0,
                scheduler: None,
                width: args.size,
                height: args.size,
                dtype: args.dtype.clone(),
            },
            batch: 4,
            priority: 0,
            max_attempts: 1,
        },
    )
    .await?;
    tx.commit().await?;

    let mut config = WorkerConfig::new(&args.device);
    config.exit_when_idle = true;
    config.poll = Duration::from_millis(20);
    let runners = runners_for(
        &["generate".to_string()],
        &RunnerOptions {
            models_dir: None,
            memory_budget_bytes: 64 << 30,
            data_dir: std::env::temp_dir(),
        },
    )?;
    let worker = Worker::new(
        config,
        db.clone(),
        ImageStore::new(tmp.path().join("images")),
        runners,
    )?;
    let started = Instant::now();
    let thread = worker.spawn(tokio::runtime::Handle::current())?;
    let (stats, runners) = tokio::task::spawn_blocking(move || thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the worker thread panicked"))?;
    let wall = started.elapsed().as_secs_f64();
    let images: i64 = sqlx::query_scalar("SELECT count(*) FROM images")
        .fetch_one(&db.pool)
        .await?;
    bench.drop_db().await;
    let s = runners.first().map(|r| r.stats()).unwrap_or_default();
    let f = |k: &str| s[k].as_f64().unwrap_or(0.0);
    let loaded = wall - f("load_s");
    let outside = loaded - f("model_s");
    println!(
        "bench generate: {} on {} ({}), {} images of {}x{}, {} steps, {} CPU cores",
        args.preset,
        args.device,
        args.dtype,
        images,
        args.size,
        args.size,
        args.steps,
        cores()
    );
    println!(
        "  jobs: {} succeeded, {} failed",
        stats.succeeded, stats.failed
    );
    println!("  model load:            {:.3} s (once)", f("load_s"));
    println!(
        "  wall after load:       {loaded:.3} s = {:.3} images/s",
        images as f64 / loaded
    );
    println!("  inside the model:      {:.3} s", f("model_s"));
    println!("  encode + store files:  {:.3} s", f("encode_store_s"));
    println!("  database:              {:.3} s", f("db_s"));
    println!(
        "  outside the model once loaded: {:.3} s = {:.2}% of wall time",
        outside,
        100.0 * outside / loaded.max(1e-9)
    );
    anyhow::ensure!(
        images as usize == args.prompts * args.seeds,
        "expected {} images, found {images}",
        args.prompts * args.seeds
    );
    Ok(())
}
