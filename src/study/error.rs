//! The domain's one error type; `web` maps each variant to a status code and a page or JSON.

#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// Input that does not satisfy a rule: which field, and why.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("this study is not open for participants")]
    NotOpen,
    #[error("this study has no comparisons ready yet; please try again in a few minutes")]
    NothingToCompare,
    #[error("this assignment belongs to another participant")]
    Forbidden,
    #[error("unknown or expired participant session")]
    Unauthenticated,
    #[error("{0}")]
    Import(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Our fault, not the caller's (stored data that breaks its rules, a report that could
    /// not be built): a 500 with a log line.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<crate::db::DbError> for StudyError {
    fn from(e: crate::db::DbError) -> Self {
        use crate::db::DbError;
        match e {
            DbError::Sql(e) => StudyError::Db(e),
            DbError::NotFound(what) => StudyError::NotFound(what),
            DbError::Conflict(why) => StudyError::Conflict(why),
            e @ (DbError::Corrupt(_) | DbError::LeaseLost) => StudyError::Internal(e.to_string()),
        }
    }
}

impl From<crate::domain::Invalid> for StudyError {
    fn from(e: crate::domain::Invalid) -> Self {
        StudyError::Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

impl StudyError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        StudyError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}
