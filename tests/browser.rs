//! End-to-end browser test: headless Chromium, driven over WebDriver by chromedriver, takes
//! a study as a Prolific participant using only the keyboard, reaches the completion page,
//! and the database then holds exactly the votes pressed, for the images that were shown.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`apt-get install -y chromium
//! chromium-driver`); `CHROMIUM` and `CHROMEDRIVER` override the binaries' paths.
//!
//! The WebDriver protocol (W3C) is spoken directly with `reqwest`: fantoccini 0.22 without
//! its TLS features can only be built from a `hyper_util` connector, which this crate does
//! not depend on.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use common::TestApp;

const INSTALL_HINT: &str = "run `apt-get install -y chromium chromium-driver` (CI installs them)";
/// The W3C WebDriver key codes of the arrow keys.
const KEY_LEFT: &str = "\u{E012}";
const KEY_RIGHT: &str = "\u{E014}";
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn binary(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.is_file(),
        "{} not found: the browser test needs Chromium and chromedriver; {INSTALL_HINT}",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A chromedriver process of this test. Dropping it ends the browser session (if one is
/// still open) and then kills chromedriver, also when the test has failed.
struct ChromeDriver {
    child: Child,
    port: u16,
    session: Option<String>,
}

impl ChromeDriver {
    fn start(chromedriver: &Path, log: &Path) -> ChromeDriver {
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; {INSTALL_HINT}",
                    chromedriver.display()
                )
            });
        ChromeDriver {
            child,
            port,
            session: None,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("chromedriver status") {
                panic!("chromedriver exited early ({status}); {INSTALL_HINT}");
            }
            if let Ok(resp) = http.get(format!("{}/status", self.url())).send().await {
                if let Ok(body) = resp.json::<Value>().await {
                    if body["value"]["ready"] == json!(true) {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            // Blocking on purpose: the runtime may be going away. Chromedriver quits the browser.
            let _ = delete_session_blocking(self.port, &session);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn delete_session_blocking(port: u16, session: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    Ok(())
}

/// A minimal W3C WebDriver client: just the commands this test uses.
struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    async fn new_session(
        driver: &mut ChromeDriver,
        http: reqwest::Client,
        chromium: &Path,
        profile: &Path,
    ) -> Browser {
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "goog:chromeOptions": {
                        "binary": chromium.display().to_string(),
                        "args": [
                            "--headless",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--no-first-run",
                            "--window-size=1200,900",
                            format!("--user-data-dir={}", profile.display()),
                        ]
                    }
                }
            }
        });
        let resp = http
            .post(format!("{}/session", driver.url()))
            .json(&caps)
            .send()
            .await
            .expect("new WebDriver session request");
        let body: Value = resp.json().await.expect("new session reply is JSON");
        let session = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| {
                panic!("chromedriver could not start Chromium ({body}); {INSTALL_HINT}")
            })
            .to_string();
        driver.session = Some(session.clone());
        Browser {
            http,
            base: format!("{}/session/{session}", driver.url()),
        }
    }

    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        } else if method == reqwest::Method::POST {
            req = req.json(&json!({}));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if !status.is_success() || body["value"].get("error").is_some() {
            return Err(format!("{method} {path}: {status} {}", body["value"]));
        }
        Ok(body["value"].clone())
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body))
            .await
            .unwrap_or_else(|e| panic!("WebDriver command failed: {e}"))
    }

    async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    async fn find(&self, css: &str) -> String {
        let element = self
            .post("/element", json!({ "using": "css selector", "value": css }))
            .await;
        element[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("element reference for {css}: {element}"))
            .to_string()
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/click"), json!({}))
            .await;
    }

    /// Runs a script in the page; errors (e.g. while the page is navigating) are returned.
    async fn script(&self, script: &str) -> Result<Value, String> {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    async fn script_async(&self, script: &str) -> Value {
        self.post("/execute/async", json!({ "script": script, "args": [] }))
            .await
    }

    /// Presses and releases one key as a real keyboard event (W3C actions), delivered to the
    /// page's focused element, i.e. the body.
    async fn press(&self, key: &str) {
        self.post(
            "/actions",
            json!({ "actions": [{
                "type": "key",
                "id": "keyboard",
                "actions": [{ "type": "keyDown", "value": key }, { "type": "keyUp", "value": key }]
            }]}),
        )
        .await;
    }

    async fn screenshot(&self) -> Vec<u8> {
        let data = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await
            .unwrap_or_else(|e| panic!("screenshot failed: {e}"));
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64 screenshot"))
            .expect("screenshot is base64")
    }

    async fn quit(self, driver: &mut ChromeDriver) {
        let _ = self.command(reqwest::Method::DELETE, "", None).await;
        driver.session = None;
    }
}

/// What the test reads from a page: the comparison, the completion page, or neither.
const SNAPSHOT: &str = r#"
const q = (s) => document.querySelector(s);
const text = (s) => (q(s) ? q(s).textContent.trim() : null);
const img = (s) => q(s) ? { src: q(s).src, complete: q(s).complete, width: q(s).naturalWidth } : null;
const aid = q('#vote-form input[name="assignment_id"]');
const refresh = q('meta[http-equiv="refresh"]');
const link = q('#completion-link');
return {
  url: location.href,
  ready: document.readyState,
  assignment: aid ? aid.value : null,
  progress: text('#progress'),
  prompt: text('#prompt'),
  left: img('#left-image'),
  right: img('#right-image'),
  code: text('#completion-code'),
  start: !!q('#start'),
  link: link ? link.getAttribute('href') : null,
  refresh: refresh ? refresh.getAttribute('content') : null,
  body: document.body ? document.body.innerText.slice(0, 500) : null,
};
"#;

/// The sha256 of both images' bytes as the browser fetches them.
const IMAGE_HASHES: &str = r#"
const done = arguments[arguments.length - 1];
const hash = async (src) => {
  const resp = await fetch(src, { cache: 'force-cache' });
  if (!resp.ok) throw new Error(src + ': ' + resp.status);
  const digest = await crypto.subtle.digest('SHA-256', await resp.arrayBuffer());
  return Array.from(new Uint8Array(digest)).map((b) => b.toString(16).padStart(2, '0')).join('');
};
Promise.all([hash(document.getElementById('left-image').src), hash(document.getElementById('right-image').src)])
  .then(([left, right]) => done({ left, right }), (e) => done({ error: String(e) }));
"#;

/// Polls the page until `accept` takes a snapshot of a fully loaded document.
async fn wait_for(browser: &Browser, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = Value::Null;
    loop {
        if let Ok(snap) = browser.script(SNAPSHOT).await {
            if snap["ready"] == "complete" && accept(&snap) {
                return snap;
            }
            last = snap;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last page: {last}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn is_comparison(snap: &Value) -> bool {
    snap["assignment"].is_string()
}

fn is_completion(snap: &Value) -> bool {
    snap["code"].is_string()
}

/// One comparison page as the participant saw and answered it.
#[derive(Debug)]
struct Shown {
    assignment: Uuid,
    choice: &'static str,
    left_sha: String,
    right_sha: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prolific_participant_votes_with_the_keyboard_and_the_votes_are_stored() {
    let chromium = binary("CHROMIUM", "/usr/bin/chromium");
    let chromedriver = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
    let scratch = tempfile::tempdir().expect("temp dir");
    let profile = scratch.path().join("profile");
    std::fs::create_dir_all(&profile).expect("profile dir");

    // 8 votes: every key at least once; gold checks (a quarter) may show a broken image.
    const VOTES: usize = 8;
    let keys: [(&str, &str); VOTES] = [
        (KEY_LEFT, "left"),
        (KEY_RIGHT, "right"),
        ("1", "left"),
        ("2", "right"),
        ("3", "tie"),
        ("4", "both_bad"),
        (KEY_RIGHT, "right"),
        (KEY_LEFT, "left"),
    ];
    let app = TestApp::spawn().await;
    app.ready_study(
        "browser",
        VOTES as i32,
        0.25,
        4,
        &["alpha", "beta", "gamma"],
    )
    .await;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let mut driver = ChromeDriver::start(&chromedriver, &scratch.path().join("chromedriver.log"));
    driver.wait_ready(&http).await;
    let browser = Browser::new_session(&mut driver, http.clone(), &chromium, &profile).await;

    let pid = format!("pid{}", Uuid::new_v4().simple());
    browser
        .goto(&app.url(&format!(
            "/s/browser?PROLIFIC_PID={pid}&STUDY_ID=study-b&SESSION_ID=session-b"
        )))
        .await;
    wait_for(&browser, "the instructions page", |s| s["start"] == true).await;
    browser.click("#start").await;

    let mut shown: Vec<Shown> = Vec::new();
    let mut previous: Option<String> = None;
    for (i, (key, choice)) in keys.iter().enumerate() {
        let snap = wait_for(&browser, &format!("comparison {}", i + 1), |s| {
            let intro = i == 0 && s["start"] == true;
            assert!(
                is_comparison(s) || intro || s["ready"] != "complete",
                "expected comparison {} of {VOTES}, got: {s}",
                i + 1
            );
            s["assignment"].as_str() != previous.as_deref()
                && s["left"]["complete"] == true
                && s["right"]["complete"] == true
        })
        .await;
        let assignment = snap["assignment"]
            .as_str()
            .expect("assignment id")
            .to_string();
        assert_eq!(
            snap["progress"],
            format!("{} / {VOTES}", i + 1),
            "progress: {snap}"
        );
        assert!(
            snap["prompt"]
                .as_str()
                .is_some_and(|p| p.contains("test prompt number")),
            "prompt: {snap}"
        );
        for side in ["left", "right"] {
            assert_eq!(
                snap[side]["width"], 32,
                "the {side} image did not render: {snap}"
            );
        }
        let left_src = snap["left"]["src"].as_str().expect("left src").to_string();
        let right_src = snap["right"]["src"]
            .as_str()
            .expect("right src")
            .to_string();
        assert_eq!(left_src, app.url(&format!("/img/{assignment}/left")));
        assert_eq!(right_src, app.url(&format!("/img/{assignment}/right")));

        // The bytes the browser got, hashed in the page, and the same URL fetched again.
        let hashes = browser.script_async(IMAGE_HASHES).await;
        assert!(
            hashes["error"].is_null(),
            "hashing images in the page failed: {hashes}"
        );
        let left_sha = hashes["left"].as_str().expect("left hash").to_string();
        let right_sha = hashes["right"].as_str().expect("right hash").to_string();
        for (src, sha) in [(&left_src, &left_sha), (&right_src, &right_sha)] {
            let bytes = http
                .get(src)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .expect("fetch image")
                .bytes()
                .await
                .expect("image bytes");
            assert_eq!(&sha256_hex(&bytes), sha, "{src} served different bytes");
            assert!(
                bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
                "{src} is not a PNG"
            );
        }

        if i == 0 {
            let png = browser.screenshot().await;
            let path = scratch.path().join("comparison.png");
            std::fs::write(&path, &png).expect("write screenshot");
            assert!(
                png.len() > 1000 && png.starts_with(b"\x89PNG\r\n\x1a\n"),
                "the screenshot is not a PNG ({} bytes)",
                png.len()
            );
        }

        browser.press(key).await;
        shown.push(Shown {
            assignment: Uuid::parse_str(&assignment).expect("assignment id is a UUID"),
            choice,
            left_sha,
            right_sha,
        });
        previous = Some(assignment);
    }

    // The completion page, read before its 3-second refresh to Prolific fires.
    let done = wait_for(&browser, "the completion page", |s| {
        assert!(
            s["assignment"].as_str() == previous.as_deref()
                || s["ready"] != "complete"
                || is_completion(s),
            "expected the completion page after {VOTES} votes, got: {s}"
        );
        is_completion(s)
    })
    .await;
    let prolific = "https://app.prolific.com/submissions/complete?cc=CODE-123";
    assert_eq!(done["code"], "CODE-123", "{done}");
    assert_eq!(done["url"], app.url("/s/browser/done"), "{done}");
    assert_eq!(done["link"], prolific, "{done}");
    assert_eq!(done["refresh"], format!("3;url={prolific}"), "{done}");
    // Stay away from the (unreachable) Prolific site.
    browser.goto("about:blank").await;
    browser.quit(&mut driver).await;
    drop(driver);

    // The database holds exactly these votes, for the images shown on each side.
    let participants: Vec<(Uuid, Option<String>, Option<String>, i32)> = sqlx::query_as(
        "SELECT id, prolific_study_id, prolific_session_id, votes_done FROM participants WHERE prolific_pid = $1",
    )
    .bind(&pid)
    .fetch_all(&app.db.pool)
    .await
    .expect("participants query");
    assert_eq!(
        participants.len(),
        1,
        "one participant for {pid}: {participants:?}"
    );
    let (participant, study_id, session_id, votes_done) = participants[0].clone();
    assert_eq!(study_id.as_deref(), Some("study-b"));
    assert_eq!(session_id.as_deref(), Some("session-b"));
    assert_eq!(votes_done, VOTES as i32);

    type Row = (
        Uuid,
        Option<String>,
        bool,
        Option<String>,
        String,
        String,
        String,
        String,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.id, v.choice, a.gold, a.gold_broken_side, \
           CASE WHEN a.gold AND a.gold_broken_side = 'left' THEN li.broken_sha256 ELSE li.sha256 END, \
           CASE WHEN a.gold AND a.gold_broken_side = 'left' THEN li.broken_file ELSE li.file END, \
           CASE WHEN a.gold AND a.gold_broken_side = 'right' THEN ri.broken_sha256 ELSE ri.sha256 END, \
           CASE WHEN a.gold AND a.gold_broken_side = 'right' THEN ri.broken_file ELSE ri.file END \
         FROM assignments a \
         LEFT JOIN votes v ON v.assignment_id = a.id \
         JOIN images li ON li.id = a.left_image JOIN images ri ON ri.id = a.right_image \
         WHERE a.participant_id = $1 ORDER BY a.issued_at, a.id",
    )
    .bind(participant)
    .fetch_all(&app.db.pool)
    .await
    .expect("assignments query");
    assert_eq!(
        rows.len(),
        VOTES,
        "assignments of the participant: {rows:?}"
    );
    let votes = app
        .count(&format!(
            "SELECT count(*) FROM votes v JOIN assignments a ON a.id = v.assignment_id \
             WHERE a.participant_id = '{participant}'"
        ))
        .await;
    assert_eq!(votes, VOTES as i64);

    for page in &shown {
        let (_, choice, gold, broken_side, left_sha, left_file, right_sha, right_file) = rows
            .iter()
            .find(|r| r.0 == page.assignment)
            .unwrap_or_else(|| panic!("assignment {} shown but not stored", page.assignment))
            .clone();
        assert_eq!(choice.as_deref(), Some(page.choice), "the vote on {page:?}");
        assert_eq!(
            left_sha, page.left_sha,
            "left image of {page:?} (gold: {gold}, broken: {broken_side:?})"
        );
        assert_eq!(
            right_sha, page.right_sha,
            "right image of {page:?} (gold: {gold}, broken: {broken_side:?})"
        );
        for (file, sha) in [(&left_file, &left_sha), (&right_file, &right_sha)] {
            let stored = std::fs::read(app.store.path(file)).expect("stored image file");
            assert_eq!(&sha256_hex(&stored), sha, "stored file {file}");
        }
        if gold {
            // A gold check shows one image and its broken version.
            assert_ne!(page.left_sha, page.right_sha, "gold check {page:?}");
        }
    }
    let golds = rows.iter().filter(|r| r.2).count();
    eprintln!("browser test: {VOTES} keyboard votes stored as shown ({golds} gold checks)");
    let mut distinct: Vec<Uuid> = shown.iter().map(|s| s.assignment).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), VOTES, "every page showed a new assignment");
}
