//! A private Postgres cluster under the data directory, for single-machine use without a
//! `DATABASE_URL`. It uses the server binaries found on PATH or under
//! /usr/lib/postgresql/*/bin and listens only on a Unix socket.
//!
//! The process that starts the cluster records it (socket dir, port, its pid) in
//! `DATA_DIR/embedded-postgres.json`; a later command on the same data dir connects to that
//! cluster instead of starting another, and only the process that started a cluster ever
//! stops it (on exit), removing the record.

use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Executor};

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "no DATABASE_URL is set and no Postgres server binaries (initdb, pg_ctl) were found on PATH \
         or under /usr/lib/postgresql/*/bin. Either set DATABASE_URL=postgres://user@host:port/db, \
         or start the bundled database with `docker compose up -d db` and set \
         DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/arenaxl"
    )]
    NoBinaries,
    #[error("{command} failed: {detail}")]
    Command { command: String, detail: String },
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("embedded Postgres started but refused a connection: {0}")]
    Connect(#[from] sqlx::Error),
}

pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    run_as: Option<String>,
    /// Set once this process has started the cluster: only then does drop stop it.
    record: Option<PathBuf>,
}

/// What the starting process writes to `embedded-postgres.json`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    socket_dir: PathBuf,
    port: u16,
    pid: u32,
    url: String,
}

const RECORD_FILE: &str = "embedded-postgres.json";

impl EmbeddedPostgres {
    /// Connects to the cluster another process runs on `data_dir`, or else initialises (first
    /// time) and starts one in `data_dir/postgres`, owned by this process.
    pub async fn start(data_dir: &Path) -> Result<EmbeddedPostgres, EmbeddedError> {
        let record_path = absolute(&data_dir.join(RECORD_FILE))?;
        if let Some(joined) = Self::join(data_dir, &record_path).await {
            return Ok(joined);
        }
        match Self::start_owned(data_dir, &record_path).await {
            Ok(pg) => Ok(pg),
            Err(err) => {
                // Another command may have started it at the same moment: join that one.
                for _ in 0..20 {
                    if let Some(joined) = Self::join(data_dir, &record_path).await {
                        return Ok(joined);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(err)
            }
        }
    }

    /// The running cluster named by the record, if it answers. When the process that started
    /// it is gone (killed without stopping it), this one adopts it: it rewrites the record and
    /// stops the cluster on exit, so a cluster never outlives every process using it.
    async fn join(data_dir: &Path, record_path: &Path) -> Option<EmbeddedPostgres> {
        let text = std::fs::read_to_string(record_path).ok()?;
        let rec: Record = serde_json::from_str(&text).ok()?;
        let this = EmbeddedPostgres {
            bin_dir: PathBuf::new(),
            pgdata: PathBuf::new(),
            socket_dir: rec.socket_dir.clone(),
            port: rec.port,
            run_as: None,
            record: None,
        };
        let conn =
            tokio::time::timeout(std::time::Duration::from_secs(5), this.options().connect()).await;
        match conn {
            Ok(Ok(_)) if !Path::new(&format!("/proc/{}", rec.pid)).exists() => {
                let mut this = this;
                this.bin_dir = find_bin_dir()?;
                this.pgdata = absolute(&data_dir.join("postgres")).ok()?;
                this.run_as = running_as_root().then(|| "postgres".to_string());
                let adopted = Record {
                    pid: std::process::id(),
                    ..rec
                };
                std::fs::write(record_path, serde_json::to_string_pretty(&adopted).ok()?).ok()?;
                this.record = Some(record_path.to_path_buf());
                tracing::info!("adopted the embedded Postgres of a process that is gone");
                Some(this)
            }
            Ok(Ok(_)) => {
                tracing::info!(
                    "joined the embedded Postgres started by process {} ({})",
                    rec.pid,
                    rec.url
                );
                Some(this)
            }
            _ => None,
        }
    }

    async fn start_owned(
        data_dir: &Path,
        record_path: &Path,
    ) -> Result<EmbeddedPostgres, EmbeddedError> {
        let bin_dir = find_bin_dir().ok_or(EmbeddedError::NoBinaries)?;
        let pgdata = absolute(&data_dir.join("postgres"))?;
        // Postgres refuses to run as root: hand the cluster to the `postgres` account then.
        let run_as = if running_as_root() {
            Some("postgres".to_string())
        } else {
            None
        };
        std::fs::create_dir_all(&pgdata).map_err(|source| EmbeddedError::Io {
            path: pgdata.clone(),
            source,
        })?;
        // Socket paths are limited to ~100 bytes: keep the socket in a short private folder.
        let socket_dir = std::env::temp_dir().join(format!("arenaxl-pg-{}", short_hash(&pgdata)));
        std::fs::create_dir_all(&socket_dir).map_err(|source| EmbeddedError::Io {
            path: socket_dir.clone(),
            source,
        })?;
        if let Some(user) = &run_as {
            for dir in [&pgdata, &socket_dir] {
                run(Command::new("chown").arg("-R").arg(user).arg(dir), "chown")?;
            }
        }
        let port = free_port();
        let mut this = EmbeddedPostgres {
            bin_dir,
            pgdata,
            socket_dir,
            port,
            run_as,
            record: None,
        };
        if !this.pgdata.join("PG_VERSION").exists() {
            this.pg(
                "initdb",
                &[
                    "-D",
                    path_str(&this.pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                ],
            )?;
        }
        let log = this.pgdata.join("server.log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=''",
            this.port,
            this.socket_dir.display()
        );
        this.pg(
            "pg_ctl",
            &[
                "-D",
                path_str(&this.pgdata),
                "-l",
                path_str(&log),
                "-w",
                "-o",
                &opts,
                "start",
            ],
        )?;
        // From here on the cluster is ours: stop it on drop (also if the rest fails).
        this.record = Some(record_path.to_path_buf());
        let rec = Record {
            socket_dir: this.socket_dir.clone(),
            port: this.port,
            pid: std::process::id(),
            url: this.url(),
        };
        let json = serde_json::to_string_pretty(&rec).unwrap_or_default();
        std::fs::write(record_path, json).map_err(|source| EmbeddedError::Io {
            path: record_path.to_path_buf(),
            source,
        })?;
        let mut conn = this.admin_options().connect().await?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = 'arenaxl'")
                .fetch_optional(&mut conn)
                .await?;
        if exists.is_none() {
            conn.execute("CREATE DATABASE arenaxl").await?;
        }
        Ok(this)
    }

    fn admin_options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .port(self.port)
            .username("postgres")
            .database("postgres")
    }

    /// Connection options for the application's database in this cluster.
    pub fn options(&self) -> PgConnectOptions {
        self.admin_options().database("arenaxl")
    }

    /// A URL for `psql` and other tools: the Unix socket and port of the cluster.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@/arenaxl?host={}&port={}",
            self.socket_dir.display(),
            self.port
        )
    }

    /// Whether this process started the cluster (and so stops it on drop).
    pub fn owned(&self) -> bool {
        self.record.is_some()
    }

    /// Stops the cluster (fast shutdown: open sessions are rolled back, data is kept), if
    /// this process started it; a joined cluster is left running.
    pub fn stop(&self) -> Result<(), EmbeddedError> {
        let Some(record) = &self.record else {
            return Ok(());
        };
        let _ = std::fs::remove_file(record);
        self.pg(
            "pg_ctl",
            &["-D", path_str(&self.pgdata), "-m", "fast", "-w", "stop"],
        )
    }

    fn pg(&self, tool: &str, args: &[&str]) -> Result<(), EmbeddedError> {
        let program = self.bin_dir.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(&program);
                c
            }
            None => Command::new(&program),
        };
        cmd.args(args);
        run(&mut cmd, tool)
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            tracing::warn!("could not stop embedded Postgres: {err}");
        }
    }
}

fn run(cmd: &mut Command, name: &str) -> Result<(), EmbeddedError> {
    let output = cmd.output().map_err(|e| EmbeddedError::Command {
        command: name.to_string(),
        detail: e.to_string(),
    })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(EmbeddedError::Command {
            command: name.to_string(),
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stderr),
                String::from_utf8_lossy(&output.stdout)
            ),
        })
    }
}

/// The directory holding initdb and pg_ctl: PATH first, then the newest Debian layout.
fn find_bin_dir() -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

fn absolute(path: &Path) -> Result<PathBuf, EmbeddedError> {
    std::path::absolute(path).map_err(|source| EmbeddedError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

fn short_hash(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..6])
}
