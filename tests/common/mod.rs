//! The black-box test harness: `TestApp` runs the real application on a free port against
//! a fresh Postgres database of its own (dropped afterwards), with real images on disk.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use arenaxl::config::{RateLimits, Settings};
use arenaxl::db::{self, Db};
use arenaxl::jobs::worker::{WorkerStats, WorkerThread};
use arenaxl::jobs::{runners_for, RunnerOptions, Worker, WorkerConfig};
use arenaxl::startup::Application;
use arenaxl::study::images::{import_dir, ImageStore};
use arenaxl::study::{Study, StudyForm, StudySettings, StudyStatus};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use uuid::Uuid;

/// The Postgres server tests use: `TEST_DATABASE_URL`, else `DATABASE_URL`, else the
/// local server this project's machines run.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    /// `host:port` of the separate metrics listener, when `metrics_bind` is set.
    pub metrics_address: Option<String>,
    pub db: Db,
    pub store: ImageStore,
    pub data_dir: tempfile::TempDir,
    /// A client that keeps cookies and does not follow redirects.
    pub client: reqwest::Client,
    admin_options: PgConnectOptions,
    db_name: String,
    handle: actix_web::dev::ServerHandle,
}

pub const ADMIN_EMAIL: &str = "researcher@example.org";
pub const ADMIN_PASSWORD: &str = "correct horse battery";
/// The bearer token test apps require on `/metrics`.
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789";

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(RateLimits::unlimited()).await
    }

    pub async fn spawn_with(limits: RateLimits) -> TestApp {
        Self::spawn_configured(|s| s.rate_limits = limits).await
    }

    /// An app whose settings `configure` adjusts after the test defaults (unlimited rates,
    /// the data dir as the one import root, `METRICS_TOKEN`) are set.
    pub async fn spawn_configured(configure: impl FnOnce(&mut Settings)) -> TestApp {
        init_logs();
        let admin_options: PgConnectOptions = server_url().parse().expect("test database URL");
        let db_name = format!("arenaxl_test_{}", Uuid::new_v4().simple());
        let options = db::create_database(&admin_options, &db_name)
            .await
            .expect("Postgres must run on 127.0.0.1:5432 (or set TEST_DATABASE_URL)");
        let database = Db::connect(options)
            .await
            .expect("connect to test database");
        database.migrate().await.expect("migrations");
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings::new("127.0.0.1:0", data_dir.path()).expect("settings");
        settings.rate_limits = RateLimits::unlimited();
        settings.handle_signals = false;
        // Tests write model folders and datasets into the data dir: let the forms read there.
        settings.import_roots = vec![data_dir.path().to_path_buf()];
        settings.metrics_token = Some(METRICS_TOKEN.to_string());
        configure(&mut settings);
        let store = ImageStore::new(settings.image_dir());
        let app = Application::build(settings, database.clone()).expect("build app");
        let port = app.port();
        let metrics_address = app.metrics_addr().map(|a| a.to_string());
        let handle = app.server_handle();
        tokio::spawn(app.run_until_stopped());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .build()
            .expect("client");
        arenaxl::study::admins::create_or_update(&database, ADMIN_EMAIL, ADMIN_PASSWORD)
            .await
            .expect("admin account");
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            port,
            metrics_address,
            db: database,
            store,
            data_dir,
            client,
            admin_options,
            db_name,
            handle,
        }
    }

    /// A `postgres://` URL of this app's database, for running the CLI against it.
    pub fn database_url(&self) -> String {
        database_url_for(&self.db_name)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Another server process's worth of application — its own scheduler, pools and port —
    /// on the same database and image store, as a lab scaling out runs them. Stopped when
    /// the returned handle is dropped with the test's runtime.
    pub async fn spawn_peer(&self) -> String {
        let mut settings = Settings::new("127.0.0.1:0", self.data_dir.path()).expect("settings");
        settings.rate_limits = RateLimits::unlimited();
        settings.handle_signals = false;
        settings.metrics_token = Some(METRICS_TOKEN.to_string());
        let database = Db::connect(self.admin_options.clone().database(&self.db_name))
            .await
            .expect("connect peer");
        let app = Application::build(settings, database).expect("build peer");
        let port = app.port();
        tokio::spawn(app.run_until_stopped());
        format!("http://127.0.0.1:{port}")
    }

    /// GET with this app's client (its cookies): status and body.
    pub async fn page(&self, path: &str) -> (u16, String) {
        let resp = self.client.get(self.url(path)).send().await.expect("get");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    /// POSTs a form with this app's client (its cookies), as a browser submits it.
    pub async fn post_form<T: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        form: &T,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .expect("post")
    }

    /// Registers a model folder through the admin's models page (logged in): status, body.
    pub async fn register_model(&self, name: &str, folder: &str) -> (u16, String) {
        let (_, html) = self.page("/admin/models").await;
        let csrf = csrf_of(&html);
        let resp = self
            .post_form(
                "/admin/models",
                &[("csrf", csrf.as_str()), ("name", name), ("folder", folder)],
            )
            .await;
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    /// A CPU worker on this app's database and image store, running `kinds`, polling every
    /// 50 ms; with `exit_when_idle` it stops once no job of its kinds is left.
    pub fn worker(&self, kinds: &[&str], exit_when_idle: bool) -> Worker {
        let mut config = WorkerConfig::new("cpu");
        config.exit_when_idle = exit_when_idle;
        config.poll = std::time::Duration::from_millis(50);
        let runners = runners_for(
            &kinds.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
            &RunnerOptions {
                models_dir: None,
                memory_budget_bytes: 1 << 30,
                data_dir: self.data_dir.path().to_path_buf(),
            },
        )
        .expect("runners");
        Worker::new(config, self.db.clone(), self.store.clone(), runners).expect("worker")
    }

    /// Runs a worker of `kinds` until no job of its kinds is left.
    pub async fn run_worker(&self, kinds: &[&str]) -> WorkerStats {
        join_worker(
            self.worker(kinds, true)
                .spawn(tokio::runtime::Handle::current())
                .expect("thread"),
        )
        .await
    }

    /// A new cookie-keeping client (another browser).
    pub fn new_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .build()
            .expect("client")
    }

    pub async fn create_study(&self, slug: &str, votes: i32, gold_rate: f64) -> Study {
        let settings = StudySettings::try_from(StudyForm {
            slug: slug.into(),
            title: format!("Study {slug}"),
            votes_per_participant: Some(votes),
            gold_rate: Some(gold_rate),
            completion_code: Some("CODE-123".into()),
            allow_tie: true,
            allow_both_bad: true,
            ..StudyForm::default()
        })
        .expect("valid study");
        arenaxl::db::studies::insert(&self.db.pool, &settings)
            .await
            .expect("insert study")
    }

    pub async fn open(&self, slug: &str) {
        arenaxl::db::studies::set_status(&self.db.pool, slug, StudyStatus::Open)
            .await
            .expect("open study");
    }

    /// Writes a manifest folder with one PNG per prompt and model (each PNG carries a text
    /// chunk naming its model, to prove that stripping works) and imports it.
    pub async fn import_images(&self, study: &Study, prompts: usize, models: &[&str]) -> PathBuf {
        let dir = self
            .data_dir
            .path()
            .join(format!("import-{}", Uuid::new_v4().simple()));
        write_manifest_dir(&dir, prompts, models);
        import_dir(&self.db, study, &dir, &self.store)
            .await
            .expect("import images");
        dir
    }

    /// A study with images, open, ready for participants.
    pub async fn ready_study(
        &self,
        slug: &str,
        votes: i32,
        gold_rate: f64,
        prompts: usize,
        models: &[&str],
    ) -> Study {
        let study = self.create_study(slug, votes, gold_rate).await;
        self.import_images(&study, prompts, models).await;
        self.open(slug).await;
        study
    }

    pub async fn join(&self, slug: &str, pid: &str) -> String {
        let resp = self
            .client
            .post(self.url(&format!("/api/v1/studies/{slug}/participants")))
            .json(&serde_json::json!({ "external": { "PROLIFIC_PID": pid, "STUDY_ID": "s1", "SESSION_ID": "x1" } }))
            .send()
            .await
            .expect("join");
        assert_eq!(
            resp.status().as_u16(),
            201,
            "join failed: {:?}",
            resp.text().await
        );
        let body: Value = resp.json().await.expect("json");
        body["participant_token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    pub async fn next(&self, token: &str) -> Value {
        self.next_at(&self.address, token).await
    }

    /// `next` at `server` (this app's address or a peer's).
    pub async fn next_at(&self, server: &str, token: &str) -> Value {
        let resp = self
            .client
            .get(format!("{server}/api/v1/next"))
            .bearer_auth(token)
            .send()
            .await
            .expect("next");
        assert_eq!(resp.status().as_u16(), 200, "next at {server}");
        resp.json().await.expect("json")
    }

    pub async fn vote(&self, token: &str, assignment: &str, choice: &str) -> reqwest::Response {
        self.vote_at(&self.address, token, assignment, choice).await
    }

    /// `vote` at `server` (this app's address or a peer's).
    pub async fn vote_at(
        &self,
        server: &str,
        token: &str,
        assignment: &str,
        choice: &str,
    ) -> reqwest::Response {
        self.client
            .post(format!("{server}/api/v1/assignments/{assignment}/vote"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "choice": choice, "response_ms": 1200 }))
            .send()
            .await
            .expect("vote")
    }

    /// Logs `client` in as the test researcher.
    pub async fn login(&self, client: &reqwest::Client) {
        let page = client
            .get(self.url("/admin/login"))
            .send()
            .await
            .expect("login page");
        let csrf = csrf_of(&page.text().await.expect("body"));
        let resp = client
            .post(self.url("/admin/login"))
            .form(&[
                ("email", ADMIN_EMAIL),
                ("password", ADMIN_PASSWORD),
                ("csrf", &csrf),
            ])
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status().as_u16(), 303, "login failed");
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db.pool)
            .await
            .expect("count query")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        let admin = self.admin_options.clone();
        let name = self.db_name.clone();
        // The test's runtime is blocked in this drop: clean up on a runtime of our own, and
        // leave the pools alone (their connections belong to the blocked runtime); dropping
        // the database WITH (FORCE) ends their sessions on the server side.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    drop(handle.stop(false));
                    let _ = db::drop_database(&admin, &name).await;
                });
            }
        })
        .join();
    }
}

/// The CSRF token in a page's first form.
/// Waits for a worker thread to end; its statistics.
pub async fn join_worker(thread: WorkerThread) -> WorkerStats {
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .expect("join")
        .expect("the worker thread panicked")
        .0
}

pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .map(|i| i + marker.len())
        .expect("page has a CSRF field");
    let end = html[start..].find('"').expect("closing quote") + start;
    html[start..end].to_string()
}

/// The value of a hidden input in a page.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

/// Writes `dir/manifest.jsonl` and images: prompt i, model m → a 32x32 PNG whose colour
/// depends on both, with a tEXt chunk that names the model and seed.
pub fn write_manifest_dir(dir: &Path, prompts: usize, models: &[&str]) {
    std::fs::create_dir_all(dir).expect("dir");
    let mut manifest = String::new();
    for p in 0..prompts {
        for (m, model) in models.iter().enumerate() {
            let file = format!("{model}_prompt{p}_seed42.png");
            let img = image::RgbImage::from_fn(32, 32, |x, y| {
                image::Rgb([
                    (p * 40 % 256) as u8,
                    (m * 70 % 256) as u8,
                    ((x + y) * 4 % 256) as u8,
                ])
            });
            std::fs::write(
                dir.join(&file),
                png_with_text(&img, &format!("model={model} seed=42")),
            )
            .expect("write png");
            manifest.push_str(
                &serde_json::json!({
                    "file": file, "model": model, "prompt": format!("test prompt number {p}"),
                    "category": if p % 2 == 0 { "Animals" } else { "Vehicles" },
                    "seed": 42, "steps": 30, "guidance": 5.0, "scheduler": "euler"
                })
                .to_string(),
            );
            manifest.push('\n');
        }
    }
    std::fs::write(dir.join("manifest.jsonl"), manifest).expect("manifest");
}

/// A PNG with a tEXt chunk (as generators write their parameters) inserted after IHDR.
pub fn png_with_text(img: &image::RgbImage, text: &str) -> Vec<u8> {
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encode");
    let mut data = b"parameters\0".to_vec();
    data.extend_from_slice(text.as_bytes());
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = b"tEXt".to_vec();
    body.extend_from_slice(&data);
    chunk.extend_from_slice(&body);
    chunk.extend_from_slice(&crc32(&body).to_be_bytes());
    // Signature (8) + IHDR chunk (4 + 4 + 13 + 4 = 25).
    let at = 8 + 25;
    let mut out = png[..at].to_vec();
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&png[at..]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The chunk types of a PNG file.
pub fn png_chunks(png: &[u8]) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut i = 8;
    while i + 8 <= png.len() {
        let len = u32::from_be_bytes([png[i], png[i + 1], png[i + 2], png[i + 3]]) as usize;
        chunks.push(String::from_utf8_lossy(&png[i + 4..i + 8]).to_string());
        i += 12 + len;
    }
    chunks
}

/// A fresh migrated database of its own, for tests that need no web server; the database
/// is dropped when the guard is.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    admin_options: PgConnectOptions,
    db_name: String,
}

/// The test server's URL with the database name replaced by `db_name`.
fn database_url_for(db_name: &str) -> String {
    let base = server_url();
    match base.rfind('/') {
        Some(i) if base[..i].contains("://") && base[i..].len() > 1 && !base[i..].contains('@') => {
            format!("{}/{}", &base[..i], db_name)
        }
        _ => format!("{}/{}", base.trim_end_matches('/'), db_name),
    }
}

pub async fn fresh_db() -> TestDb {
    init_logs();
    let admin_options: PgConnectOptions = server_url().parse().expect("test database URL");
    let db_name = format!("arenaxl_test_{}", Uuid::new_v4().simple());
    let options = db::create_database(&admin_options, &db_name)
        .await
        .expect("Postgres must run on 127.0.0.1:5432 (or set TEST_DATABASE_URL)");
    let database = Db::connect(options)
        .await
        .expect("connect to test database");
    database.migrate().await.expect("migrations");
    let url = database_url_for(&db_name);
    TestDb {
        db: database,
        url,
        admin_options,
        db_name,
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin_options.clone();
        let name = self.db_name.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    let _ = db::drop_database(&admin, &name).await;
                });
            }
        })
        .join();
    }
}

/// Test logs only when asked for (`RUST_LOG=info cargo test …`): the suite's output stays
/// readable, and failures can still be traced.
fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        arenaxl::telemetry::init();
    }
}
