//! `arenaxl study …`.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum StudyCommand {
    /// Placeholder.
    List,
}

pub async fn run(_cmd: StudyCommand) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
