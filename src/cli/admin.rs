//! `arenaxl admin create | passwd | delete | list`: researcher/admin accounts. A password
//! change or a deletion ends every session the account had, at once.

use clap::{Args, Subcommand};

use crate::study::admins;

use super::database::{open_database, DbArgs};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a researcher/admin account (or set a new password for an existing one).
    Create(CreateArgs),
    /// Set a new password for an existing account and end all its sessions.
    Passwd(CreateArgs),
    /// Delete an account and end all its sessions.
    Delete(DeleteArgs),
    /// List accounts with their live sessions and last activity.
    List(DbArgs),
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

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[arg(long)]
    pub email: String,
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
        AdminCommand::Passwd(a) => {
            let database = open_database(&a.db).await?;
            let revoked = admins::change_password(&database.db, &a.email, &a.password).await?;
            println!(
                "new password set for {}; {revoked} session(s) ended",
                a.email.trim().to_lowercase()
            );
        }
        AdminCommand::Delete(a) => {
            let database = open_database(&a.db).await?;
            admins::delete(&database.db, &a.email).await?;
            println!(
                "admin account {} deleted; its sessions ended",
                a.email.trim().to_lowercase()
            );
        }
        AdminCommand::List(db) => {
            let database = open_database(&db).await?;
            let rows = crate::db::admins::list(&database.db.pool).await?;
            println!(
                "{:<40} {:<20} {:>8} last seen",
                "email", "created", "sessions"
            );
            for r in rows {
                println!(
                    "{:<40} {:<20} {:>8} {}",
                    r.email,
                    r.created_at.format("%Y-%m-%d %H:%M"),
                    r.active_sessions,
                    r.last_seen_at
                        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_else(|| "never".into())
                );
            }
        }
    }
    Ok(())
}
