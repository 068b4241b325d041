//! `arenaxl bench …`: benchmarks that print figures (never timed tests).
//!
//! `bench votes` starts the platform in-process on a fresh database, fills a study with
//! tiny images, and drives the JSON API over loopback with many concurrent participants:
//! each cycle is `GET /api/v1/next` then `POST …/vote`. It prints cycles per second,
//! latency percentiles, errors, and checks that every acknowledged vote is in the database.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use rand::Rng;
use serde_json::Value;
use uuid::Uuid;

use crate::config::{RateLimits, Settings};
use crate::db::embedded::EmbeddedPostgres;
use crate::db::{self, studies, Db};
use crate::startup::Application;
use crate::study::images::{insert_images, prepare, ImageStore, PreparedImage};
use crate::study::prompts::NewPrompt;
use crate::study::{StudyForm, StudySettings, StudyStatus};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Load test of the JSON voting API over loopback.
    Votes(BenchVotesArgs),
    /// Creates the open study `bench` for an outside load generator (tools/load/run.sh).
    VotesSetup(BenchSetupArgs),
    /// Full report on a large synthetic votes set.
    Report(super::report::BenchReportArgs),
    /// One UNet call, this engine on the CPU.
    Unet(super::generate::BenchUnetArgs),
    /// Job queue throughput: claim + complete of no-op jobs by concurrent workers.
    Queue(super::bench_jobs::BenchQueueArgs),
    /// Images per second of a worker, and the share of time spent outside the model.
    Generate(super::bench_jobs::BenchGenerateArgs),
    /// Distillation training steps per second (tiny config, CPU), optionally vs PyTorch.
    Distill(super::distill::bench::BenchDistillArgs),
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Votes(args) => super::block_on(bench_votes(args)),
        BenchCommand::VotesSetup(args) => super::block_on(bench_setup(args)),
        BenchCommand::Report(args) => super::report::bench(args),
        BenchCommand::Unet(args) => super::generate::bench(args),
        BenchCommand::Queue(args) => super::block_on(super::bench_jobs::bench_queue(args)),
        BenchCommand::Generate(args) => super::block_on(super::bench_jobs::bench_generate(args)),
        BenchCommand::Distill(args) => super::distill::bench::bench(args),
    }
}

#[derive(Debug, Args)]
pub struct BenchVotesArgs {
    /// Participants voting at the same time (each one a client with its own token).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Prompts in the study.
    #[arg(long, default_value_t = 100)]
    pub prompts: usize,
    /// Models in the study (every pair of them is compared).
    #[arg(long, default_value_t = 3)]
    pub models: usize,
    /// Votes each participant gives before a new participant takes its place.
    #[arg(long, default_value_t = 20)]
    pub votes_per_participant: i32,
}

/// Latencies in microseconds.
#[derive(Default)]
struct Samples {
    cycles: Vec<u64>,
    requests: Vec<u64>,
    acked: Vec<Uuid>,
    errors: u64,
    participants: u64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

pub async fn bench_votes(args: BenchVotesArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.concurrency > 0 && args.models >= 2 && args.prompts > 0,
        "need concurrency ≥ 1, models ≥ 2, prompts ≥ 1"
    );
    let tmp = tempfile::Builder::new()
        .prefix("arenaxl-bench")
        .tempdir()
        .context("cannot create a temporary directory")?;
    // A fresh database: on the server of DATABASE_URL, or in an embedded cluster.
    let (admin_options, _embedded) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => (db::options_from_url(url.trim())?, None),
        _ => {
            let pg = EmbeddedPostgres::start(tmp.path()).await?;
            (pg.options(), Some(pg))
        }
    };
    let db_name = format!("arenaxl_bench_{}", Uuid::new_v4().simple());
    let options = db::create_database(&admin_options, &db_name).await?;
    let result = run_load(&args, options, tmp.path().to_path_buf()).await;
    db::drop_database(&admin_options, &db_name).await.ok();
    result
}

/// Creates and opens the study `bench`: `prompts` prompts, one tiny image per prompt and
/// model, every pair of models compared, gold rate 0.1. Returns the candidate pairs.
pub async fn setup_study(
    database: &Db,
    store: &ImageStore,
    prompts: usize,
    models: usize,
    votes_per_participant: i32,
) -> anyhow::Result<u64> {
    let study = studies::insert(
        &database.pool,
        &StudySettings::try_from(StudyForm {
            slug: "bench".into(),
            title: "Load benchmark".into(),
            votes_per_participant: Some(votes_per_participant),
            gold_rate: Some(0.1),
            allow_tie: true,
            allow_both_bad: true,
            ..StudyForm::default()
        })?,
    )
    .await?;
    let mut images = Vec::new();
    for p in 0..prompts {
        for m in 0..models {
            let picture = image::RgbImage::from_pixel(
                16,
                16,
                image::Rgb([(p % 256) as u8, (m * 60) as u8, 90]),
            );
            let (stored, broken) = prepare(store, &picture)?;
            images.push(PreparedImage {
                model: format!("model-{m}"),
                prompt: NewPrompt {
                    text: format!("benchmark prompt {p}"),
                    category: Some(format!("category-{}", p % 5)),
                    challenge: None,
                    external_id: None,
                },
                seed: Some(1),
                steps: None,
                guidance: None,
                scheduler: None,
                width: 16,
                height: 16,
                stored,
                broken,
            });
        }
    }
    let count = insert_images(database, &study, &images).await?;
    studies::set_status(&database.pool, "bench", StudyStatus::Open).await?;
    Ok(count.pairs_total)
}

/// `bench votes-setup`: the study of `bench votes` in the database of `DATABASE_URL`, for
/// an outside load generator (`tools/load/run.sh` with wrk) against `arenaxl serve`.
#[derive(Debug, Args)]
pub struct BenchSetupArgs {
    /// Data directory the server will use (the images go there).
    #[arg(long)]
    pub data_dir: PathBuf,
    #[arg(long, default_value_t = 100)]
    pub prompts: usize,
    #[arg(long, default_value_t = 3)]
    pub models: usize,
    #[arg(long, default_value_t = 20)]
    pub votes_per_participant: i32,
}

pub async fn bench_setup(args: BenchSetupArgs) -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .context("bench votes-setup needs DATABASE_URL (the database the server will use)")?;
    let database = Db::connect(db::options_from_url(url.trim())?).await?;
    database.migrate().await?;
    let settings = Settings::new("127.0.0.1:0", args.data_dir.clone())?;
    let store = ImageStore::new(settings.image_dir());
    let pairs = setup_study(
        &database,
        &store,
        args.prompts,
        args.models,
        args.votes_per_participant,
    )
    .await?;
    println!(
        "study 'bench' is open: {} prompts x {} models, {pairs} candidate pairs",
        args.prompts, args.models
    );
    Ok(())
}

async fn run_load(
    args: &BenchVotesArgs,
    options: sqlx::postgres::PgConnectOptions,
    dir: PathBuf,
) -> anyhow::Result<()> {
    let database = Db::connect(options.clone()).await?;
    database.migrate().await?;
    let mut settings = Settings::new("127.0.0.1:0", dir)?;
    settings.rate_limits = RateLimits::unlimited();
    let store = ImageStore::new(settings.image_dir());
    let pairs = setup_study(
        &database,
        &store,
        args.prompts,
        args.models,
        args.votes_per_participant,
    )
    .await?;
    let app = Application::build(settings, database.clone())?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.server_handle();
    tokio::spawn(app.run_until_stopped());

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(10))
        .build()?;
    // Warm-up: the first request loads the study's plan.
    let warm = participant(&client, &base).await?;
    let _ = next(&client, &base, &warm).await;

    println!(
        "bench votes: {} prompts x {} models = {} candidate pairs, {} concurrent participants, {} s",
        args.prompts, args.models, pairs, args.concurrency, args.duration
    );
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let client = client.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            client_loop(client, base, deadline).await
        }));
    }
    let mut all = Samples::default();
    for t in tasks {
        let s = t.await?;
        all.cycles.extend(s.cycles);
        all.requests.extend(s.requests);
        all.acked.extend(s.acked);
        all.errors += s.errors;
        all.participants += s.participants;
    }
    let elapsed = started.elapsed().as_secs_f64();
    handle.stop(true).await;

    // The server's pool lived partly on the server's worker runtimes, gone now: check with a new one.
    database.pool.close().await;
    let check = Db::connect(options).await?;
    all.cycles.sort_unstable();
    all.requests.sort_unstable();
    let acked = Arc::new(all.acked);
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM votes WHERE assignment_id = ANY($1)")
            .bind(acked.as_slice())
            .fetch_one(&check.pool)
            .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM votes")
        .fetch_one(&check.pool)
        .await?;
    println!(
        "vote cycles:        {} in {:.1} s = {:.0} cycles/s",
        all.cycles.len(),
        elapsed,
        all.cycles.len() as f64 / elapsed
    );
    println!("participants:       {}", all.participants);
    println!(
        "cycle latency:      p50 {:.2} ms, p99 {:.2} ms (next + vote)",
        percentile(&all.cycles, 0.5),
        percentile(&all.cycles, 0.99)
    );
    println!(
        "request latency:    p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&all.requests, 0.5),
        percentile(&all.requests, 0.99),
        percentile(&all.requests, 1.0)
    );
    println!("errors:             {}", all.errors);
    println!(
        "acknowledged votes: {}, found in the database: {} (all votes stored: {}) -> {}",
        acked.len(),
        stored,
        total,
        if stored as usize == acked.len() && total as usize == acked.len() {
            "nothing lost"
        } else {
            "MISMATCH"
        }
    );
    anyhow::ensure!(
        stored as usize == acked.len(),
        "acknowledged votes are missing from the database"
    );
    Ok(())
}

async fn participant(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let pid = format!("bench-{}", Uuid::new_v4().simple());
    let resp: Value = client
        .post(format!("{base}/api/v1/studies/bench/participants"))
        .json(&serde_json::json!({ "external": { "PROLIFIC_PID": pid } }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    resp["participant_token"]
        .as_str()
        .map(str::to_string)
        .context("no participant_token in the response")
}

async fn next(client: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<Value> {
    Ok(client
        .get(format!("{base}/api/v1/next"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

async fn client_loop(client: reqwest::Client, base: String, deadline: Instant) -> Samples {
    let mut s = Samples::default();
    let mut token: Option<String> = None;
    while Instant::now() < deadline {
        let tok = match &token {
            Some(t) => t.clone(),
            None => match participant(&client, &base).await {
                Ok(t) => {
                    s.participants += 1;
                    token = Some(t.clone());
                    t
                }
                Err(_) => {
                    s.errors += 1;
                    continue;
                }
            },
        };
        let cycle = Instant::now();
        let t0 = Instant::now();
        let n = match next(&client, &base, &tok).await {
            Ok(v) => v,
            Err(_) => {
                s.errors += 1;
                continue;
            }
        };
        s.requests.push(t0.elapsed().as_micros() as u64);
        if n["done"].as_bool() == Some(true) {
            token = None;
            continue;
        }
        let Some(assignment) = n["assignment_id"]
            .as_str()
            .and_then(|a| Uuid::parse_str(a).ok())
        else {
            s.errors += 1;
            continue;
        };
        let choice = ["left", "right", "tie", "both_bad"][rand::thread_rng().gen_range(0..4)];
        let t1 = Instant::now();
        let voted = client
            .post(format!("{base}/api/v1/assignments/{assignment}/vote"))
            .bearer_auth(&tok)
            .json(&serde_json::json!({ "choice": choice, "response_ms": 1500 }))
            .send()
            .await;
        match voted {
            Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                Ok(v) if v["recorded"].as_bool() == Some(true) => {
                    s.requests.push(t1.elapsed().as_micros() as u64);
                    s.cycles.push(cycle.elapsed().as_micros() as u64);
                    s.acked.push(assignment);
                }
                _ => s.errors += 1,
            },
            _ => s.errors += 1,
        }
    }
    s
}
