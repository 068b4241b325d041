//! ArenaXL: human-preference evaluation of text-to-image models.
//!
//! Dependencies point one way: `web`/`cli` → `study`/`report` → `db`, `engine`, `stats`.
//! `engine` and `stats` know nothing of HTTP or SQL.

pub mod cli;
pub mod config;
pub mod db;
pub mod distill;
pub mod domain;
pub mod engine;
pub mod jobs;
pub mod queue;
pub mod report;
pub mod startup;
pub mod stats;
pub mod study;
pub mod telemetry;
pub mod web;

#[cfg(test)]
mod layering_tests;
