//! `arenaxl study create|open|close [--let-finish]|list`.

use clap::{Args, Subcommand};

use crate::db::studies;
use crate::study::{StudyForm, StudySettings, StudyStatus};

use super::database::{open_database, DbArgs};

// Parsed once per process: the size of the create arguments does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum StudyCommand {
    /// Create a study (in draft; open it when its images are in).
    Create(CreateArgs),
    /// Open a study to participants.
    Open(SlugArgs),
    /// Close a study: no new participants or votes; participants in progress get their
    /// completion code with a note that the study ended early. With --let-finish: no new
    /// participants, but those in progress may finish ("closing").
    Close(CloseArgs),
    /// List studies.
    List(DbArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub slug: String,
    #[arg(long)]
    pub title: String,
    /// Question shown above the images.
    #[arg(long)]
    pub question: Option<String>,
    #[arg(long)]
    pub instructions: Option<String>,
    #[arg(long)]
    pub consent_text: Option<String>,
    /// A note shown on every participant page.
    #[arg(long)]
    pub notice: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub votes_per_participant: i32,
    /// Share of comparisons that are attention checks (0-1).
    #[arg(long, default_value_t = 0.1)]
    pub gold_rate: f64,
    /// Code shown at the end (random when not given).
    #[arg(long)]
    pub completion_code: Option<String>,
    /// Where finished Prolific participants go; `{code}` is replaced.
    #[arg(long)]
    pub completion_url: Option<String>,
    /// Do not offer "Tie".
    #[arg(long)]
    pub no_tie: bool,
    /// Do not offer "Both bad".
    #[arg(long)]
    pub no_both_bad: bool,
    /// uniform (fewest first) or adaptive (undecided model pairs first, 10% uniform).
    #[arg(long)]
    pub allocation: Option<String>,
    /// Close the study once every model pair is decided (anytime-valid test) or the vote
    /// budget is reached.
    #[arg(long)]
    pub stop_when_decided: bool,
    /// Comparison votes after which a study with --stop-when-decided closes anyway.
    #[arg(long)]
    pub vote_budget: Option<i32>,
    /// Votes faster than this (milliseconds) are flagged as fast.
    #[arg(long, default_value_t = crate::study::DEFAULT_FAST_VOTE_MS)]
    pub fast_vote_ms: i32,
    /// An unanswered comparison stops counting in the balance after this many seconds, and
    /// its pair is handed out again.
    #[arg(long, default_value_t = crate::study::DEFAULT_ASSIGNMENT_TIMEOUT_S)]
    pub assignment_timeout_s: i32,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct CloseArgs {
    pub slug: String,
    /// Take no new participants but let those in progress finish.
    #[arg(long)]
    pub let_finish: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct SlugArgs {
    pub slug: String,
    #[command(flatten)]
    pub db: DbArgs,
}

pub async fn run(cmd: StudyCommand) -> anyhow::Result<()> {
    match cmd {
        StudyCommand::Create(a) => {
            let settings = StudySettings::try_from(StudyForm {
                slug: a.slug,
                title: a.title,
                question: a.question,
                instructions: a.instructions,
                consent_text: a.consent_text,
                notice: a.notice,
                votes_per_participant: Some(a.votes_per_participant),
                gold_rate: Some(a.gold_rate),
                completion_code: a.completion_code,
                completion_url: a.completion_url,
                allow_tie: !a.no_tie,
                allow_both_bad: !a.no_both_bad,
                fast_vote_ms: Some(a.fast_vote_ms),
                assignment_timeout_s: Some(a.assignment_timeout_s),
                allocation: a.allocation,
                stop_when_decided: a.stop_when_decided,
                vote_budget: a.vote_budget,
            })?;
            let database = open_database(&a.db).await?;
            let study = studies::insert(&database.db.pool, &settings).await?;
            println!(
                "created study '{}' (draft); completion code {}",
                study.slug, study.completion_code
            );
        }
        StudyCommand::Open(a) => {
            let database = open_database(&a.db).await?;
            studies::set_status(&database.db.pool, &a.slug, StudyStatus::Open).await?;
            println!("study '{}' is open", a.slug);
        }
        StudyCommand::Close(a) => {
            let database = open_database(&a.db).await?;
            let status = if a.let_finish {
                StudyStatus::Closing
            } else {
                StudyStatus::Closed
            };
            studies::set_status(&database.db.pool, &a.slug, status).await?;
            if a.let_finish {
                println!(
                    "study '{}' is closing: no new participants; those in progress may finish",
                    a.slug
                );
            } else {
                println!("study '{}' is closed", a.slug);
            }
        }
        StudyCommand::List(db) => {
            let database = open_database(&db).await?;
            for s in studies::list(&database.db.pool).await? {
                println!("{}\t{}\t{}", s.slug, s.status.as_str(), s.title);
            }
        }
    }
    Ok(())
}
