//! Queue semantics against real Postgres: claim, lease, heartbeat, completion only by the
//! holder, expiry with backoff, cancellation, idempotency, and no double claim.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::fresh_db;
use arenaxl::jobs::{JobStatus, NewJob};
use arenaxl::queue::store::{self as q, LeaseState, Outcome};

fn kinds() -> Vec<String> {
    vec!["noop".to_string()]
}

async fn noop(db: &arenaxl::db::Db, key: Option<&str>) -> uuid::Uuid {
    let mut job = NewJob::new("noop", serde_json::json!({}));
    job.idempotency_key = key.map(str::to_string);
    let mut conn = db.pool.acquire().await.expect("connection");
    q::enqueue(&mut conn, &job).await.expect("enqueue").0
}

#[tokio::test]
async fn claim_takes_the_job_and_only_the_holder_can_finish_it() {
    let t = fresh_db().await;
    let id = noop(&t.db, None).await;
    let job = q::claim(&t.db.pool, "w1", &kinds(), 60_000)
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!(job.id, id);
    assert_eq!(job.status, JobStatus::Running);
    assert_eq!(job.attempts, 1);
    assert!(q::claim(&t.db.pool, "w2", &kinds(), 60_000)
        .await
        .expect("claim")
        .is_none());
    let lease = job.lease().expect("lease");
    let mut forged = lease.clone();
    forged.worker_id = "w2".into();
    assert!(!q::finish(&t.db.pool, &forged, &Outcome::Succeeded)
        .await
        .expect("finish"));
    let mut forged = lease.clone();
    forged.token = uuid::Uuid::new_v4();
    assert_eq!(
        q::heartbeat(&t.db.pool, &forged, 60_000, Some((1, 2, "x")))
            .await
            .expect("beat"),
        LeaseState::Lost
    );
    assert_eq!(
        q::heartbeat(&t.db.pool, &lease, 60_000, Some((1, 2, "half")))
            .await
            .expect("beat"),
        LeaseState::Held
    );
    let j = q::get(&t.db.pool, id).await.expect("get");
    assert_eq!(
        (
            j.progress_done,
            j.progress_total,
            j.progress_message.as_str()
        ),
        (1, 2, "half")
    );
    assert!(q::finish(&t.db.pool, &lease, &Outcome::Succeeded)
        .await
        .expect("finish"));
    assert!(!q::finish(&t.db.pool, &lease, &Outcome::Succeeded)
        .await
        .expect("finish again"));
    assert_eq!(
        q::get(&t.db.pool, id).await.expect("get").status,
        JobStatus::Succeeded
    );
}

#[tokio::test]
async fn claim_ignores_other_kinds_and_respects_priority_and_run_after() {
    let t = fresh_db().await;
    let low = noop(&t.db, None).await;
    let mut high = NewJob::new("noop", serde_json::json!({}));
    high.priority = 5;
    let mut conn = t.db.pool.acquire().await.expect("conn");
    let (high, _) = q::enqueue(&mut conn, &high).await.expect("enqueue");
    q::enqueue(&mut conn, &NewJob::new("distill", serde_json::json!({})))
        .await
        .expect("enqueue");
    sqlx::query("UPDATE jobs SET run_after = now() + interval '1 hour' WHERE id = $1")
        .bind(low)
        .execute(&t.db.pool)
        .await
        .expect("delay");
    let first = q::claim(&t.db.pool, "w", &kinds(), 60_000)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(first.id, high);
    assert!(
        q::claim(&t.db.pool, "w", &kinds(), 60_000)
            .await
            .expect("claim")
            .is_none(),
        "delayed job and distill job are not claimable"
    );
}

#[tokio::test]
async fn an_expired_lease_requeues_with_backoff_and_the_old_holder_is_locked_out() {
    let t = fresh_db().await;
    let id = noop(&t.db, None).await;
    let old = q::claim(&t.db.pool, "w1", &kinds(), 50)
        .await
        .expect("claim")
        .expect("job");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(q::reap_expired(&t.db.pool, 0).await.expect("reap"), 1);
    let j = q::get(&t.db.pool, id).await.expect("get");
    assert_eq!(j.status, JobStatus::Queued);
    assert!(
        j.last_error
            .as_deref()
            .unwrap_or("")
            .contains("lease expired"),
        "{:?}",
        j.last_error
    );
    let new = q::claim(&t.db.pool, "w2", &kinds(), 60_000)
        .await
        .expect("claim")
        .expect("job again");
    assert_eq!(new.attempts, 2);
    let old_lease = old.lease().expect("lease");
    assert_eq!(
        q::heartbeat(&t.db.pool, &old_lease, 60_000, None)
            .await
            .expect("beat"),
        LeaseState::Lost
    );
    assert!(!q::finish(&t.db.pool, &old_lease, &Outcome::Succeeded)
        .await
        .expect("finish"));
    assert!(q::finish(
        &t.db.pool,
        &new.lease().expect("lease"),
        &Outcome::Succeeded
    )
    .await
    .expect("finish"));

    // Backoff: the second expiry of a job delays it by base * 2^(attempts-1).
    let id2 = noop(&t.db, None).await;
    let _ = q::claim(&t.db.pool, "w1", &kinds(), 1)
        .await
        .expect("claim")
        .expect("job");
    tokio::time::sleep(Duration::from_millis(20)).await;
    q::reap_expired(&t.db.pool, 60_000).await.expect("reap");
    let delayed: bool = sqlx::query_scalar(
        "SELECT run_after > now() + interval '50 seconds' FROM jobs WHERE id = $1",
    )
    .bind(id2)
    .fetch_one(&t.db.pool)
    .await
    .expect("run_after");
    assert!(delayed, "first retry waits the base backoff");
    assert!(q::claim(&t.db.pool, "w2", &kinds(), 60_000)
        .await
        .expect("claim")
        .is_none());
}

#[tokio::test]
async fn attempts_run_out_into_failed_and_retry_requeues() {
    let t = fresh_db().await;
    let mut job = NewJob::new("noop", serde_json::json!({}));
    job.max_attempts = 2;
    let mut conn = t.db.pool.acquire().await.expect("conn");
    let (id, _) = q::enqueue(&mut conn, &job).await.expect("enqueue");
    for attempt in 1..=2 {
        let j = q::claim(&t.db.pool, "w", &kinds(), 60_000)
            .await
            .expect("claim")
            .expect("job");
        assert_eq!(j.attempts, attempt);
        let failed = Outcome::Failed {
            error: format!("boom {attempt}"),
            retry: true,
            backoff_ms: 0,
        };
        assert!(q::finish(&t.db.pool, &j.lease().expect("lease"), &failed)
            .await
            .expect("finish"));
    }
    let j = q::get(&t.db.pool, id).await.expect("get");
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(j.last_error.as_deref(), Some("boom 2"));
    assert!(
        j.log.contains("boom 1") && j.log.contains("boom 2"),
        "{}",
        j.log
    );
    assert!(q::claim(&t.db.pool, "w", &kinds(), 60_000)
        .await
        .expect("claim")
        .is_none());
    assert!(q::retry(&t.db.pool, id).await.expect("retry"));
    let j = q::claim(&t.db.pool, "w", &kinds(), 60_000)
        .await
        .expect("claim")
        .expect("job again");
    assert_eq!(j.attempts, 1);
    // A permanent failure does not use up the remaining attempts.
    let failed = Outcome::Failed {
        error: "bad payload".into(),
        retry: false,
        backoff_ms: 0,
    };
    assert!(q::finish(&t.db.pool, &j.lease().expect("lease"), &failed)
        .await
        .expect("finish"));
    assert_eq!(
        q::get(&t.db.pool, id).await.expect("get").status,
        JobStatus::Failed
    );
}

#[tokio::test]
async fn cancel_ends_a_queued_job_at_once_and_a_running_one_at_its_next_step() {
    let t = fresh_db().await;
    let queued = noop(&t.db, None).await;
    assert_eq!(
        q::cancel(&t.db.pool, queued).await.expect("cancel"),
        Some(JobStatus::Cancelled)
    );
    let running = noop(&t.db, None).await;
    let j = q::claim(&t.db.pool, "w", &kinds(), 60_000)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(j.id, running);
    assert_eq!(
        q::cancel(&t.db.pool, running).await.expect("cancel"),
        Some(JobStatus::Running)
    );
    let lease = j.lease().expect("lease");
    assert_eq!(
        q::heartbeat(&t.db.pool, &lease, 60_000, Some((1, 3, "step")))
            .await
            .expect("beat"),
        LeaseState::CancelRequested
    );
    assert!(q::finish(&t.db.pool, &lease, &Outcome::Cancelled)
        .await
        .expect("finish"));
    assert_eq!(
        q::get(&t.db.pool, running).await.expect("get").status,
        JobStatus::Cancelled
    );
    assert_eq!(
        q::cancel(&t.db.pool, running).await.expect("cancel"),
        None,
        "finished jobs cannot be cancelled"
    );
}

#[tokio::test]
async fn released_jobs_return_without_using_an_attempt() {
    let t = fresh_db().await;
    let id = noop(&t.db, None).await;
    let j = q::claim(&t.db.pool, "w", &kinds(), 60_000)
        .await
        .expect("claim")
        .expect("job");
    assert!(
        q::finish(&t.db.pool, &j.lease().expect("lease"), &Outcome::Released)
            .await
            .expect("release")
    );
    let j = q::get(&t.db.pool, id).await.expect("get");
    assert_eq!((j.status, j.attempts), (JobStatus::Queued, 0));
}

#[tokio::test]
async fn the_same_idempotency_key_creates_one_job() {
    let t = fresh_db().await;
    let a = noop(&t.db, Some("k1")).await;
    let b = noop(&t.db, Some("k1")).await;
    let c = noop(&t.db, Some("k2")).await;
    assert_eq!(a, b);
    assert_ne!(a, c);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&t.db.pool)
        .await
        .expect("count");
    assert_eq!(n, 2);
}

#[tokio::test]
async fn enqueue_in_a_rolled_back_transaction_leaves_nothing() {
    let t = fresh_db().await;
    let mut tx = t.db.pool.begin().await.expect("begin");
    q::enqueue(&mut tx, &NewJob::new("noop", serde_json::json!({})))
        .await
        .expect("enqueue");
    tx.rollback().await.expect("rollback");
    assert!(q::claim(&t.db.pool, "w", &kinds(), 60_000)
        .await
        .expect("claim")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_take_the_same_job() {
    let t = fresh_db().await;
    let n = 400;
    sqlx::query("INSERT INTO jobs (id, kind, payload) SELECT gen_random_uuid(), 'noop', '{}' FROM generate_series(1, $1)")
        .bind(n)
        .execute(&t.db.pool)
        .await
        .expect("jobs");
    let mut tasks = Vec::new();
    for w in 0..6 {
        let pool = t.db.pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let me = format!("w{w}");
            while let Some(job) = q::claim(&pool, &me, &kinds(), 60_000).await.expect("claim") {
                assert!(
                    q::finish(&pool, &job.lease().expect("lease"), &Outcome::Succeeded)
                        .await
                        .expect("finish")
                );
                mine.push(job.id);
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    let mut busy = 0;
    for task in tasks {
        let mine = task.await.expect("claimer");
        busy += usize::from(!mine.is_empty());
        for id in mine {
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), n as usize);
    assert!(busy > 1, "several claimers did work");
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE status <> 'succeeded' OR attempts <> 1",
    )
    .fetch_one(&t.db.pool)
    .await
    .expect("count");
    assert_eq!(left, 0);
}
