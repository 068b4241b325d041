//! `arenaxl serve`, `arenaxl migrate`, `arenaxl bench votes`.

use clap::Args;

#[derive(Debug, Args)]
pub struct ServeArgs {}

#[derive(Debug, Args)]
pub struct DbArgs {}

#[derive(Debug, Args)]
pub struct BenchVotesArgs {}

pub async fn serve(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub async fn migrate(_args: DbArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub async fn bench_votes(_args: BenchVotesArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
