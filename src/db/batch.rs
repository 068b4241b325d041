//! Statements shared by concurrent requests. Under load most of Postgres' time per request
//! goes to a statement's fixed costs — a round trip, starting the executor for a plan with
//! many parts, a commit — not to the rows. A [`Batcher`] lets requests that arrive while
//! earlier ones are being written share the next statement: a request finding the writer
//! idle runs alone at once (no added wait); while it is busy, requests queue, and it then
//! takes up to [`MAX_BATCH`] of them in one statement.
//!
//! A batch that fails (a deadlock with another process, say) is not retried as a batch:
//! each of its requests runs alone, so every caller gets its own precise outcome or error.
//! When the database cannot be reached, the batch and everything queued behind it are
//! answered as an outage at once, and until a statement succeeds again requests run alone,
//! side by side, each bounded by the pool's acquire timeout — never waiting in a queue
//! behind others that wait for the database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::issuing::{issue, issue_many, Issue, Stored};
use super::participation::{
    participant_state, participant_states, record_vote, record_votes, ParticipantState, VoteInput,
    VoteResult,
};
use super::{is_db_unavailable, DbError};

/// Requests served by one statement at most.
pub const MAX_BATCH: usize = 64;
/// Requests waiting for a writer; beyond that a request runs alone.
const QUEUE: usize = 4096;

/// The statement for one request.
pub type One<I, O> = fn(PgPool, I) -> BoxFuture<'static, Result<O, DbError>>;
/// The statement for several, answering in their order.
pub type Many<I, O> = fn(PgPool, Vec<I>) -> BoxFuture<'static, Result<Vec<O>, DbError>>;

struct Job<I, O> {
    input: I,
    reply: oneshot::Sender<Result<O, DbError>>,
}

/// Runs requests of one kind, batched under load; cheap to clone.
pub struct Batcher<I, O> {
    pool: PgPool,
    one: One<I, O>,
    queue: mpsc::Sender<Job<I, O>>,
    /// The last statement found the database unreachable: requests run alone.
    outage: Arc<AtomicBool>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher {
            pool: self.pool.clone(),
            one: self.one,
            queue: self.queue.clone(),
            outage: Arc::clone(&self.outage),
        }
    }
}

impl<I, O> std::fmt::Debug for Batcher<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("waiting", &(QUEUE - self.queue.capacity()))
            .finish()
    }
}

impl<I: Clone + Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the writer on the current tokio runtime. One statement of a kind in flight
    /// at a time: measured with 64 connections on two cores, one writer reached 1,935–1,970
    /// vote cycles/s, two 1,561, four 1,310 — every statement more in flight makes the
    /// batches smaller, and their fixed cost is what batching saves.
    pub fn start(pool: PgPool, one: One<I, O>, many: Many<I, O>) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let outage = Arc::new(AtomicBool::new(false));
        tokio::spawn(writer(pool.clone(), one, many, jobs, Arc::clone(&outage)));
        Batcher {
            pool,
            one,
            queue,
            outage,
        }
    }

    /// Runs one request, in the next batch; alone when the queue is full, the writer is
    /// gone (its runtime ended) or the database was last found unreachable.
    pub async fn run(&self, input: I) -> Result<O, DbError> {
        if self.outage.load(Ordering::Relaxed) {
            let result = (self.one)(self.pool.clone(), input).await;
            self.outage
                .store(matches!(&result, Err(e) if is_outage(e)), Ordering::Relaxed);
            return result;
        }
        let (reply, answer) = oneshot::channel();
        let input = match self.queue.try_send(Job { input, reply }) {
            Ok(()) => {
                return match answer.await {
                    Ok(result) => result,
                    // The writer was dropped with the request (its runtime shut down):
                    // whether a write happened is unknown, so the caller is told to try
                    // again, as when the database is unreachable.
                    Err(_) => Err(DbError::Sql(sqlx::Error::WorkerCrashed)),
                };
            }
            Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) => {
                job.input
            }
        };
        (self.one)(self.pool.clone(), input).await
    }
}

/// Takes whatever requests are waiting (at least one, at most [`MAX_BATCH`]) and runs them.
async fn writer<I: Clone + Send + 'static, O: Send + 'static>(
    pool: PgPool,
    one: One<I, O>,
    many: Many<I, O>,
    mut jobs: mpsc::Receiver<Job<I, O>>,
    outage: Arc<AtomicBool>,
) {
    loop {
        let mut batch = Vec::new();
        match jobs.recv().await {
            Some(job) => batch.push(job),
            None => return,
        }
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if batch.len() > 1 {
            let inputs = batch.iter().map(|j| j.input.clone()).collect();
            match many(pool.clone(), inputs).await {
                Ok(outputs) if outputs.len() == batch.len() => {
                    outage.store(false, Ordering::Relaxed);
                    for (job, output) in batch.into_iter().zip(outputs) {
                        job.reply.send(Ok(output)).ok();
                    }
                    continue;
                }
                Ok(outputs) => tracing::error!(
                    "a batch of {} answered {} times; running each alone",
                    batch.len(),
                    outputs.len()
                ),
                Err(e) if is_outage(&e) => {
                    tracing::warn!("a batch of {} failed: {e}", batch.len());
                    outage.store(true, Ordering::Relaxed);
                    answer_outage(batch, &mut jobs);
                    continue;
                }
                Err(e) => tracing::warn!(
                    "a batch of {} failed ({e}); running each alone",
                    batch.len()
                ),
            }
        }
        // Alone, but side by side: one slow request does not hold up the others.
        let alone = batch.into_iter().map(|job| {
            let pool = pool.clone();
            async move {
                let result = one(pool, job.input).await;
                let unreachable = matches!(&result, Err(e) if is_outage(e));
                job.reply.send(result).ok();
                unreachable
            }
        });
        let unreachable = futures_util::future::join_all(alone).await;
        if unreachable.iter().any(|&u| u) {
            outage.store(true, Ordering::Relaxed);
            answer_outage(Vec::new(), &mut jobs);
        } else {
            outage.store(false, Ordering::Relaxed);
        }
    }
}

/// Answers `batch` and every request queued behind it as an outage (the web layer's 503
/// with Retry-After): each of them would wait for the database again, one after another.
fn answer_outage<I, O>(batch: Vec<Job<I, O>>, jobs: &mut mpsc::Receiver<Job<I, O>>) {
    let mut waiting = batch;
    while let Ok(job) = jobs.try_recv() {
        waiting.push(job);
    }
    for job in waiting {
        job.reply
            .send(Err(DbError::Sql(sqlx::Error::PoolTimedOut)))
            .ok();
    }
}

/// The database cannot be reached ([`is_db_unavailable`]): the web layer answers 503 with
/// Retry-After.
fn is_outage(e: &DbError) -> bool {
    matches!(e, DbError::Sql(e) if is_db_unavailable(e))
}

/// Votes, recorded as [`record_vote`] does, several per statement and commit under load.
pub fn votes(pool: PgPool) -> Batcher<VoteInput, VoteResult> {
    Batcher::start(
        pool,
        |pool, vote| async move { record_vote(&pool, &vote).await }.boxed(),
        |pool, votes| {
            async move { record_votes(&pool, &votes.iter().collect::<Vec<_>>()).await }.boxed()
        },
    )
}

/// Participants' state by token hash, as [`participant_state`] reads it.
pub fn states(pool: PgPool) -> Batcher<String, Option<ParticipantState>> {
    Batcher::start(
        pool,
        |pool, token| async move { participant_state(&pool, &token).await }.boxed(),
        |pool, tokens| async move { participant_states(&pool, &tokens).await }.boxed(),
    )
}

/// Assignments, stored as [`issue`] does, several per statement under load.
pub fn issues(pool: PgPool) -> Batcher<Issue, Stored> {
    Batcher::start(
        pool,
        |pool, one| async move { issue(&pool, one).await }.boxed(),
        |pool, many| async move { issue_many(&pool, many).await }.boxed(),
    )
}
