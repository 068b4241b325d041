//! The report model built from votes, and its renderings: JSON, HTML (inline SVG), CSV, Markdown.

mod agreement;
mod build;
mod dataset;
pub mod model;
mod pairs;
mod participants;
mod ratings;
pub mod render;
pub mod settings;
mod timeline;
pub mod votes;

pub use build::build_report;
pub use model::Report;
pub use settings::{Anchor, Cluster, ReportSettings};

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("invalid report setting: {0}")]
    InvalidSetting(String),
    #[error("anchor model '{0}' does not appear in any comparison vote")]
    UnknownAnchor(String),
    #[error(transparent)]
    Fit(#[from] crate::stats::bt::BtError),
}
