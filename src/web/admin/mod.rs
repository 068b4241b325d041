//! The researcher/admin area, by topic: who may enter (`auth`: sessions, CSRF), studies,
//! their content (prompt and image imports), exports and reports, generation jobs,
//! registered models and workers, and distillation. Every `/admin` path but the login page
//! passes one guard (`auth::guard`) that checks the session against the database before
//! any handler runs.

pub mod auth;
pub mod content;
pub mod distill;
pub mod distill_view;
pub mod error;
pub mod exports;
pub mod forms;
pub mod jobs;
pub mod models;
pub mod studies;

use actix_web::web;

pub use auth::{guard, Admin, AdminError};

/// Every admin route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(auth::routes)
        .configure(studies::routes)
        .configure(content::routes)
        .configure(exports::routes)
        .configure(jobs::routes)
        .configure(models::routes)
        .configure(distill::routes);
}
