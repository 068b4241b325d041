//! `arenaxl report` and `arenaxl bench report`.

use clap::Args;

#[derive(Debug, Args)]
pub struct ReportArgs {}

pub fn run(_args: ReportArgs) -> anyhow::Result<()> {
    anyhow::bail!("arenaxl report is not implemented yet")
}

#[derive(Debug, Args)]
pub struct BenchReportArgs {}

pub fn bench(_args: BenchReportArgs) -> anyhow::Result<()> {
    anyhow::bail!("arenaxl bench report is not implemented yet")
}
