//! `arenaxl admin …`.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Placeholder.
    List,
}

pub async fn run(_cmd: AdminCommand) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
