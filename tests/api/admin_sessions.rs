//! Server-side admin sessions: a copied cookie stops working after logout, `admin passwd`,
//! `admin delete`, the idle timeout and the absolute expiry; a forged cookie naming an
//! admin (or no session) never opens the admin area.

use std::process::Command;

use actix_web::cookie::{Cookie, CookieJar, Key};
use reqwest::header::{COOKIE, SET_COOKIE};

use crate::common::{csrf_of, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};

/// A browser whose one cookie (`axl_admin`) is visible, so a test can copy it.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    pub cookie: String,
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: app.address.clone(),
            cookie: String::new(),
        }
    }

    fn keep_cookie(&mut self, resp: &reqwest::Response) {
        for value in resp.headers().get_all(SET_COOKIE) {
            let text = value.to_str().unwrap_or_default();
            if let Some(pair) = text
                .split(';')
                .next()
                .filter(|p| p.starts_with("axl_admin="))
            {
                self.cookie = pair.to_string();
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .expect("get");
        self.keep_cookie(&resp);
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> u16 {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .form(form)
            .send()
            .await
            .expect("post");
        self.keep_cookie(&resp);
        resp.status().as_u16()
    }

    pub async fn login(&mut self, email: &str, password: &str) -> u16 {
        let (_, page) = self.get("/admin/login").await;
        let csrf = csrf_of(&page);
        self.post(
            "/admin/login",
            &[("email", email), ("password", password), ("csrf", &csrf)],
        )
        .await
    }
}

/// Status and `Location` of a GET sent with exactly `cookie`.
async fn with_cookie(app: &TestApp, path: &str, cookie: &str) -> (u16, String) {
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(app.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("get");
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (resp.status().as_u16(), location)
}

async fn assert_refused(app: &TestApp, cookie: &str, why: &str) {
    for path in ["/admin", "/admin/studies/s1/votes.csv"] {
        let (status, location) = with_cookie(app, path, cookie).await;
        assert_eq!(
            (status, location.as_str()),
            (303, "/admin/login"),
            "{why}: {path}"
        );
    }
}

async fn logged_in(app: &TestApp) -> Browser {
    let mut b = Browser::new(app);
    assert_eq!(b.login(ADMIN_EMAIL, ADMIN_PASSWORD).await, 303);
    let (status, _) = b.get("/admin").await;
    assert_eq!(status, 200);
    b
}

/// Runs `arenaxl admin ARGS` against the app's database.
fn run_admin_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let data = tempfile::tempdir().expect("dir");
    Command::new(env!("CARGO_BIN_EXE_arenaxl"))
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(data.path())
        .env("DATABASE_URL", app.database_url())
        .output()
        .expect("run arenaxl")
}

/// `arenaxl admin ARGS`, which must succeed: its stdout.
fn admin_cli(app: &TestApp, args: &[&str]) -> String {
    let out = run_admin_cli(app, args);
    assert!(
        out.status.success(),
        "arenaxl admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn a_copied_cookie_is_refused_after_logout() {
    let app = TestApp::spawn().await;
    app.create_study("s1", 3, 0.0).await;
    let mut b = logged_in(&app).await;
    let (_, page) = b.get("/admin").await;
    let copy = b.cookie.clone();
    assert_eq!(
        with_cookie(&app, "/admin", &copy).await.0,
        200,
        "the copy works"
    );
    assert_eq!(
        b.post("/admin/logout", &[("csrf", &csrf_of(&page))]).await,
        303
    );
    assert_refused(&app, &copy, "after logout").await;
    assert_eq!(
        app.count("SELECT count(*) FROM admin_sessions WHERE revoked_at IS NOT NULL")
            .await,
        1
    );
}

#[tokio::test]
async fn admin_passwd_and_delete_end_every_session() {
    let app = TestApp::spawn().await;
    app.create_study("s1", 3, 0.0).await;
    let first = logged_in(&app).await;
    let second = logged_in(&app).await;
    let listed = admin_cli(&app, &["list"]);
    assert!(listed.contains(ADMIN_EMAIL), "{listed}");
    let row = listed
        .lines()
        .find(|l| l.starts_with(ADMIN_EMAIL))
        .expect("row");
    assert_eq!(
        row.split_whitespace().nth(3),
        Some("2"),
        "two live sessions: {row}"
    );

    let out = admin_cli(
        &app,
        &[
            "passwd",
            "--email",
            ADMIN_EMAIL,
            "--password",
            "a new passphrase",
        ],
    );
    assert!(out.contains("2 session(s) ended"), "{out}");
    assert_refused(&app, &first.cookie, "after admin passwd").await;
    assert_refused(&app, &second.cookie, "after admin passwd").await;
    assert_eq!(
        Browser::new(&app).login(ADMIN_EMAIL, ADMIN_PASSWORD).await,
        401
    );
    let mut third = Browser::new(&app);
    assert_eq!(third.login(ADMIN_EMAIL, "a new passphrase").await, 303);
    assert_eq!(third.get("/admin").await.0, 200);

    admin_cli(&app, &["delete", "--email", ADMIN_EMAIL]);
    assert_refused(&app, &third.cookie, "after admin delete").await;
    assert_eq!(
        Browser::new(&app)
            .login(ADMIN_EMAIL, "a new passphrase")
            .await,
        401
    );
    assert_eq!(app.count("SELECT count(*) FROM admin_sessions").await, 0);
    let unknown = run_admin_cli(&app, &["delete", "--email", "nobody@example.org"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nobody@example.org"));
}

/// A cookie signed with the server's own key (as someone who stole `secret.key` once could
/// make) still opens nothing without a live session row.
#[tokio::test]
async fn forged_cookies_naming_an_admin_or_no_session_are_refused() {
    let app = TestApp::spawn().await;
    app.create_study("s1", 3, 0.0).await;
    let secret = std::fs::read_to_string(app.data_dir.path().join("secret.key")).expect("key");
    let key = Key::from(&hex::decode(secret.trim()).expect("hex"));
    let admin_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM admins")
        .fetch_one(&app.db.pool)
        .await
        .expect("admin");
    let sign = |state: serde_json::Value| {
        let mut jar = CookieJar::new();
        jar.signed_mut(&key)
            .add(Cookie::new("axl_admin", state.to_string()));
        format!(
            "axl_admin={}",
            jar.get("axl_admin").expect("cookie").value()
        )
    };
    let quoted = |s: String| serde_json::to_string(&s).expect("json");
    for (why, state) in [
        (
            "the old cookie format naming the real admin",
            serde_json::json!({ "admin_id": quoted(admin_id.to_string()) }),
        ),
        (
            "a random admin id",
            serde_json::json!({ "admin_id": quoted(uuid::Uuid::new_v4().to_string()) }),
        ),
        (
            "a session id that was never issued",
            serde_json::json!({ "sid": quoted("made-up-session".into()) }),
        ),
    ] {
        assert_refused(&app, &sign(state), why).await;
    }
    // The control: the same signing with a session id that has a live row is let in, so
    // the refusals above are the server's checks, not a cookie it could not read.
    use sha2::Digest;
    sqlx::query(
        "INSERT INTO admin_sessions (id_hash, admin_id, expires_at) \
         VALUES ($1, $2, now() + interval '1 hour')",
    )
    .bind(sha2::Sha256::digest(b"known-session").to_vec())
    .bind(admin_id)
    .execute(&app.db.pool)
    .await
    .expect("session row");
    let live = sign(serde_json::json!({ "sid": quoted("known-session".into()) }));
    assert_eq!(with_cookie(&app, "/admin", &live).await.0, 200);
}

#[tokio::test]
async fn sessions_end_after_the_idle_timeout_and_the_absolute_expiry() {
    let app = TestApp::spawn_configured(|s| s.session_idle_secs = 1).await;
    app.create_study("s1", 3, 0.0).await;
    let b = logged_in(&app).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_refused(&app, &b.cookie, "idle for longer than session_idle_secs").await;

    let app = TestApp::spawn().await;
    app.create_study("s1", 3, 0.0).await;
    let b = logged_in(&app).await;
    sqlx::query("UPDATE admin_sessions SET expires_at = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .expect("expire");
    assert_refused(&app, &b.cookie, "past the absolute expiry").await;
    let b = logged_in(&app).await;
    sqlx::query(
        "UPDATE admin_sessions SET last_seen_at = now() - interval '13 hours' \
         WHERE revoked_at IS NULL AND expires_at > now()",
    )
    .execute(&app.db.pool)
    .await
    .expect("idle");
    assert_refused(&app, &b.cookie, "idle for 13 h (default 12 h)").await;
}

/// One guard stands in front of the whole admin area: any `/admin` path, routed or not, GET
/// or POST, sends a visitor without a live session to the login page before a handler or
/// the router's 404 can say anything; logged in, an unknown admin path is a plain 404.
#[tokio::test]
async fn every_admin_path_is_guarded_before_routing() {
    let app = TestApp::spawn().await;
    for path in [
        "/admin",
        "/admin/no-such-page",
        "/admin/studies/none/report.json",
        "/admin/images/00000000-0000-0000-0000-000000000000",
    ] {
        let (status, location) = with_cookie(&app, path, "").await;
        assert_eq!((status, location.as_str()), (303, "/admin/login"), "{path}");
    }
    let mut anonymous = Browser::new(&app);
    assert_eq!(anonymous.post("/admin/jobs/x/cancel", &[]).await, 303);
    assert_eq!(
        anonymous.get("/admin/login").await.0,
        200,
        "the login page is open"
    );
    let mut b = logged_in(&app).await;
    assert_eq!(b.get("/admin/no-such-page").await.0, 404);
}
