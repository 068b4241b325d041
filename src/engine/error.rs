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

impl EngineError {
    /// Whether the model folder (or the request naming it) is at fault: a missing or
    /// unreadable file, bad JSON or weights, an unknown preset. Otherwise the failure
    /// happened while running a good model (a tensor error such as running out of memory,
    /// an image that could not be made): the server's problem, not the input's.
    pub fn is_model_folder(&self) -> bool {
        !matches!(self, EngineError::Tensor(_) | EngineError::Image(_))
    }

    /// The message with what failed in front: the model folder, or generation.
    pub fn describe(&self) -> String {
        if self.is_model_folder() {
            format!("model folder: {self}")
        } else {
            format!("generation failed: {self}")
        }
    }
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
