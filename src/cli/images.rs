//! `arenaxl images …`.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Placeholder.
    List,
}

pub async fn run(_cmd: ImagesCommand) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
