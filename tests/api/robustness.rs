//! Outages and bad input: with the database unreachable every request fails fast with 503
//! and `Retry-After`; a NUL byte anywhere in a request is a 400 that stores nothing; image
//! imports refuse huge or mismatched images and links out of the folder, and leave the
//! image store as it was when they fail.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arenaxl::config::{RateLimits, Settings};
use arenaxl::db::Db;
use arenaxl::startup::Application;
use arenaxl::study::images::{import_dir, import_dir_limited, ImageStore};
use arenaxl::study::{StudyForm, StudySettings, StudyStatus};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::AbortHandle;

use crate::common::{csrf_of, fresh_db, hidden, server_url, write_manifest_dir, TestApp};

/// A TCP relay between the application and Postgres. Stopping it is, for the application,
/// the database server going away: open connections break and new ones are refused.
/// (The machine's Postgres server is shared and must never be stopped by a test.)
struct Relay {
    port: u16,
    target: String,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Relay {
    async fn start(target: String, port: u16) -> Relay {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket
            .bind(format!("127.0.0.1:{port}").parse().unwrap())
            .unwrap();
        let listener: TcpListener = socket.listen(64).unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let tasks_c = tasks.clone();
        let target_c = target.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target_c.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks_c.lock().unwrap().push(relay.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Relay {
            port,
            target,
            tasks,
        }
    }

    /// Closes the listener and every relayed connection.
    async fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        // Let the aborted tasks drop their sockets.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Timed {
    status: u16,
    retry_after: Option<String>,
    body: String,
    elapsed: Duration,
}

async fn timed(request: reqwest::RequestBuilder) -> Timed {
    let started = Instant::now();
    let resp = request.send().await.expect("the server answers");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.text().await.unwrap();
    Timed {
        status,
        retry_after,
        body,
        elapsed: started.elapsed(),
    }
}

/// The database is unreachable: each kind of request answers 503 with `Retry-After` within
/// 2 s (healthz at once: within 0.3 s) and says nothing about the cause. Returns the slowest time.
async fn assert_outage_answers(base: &str, token: &str, slug: &str, assignment: &str) -> Duration {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |p: &str| format!("{base}{p}");
    let health = timed(client.get(url("/healthz"))).await;
    eprintln!(
        "outage: GET /healthz -> {} in {:?}",
        health.status, health.elapsed
    );
    assert_eq!(health.status, 503, "{}", health.body);
    assert_eq!(health.retry_after.as_deref(), Some("5"));
    assert_eq!(
        serde_json::from_str::<Value>(&health.body).unwrap(),
        serde_json::json!({ "status": "unavailable" })
    );
    assert!(
        health.elapsed < Duration::from_millis(300),
        "healthz took {:?}",
        health.elapsed
    );
    let mut slowest = health.elapsed;
    let requests = [
        (
            "GET /api/v1/next",
            true,
            client.get(url("/api/v1/next")).bearer_auth(token),
        ),
        (
            "POST vote",
            true,
            client
                .post(url(&format!("/api/v1/assignments/{assignment}/vote")))
                .bearer_auth(token)
                .json(&serde_json::json!({ "choice": "left" })),
        ),
        (
            "POST join",
            true,
            client.post(url(&format!("/api/v1/studies/{slug}/participants"))),
        ),
        (
            "GET intro page",
            false,
            client.get(url(&format!("/s/{slug}"))),
        ),
        (
            "POST start page",
            false,
            client
                .post(url(&format!("/s/{slug}/start")))
                .form(&[("PROLIFIC_PID", "P-OUTAGE")]),
        ),
    ];
    for (name, api, request) in requests {
        let r = timed(request).await;
        eprintln!("outage: {name} -> {} in {:?}", r.status, r.elapsed);
        assert_eq!(r.status, 503, "{name}: {}", r.body);
        assert_eq!(r.retry_after.as_deref(), Some("5"), "{name}");
        assert!(
            r.elapsed < Duration::from_secs(2),
            "{name} took {:?}",
            r.elapsed
        );
        if api {
            let body: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["error"], "unavailable", "{name}");
        } else {
            assert!(
                r.body.contains("Temporarily unavailable"),
                "{name}: {}",
                r.body
            );
        }
        for leak in ["refused", "pool", "timed out", "database", "accepting"] {
            assert!(
                !r.body.to_lowercase().contains(leak),
                "{name} leaks '{leak}': {}",
                r.body
            );
        }
        slowest = slowest.max(r.elapsed);
    }
    slowest
}

/// 16 votes and 16 `next` calls at once during an outage: every one a 503 within 2 s.
async fn assert_concurrent_outage_answers(base: &str, token: &str, assignment: &str) -> Duration {
    let client = reqwest::Client::new();
    let votes = (0..16).map(|_| {
        timed(
            client
                .post(format!("{base}/api/v1/assignments/{assignment}/vote"))
                .bearer_auth(token)
                .json(&serde_json::json!({ "choice": "left", "response_ms": 1500 })),
        )
    });
    let nexts =
        (0..16).map(|_| timed(client.get(format!("{base}/api/v1/next")).bearer_auth(token)));
    let (votes, nexts) = tokio::join!(
        futures_util::future::join_all(votes),
        futures_util::future::join_all(nexts)
    );
    let mut slowest = Duration::ZERO;
    for r in votes.iter().chain(&nexts) {
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.retry_after.as_deref(), Some("5"));
        slowest = slowest.max(r.elapsed);
    }
    assert!(
        slowest < Duration::from_secs(2),
        "slowest of 32 concurrent: {slowest:?}"
    );
    slowest
}

/// A study with images, open, made without a `TestApp`.
async fn ready_study_on(db: &Db, store: &ImageStore, slug: &str) {
    let settings = StudySettings::try_from(StudyForm {
        slug: slug.into(),
        title: "Outage".into(),
        votes_per_participant: Some(5),
        ..StudyForm::default()
    })
    .unwrap();
    let study = arenaxl::db::studies::insert(&db.pool, &settings)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_manifest_dir(dir.path(), 2, &["a", "b"]);
    import_dir(db, &study, dir.path(), store).await.unwrap();
    arenaxl::db::studies::set_status(&db.pool, slug, StudyStatus::Open)
        .await
        .unwrap();
}

/// A participant with an open assignment: token and assignment id.
async fn participant_with_assignment(app_url: &str, slug: &str) -> (String, String) {
    let client = reqwest::Client::new();
    let joined: Value = client
        .post(format!("{app_url}/api/v1/studies/{slug}/participants"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = joined["participant_token"].as_str().unwrap().to_string();
    let next: Value = client
        .get(format!("{app_url}/api/v1/next"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (token, next["assignment_id"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn postgres_gone_answers_503_with_retry_after_within_2_s_and_recovers() {
    let test_db = fresh_db().await;
    let options: PgConnectOptions = test_db.url.parse().unwrap();
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let relay = Relay::start(target, 0).await;
    let db = Db::connect(options.clone().port(relay.port)).await.unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::new("127.0.0.1:0", data_dir.path()).unwrap();
    settings.rate_limits = RateLimits::unlimited();
    settings.handle_signals = false;
    let app = Application::build(settings, db.clone()).unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.server_handle();
    tokio::spawn(app.run_until_stopped());
    // The study is made through the direct connection; the application sees the relay.
    ready_study_on(
        &test_db.db,
        &ImageStore::new(data_dir.path().join("images")),
        "outage",
    )
    .await;
    let (token, assignment) = participant_with_assignment(&base, "outage").await;

    relay.stop().await;
    // Many at once first: requests that queue for a shared statement (votes, the reads of
    // `next`) must not wait for the database one after another.
    let burst = assert_concurrent_outage_answers(&base, &token, &assignment).await;
    eprintln!("outage (server gone): 32 concurrent requests, slowest 503 in {burst:?}");
    let slowest = assert_outage_answers(&base, &token, "outage", &assignment).await;
    eprintln!("outage (server gone): slowest 503 in {slowest:?}");

    // The server comes back on the same address: the application recovers by itself.
    let relay = Relay::start(relay.target.clone(), relay.port).await;
    let client = reqwest::Client::new();
    let mut healthy = false;
    for _ in 0..50 {
        let r = client.get(format!("{base}/healthz")).send().await.unwrap();
        if r.status().as_u16() == 200 {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "the application did not recover");
    let next = client
        .get(format!("{base}/api/v1/next"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(next.status().as_u16(), 200);
    let next: Value = next.json().await.unwrap();
    assert_eq!(next["assignment_id"], assignment.as_str());
    handle.stop(false).await;
    relay.stop().await;
}

#[tokio::test]
async fn at_startup_the_application_waits_for_a_server_that_is_still_starting() {
    let test_db = fresh_db().await;
    let options: PgConnectOptions = test_db.url.parse().unwrap();
    let target = format!("{}:{}", options.get_host(), options.get_port());
    // A free port where nothing listens yet: the server is "not up".
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let connecting = tokio::spawn(Db::connect(options.port(port)));
    // Longer than a request would wait (1.5 s), shorter than startup does (10 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !connecting.is_finished(),
        "startup gave up while the server was starting"
    );
    let relay = Relay::start(target, port).await;
    let db = connecting
        .await
        .unwrap()
        .expect("connected once the server was up");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    relay.stop().await;
}

#[tokio::test]
async fn a_database_refusing_connections_answers_503_at_once() {
    let app = TestApp::spawn().await;
    app.ready_study("closed-db", 5, 0.0, 2, &["a", "b"]).await;
    let (token, assignment) = participant_with_assignment(&app.address, "closed-db").await;
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let admin_options: PgConnectOptions = server_url().parse().unwrap();
    let mut admin = admin_options.connect().await.unwrap();
    // Maintenance on this test's own database only: no new sessions, the existing ended.
    sqlx::query(&format!(
        "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&mut admin)
        .await
        .unwrap();
    let slowest = assert_outage_answers(&app.address, &token, "closed-db", &assignment).await;
    eprintln!("outage (connections refused): slowest 503 in {slowest:?}");
    sqlx::query(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"))
        .execute(&mut admin)
        .await
        .unwrap();
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(app.next(&token).await["assignment_id"], assignment.as_str());
}

#[tokio::test]
async fn a_nul_byte_in_a_request_is_a_400_that_names_it_and_stores_nothing() {
    let app = TestApp::spawn().await;
    app.ready_study("nul", 5, 0.0, 2, &["a", "b"]).await;
    let start = app
        .post_form("/s/nul/start", &[("PROLIFIC_PID", "P-NUL")])
        .await;
    assert_eq!(start.status().as_u16(), 303);
    let (_, page) = app.page("/s/nul/vote").await;
    let assignment = hidden(&page, "assignment_id").expect("a comparison");
    let vote = [("assignment_id", assignment.as_str()), ("choice", "left")];
    // This request used to store the vote and then fail with a 500.
    let resp = app.post_form("/s/%00/vote", &vote).await;
    assert_eq!(resp.status().as_u16(), 400);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("path segment") && body.contains("NUL"),
        "{body}"
    );
    assert_eq!(app.count("SELECT count(*) FROM votes").await, 0);
    // The same vote at the study's own address is stored: the refusal was the NUL's.
    assert_eq!(
        app.post_form("/s/nul/vote", &vote).await.status().as_u16(),
        303
    );
    assert_eq!(app.count("SELECT count(*) FROM votes").await, 1);

    let token = app.join("nul", "P-API").await;
    let next = app.next(&token).await;
    let id = next["assignment_id"].as_str().unwrap();
    let c = &app.client;
    let cases: Vec<(&str, reqwest::RequestBuilder, &str)> = vec![
        (
            "page path",
            c.get(app.url("/s/nul%00")),
            "path segment 'slug'",
        ),
        (
            "page query",
            c.get(app.url("/s/nul?PROLIFIC_PID=a%00b")),
            "query parameter 'PROLIFIC_PID'",
        ),
        (
            "page form",
            c.post(app.url("/s/nul/start"))
                .form(&[("PROLIFIC_PID", "a\0b")]),
            "form field 'PROLIFIC_PID'",
        ),
        (
            "API path",
            c.post(app.url("/api/v1/studies/%00/participants")),
            "path segment 'slug'",
        ),
        (
            "API JSON",
            c.post(app.url(&format!("/api/v1/assignments/{id}/vote")))
                .bearer_auth(&token)
                .json(&serde_json::json!({ "choice": "left\u{0}" })),
            "JSON field 'choice'",
        ),
        (
            "API external id",
            c.post(app.url("/api/v1/studies/nul/participants"))
                .json(&serde_json::json!({ "external": { "PROLIFIC_PID": "x\u{0}" } })),
            "PROLIFIC_PID",
        ),
        (
            "admin login form",
            c.post(app.url("/admin/login")).form(&[
                ("email", "a\0@example.org"),
                ("password", "x"),
                ("csrf", "x"),
            ]),
            "form field 'email'",
        ),
    ];
    for (name, request, place) in cases {
        let resp = request.send().await.unwrap();
        let status = resp.status().as_u16();
        let api = resp.url().path().starts_with("/api/");
        // Pages escape quotes as HTML does.
        let body = resp.text().await.unwrap().replace("&#39;", "'");
        assert!((400..500).contains(&status), "{name}: {status} {body}");
        assert!(body.contains(place), "{name}: {body}");
        if api {
            let json: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(json["error"], "invalid_input", "{name}");
        }
    }
    // Logged in, the researcher's forms refuse it too, before anything is stored.
    app.login(&app.client).await;
    let (_, page) = app.page("/admin/studies/nul/prompts").await;
    let csrf = csrf_of(&page);
    let prompts_before = app.count("SELECT count(*) FROM prompts").await;
    let resp = app
        .post_form(
            "/admin/studies/nul/prompts",
            &[
                ("csrf", csrf.as_str()),
                ("format", "text"),
                ("content", "fine\nbad\0one\n"),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 400);
    let body = resp.text().await.unwrap().replace("&#39;", "'");
    assert!(body.contains("form field 'content'"), "{body}");
    let resp = app
        .post_form(
            "/admin/studies/new",
            &[("csrf", csrf.as_str()), ("slug", "nul2"), ("title", "T\0")],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(
        app.count("SELECT count(*) FROM prompts").await,
        prompts_before
    );
    assert_eq!(app.count("SELECT count(*) FROM studies").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM participants").await, 2);
    assert_eq!(app.count("SELECT count(*) FROM votes").await, 1);
}

/// Every file under `dir`, recursively.
fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        files_in(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn append_line(dir: &std::path::Path, line: &str) {
    let path = dir.join("manifest.jsonl");
    let text = std::fs::read_to_string(&path).unwrap() + line + "\n";
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn a_failed_image_import_leaves_the_store_as_it_was() {
    let app = TestApp::spawn().await;
    let study = app.create_study("store", 3, 0.0).await;
    let store_root = app.store.path("");
    let dir = app.data_dir.path().join("bad");
    write_manifest_dir(&dir, 2, &["a", "b"]);
    append_line(&dir, r#"{"file":"missing.png","model":"a","prompt":"p"}"#);
    let err = import_dir(&app.db, &study, &dir, &app.store)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("line 5"), "{err}");
    assert_eq!(
        files_in(&store_root),
        0,
        "the failed import left files behind"
    );

    let good = app.data_dir.path().join("good");
    write_manifest_dir(&good, 2, &["a", "b"]);
    import_dir(&app.db, &study, &good, &app.store)
        .await
        .unwrap();
    let stored = files_in(&store_root);
    assert_eq!(stored, 8, "4 images and their broken versions");

    // A new model whose image of prompt 0 is smaller than those already in the study: the
    // database refuses the pair, and the files this import had added are removed again.
    let small = app.data_dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let png = arenaxl::study::images::encode_png(&image::RgbImage::from_pixel(
        16,
        16,
        image::Rgb([200, 10, 10]),
    ))
    .unwrap();
    std::fs::write(small.join("c.png"), png).unwrap();
    std::fs::write(
        small.join("manifest.jsonl"),
        r#"{"file":"c.png","model":"c","prompt":"test prompt number 0","seed":42}"#,
    )
    .unwrap();
    let err = import_dir(&app.db, &study, &small, &app.store)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("manifest.jsonl line 1")
            && err.contains("already in the study")
            && err.contains("16×16")
            && err.contains("32×32"),
        "{err}"
    );
    assert_eq!(files_in(&store_root), stored);
    assert_eq!(app.count("SELECT count(*) FROM images").await, 4);
}

/// Peak resident memory of this process (the test and the server it runs), in MiB.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[tokio::test]
async fn image_import_refuses_images_above_the_pixel_limit_from_the_admin_form() {
    let app = TestApp::spawn().await;
    let study = app.create_study("huge", 3, 0.0).await;
    let dir = app.data_dir.path().join("huge");
    write_manifest_dir(&dir, 1, &["a", "b"]);
    // A valid 1-bit greyscale PNG of 20000×20000 pixels in 48,685 bytes (one IDAT of
    // zlib-compressed zero rows): decoded whole as RGB it would need 1.2 GB.
    let bomb = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bomb-20000x20000.png");
    std::fs::copy(bomb, dir.join("bomb.png")).unwrap();
    append_line(
        &dir,
        r#"{"file":"bomb.png","model":"c","prompt":"test prompt number 0","seed":42}"#,
    );
    app.login(&app.client).await;
    let (_, page) = app.page("/admin/studies/huge/images").await;
    let csrf = csrf_of(&page);
    let started = Instant::now();
    let resp = app
        .post_form(
            "/admin/studies/huge/images",
            &[("csrf", csrf.as_str()), ("dir", dir.to_str().unwrap())],
        )
        .await;
    let elapsed = started.elapsed();
    eprintln!(
        "48 KB 20000x20000 PNG refused in {elapsed:?}; peak RSS of the test process {} MiB",
        peak_rss_mib().unwrap_or(0)
    );
    assert_eq!(resp.status().as_u16(), 422);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("line 3") && body.contains("20000×20000"),
        "{body}"
    );
    assert_eq!(files_in(&app.store.path("")), 0);
    // The limit is the import's parameter: 32×32 images pass a limit of 1024 pixels, not 1023.
    std::fs::remove_file(dir.join("bomb.png")).unwrap();
    write_manifest_dir(&dir, 1, &["a", "b"]);
    let err = import_dir_limited(&app.db, &study, &dir, &app.store, 1023)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 1") && err.contains("32×32"), "{err}");
    let count = import_dir_limited(&app.db, &study, &dir, &app.store, 1024)
        .await
        .unwrap();
    assert_eq!(count.images_added, 2);
}
