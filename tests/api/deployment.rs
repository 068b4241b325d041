//! Serving on the internet behind a proxy: security headers on every page, HEAD on GET
//! routes, the join endpoint's content type, `/metrics` behind a token or its own address,
//! and rate limits keyed by `X-Forwarded-For` only when a trusted proxy sent it.

use arenaxl::config::{parse_cidr, RateLimits};

use crate::common::{TestApp, METRICS_TOKEN};

#[tokio::test]
async fn every_page_has_a_csp_and_head_works_on_get_routes() {
    let app = TestApp::spawn().await;
    app.ready_study("csp", 3, 0.0, 2, &["a", "b"]).await;
    app.login(&app.client).await;
    for path in [
        "/s/csp?PROLIFIC_PID=p1&STUDY_ID=s&SESSION_ID=x",
        "/admin",
        "/admin/login",
        "/admin/studies/csp",
        "/healthz",
    ] {
        let resp = app.client.get(app.url(path)).send().await.expect("get");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        let csp = resp.headers()["content-security-policy"]
            .to_str()
            .expect("csp");
        let script_src = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src"))
            .expect("script-src");
        assert_eq!(script_src, "script-src 'self'", "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!resp.headers().contains_key("strict-transport-security"));
        let body = resp.text().await.expect("body");
        // No inline script anywhere: every <script> has a src.
        for tag in body.split("<script").skip(1) {
            assert!(
                tag.trim_start().starts_with("src="),
                "{path}: inline script"
            );
        }
        let head = app.client.head(app.url(path)).send().await.expect("head");
        assert_eq!(head.status(), 200, "HEAD {path}");
        assert!(head.bytes().await.expect("body").is_empty(), "HEAD {path}");
    }
    let missing = app
        .client
        .head(app.url("/no/such/page"))
        .send()
        .await
        .expect("head");
    assert_eq!(missing.status(), 404);

    let https = TestApp::spawn_configured(|s| {
        s.cookie_secure = true;
        s.hsts = true;
    })
    .await;
    let resp = https
        .client
        .get(https.url("/healthz"))
        .send()
        .await
        .expect("get");
    assert!(resp.headers()["strict-transport-security"]
        .to_str()
        .expect("hsts")
        .starts_with("max-age="));
}

#[tokio::test]
async fn join_takes_only_json_and_metrics_need_the_token() {
    let app = TestApp::spawn().await;
    app.ready_study("ct", 3, 0.0, 2, &["a", "b"]).await;
    let join = app.url("/api/v1/studies/ct/participants");
    let plain = app
        .client
        .post(&join)
        .header("content-type", "text/plain")
        .body(r#"{"external": {"PROLIFIC_PID": "p1"}}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(plain.status(), 415);
    let form = app
        .client
        .post(&join)
        .form(&[("external", "x")])
        .send()
        .await
        .expect("post");
    assert_eq!(form.status(), 415);
    assert_eq!(app.count("SELECT count(*) FROM participants").await, 0);
    let empty = app.client.post(&join).send().await.expect("post");
    assert_eq!(empty.status(), 201);
    app.join("ct", "p2").await;

    let metrics = app.url("/metrics");
    let none = app.client.get(&metrics).send().await.expect("get");
    assert_eq!(none.status(), 401);
    let wrong = app
        .client
        .get(&metrics)
        .bearer_auth("not-the-metrics-token")
        .send()
        .await
        .expect("get");
    assert_eq!(wrong.status(), 401);
    let right = app
        .client
        .get(&metrics)
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(right.status(), 200);
    assert!(right
        .text()
        .await
        .expect("body")
        .contains("arenaxl_http_requests_total"));

    // Or on a separate (private) address, without a token — and only /metrics there.
    let app = TestApp::spawn_configured(|s| {
        s.metrics_token = None;
        s.metrics_bind = Some("127.0.0.1:0".into());
    })
    .await;
    assert_eq!(
        app.client
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("get")
            .status(),
        401
    );
    let addr = app.metrics_address.clone().expect("a metrics listener");
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    let other = reqwest::get(format!("http://{addr}/admin/login"))
        .await
        .expect("get");
    assert_eq!(other.status(), 404);
}

async fn join_status(app: &TestApp, forwarded_for: &str) -> u16 {
    app.client
        .post(app.url("/api/v1/studies/xff/participants"))
        .header("x-forwarded-for", forwarded_for)
        .json(&serde_json::json!({ "external": { "PROLIFIC_PID": uuid::Uuid::new_v4().to_string() } }))
        .send()
        .await
        .expect("join")
        .status()
        .as_u16()
}

#[tokio::test]
async fn rate_limits_follow_x_forwarded_for_only_from_a_trusted_proxy() {
    let limits = RateLimits {
        participants_per_sec: 0.001,
        participants_burst: 2.0,
        ..RateLimits::unlimited()
    };
    let behind_proxy = TestApp::spawn_configured(|s| {
        s.rate_limits = limits;
        s.trusted_proxies = vec![parse_cidr("127.0.0.1").expect("cidr")];
    })
    .await;
    behind_proxy
        .ready_study("xff", 3, 0.0, 2, &["a", "b"])
        .await;
    // Two participants behind the proxy each get their own bucket.
    for _ in 0..2 {
        assert_eq!(join_status(&behind_proxy, "203.0.113.1").await, 201);
    }
    assert_eq!(join_status(&behind_proxy, "203.0.113.1").await, 429);
    assert_eq!(join_status(&behind_proxy, "203.0.113.2").await, 201);
    // What a client writes in front of the proxy's own entry does not change its bucket.
    assert_eq!(
        join_status(&behind_proxy, "198.51.100.9, 203.0.113.1").await,
        429
    );

    // Without trusted proxies the header is ignored: one address, one bucket.
    let direct = TestApp::spawn_configured(|s| s.rate_limits = limits).await;
    direct.ready_study("xff", 3, 0.0, 2, &["a", "b"]).await;
    assert_eq!(join_status(&direct, "203.0.113.1").await, 201);
    assert_eq!(join_status(&direct, "203.0.113.2").await, 201);
    assert_eq!(join_status(&direct, "203.0.113.3").await, 429);
}
