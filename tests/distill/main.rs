//! Distillation: plans, pruning, losses, mixed precision, training and its CLI.
//! One test binary per area: each links the whole crate once.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod plan;
mod precision;
mod prune;
mod train;
