//! Postgres access (sqlx): connection pools, the embedded cluster used when no
//! `DATABASE_URL` is given, migrations, and the queries of each part of the domain.
//! Migrations live in `migrations/` at the top of the repository.

pub mod admins;
pub mod assignments;
pub mod batch;
pub mod content;
pub mod dashboard;
pub mod distill;
pub mod embedded;
pub mod generation;
pub mod issuing;
pub mod participation;
pub mod studies;

use std::time::Duration;

impl From<crate::domain::Invalid> for DbError {
    /// A domain rule broken by a value read from the database.
    fn from(e: crate::domain::Invalid) -> Self {
        DbError::Corrupt(e.to_string())
    }
}

impl From<crate::queue::QueueError> for DbError {
    fn from(e: crate::queue::QueueError) -> Self {
        match e {
            crate::queue::QueueError::Db(e) => DbError::Sql(e),
            crate::queue::QueueError::NotFound(id) => DbError::NotFound(format!("job {id}")),
            crate::queue::QueueError::BadStatus(s) => DbError::Corrupt(format!("job status '{s}'")),
        }
    }
}

/// What the database layer reports: the driver's error with its cause, or a rule the data
/// enforces (a missing row, a unique name taken, a lease another worker holds).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("{0} not found")]
    NotFound(String),
    /// A real conflict with stored data (a name already taken, a state that forbids it).
    #[error("{0}")]
    Conflict(String),
    /// A stored value that breaks the rules of its type: our fault, not the caller's.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The job's lease expired or was taken over: this worker may no longer write for it.
    #[error("the job's lease was lost")]
    LeaseLost,
}

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Executor};

/// Two pools on the same database. `pool` commits durably (votes, imports, accounts);
/// `relaxed` commits without waiting for the WAL flush, for rows whose loss in a crash is
/// harmless (a participant's pending assignment is simply issued again). A durable commit
/// that follows flushes everything before it, so a vote never refers to a lost row.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: PgPool,
    pub relaxed: PgPool,
    /// Votes written on `pool`, several per statement and commit under load.
    pub votes: batch::Batcher<participation::VoteInput, participation::VoteResult>,
    /// Participants' state for `next`, read on `pool`, several per statement under load.
    pub states: batch::Batcher<String, Option<participation::ParticipantState>>,
    /// Assignments stored on `relaxed`, several per statement under load.
    pub issues: batch::Batcher<issuing::Issue, issuing::Stored>,
}

/// How long a request waits for a connection before giving up. Short, so that with the
/// database down a request fails (503, see `web::errors`) within 2 s instead of hanging:
/// sqlx keeps retrying a refused connection until this deadline.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long [`Db::connect`] waits for the server at startup, which may still be starting
/// (`docker compose up` starts both at once) or briefly out of connection slots.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

impl Db {
    pub async fn connect(options: PgConnectOptions) -> Result<Db, sqlx::Error> {
        // Generic plans: the statements of a vote cycle take their inputs as arrays
        // (`super::batch`), and Postgres' default re-plans such a statement at every
        // execution — measured at 18 % of the machine's CPU with three processes. Every
        // statement here looks rows up by key or by literal-only partial indexes, so a plan
        // made once serves every execution.
        let options = options
            .log_statements(tracing::log::LevelFilter::Trace)
            .options([("plan_cache_mode", "force_generic_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.clone());
        let relaxed = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("SET synchronous_commit = off").await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        first_connection(&pool).await?;
        first_connection(&relaxed).await?;
        Ok(Db {
            votes: batch::votes(pool.clone()),
            states: batch::states(pool.clone()),
            issues: batch::issues(relaxed.clone()),
            pool,
            relaxed,
        })
    }

    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        sqlx::migrate!("./migrations").run(&self.pool).await
    }
}

/// Opens the pool's first connection, retrying for [`STARTUP_TIMEOUT`] while the server is
/// unreachable; other errors (a wrong password, no such database) are returned at once.
async fn first_connection(pool: &PgPool) -> Result<(), sqlx::Error> {
    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    loop {
        match pool.acquire().await {
            Ok(_) => return Ok(()),
            Err(sqlx::Error::PoolTimedOut) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether a database error means "the database cannot be reached right now" (server down,
/// restarting, refusing connections, connection lost or pool exhausted) rather than a fault
/// in a query. The web layer answers those 503 with `Retry-After` (the rest stay 500), and
/// [`batch`] stops queueing requests behind them.
pub fn is_db_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            // 08: connection exception; 53: insufficient resources (too many connections,
            // out of memory, disk full); 57P01-57P03: shutdown, crash, still starting up.
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(code, "57P01" | "57P02" | "57P03")
                // `ALTER DATABASE ... ALLOW_CONNECTIONS false` (maintenance): 55000 with
                // this message; other 55000 errors are query faults.
                || (code == "55000" && db.message().contains("not currently accepting connections"))
        }
        _ => false,
    }
}

/// Parses a `postgres://` URL into connection options, naming the variable on error.
pub fn options_from_url(url: &str) -> anyhow::Result<PgConnectOptions> {
    url.parse::<PgConnectOptions>()
        .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid Postgres URL: {e}"))
}

/// Creates a fresh, empty database named `name` on the server behind `admin` and returns
/// options pointing at it. Used by tests and benchmarks, which never share a database.
pub async fn create_database(
    admin: &PgConnectOptions,
    name: &str,
) -> Result<PgConnectOptions, sqlx::Error> {
    let mut conn = admin.connect().await?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    conn.execute(format!("CREATE DATABASE {quoted}").as_str())
        .await?;
    Ok(admin.clone().database(name))
}

/// Drops a database created by [`create_database`], disconnecting any sessions left on it.
pub async fn drop_database(admin: &PgConnectOptions, name: &str) -> Result<(), sqlx::Error> {
    let mut conn = admin.connect().await?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    conn.execute(format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)").as_str())
        .await?;
    Ok(())
}
