//! Renderings of a `Report`: JSON (the contract), a standalone HTML page, and the pairs
//! table as CSV or Markdown.

pub(crate) mod format;
mod html;
pub(crate) mod svg;
mod tables;

pub use html::to_html;
pub use tables::{to_csv, to_markdown};

use super::model::Report;

/// The report as pretty-printed JSON (see `schemas/report.schema.json`).
pub fn to_json(report: &Report) -> String {
    // Serialising these plain structs cannot fail (no maps with non-string keys, and
    // serde_json writes non-finite floats as null); keep a valid document regardless.
    serde_json::to_string_pretty(report)
        .unwrap_or_else(|e| format!("{{\"error\": {}}}", serde_json::Value::from(e.to_string())))
}
