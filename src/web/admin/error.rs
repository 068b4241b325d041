//! The admin area's one error type: not logged in (sent to the login page), a missing or
//! wrong CSRF token (403), or a page with its status.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::study::StudyError;
use crate::web::errors::PageError;
use crate::web::see_other;

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
            AdminError::Csrf => crate::web::errors::message_page(
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
