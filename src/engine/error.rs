use std::path::PathBuf;

/// Every failure the engine reports. Variants carry the file and field involved so that
/// a broken model folder can be fixed from the message alone.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: invalid JSON: {message}")]
    Json { file: PathBuf, message: String },
    #[error("{file}: field `{field}`: {message}")]
    Field {
        file: PathBuf,
        field: String,
        message: String,
    },
    #[error("{file}: missing (expected as part of the model folder)")]
    Missing { file: PathBuf },
    #[error("{file}: weights: {message}")]
    Weights { file: PathBuf, message: String },
    #[error("unknown preset `{0}` (expected one of: {1})")]
    UnknownPreset(String, String),
    #[error("invalid request: {0}")]
    Request(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("image: {0}")]
    Image(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;

impl EngineError {
    pub fn field(file: impl Into<PathBuf>, field: &str, message: impl Into<String>) -> Self {
        EngineError::Field {
            file: file.into(),
            field: field.to_string(),
            message: message.into(),
        }
    }
}
