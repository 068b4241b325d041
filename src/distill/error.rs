use std::path::PathBuf;

use crate::engine::EngineError;

/// Everything the distillation module reports. Plan errors name the block and layer so a
/// plan file can be fixed from the message alone.
#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    #[error("plan {plan}: {message}")]
    Plan { plan: String, message: String },
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: invalid JSON: {message}")]
    Json { file: PathBuf, message: String },
    #[error("{file}: weights: {message}")]
    Weights { file: PathBuf, message: String },
    #[error("data {file}: {message}")]
    Data { file: PathBuf, message: String },
    #[error("checkpoint {file}: {message}")]
    Checkpoint { file: PathBuf, message: String },
    #[error("training: {0}")]
    Training(String),
    /// The observer asked the run to stop (cancelled, shutting down).
    #[error("training stopped at step {step}")]
    Stopped { step: u64 },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, DistillError>;

impl DistillError {
    pub fn io(file: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let file = file.into();
        move |source| DistillError::Io { file, source }
    }
}
