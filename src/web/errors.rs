//! Domain errors mapped to responses: JSON `{"error", "detail"}` for the API, a plain page
//! for people. Database and storage faults are logged and answered without their details;
//! a database that cannot be reached is a 503 with `Retry-After`, not a 500.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use askama::Template;

use crate::db::is_db_unavailable;
use crate::study::StudyError;

/// Seconds a client should wait before retrying while the database is unreachable.
pub const OUTAGE_RETRY_AFTER_S: u32 = 5;
/// Seconds to wait when a study has nothing to compare yet.
const NOTHING_TO_COMPARE_RETRY_AFTER_S: u32 = 60;

/// Whether a domain error is an outage of the database.
fn is_unavailable(err: &StudyError) -> bool {
    matches!(err, StudyError::Db(e) if is_db_unavailable(e))
}

/// Seconds for `Retry-After`: only the temporary conditions have one.
fn retry_after(err: &StudyError) -> Option<u32> {
    match err {
        StudyError::NothingToCompare => Some(NOTHING_TO_COMPARE_RETRY_AFTER_S),
        _ if is_unavailable(err) => Some(OUTAGE_RETRY_AFTER_S),
        _ => None,
    }
}

fn classify(err: &StudyError) -> (StatusCode, &'static str) {
    if is_unavailable(err) {
        return (StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }
    match err {
        StudyError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
        StudyError::Import(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_import"),
        StudyError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        StudyError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        StudyError::NotOpen => (StatusCode::CONFLICT, "study_not_open"),
        StudyError::NothingToCompare => (StatusCode::SERVICE_UNAVAILABLE, "nothing_to_compare"),
        StudyError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
        StudyError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        StudyError::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            (StatusCode::INSUFFICIENT_STORAGE, "storage_full")
        }
        StudyError::Db(_) | StudyError::Io(_) | StudyError::Internal(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    }
}

fn public_detail(err: &StudyError) -> String {
    match err {
        StudyError::Db(e) if is_db_unavailable(e) => {
            tracing::warn!("database unavailable: {e}");
            UNAVAILABLE_DETAIL.into()
        }
        StudyError::Db(e) => {
            tracing::error!("database error: {e}");
            "the server could not complete the request; try again".into()
        }
        StudyError::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            tracing::error!("storage full: {e}");
            "the server's storage is full; an administrator has to free space".into()
        }
        StudyError::Io(e) => {
            tracing::error!("storage error: {e}");
            "the server could not complete the request; try again".into()
        }
        StudyError::Internal(e) => {
            tracing::error!("internal error: {e}");
            "the server could not complete the request; try again".into()
        }
        other => other.to_string(),
    }
}

const UNAVAILABLE_DETAIL: &str =
    "the service is briefly unavailable; please try again in a few seconds";

fn with_retry_after(status: StatusCode, retry_after: Option<u32>) -> HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    if let Some(seconds) = retry_after {
        builder.insert_header(("Retry-After", seconds.to_string()));
    }
    builder
}

/// The answer to a fault where no page or JSON body fits (an image, say): 503 with
/// `Retry-After` if the database is unreachable, else the error's status. No internal details.
pub fn fault_response(err: &StudyError) -> HttpResponse {
    with_retry_after(classify(err).0, retry_after(err))
        .content_type("text/plain")
        .body(public_detail(err))
}

/// An error answered as JSON.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Seconds for a `Retry-After` header, for temporary conditions.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
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
        ApiError {
            retry_after: retry_after(&err),
            ..ApiError::new(status, code, public_detail(&err))
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        with_retry_after(self.status, self.retry_after)
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
    message_page_retry(status, None, title, message)
}

fn message_page_retry(
    status: StatusCode,
    retry_after: Option<u32>,
    title: &str,
    message: &str,
) -> HttpResponse {
    let body = MessagePage { title, message }
        .render()
        .unwrap_or_else(|_| message.to_string());
    with_retry_after(status, retry_after)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// An error answered as a page a participant or researcher can read.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
    /// Seconds for a `Retry-After` header, for temporary conditions.
    pub retry_after: Option<u32>,
}

impl PageError {
    pub fn new(status: StatusCode, title: impl Into<String>, message: impl Into<String>) -> Self {
        PageError {
            status,
            title: title.into(),
            message: message.into(),
            retry_after: None,
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
            StudyError::Db(_) if is_unavailable(&err) => {
                ("Temporarily unavailable", public_detail(&err))
            }
            StudyError::Db(_) | StudyError::Io(_) | StudyError::Internal(_) => {
                ("Something went wrong", public_detail(&err))
            }
            other => ("Cannot do that", other.to_string()),
        };
        PageError {
            retry_after: retry_after(&err),
            ..PageError::new(status, title, message)
        }
    }
}

impl From<crate::db::DbError> for PageError {
    fn from(err: crate::db::DbError) -> Self {
        StudyError::from(err).into()
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
        message_page_retry(self.status, self.retry_after, &self.title, &self.message)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_503_with_retry_after_and_a_query_fault_500() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for err in [sqlx::Error::PoolTimedOut, sqlx::Error::Io(refused)] {
            let api = ApiError::from(StudyError::Db(err));
            assert_eq!(
                (api.status, api.code),
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            );
            let resp = api.error_response();
            assert_eq!(resp.headers().get("Retry-After").unwrap(), "5");
            assert!(!api.detail.contains("refused") && !api.detail.contains("pool"));
        }
        let fault = ApiError::from(StudyError::Db(sqlx::Error::RowNotFound));
        assert_eq!(fault.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(fault
            .error_response()
            .headers()
            .get("Retry-After")
            .is_none());
        let page = PageError::from(StudyError::Db(sqlx::Error::PoolTimedOut)).error_response();
        assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(page.headers().get("Retry-After").unwrap(), "5");
    }

    #[test]
    fn each_error_gets_the_status_of_its_cause() {
        use crate::db::DbError;
        let status = |e: StudyError| classify(&e).0;
        // Our faults: a report that could not be built, a corrupt stored row, a lost lease.
        assert_eq!(
            status(StudyError::Internal("cannot build the report".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status(DbError::Corrupt("stored vote has 'x'".into()).into()),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status(DbError::LeaseLost.into()),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        // Resources: a full disk is 507, not a generic 500.
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert_eq!(
            status(StudyError::Io(full)),
            StatusCode::INSUFFICIENT_STORAGE
        );
        // Real conflicts and bad input keep their labels.
        assert_eq!(
            status(DbError::Conflict("slug taken".into()).into()),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(DbError::NotFound("study".into()).into()),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(crate::domain::Invalid::new("slug", "bad").into()),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let page = PageError::from(StudyError::Internal("secret detail".into()));
        assert!(!page.message.contains("secret"), "no internals in the page");
    }
}
