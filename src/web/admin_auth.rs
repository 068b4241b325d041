//! Who is an admin: login (argon2), server-side sessions whose random id travels in a signed
//! HttpOnly SameSite=Strict cookie, logout, and the CSRF token on every form. Every admin
//! request checks the session row and the admin behind it, so a copied cookie stops working
//! after logout, a password change, the account's deletion, the idle timeout or the expiry.

use actix_session::{Session, SessionExt};
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use base64::Engine;
use futures_util::future::LocalBoxFuture;
use rand::RngCore;
use serde::Deserialize;
use uuid::Uuid;

use crate::study::{admins, StudyError};

use super::errors::{html, html_with_status, PageError};
use super::extract;
use super::participant::client_key;
use super::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/login", web::get().to(login_page))
        .route("/admin/login", web::post().to(login))
        .route("/admin/logout", web::post().to(logout));
}

/// The cookie holds only this random session token (and the CSRF token): the admin it
/// belongs to is looked up in Postgres on every request.
const SESSION_KEY: &str = "sid";
const CSRF_KEY: &str = "csrf";

/// The session's CSRF token, created on first use.
pub fn csrf_token(session: &Session) -> String {
    if let Ok(Some(token)) = session.get::<String>(CSRF_KEY) {
        return token;
    }
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let _ = session.insert(CSRF_KEY, &token);
    token
}

pub(crate) fn check_csrf(session: &Session, provided: &str) -> Result<(), AdminError> {
    let expected = session
        .get::<String>(CSRF_KEY)
        .ok()
        .flatten()
        .unwrap_or_default();
    let same = !expected.is_empty()
        && expected.len() == provided.len()
        && expected
            .bytes()
            .zip(provided.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(AdminError::Csrf)
    }
}

/// Errors of the admin area: not logged in (sent to the login page), a missing or wrong
/// CSRF token (403), or a page error.
#[derive(Debug)]
pub enum AdminError {
    LoginRequired,
    Csrf,
    Page(PageError),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::LoginRequired => f.write_str("login required"),
            AdminError::Csrf => f.write_str("invalid CSRF token"),
            AdminError::Page(p) => p.fmt(f),
        }
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            AdminError::LoginRequired => StatusCode::SEE_OTHER,
            AdminError::Csrf => StatusCode::FORBIDDEN,
            AdminError::Page(p) => p.status,
        }
    }
    fn error_response(&self) -> HttpResponse {
        match self {
            AdminError::LoginRequired => see_other("/admin/login"),
            AdminError::Csrf => super::errors::message_page(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form was not sent from this session (missing or wrong CSRF token). Reload the page and try again.",
            ),
            AdminError::Page(p) => p.error_response(),
        }
    }
}

impl From<StudyError> for AdminError {
    fn from(e: StudyError) -> Self {
        AdminError::Page(e.into())
    }
}

impl From<crate::db::DbError> for AdminError {
    fn from(e: crate::db::DbError) -> Self {
        AdminError::Page(e.into())
    }
}

impl From<PageError> for AdminError {
    fn from(e: PageError) -> Self {
        AdminError::Page(e)
    }
}

/// A logged-in researcher with a live server-side session.
pub struct Admin {
    pub id: Uuid,
    pub session: Session,
    token: String,
}

impl FromRequest for Admin {
    type Error = AdminError;
    type Future = LocalBoxFuture<'static, Result<Self, AdminError>>;
    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let session = req.get_session();
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let state = state.ok_or(AdminError::LoginRequired)?;
            let Ok(Some(token)) = session.get::<String>(SESSION_KEY) else {
                return Err(AdminError::LoginRequired);
            };
            let idle = state.settings.session_idle_secs;
            match admins::session_admin(&state.db, &token, idle).await? {
                Some(id) => Ok(Admin { id, session, token }),
                None => {
                    // Revoked, expired or unknown: drop the dead cookie too.
                    session.purge();
                    Err(AdminError::LoginRequired)
                }
            }
        })
    }
}

pub(crate) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage {
    csrf: String,
    error: Option<String>,
}

async fn login_page(session: Session) -> Result<HttpResponse, AdminError> {
    Ok(html(LoginPage {
        csrf: csrf_token(&session),
        error: None,
    })?)
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    form: extract::Form<LoginForm>,
) -> Result<HttpResponse, AdminError> {
    check_csrf(&session, &form.csrf)?;
    if !state.login_limiter.allow(&client_key(&req)) {
        return Err(PageError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Slow down",
            "Too many login attempts. Wait a minute.",
        )
        .into());
    }
    match admins::verify(&state.db, &form.email, &form.password).await? {
        Some(id) => {
            let token =
                admins::start_session(&state.db, id, state.settings.session_max_secs).await?;
            // A fresh cookie on login defeats session fixation.
            session.renew();
            session.remove(CSRF_KEY);
            let _ = session.insert(SESSION_KEY, token);
            tracing::info!(admin = %id, "admin logged in");
            Ok(see_other("/admin"))
        }
        None => {
            let page = LoginPage {
                csrf: csrf_token(&session),
                error: Some("Wrong e-mail or password.".into()),
            };
            Ok(html_with_status(StatusCode::UNAUTHORIZED, page)?)
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Revokes the session in the database (a copy of the cookie is dead too) and clears it.
async fn logout(
    admin: Admin,
    state: web::Data<AppState>,
    form: extract::Form<CsrfForm>,
) -> Result<HttpResponse, AdminError> {
    check_csrf(&admin.session, &form.csrf)?;
    admins::end_session(&state.db, &admin.token).await?;
    admin.session.purge();
    Ok(see_other("/admin/login"))
}
