//! actix-web: routes per audience (participant pages, JSON API, admin area), the shared
//! state they use, extractors, and the mapping of domain errors to responses.

pub mod admin;
pub mod admin_auth;
pub mod admin_distill;
pub mod admin_exports;
pub mod admin_jobs;
pub mod admin_models;
pub mod admin_uploads;
pub mod api;
pub mod errors;
pub mod extract;
pub mod images;
pub mod metrics;
pub mod participant;
pub mod ratelimit;
pub mod state;
pub mod uploads;
