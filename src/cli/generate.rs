//! `arenaxl generate` and `arenaxl bench unet`.

use clap::Args;

#[derive(Debug, Args)]
pub struct GenerateArgs {}

pub fn run(_args: GenerateArgs) -> anyhow::Result<()> {
    anyhow::bail!("arenaxl generate is not implemented yet")
}

#[derive(Debug, Args)]
pub struct BenchUnetArgs {}

pub fn bench(_args: BenchUnetArgs) -> anyhow::Result<()> {
    anyhow::bail!("arenaxl bench unet is not implemented yet")
}
