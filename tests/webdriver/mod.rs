//! A minimal W3C WebDriver client for the end-to-end browser test (`tests/browser.rs`):
//! starts chromedriver, opens a headless Chromium session at a given screen size (a desktop
//! window or Chrome's phone emulation), and sends the few commands the test uses, plus
//! Chrome DevTools commands through chromedriver for what WebDriver cannot express (a key
//! held down until it auto-repeats). `gate` is a local HTTP proxy that can hold images back;
//! `layout` checks by bounding boxes that a comparison page fits the screen; `page` reads
//! the participant pages.
//!
//! The protocol is spoken directly with `reqwest`: fantoccini 0.22 without its TLS features
//! can only be built from a `hyper_util` connector, which this crate does not depend on.

pub mod gate;
pub mod layout;
pub mod page;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

pub const INSTALL_HINT: &str =
    "run `apt-get install -y chromium chromium-driver` (CI installs them)";
/// The W3C WebDriver key codes of the arrow keys.
pub const KEY_LEFT: &str = "\u{E012}";
pub const KEY_RIGHT: &str = "\u{E014}";
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub fn binary(env: &str, default: &str) -> PathBuf {
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

/// A chromedriver process of this test. Dropping it ends the browser session (if one is
/// still open) and then kills chromedriver, also when the test has failed.
pub struct ChromeDriver {
    child: Child,
    port: u16,
    session: Option<String>,
}

impl ChromeDriver {
    pub fn start(chromedriver: &Path, log: &Path) -> ChromeDriver {
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

    pub async fn wait_ready(&mut self, http: &reqwest::Client) {
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

/// The viewport of a session: a desktop browser window, or a phone (Chrome's emulation).
#[derive(Debug, Clone, Copy)]
pub struct Screen {
    pub width: u32,
    pub height: u32,
    pub phone: bool,
}

impl Screen {
    pub fn name(&self) -> String {
        format!("{}x{}", self.width, self.height)
    }
}

/// A key for DevTools key events: its `KeyboardEvent.key`, `code` and Windows key code.
pub struct Key {
    pub key: &'static str,
    pub code: &'static str,
    pub key_code: u32,
}

pub const ARROW_RIGHT: Key = Key {
    key: "ArrowRight",
    code: "ArrowRight",
    key_code: 39,
};

/// A minimal W3C WebDriver client: just the commands this test uses.
pub struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    /// A new session whose page has the viewport `screen` describes.
    pub async fn new_session(
        driver: &mut ChromeDriver,
        http: reqwest::Client,
        chromium: &Path,
        profile: &Path,
        screen: Screen,
    ) -> Browser {
        let mut options = json!({
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
                "--hide-scrollbars",
                format!("--window-size={},{}", screen.width, screen.height),
                format!("--user-data-dir={}", profile.display()),
            ]
        });
        if screen.phone {
            // Chrome's own phone emulation: touch, a coarse pointer, a 3x screen, and the
            // page laid out at `width=device-width` like on the phone.
            options["mobileEmulation"] = json!({
                "deviceMetrics": { "width": screen.width, "height": screen.height, "pixelRatio": 3.0, "touch": true },
                "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
            });
        }
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    // Commands wait for DOMContentLoaded only, not for the images: the test
                    // holds images back and acts on the page while they are missing.
                    "pageLoadStrategy": "eager",
                    "goog:chromeOptions": options,
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
        let browser = Browser {
            http,
            base: format!("{}/session/{session}", driver.url()),
        };
        if !screen.phone {
            browser.resize(screen).await;
        }
        browser
    }

    /// Gives the page the viewport of `screen`: a desktop window is resized so that its
    /// viewport (not the window) has that size, as a laptop's browser window whose page area
    /// is e.g. 1366x657; an emulated phone is turned to that size and orientation.
    pub async fn resize(&self, screen: Screen) {
        if screen.phone {
            let landscape = screen.width > screen.height;
            self.cdp(
                "Emulation.setDeviceMetricsOverride",
                json!({
                    "width": screen.width, "height": screen.height, "deviceScaleFactor": 3.0,
                    "mobile": true,
                    "screenOrientation": if landscape {
                        json!({ "type": "landscapePrimary", "angle": 90 })
                    } else {
                        json!({ "type": "portraitPrimary", "angle": 0 })
                    },
                }),
            )
            .await;
            return;
        }
        let inner = self
            .script("return [window.innerWidth, window.innerHeight, window.outerWidth, window.outerHeight];")
            .await
            .unwrap_or_else(|e| panic!("window size: {e}"));
        let size = |i: usize| {
            inner[i]
                .as_i64()
                .unwrap_or_else(|| panic!("window size {inner}"))
        };
        let width = i64::from(screen.width) + size(2) - size(0);
        let height = i64::from(screen.height) + size(3) - size(1);
        self.post("/window/rect", json!({ "width": width, "height": height }))
            .await;
    }

    pub async fn command(
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

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body))
            .await
            .unwrap_or_else(|e| panic!("WebDriver command failed: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn find(&self, css: &str) -> String {
        let element = self
            .post("/element", json!({ "using": "css selector", "value": css }))
            .await;
        element[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("element reference for {css}: {element}"))
            .to_string()
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/click"), json!({}))
            .await;
    }

    /// Runs a script in the page; errors (e.g. while the page is navigating) are returned.
    pub async fn script(&self, script: &str) -> Result<Value, String> {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    pub async fn script_async(&self, script: &str) -> Value {
        self.post("/execute/async", json!({ "script": script, "args": [] }))
            .await
    }

    /// Presses and releases these keys one after the other, as real keyboard events (W3C
    /// actions) in one command, so that they all reach the page it is on now; delivered to
    /// the page's focused element, i.e. the body.
    pub async fn press(&self, keys: &[&str]) {
        let actions: Vec<Value> = keys
            .iter()
            .flat_map(|key| {
                [
                    json!({ "type": "keyDown", "value": key }),
                    json!({ "type": "keyUp", "value": key }),
                ]
            })
            .collect();
        self.post(
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }]}),
        )
        .await;
    }

    pub async fn screenshot(&self) -> Vec<u8> {
        let data = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await
            .unwrap_or_else(|e| panic!("screenshot failed: {e}"));
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64 screenshot"))
            .expect("screenshot is base64")
    }

    /// Sends a Chrome DevTools Protocol command to the page (through chromedriver).
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.post("/goog/cdp/execute", json!({ "cmd": cmd, "params": params }))
            .await
    }

    /// A keydown as the keyboard sends it; `repeat` marks the auto-repeat of a held key.
    pub async fn key_down(&self, key: &Key, repeat: bool) {
        self.cdp(
            "Input.dispatchKeyEvent",
            json!({ "type": "rawKeyDown", "key": key.key, "code": key.code,
                    "windowsVirtualKeyCode": key.key_code, "autoRepeat": repeat }),
        )
        .await;
    }

    pub async fn key_up(&self, key: &Key) {
        self.cdp(
            "Input.dispatchKeyEvent",
            json!({ "type": "keyUp", "key": key.key, "code": key.code,
                    "windowsVirtualKeyCode": key.key_code }),
        )
        .await;
    }

    /// A one-finger tap at a point of the viewport (CSS pixels).
    pub async fn touch(&self, x: f64, y: f64) {
        let point = json!({ "x": x, "y": y });
        for (kind, points) in [("touchStart", json!([point])), ("touchEnd", json!([]))] {
            self.cdp(
                "Input.dispatchTouchEvent",
                json!({ "type": kind, "touchPoints": points }),
            )
            .await;
        }
    }

    pub async fn quit(self, driver: &mut ChromeDriver) {
        let _ = self.command(reqwest::Method::DELETE, "", None).await;
        driver.session = None;
    }
}
