//! Model folders: the weights hash, and the worker's model cache (kept loaded between
//! jobs, least recently used evicted when over budget). Also: a NOTIFY wakes an idle worker
//! long before its poll interval.

use std::time::{Duration, Instant};

use arenaxl::jobs::models::{weights_hash, ModelCache};
use arenaxl::jobs::{runners_for, NewJob, RunnerOptions, Worker, WorkerConfig};
use candle_core::{DType, Device};

fn folder(dir: &std::path::Path, preset: &str, seed: u64) -> std::path::PathBuf {
    let out = dir.join(format!("{preset}-{seed}"));
    arenaxl::engine::presets::init_model_folder(preset, &out, seed).expect("preset");
    out
}

#[test]
fn the_weights_hash_follows_the_weights_and_not_the_location() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = folder(tmp.path(), "tiny-sdxl", 1);
    let (h1, bytes) = weights_hash(&a).expect("hash");
    assert_eq!(h1.len(), 64);
    assert!(bytes > 0);
    let moved = tmp.path().join("elsewhere");
    std::fs::rename(&a, &moved).expect("move");
    assert_eq!(
        weights_hash(&moved).expect("hash").0,
        h1,
        "same weights elsewhere, same hash"
    );
    let other = folder(tmp.path(), "tiny-sdxl", 2);
    assert_ne!(
        weights_hash(&other).expect("hash").0,
        h1,
        "other weights, other hash"
    );
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    let err = weights_hash(&empty).expect_err("no weights");
    assert!(err.to_string().contains("no *.safetensors"), "{err}");
}

#[test]
fn the_cache_keeps_models_loaded_and_evicts_the_least_recently_used() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Three models of the same shape; the budget holds two.
    let a = folder(tmp.path(), "tiny-sdxl", 1);
    let b = folder(tmp.path(), "tiny-sdxl", 2);
    let c = folder(tmp.path(), "tiny-sdxl", 3);
    let mut probe = ModelCache::new(u64::MAX);
    probe.get(&a, &Device::Cpu, DType::F32).expect("load");
    let one = probe.loaded_bytes();
    assert!(one > 0);
    let mut cache = ModelCache::new(2 * one);
    cache.get(&a, &Device::Cpu, DType::F32).expect("load a");
    cache.get(&b, &Device::Cpu, DType::F32).expect("load b");
    let loads = cache.load_seconds;
    cache.get(&a, &Device::Cpu, DType::F32).expect("a again");
    assert_eq!(
        cache.load_seconds, loads,
        "a second use does not load again"
    );
    cache.get(&c, &Device::Cpu, DType::F32).expect("load c");
    assert_eq!(
        cache.loaded_folders(),
        vec![a.clone(), c.clone()],
        "b was least recently used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_wakes_an_idle_worker_long_before_its_poll() {
    let t = crate::common::fresh_db().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let mut config = WorkerConfig::new("cpu");
    config.poll = Duration::from_secs(30);
    let runners = runners_for(
        &["noop".to_string()],
        &RunnerOptions {
            models_dir: None,
            memory_budget_bytes: 0,
            data_dir: std::env::temp_dir(),
        },
    )
    .expect("runners");
    let worker = Worker::new(
        config,
        t.db.clone(),
        arenaxl::study::images::ImageStore::new(tmp.path()),
        runners,
    )
    .expect("worker");
    let stop = worker.shutdown_flag();
    let thread = worker
        .spawn(tokio::runtime::Handle::current())
        .expect("thread");
    // Let it find the queue empty and start waiting.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut conn = t.db.pool.acquire().await.expect("conn");
    let (id, _) =
        arenaxl::queue::store::enqueue(&mut conn, &NewJob::new("noop", serde_json::json!({})))
            .await
            .expect("enqueue");
    drop(conn);
    let started = Instant::now();
    loop {
        let job = arenaxl::queue::store::get(&t.db.pool, id)
            .await
            .expect("job");
        if job.status == arenaxl::jobs::JobStatus::Succeeded {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not woken by NOTIFY (status {})",
            job.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let started = Instant::now();
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .expect("join")
        .expect("panic");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown seen while waiting"
    );
}
