//! `arenaxl admin create`.

use clap::{Args, Subcommand};

use crate::study::admins;

use super::serve::{open_database, DbArgs};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a researcher/admin account (or set a new password for an existing one).
    Create(CreateArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub email: String,
    /// At least 8 characters.
    #[arg(long, env = "ARENAXL_ADMIN_PASSWORD")]
    pub password: String,
    #[command(flatten)]
    pub db: DbArgs,
}

pub async fn run(cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Create(a) => {
            let database = open_database(&a.db).await?;
            admins::create_or_update(&database.db, &a.email, &a.password).await?;
            println!("admin account {} is ready", a.email.trim().to_lowercase());
        }
    }
    Ok(())
}
