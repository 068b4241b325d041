//! The bottom layer: types and rules that the database layer, the services and the web
//! share — a study's settings and status, votes' choices, prompts, stored files and pairs,
//! and the one place each input rule lives (model names, seeds per prompt, sampling
//! defaults). It imports nothing from the rest of the crate.

pub mod content;
pub mod rules;
pub mod study;
pub mod votes;

pub use rules::{ModelName, DEFAULT_SAMPLING};
pub use study::*;
pub use votes::Choice;

/// A value that breaks one of the domain's rules: which field, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}
