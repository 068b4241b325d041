//! `arenaxl export`.

use clap::Args;

#[derive(Debug, Args)]
pub struct ExportArgs {}

pub async fn run(_args: ExportArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
