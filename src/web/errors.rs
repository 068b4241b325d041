//! Domain errors mapped to responses: JSON `{"error", "detail"}` for the API, a plain page
//! for people. Database and storage faults are logged and answered without their details.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use crate::study::StudyError;

fn classify(err: &StudyError) -> (StatusCode, &'static str) {
    match err {
        StudyError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
        StudyError::Import(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_import"),
        StudyError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        StudyError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        StudyError::NotOpen => (StatusCode::CONFLICT, "study_not_open"),
        StudyError::NothingToCompare => (StatusCode::SERVICE_UNAVAILABLE, "nothing_to_compare"),
        StudyError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
        StudyError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        StudyError::Db(_) | StudyError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

fn public_detail(err: &StudyError) -> String {
    match err {
        StudyError::Db(e) => {
            tracing::error!("database error: {e}");
            "the server could not complete the request; try again".into()
        }
        StudyError::Io(e) => {
            tracing::error!("storage error: {e}");
            "the server could not complete the request; try again".into()
        }
        other => other.to_string(),
    }
}

/// An error answered as JSON.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl From<StudyError> for ApiError {
    fn from(err: StudyError) -> Self {
        let (status, code) = classify(&err);
        ApiError::new(status, code, public_detail(&err))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .json(serde_json::json!({ "error": self.code, "detail": self.detail }))
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub title: &'a str,
    pub message: &'a str,
}

/// Renders a plain page with a title and one message.
pub fn message_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    let body = MessagePage { title, message }
        .render()
        .unwrap_or_else(|_| message.to_string());
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// An error answered as a page a participant or researcher can read.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, title: impl Into<String>, message: impl Into<String>) -> Self {
        PageError {
            status,
            title: title.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.title, self.message)
    }
}

impl From<StudyError> for PageError {
    fn from(err: StudyError) -> Self {
        let (status, _) = classify(&err);
        let (title, message) = match &err {
            StudyError::NotOpen => (
                "This study is closed",
                "This study is not accepting answers right now. Thank you for your interest."
                    .to_string(),
            ),
            StudyError::NotFound(what) => (
                "Not found",
                format!("There is no such {what}. Check the link you were given."),
            ),
            StudyError::Unauthenticated => (
                "Your session has expired",
                "We could not find your session in this browser. Open the study link you were \
                 given again: you will continue where you left off, and your answers so far are kept."
                    .to_string(),
            ),
            StudyError::NothingToCompare => ("Not ready yet", err.to_string()),
            StudyError::Forbidden => (
                "Not allowed",
                "This answer belongs to another session.".to_string(),
            ),
            StudyError::Db(_) | StudyError::Io(_) => ("Something went wrong", public_detail(&err)),
            other => ("Cannot do that", other.to_string()),
        };
        PageError::new(status, title, message)
    }
}

impl From<askama::Error> for PageError {
    fn from(err: askama::Error) -> Self {
        tracing::error!("template error: {err}");
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The page could not be shown.",
        )
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        message_page(self.status, &self.title, &self.message)
    }
}

/// Renders a template into an HTML response.
pub fn html<T: Template>(page: T) -> Result<HttpResponse, PageError> {
    html_with_status(StatusCode::OK, page)
}

/// Renders a template into an HTML response with the given status (a form shown again with
/// its error, say).
pub fn html_with_status<T: Template>(
    status: StatusCode,
    page: T,
) -> Result<HttpResponse, PageError> {
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(page.render()?))
}
