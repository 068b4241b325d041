//! `arenaxl bench …`: benchmarks that print figures (never timed tests).

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Load test of the JSON voting API over loopback.
    Votes(super::serve::BenchVotesArgs),
    /// Full report on a large synthetic votes set.
    Report(super::report::BenchReportArgs),
    /// One UNet call, this engine on the CPU.
    Unet(super::generate::BenchUnetArgs),
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Votes(args) => super::block_on(super::serve::bench_votes(args)),
        BenchCommand::Report(args) => super::report::bench(args),
        BenchCommand::Unet(args) => super::generate::bench(args),
    }
}
