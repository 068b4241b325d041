//! The report model built from votes, and its renderings: JSON, HTML (inline SVG), CSV, Markdown.

pub mod votes;
