//! `arenaxl model init|info`.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Write a complete random-weight pipeline folder for a preset.
    Init,
}

pub fn run(_cmd: ModelCommand) -> anyhow::Result<()> {
    anyhow::bail!("arenaxl model is not implemented yet")
}
