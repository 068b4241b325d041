//! One `Application::build` used by `serve`, `demo`, the benchmarks and the tests: it binds
//! the listener (port 0 picks a free one) and assembles the actix-web server.

use std::net::TcpListener;
use std::time::Instant;

use actix_session::config::CookieContentSecurity;
use actix_session::storage::CookieSessionStore;
use actix_session::SessionMiddleware;
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::{Server, Service};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};

use crate::config::Settings;
use crate::db::Db;
use crate::web::state::AppState;
use crate::web::{admin, admin_distill, admin_jobs, api, errors, participant};

pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
}

impl Application {
    pub fn build(settings: Settings, db: Db) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(&settings.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let state = AppState::new(db, settings);
        let server = run(listener, state.clone())?;
        Ok(Application {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
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

fn run(listener: TcpListener, state: AppState) -> anyhow::Result<Server> {
    let key = Key::from(&state.settings.secret);
    let secure = state.settings.cookie_secure;
    let body_limit = state.settings.body_limit;
    let handle_signals = state.settings.handle_signals;
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        let metrics = data.metrics.clone();
        App::new()
            .app_data(data.clone())
            .app_data(web::FormConfig::default().limit(body_limit))
            .app_data(web::PayloadConfig::default().limit(body_limit))
            .wrap_fn(move |req, srv| {
                let started = Instant::now();
                let route = req
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".to_string());
                let metrics = metrics.clone();
                let fut = srv.call(req);
                async move {
                    let res = fut.await?;
                    metrics.observe(
                        &route,
                        res.status().as_u16(),
                        started.elapsed().as_secs_f64(),
                    );
                    Ok(res)
                }
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
            .wrap(
                actix_web::middleware::DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("X-Frame-Options", "DENY"))
                    .add(("Referrer-Policy", "no-referrer")),
            )
            .route("/healthz", web::get().to(healthz))
            .route("/metrics", web::get().to(metrics_page))
            .route("/", web::get().to(home))
            .service(actix_files::Files::new("/static", static_dir()))
            .configure(api::routes)
            .configure(participant::routes)
            .configure(admin::routes)
            .configure(admin_jobs::routes)
            .configure(admin_distill::routes)
            .default_service(web::to(not_found))
    })
    .listen(listener)?
    .shutdown_timeout(30);
    let server = if handle_signals {
        server
    } else {
        server.disable_signals()
    };
    let server = server.run();
    Ok(server)
}

/// Static files ship in the repository next to Cargo.toml; `ARENAXL_STATIC_DIR` overrides.
fn static_dir() -> std::path::PathBuf {
    std::env::var_os("ARENAXL_STATIC_DIR")
        .map(Into::into)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static"))
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

async fn metrics_page(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

async fn home() -> HttpResponse {
    errors::message_page(
        StatusCode::OK,
        "ArenaXL",
        "Blind A/B studies of text-to-image models. Participants: open the study link you were given. Researchers: /admin.",
    )
}

async fn not_found() -> HttpResponse {
    errors::message_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is nothing at this address.",
    )
}
