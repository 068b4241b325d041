//! Workers against real Postgres and the real engine (tiny random-weight presets on the
//! CPU): generation end to end, and the faults a fleet of workers meets — a worker killed
//! mid-job, a lease taken over, connections dropped, a broken model folder, cancellation,
//! graceful shutdown, and many workers on the same queue.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{fresh_db, TestDb};
use arenaxl::db::Db;
use arenaxl::jobs::generate::{enqueue_generation, GenerateRunner, GenerationRequest, Sampling};
use arenaxl::jobs::{
    runners_for, JobContext, JobError, JobRunner, JobStatus, RunnerOptions, Stop, Worker,
    WorkerConfig,
};
use arenaxl::queue::store as q;
use arenaxl::study::images::ImageStore;
use arenaxl::study::prompts::{import_prompts, NewPrompt};
use arenaxl::study::{Study, StudyForm, StudySettings};
use uuid::Uuid;

/// A tiny model folder made once per test process.
fn model_folder(preset: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("arenaxl-test-models-{}", std::process::id()))
        .join(preset);
    if !dir.join("model_index.json").is_file() {
        let tmp = dir.with_extension(format!("tmp{}", Uuid::new_v4().simple()));
        arenaxl::engine::presets::init_model_folder(preset, &tmp, 7).expect("init preset");
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    dir
}

async fn study_with_prompts(db: &Db, n: usize) -> Study {
    let settings = StudySettings::try_from(StudyForm {
        slug: "gen".into(),
        title: "Generation".into(),
        ..StudyForm::default()
    })
    .expect("study settings");
    let study = arenaxl::db::studies::insert(&db.pool, &settings)
        .await
        .expect("study");
    let prompts: Vec<NewPrompt> = (0..n)
        .map(|i| NewPrompt {
            text: format!("a small red object number {i}"),
            category: Some(if i % 2 == 0 { "Animals" } else { "Food" }.into()),
            challenge: None,
            external_id: None,
        })
        .collect();
    import_prompts(db, &study, &prompts).await.expect("prompts");
    study
}

fn sampling(steps: usize) -> Sampling {
    Sampling {
        steps,
        guidance: 3.0,
        scheduler: None,
        width: 64,
        height: 64,
        dtype: "f32".into(),
    }
}

async fn enqueue(
    db: &Db,
    study: &Study,
    models: &[&str],
    seeds: usize,
    steps: usize,
    max_attempts: i32,
) -> Vec<Uuid> {
    let prompt_ids = arenaxl::db::generation::study_prompt_ids(&db.pool, study.id, &[])
        .await
        .expect("prompt ids");
    let mut tx = db.pool.begin().await.expect("begin");
    let (ids, _) = enqueue_generation(
        &mut tx,
        &GenerationRequest {
            study_id: study.id,
            models: models.iter().map(|m| m.to_string()).collect(),
            prompt_ids,
            seeds: (0..seeds as i64).collect(),
            sampling: sampling(steps),
            batch: 100,
            priority: 0,
            max_attempts,
        },
    )
    .await
    .expect("enqueue");
    tx.commit().await.expect("commit");
    ids
}

async fn register(db: &Db, name: &str, preset: &str) {
    arenaxl::jobs::models::register(db, name, &model_folder(preset), None)
        .await
        .expect("register model");
}

fn worker(db: &Db, store: &ImageStore, kinds: &[&str], lease_ms: u64) -> Worker {
    let mut config = WorkerConfig::new("cpu");
    config.exit_when_idle = true;
    config.poll = Duration::from_millis(50);
    config.lease = Duration::from_millis(lease_ms);
    config.heartbeat = Duration::from_millis(lease_ms / 4);
    config.backoff = Duration::ZERO;
    let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    let runners = runners_for(
        &kinds,
        &RunnerOptions {
            models_dir: None,
            memory_budget_bytes: 1 << 30,
            data_dir: std::env::temp_dir(),
        },
    )
    .expect("runners");
    Worker::new(config, db.clone(), store.clone(), runners).expect("worker")
}

async fn run_worker(w: Worker) -> arenaxl::jobs::worker::WorkerStats {
    let thread = w
        .spawn(tokio::runtime::Handle::current())
        .expect("worker thread");
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .expect("join")
        .expect("worker panicked")
        .0
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&db.pool)
        .await
        .expect("count")
}

/// Every image row exists once per (prompt, model, seed) and its files are in the store.
async fn assert_images_complete(t: &TestDb, store: &ImageStore, expected: i64) {
    assert_eq!(count(&t.db, "SELECT count(*) FROM images").await, expected);
    assert_eq!(
        count(
            &t.db,
            "SELECT count(*) FROM (SELECT DISTINCT prompt_id, model_id, seed FROM images) x"
        )
        .await,
        expected
    );
    let files: Vec<(String, String)> = sqlx::query_as("SELECT file, broken_file FROM images")
        .fetch_all(&t.db.pool)
        .await
        .expect("files");
    for (f, b) in files {
        assert!(
            store.path(&f).is_file() && store.path(&b).is_file(),
            "missing file {f}"
        );
    }
}

fn store_in(dir: &Path) -> ImageStore {
    ImageStore::new(dir.join("images"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_generates_every_image_once_with_provenance_and_pairs() {
    let t = fresh_db().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let store = store_in(tmp.path());
    register(&t.db, "sdxl", "tiny-sdxl").await;
    register(&t.db, "vega", "tiny-vega").await;
    let study = study_with_prompts(&t.db, 3).await;
    let jobs = enqueue(&t.db, &study, &["sdxl", "vega"], 2, 2, 3).await;
    assert_eq!(jobs.len(), 2, "one job per model and batch");
    assert_eq!(
        enqueue(&t.db, &study, &["sdxl", "vega"], 2, 2, 3).await,
        jobs,
        "same request, same jobs"
    );
    let stats = run_worker(worker(&t.db, &store, &["generate"], 30_000)).await;
    assert_eq!(stats.succeeded, 2);
    assert_images_complete(&t, &store, 12).await;
    assert_eq!(
        count(&t.db, "SELECT count(*) FROM pairs").await,
        6,
        "3 prompts x 2 seeds, one model pair"
    );
    let prov: serde_json::Value = sqlx::query_scalar("SELECT provenance FROM images LIMIT 1")
        .fetch_one(&t.db.pool)
        .await
        .expect("provenance");
    for key in [
        "model",
        "folder",
        "weights_sha256",
        "scheduler",
        "steps",
        "guidance",
        "seed",
        "width",
        "height",
        "dtype",
        "device",
        "engine",
        "generation_seconds",
    ] {
        assert!(!prov[key].is_null(), "provenance lacks {key}: {prov}");
    }
    assert_eq!(prov["device"], "cpu");
    assert_eq!(prov["weights_sha256"].as_str().map(str::len), Some(64));
    // A different split of the same work runs, finds everything stored, and adds nothing.
    let prompt_ids = arenaxl::db::generation::study_prompt_ids(&t.db.pool, study.id, &[])
        .await
        .expect("ids");
    let mut tx = t.db.pool.begin().await.expect("begin");
    let (again, new) = enqueue_generation(
        &mut tx,
        &GenerationRequest {
            study_id: study.id,
            models: vec!["sdxl".into()],
            prompt_ids,
            seeds: vec![0, 1],
            sampling: sampling(2),
            batch: 1,
            priority: 0,
            max_attempts: 1,
        },
    )
    .await
    .expect("enqueue");
    tx.commit().await.expect("commit");
    assert_eq!((again.len(), new), (3, 3));
    let stats = run_worker(worker(&t.db, &store, &["generate"], 30_000)).await;
    assert_eq!(stats.succeeded, 3);
    assert_images_complete(&t, &store, 12).await;
}

fn spawn_worker_process(t: &TestDb, data_dir: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_arenaxl"))
        .args([
            "worker",
            "--device",
            "cpu",
            "--kinds",
            "generate",
            "--lease-ms",
            "1500",
            "--heartbeat-ms",
            "300",
            "--poll-ms",
            "100",
            "--backoff-ms",
            "0",
            "--exit-when-idle",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .env("DATABASE_URL", &t.url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start arenaxl worker")
}

async fn wait_for(db: &Db, sql: &str, at_least: i64, limit: Duration) {
    let started = Instant::now();
    while count(db, sql).await < at_least {
        assert!(
            started.elapsed() < limit,
            "timed out waiting for `{sql}` >= {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_is_replaced_and_every_image_exists_once() {
    let t = fresh_db().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let store = store_in(tmp.path());
    register(&t.db, "sdxl", "tiny-sdxl").await;
    let study = study_with_prompts(&t.db, 4).await;
    let jobs = enqueue(&t.db, &study, &["sdxl"], 2, 6, 3).await;
    let mut child = spawn_worker_process(&t, tmp.path(), &[]);
    wait_for(
        &t.db,
        "SELECT count(*) FROM images",
        2,
        Duration::from_secs(60),
    )
    .await;
    child.kill().expect("SIGKILL the worker");
    child.wait().expect("reap");
    let job = q::get(&t.db.pool, jobs[0]).await.expect("job");
    assert_eq!(
        job.status,
        JobStatus::Running,
        "the dead worker still holds the lease"
    );
    let before = count(&t.db, "SELECT count(*) FROM images").await;
    assert!(before < 8, "killed before the end ({before} images)");
    let stats = run_worker(worker(&t.db, &store, &["generate"], 1500)).await;
    assert_eq!(stats.succeeded, 1);
    let job = q::get(&t.db.pool, jobs[0]).await.expect("job");
    assert_eq!((job.status, job.attempts), (JobStatus::Succeeded, 2));
    assert!(
        job.log.contains("expired"),
        "log tells the story: {}",
        job.log
    );
    assert_images_complete(&t, &store, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_current_image_and_hands_the_rest_back() {
    let t = fresh_db().await;
    let tmp = tempfile::tempdir().expect("tmp");
    register(&t.db, "sdxl", "tiny-sdxl").await;
    let study = study_with_prompts(&t.db, 6).await;
    let jobs = enqueue(&t.db, &study, &["sdxl"], 2, 6, 3).await;
    let mut child = spawn_worker_process(&t, tmp.path(), &[]);
    wait_for(
        &t.db,
        "SELECT count(*) FROM images",
        1,
        Duration::from_secs(60),
    )
    .await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "worker did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit: {status:?}");
    let job = q::get(&t.db.pool, jobs[0]).await.expect("job");
    assert_eq!(
        (job.status, job.attempts),
        (JobStatus::Queued, 0),
        "handed back without using an attempt"
    );
    let stored = count(&t.db, "SELECT count(*) FROM images").await;
    assert!((1..12).contains(&stored), "{stored} images kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_lease_was_taken_over_stores_nothing() {
    let t = fresh_db().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let store = store_in(tmp.path());
    register(&t.db, "sdxl", "tiny-sdxl").await;
    let study = study_with_prompts(&t.db, 2).await;
    enqueue(&t.db, &study, &["sdxl"], 1, 2, 3).await;
    let kinds = vec!["generate".to_string()];
    let stale = q::claim(&t.db.relaxed, "stale", &kinds, 50)
        .await
        .expect("claim")
        .expect("job");
    tokio::time::sleep(Duration::from_millis(100)).await;
    q::reap_expired(&t.db.pool, 0).await.expect("reap");
    let fresh = q::claim(&t.db.relaxed, "fresh", &kinds, 60_000)
        .await
        .expect("claim")
        .expect("job again");
    assert_eq!(fresh.id, stale.id);
    let stale_lease = stale.lease().expect("lease");
    let (db, store2, job) = (t.db.clone(), store.clone(), stale.clone());
    let result = tokio::task::spawn_blocking(move || {
        let mut ctx = JobContext::new(db, store2, stale_lease, "cpu", 50).expect("context");
        GenerateRunner::new(1 << 30, None).run(&job, &mut ctx)
    })
    .await
    .expect("runner thread");
    assert!(
        matches!(result, Err(JobError::Stopped(Stop::LeaseLost))),
        "{result:?}"
    );
    assert_eq!(count(&t.db, "SELECT count(*) FROM images").await, 0);
    let mut tx = t.db.pool.begin().await.expect("begin");
    assert!(!q::lock_if_held(&mut tx, &stale.lease().expect("lease"))
        .await
        .expect("lock"));
    assert!(q::lock_if_held(&mut tx, &fresh.lease().expect("lease"))
        .await
        .expect("lock"));
    tx.rollback().await.expect("rollback");
    assert!(!q::finish(
        &t.db.relaxed,
        &stale.lease().expect("lease"),
        &q::Outcome::Succeeded
    )
    .await
    .expect("finish"));
    assert_eq!(
        q::get(&t.db.pool, fresh.id)
            .await
            .expect("job")
            .worker_id
            .as_deref(),
        Some("fresh")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_carry_on_when_their_connections_are_terminated() {
    let t = fresh_db().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let store = store_in(tmp.path());
    register(&t.db, "sdxl", "tiny-sdxl").await;
    let study = study_with_prompts(&t.db, 6).await;
    let jobs = enqueue(&t.db, &study, &["sdxl"], 2, 8, 10).await;
    let w = worker(&t.db, &store, &["generate"], 3000);
    let thread = w
        .spawn(tokio::runtime::Handle::current())
        .expect("worker thread");
    // Kill every other session on the test database a few times while the job runs, as a
    // Postgres restart would.
    let admin: sqlx::postgres::PgConnectOptions = crate::common::server_url().parse().expect("url");
    let db_name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&t.db.pool)
        .await
        .expect("name");
    // Keep terminating them until the job ends, so that even a fast machine sees it.
    let mut kills_while_running = 0;
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "job never finished"
        );
        let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
            .bind(jobs[0])
            .fetch_one(&t.db.pool)
            .await
            .expect("job status");
        match status.as_str() {
            "running" => {}
            "queued" => continue,
            _ => break,
        }
        let mut conn = sqlx::ConnectOptions::connect(&admin)
            .await
            .expect("admin connection");
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()) x")
            .bind(&db_name)
            .fetch_one(&mut conn)
            .await
            .expect("terminate");
        kills_while_running += usize::from(n > 0);
    }
    assert!(
        kills_while_running >= 2,
        "connections were terminated while the job ran ({kills_while_running} times)"
    );
    let stats = tokio::task::spawn_blocking(move || thread.join())
        .await
        .expect("join")
        .expect("worker panicked")
        .0;
    let job = q::get(&t.db.pool, jobs[0]).await.expect("job");
    assert_eq!(
        job.status,
        JobStatus::Succeeded,
        "stats {stats:?}, log {}",
        job.log
    );
    assert_images_complete(&t, &store, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_model_folder_fails_clearly_and_blocks_nothing() {
    let t = fresh_db().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let store = store_in(tmp.path());
    register(&t.db, "good", "tiny-sdxl").await;
    let broken = tmp.path().join("broken");
    arenaxl::engine::presets::init_model_folder("tiny-vega", &broken, 1).expect("init");
    arenaxl::jobs::models::register(&t.db, "broken", &broken, None)
        .await
        .expect("register");
    std::fs::write(broken.join("unet/config.json"), "{ not json").expect("break the folder");
    let study = study_with_prompts(&t.db, 2).await;
    let broken_job = enqueue(&t.db, &study, &["broken"], 1, 2, 2).await[0];
    let good_job = enqueue(&t.db, &study, &["good"], 1, 2, 2).await[0];
    let stats = run_worker(worker(&t.db, &store, &["generate"], 30_000)).await;
    assert_eq!((stats.succeeded, stats.failed), (1, 2));
    let b = q::get(&t.db.pool, broken_job).await.expect("job");
    assert_eq!((b.status, b.attempts), (JobStatus::Failed, 2));
    let err = b.last_error.unwrap_or_default();
    assert!(
        err.contains("unet/config.json") && err.contains("invalid JSON"),
        "clear error: {err}"
    );
    assert_eq!(
        q::get(&t.db.pool, good_job).await.expect("job").status,
        JobStatus::Succeeded
    );
    assert_images_complete(&t, &store, 2).await;
    // Registration itself refuses a broken folder, naming the file.
    let refused = arenaxl::jobs::models::register(&t.db, "broken2", &broken, None).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("unet/config.json")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_it_at_its_next_step() {
    let t = fresh_db().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let mut conn = t.db.pool.acquire().await.expect("conn");
    let (id, _) = q::enqueue(
        &mut conn,
        &arenaxl::jobs::NewJob::new("noop", serde_json::json!({"steps": 200, "sleep_ms": 20})),
    )
    .await
    .expect("enqueue");
    drop(conn);
    let thread = worker(&t.db, &store_in(tmp.path()), &["noop"], 30_000)
        .spawn(tokio::runtime::Handle::current())
        .expect("thread");
    wait_for(
        &t.db,
        "SELECT count(*) FROM jobs WHERE progress_done >= 3",
        1,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        q::cancel(&t.db.pool, id).await.expect("cancel"),
        Some(JobStatus::Running)
    );
    let started = Instant::now();
    let stats = tokio::task::spawn_blocking(move || thread.join())
        .await
        .expect("join")
        .expect("panic")
        .0;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped promptly"
    );
    assert_eq!(stats.cancelled, 1);
    let job = q::get(&t.db.pool, id).await.expect("job");
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(job.progress_done < 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_workers_never_run_the_same_job() {
    let t = fresh_db().await;
    let tmp = tempfile::tempdir().expect("tmp");
    sqlx::query("INSERT INTO jobs (id, kind, payload) SELECT gen_random_uuid(), 'noop', '{\"steps\": 1}' FROM generate_series(1, 300)")
        .execute(&t.db.pool)
        .await
        .expect("jobs");
    let threads: Vec<_> = (0..3)
        .map(|_| {
            worker(&t.db, &store_in(tmp.path()), &["noop"], 30_000)
                .spawn(tokio::runtime::Handle::current())
                .expect("thread")
        })
        .collect();
    let mut total = 0;
    let mut busy = 0;
    for th in threads {
        let s = tokio::task::spawn_blocking(move || th.join())
            .await
            .expect("join")
            .expect("panic")
            .0;
        total += s.succeeded;
        busy += u64::from(s.succeeded > 0);
    }
    assert_eq!(total, 300);
    assert!(busy >= 2, "work was shared");
    assert_eq!(count(&t.db, "SELECT count(*) FROM jobs WHERE status = 'succeeded' AND attempts = 1 AND progress_done = 1").await, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_makes_its_models_and_a_worker_generates_every_pair() {
    let t = fresh_db().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let args = arenaxl::cli::demo::DemoArgs {
        bind: "127.0.0.1:0".into(),
        data_dir: tmp.path().to_path_buf(),
        prompts: None,
        prompt_count: 2,
        seeds: 1,
        steps: 2,
        size: 64,
    };
    let study = arenaxl::cli::demo::prepare_demo(&t.db, &args)
        .await
        .expect("prepare demo");
    assert!(study.notice.contains("random weights"), "{}", study.notice);
    assert_eq!(
        count(
            &t.db,
            "SELECT count(*) FROM models WHERE folder IS NOT NULL AND weights_hash IS NOT NULL"
        )
        .await,
        3
    );
    let stats = run_worker(worker(&t.db, &store_in(tmp.path()), &["generate"], 30_000)).await;
    assert_eq!((stats.succeeded, stats.failed), (3, 0));
    assert_eq!(count(&t.db, "SELECT count(*) FROM images").await, 6);
    assert_eq!(
        count(&t.db, "SELECT count(*) FROM pairs").await,
        6,
        "2 prompts x 3 model pairs"
    );
    // Running the demo again reuses everything and queues nothing new.
    arenaxl::cli::demo::prepare_demo(&t.db, &args)
        .await
        .expect("prepare again");
    assert_eq!(
        count(&t.db, "SELECT count(*) FROM jobs WHERE status = 'queued'").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_model_folder_is_found_under_each_workers_models_dir() {
    let t = fresh_db().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let folder = model_folder("tiny-ssd-1b");
    let base = folder.parent().expect("models dir");
    let escape = arenaxl::jobs::models::register(&t.db, "bad", Path::new("../x"), Some(base)).await;
    assert!(escape.is_err_and(|e| e.to_string().contains("inside the models directory")));
    let row = arenaxl::jobs::models::register(&t.db, "ssd", Path::new("tiny-ssd-1b"), Some(base))
        .await
        .expect("register relative");
    assert_eq!(row.folder.as_deref(), Some("tiny-ssd-1b"));
    let study = study_with_prompts(&t.db, 1).await;
    enqueue(&t.db, &study, &["ssd"], 1, 2, 1).await;
    let mut config = WorkerConfig::new("cpu");
    config.exit_when_idle = true;
    config.poll = Duration::from_millis(50);
    let runners = runners_for(
        &["generate".to_string()],
        &RunnerOptions {
            models_dir: Some(base.to_path_buf()),
            memory_budget_bytes: 1 << 30,
            data_dir: std::env::temp_dir(),
        },
    )
    .expect("runners");
    let w = Worker::new(config, t.db.clone(), store_in(tmp.path()), runners).expect("worker");
    let stats = run_worker(w).await;
    assert_eq!((stats.succeeded, stats.failed), (1, 0));
    assert_eq!(count(&t.db, "SELECT count(*) FROM images").await, 1);
}
