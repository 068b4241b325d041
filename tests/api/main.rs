//! Black-box HTTP tests against the real application and a fresh Postgres database each.

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod admin_sessions;
mod admin_uploads;
mod blindness;
mod deployment;
mod distill_admin;
mod embedded;
mod flow;
mod imports;
mod integrity;
mod issuing;
mod jobs_admin;
mod remembered;
mod robustness;
mod scheduling;
mod votes;
