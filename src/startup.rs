//! One `Application::build` used by `serve`, `demo`, the benchmarks and the tests: it binds
//! the listener (port 0 picks a free one) and assembles the actix-web server with the
//! middleware every route gets: the client address from trusted proxies, HEAD as GET, the
//! security headers (CSP, HSTS behind HTTPS), the join endpoint's content type, metrics.

use std::net::{SocketAddr, TcpListener};
use std::time::Instant;

use actix_session::config::CookieContentSecurity;
use actix_session::storage::CookieSessionStore;
use actix_session::SessionMiddleware;
use actix_web::body::BoxBody;
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::{Server, Service, ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::future::LocalBoxFuture;

use crate::config::Settings;
use crate::db::Db;
use crate::web::state::AppState;
use crate::web::{admin, api, errors, participant};

pub struct Application {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    server: Server,
    state: AppState,
}

/// Content-Security-Policy of every response: scripts only from our own static files (no
/// inline script anywhere), no plugins, no framing, forms only to us. Styles may be inline
/// because the report page and its SVG charts carry their own.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
    form-action 'self'";

impl Application {
    pub fn build(settings: Settings, db: Db) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(&settings.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.bind))?;
        let addr = listener.local_addr()?;
        let metrics_listener = match &settings.metrics_bind {
            Some(bind) => Some(
                TcpListener::bind(bind)
                    .map_err(|e| anyhow::anyhow!("cannot listen on {bind} (metrics_bind): {e}"))?,
            ),
            None => None,
        };
        let metrics_addr = match &metrics_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let state = AppState::new(db, settings);
        let server = run(listener, metrics_listener, metrics_addr, state.clone())?;
        Ok(Application {
            addr,
            metrics_addr,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The separate metrics listener, when `metrics_bind` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until the server is stopped (SIGINT/SIGTERM finish in-flight requests first).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

type Boxed = LocalBoxFuture<'static, Result<ServiceResponse<BoxBody>, actix_web::Error>>;

/// The address of the metrics-only listener, if any: requests arriving there may read
/// `/metrics` without the token, and nothing else.
#[derive(Clone, Copy)]
struct MetricsListener(Option<SocketAddr>);

fn run(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    metrics_addr: Option<SocketAddr>,
    state: AppState,
) -> anyhow::Result<Server> {
    let key = Key::from(&state.settings.secret);
    let secure = state.settings.cookie_secure;
    let hsts = state.settings.hsts;
    let body_limit = state.settings.body_limit;
    let handle_signals = state.settings.handle_signals;
    let static_dir = state.settings.static_dir.clone();
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        let metrics = data.metrics.clone();
        let proxies = data.settings.trusted_proxies.clone();
        let mut headers = actix_web::middleware::DefaultHeaders::new()
            .add(("X-Content-Type-Options", "nosniff"))
            .add(("X-Frame-Options", "DENY"))
            .add(("Referrer-Policy", "no-referrer"))
            .add(("Content-Security-Policy", CSP));
        if hsts {
            headers = headers.add(("Strict-Transport-Security", "max-age=31536000"));
        }
        App::new()
            .app_data(data.clone())
            .app_data(web::Data::new(MetricsListener(metrics_addr)))
            .app_data(web::FormConfig::default().limit(body_limit))
            .app_data(web::PayloadConfig::default().limit(body_limit))
            .wrap(actix_web::middleware::from_fn(admin::guard))
            .wrap_fn(move |req, srv| -> Boxed {
                let started = Instant::now();
                let route = req
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".to_string());
                let metrics = metrics.clone();
                let fut = srv.call(req);
                Box::pin(async move {
                    let res = fut.await?;
                    metrics.observe(
                        &route,
                        res.status().as_u16(),
                        started.elapsed().as_secs_f64(),
                    );
                    Ok(res)
                })
            })
            .wrap(
                SessionMiddleware::builder(CookieSessionStore::default(), key.clone())
                    .cookie_name("axl_admin".into())
                    .cookie_http_only(true)
                    .cookie_same_site(SameSite::Strict)
                    .cookie_secure(secure)
                    .cookie_content_security(CookieContentSecurity::Signed)
                    .build(),
            )
            .wrap(headers)
            // Outermost: fix who the client is and what is asked before anything else runs.
            .wrap_fn(move |req, srv| -> Boxed {
                let on_metrics_listener =
                    metrics_addr.is_some() && Some(req.app_config().local_addr()) == metrics_addr;
                if on_metrics_listener && req.path() != "/metrics" {
                    let res = not_found_response();
                    return Box::pin(std::future::ready(Ok(req.into_response(res))));
                }
                if let Some(refused) = refuse_join_content_type(&req) {
                    return Box::pin(std::future::ready(Ok(req.into_response(refused))));
                }
                let fut = srv.call(req);
                Box::pin(async move { Ok(fut.await?.map_into_boxed_body()) })
            })
            .wrap_fn(move |mut req, srv| {
                // HEAD is GET without the body: route it as GET; the HTTP layer, which saw
                // the HEAD, sends the headers only.
                if req.method() == Method::HEAD {
                    req.head_mut().method = Method::GET;
                }
                if let Some(client) = crate::web::ratelimit::forwarded_client(&req, &proxies) {
                    req.head_mut().peer_addr = Some(SocketAddr::new(client, 0));
                }
                srv.call(req)
            })
            .route("/healthz", web::get().to(healthz))
            .route("/metrics", web::get().to(metrics_page))
            .route("/", web::get().to(home))
            .service(actix_files::Files::new("/static", static_dir.clone()))
            .configure(api::routes)
            .configure(participant::routes)
            .configure(crate::web::images::routes)
            .configure(admin::routes)
            .default_service(web::to(not_found))
    })
    .listen(listener)?
    .shutdown_timeout(30);
    let server = match metrics_listener {
        Some(l) => server.listen(l)?,
        None => server,
    };
    let server = if handle_signals {
        server
    } else {
        server.disable_signals()
    };
    Ok(server.run())
}

/// Answers at once: a load balancer must learn of an outage now, not after the pool's
/// acquire timeout (the pool keeps retrying a refused connection until then), so the probe
/// opens a connection of its own, bounded by 0.5 s for a server that hangs. The cause goes
/// to the log, never to the caller.
async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    use sqlx::{ConnectOptions, Connection};
    let options = state.db.pool.connect_options();
    let check = async move {
        let mut conn = options.connect().await?;
        sqlx::query("SELECT 1").execute(&mut conn).await?;
        conn.close().await
    };
    match tokio::time::timeout(std::time::Duration::from_millis(500), check).await {
        Ok(Ok(())) => HttpResponse::Ok().json(serde_json::json!({ "status": "ok" })),
        failed => {
            match failed {
                Ok(Err(e)) => tracing::warn!("health check: database error: {e}"),
                _ => tracing::warn!("health check: no database answer within 0.5 s"),
            }
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", errors::OUTAGE_RETRY_AFTER_S.to_string()))
                .json(serde_json::json!({ "status": "unavailable" }))
        }
    }
}

/// Prometheus metrics: on the separate metrics listener freely, elsewhere only with
/// `Authorization: Bearer <metrics_token>`; without a token configured, not at all.
async fn metrics_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    listener: web::Data<MetricsListener>,
) -> HttpResponse {
    let local = Some(req.app_config().local_addr());
    let allowed = (listener.0.is_some() && local == listener.0)
        || state
            .settings
            .metrics_token
            .as_deref()
            .is_some_and(|token| {
                let given = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or_default();
                crate::web::metrics::same_secret(given.trim(), token)
            });
    if !allowed {
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
            .content_type("text/plain; charset=utf-8")
            .body("metrics need a bearer token (metrics_token) or the metrics_bind address\n");
    }
    let mut body = state.metrics.render();
    crate::web::metrics::render_scheduler(&mut body, state.scheduler.rereads());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

/// The join endpoint takes JSON (or nothing): a `text/plain` or form POST is what another
/// site can send cross-origin without a preflight, so it is refused (415).
fn refuse_join_content_type(req: &ServiceRequest) -> Option<HttpResponse> {
    let path = req.path();
    let is_join = req.method() == Method::POST
        && path.starts_with("/api/v1/studies/")
        && path.ends_with("/participants");
    if !is_join {
        return None;
    }
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("invalid").to_ascii_lowercase());
    match ct {
        None => None,
        Some(ct) if ct.split(';').next().map(str::trim) == Some("application/json") => None,
        Some(ct) => Some(
            HttpResponse::UnsupportedMediaType().json(serde_json::json!({
                "error": "unsupported_media_type",
                "detail": format!("send application/json (or no body), not '{ct}'"),
            })),
        ),
    }
}

async fn home() -> HttpResponse {
    errors::message_page(
        StatusCode::OK,
        "ArenaXL",
        "Blind A/B studies of text-to-image models. Participants: open the study link you were given. Researchers: /admin.",
    )
}

async fn not_found() -> HttpResponse {
    not_found_response()
}

fn not_found_response() -> HttpResponse {
    errors::message_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is nothing at this address.",
    )
}
