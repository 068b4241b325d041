//! The job queue, its workers, registered models and the jobs CLI, against fresh databases.
//! One test binary per area: each links the whole crate once.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod models;
mod queue;
mod worker;
