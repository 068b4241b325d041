//! Statistics and reports: reference values, allocation, simulation, live stopping, CSV, CLI.
//! One test binary per area: each links the whole crate once.

#[path = "../common/mod.rs"]
mod common;

mod allocation;
mod cli;
mod live;
mod reference;
mod report;
mod simulate;
mod tails;
mod votes_csv;
