//! Who is an admin: login (argon2), server-side sessions whose random id travels in a signed
//! HttpOnly SameSite=Strict cookie, logout, and the CSRF token on every form. Every admin
//! request checks the session row and the admin behind it, so a copied cookie stops working
//! after logout, a password change, the account's deletion, the idle timeout or the expiry.

use actix_session::{Session, SessionExt};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use uuid::Uuid;

use crate::study::admins;

pub use super::error::AdminError;
pub(crate) use super::forms::see_other;
use super::forms::CsrfForm;
use crate::web::errors::{html, html_with_status, PageError};
use crate::web::extract;
use crate::web::participant::client_key;
use crate::web::state::AppState;

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
    if let Err(e) = session.insert(CSRF_KEY, &token) {
        // The form will be refused on submit (403); say why in the log.
        tracing::error!("cannot store the CSRF token in the session: {e}");
    }
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

/// A logged-in researcher with a live server-side session.
pub struct Admin {
    pub id: Uuid,
    pub session: Session,
    token: String,
}

/// Who the guard let in: read by the `Admin` extractor.
#[derive(Clone)]
struct Authenticated {
    id: Uuid,
    token: String,
}

/// The one check in front of every `/admin` path but the login page: the cookie's session
/// must be live in the database (not logged out, expired or idle, its admin not deleted and
/// the password not changed since). Otherwise the request goes no further than here: to
/// the login page. A handler added under `/admin` is guarded whether or not it asks for an
/// `Admin`.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let path = req.path();
    let guarded = (path == "/admin" || path.starts_with("/admin/")) && path != "/admin/login";
    if guarded {
        let session = req.get_session();
        let state = req.app_data::<web::Data<AppState>>().cloned();
        match authenticate(&session, state).await {
            Ok(who) => {
                req.extensions_mut().insert(who);
            }
            Err(e) => return Ok(req.into_response(e.error_response())),
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

async fn authenticate(
    session: &Session,
    state: Option<web::Data<AppState>>,
) -> Result<Authenticated, AdminError> {
    let state = state.ok_or(AdminError::LoginRequired)?;
    let Ok(Some(token)) = session.get::<String>(SESSION_KEY) else {
        return Err(AdminError::LoginRequired);
    };
    let idle = state.settings.session_idle_secs;
    match admins::session_admin(&state.db, &token, idle).await? {
        Some(id) => Ok(Authenticated { id, token }),
        None => {
            // Revoked, expired or unknown: drop the dead cookie too.
            session.purge();
            Err(AdminError::LoginRequired)
        }
    }
}

impl FromRequest for Admin {
    type Error = AdminError;
    type Future = std::future::Ready<Result<Self, AdminError>>;
    /// The admin the guard let in; outside the guard's paths nobody is.
    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let who = req.extensions().get::<Authenticated>().cloned();
        std::future::ready(match who {
            Some(Authenticated { id, token }) => Ok(Admin {
                id,
                session: req.get_session(),
                token,
            }),
            None => Err(AdminError::LoginRequired),
        })
    }
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
            session.insert(SESSION_KEY, token).map_err(|e| {
                tracing::error!("cannot store the admin session in the cookie: {e}");
                PageError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "You could not be logged in; the error is in the server log.",
                )
            })?;
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
