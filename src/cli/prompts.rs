//! `arenaxl prompts …`.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum PromptsCommand {
    /// Placeholder.
    List,
}

pub async fn run(_cmd: PromptsCommand) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
