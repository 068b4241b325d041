//! The participant flow: join a study, get the next comparison, vote. Shared by the
//! server-rendered pages and the JSON API; neither knows the rules behind it.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::{participation as q, studies, Db};

use super::allocation;
use super::plans::{lock, Scheduler};
use super::scheduler::StudyPlan;
use super::{Choice, ExternalIds, Study, StudyError, StudyStatus};

/// The secret a participant's browser or client holds; only its hash is stored.
#[derive(Debug, Clone)]
pub struct ParticipantToken(pub String);

impl ParticipantToken {
    fn generate() -> ParticipantToken {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        ParticipantToken(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    pub done: i32,
    pub target: i32,
}

/// A comparison to show. Carries nothing model-specific: only the assignment id (random),
/// the prompt, and what the study asks.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub assignment_id: Uuid,
    pub prompt: String,
    pub progress: Progress,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Compare(Comparison),
    Done {
        completion_code: String,
        redirect_url: Option<String>,
        /// The study was closed before the participant reached the target: they get the
        /// code for the work they did.
        ended_early: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteOutcome {
    Recorded,
    AlreadyRecorded,
}

/// Joins a study. One person is one participant: joining again with the same crowd ID
/// (Prolific's PID, MTurk's worker ID) — another device, the API, after finishing —
/// resumes that participant with a new token. `current` is a token the client already
/// holds (the pages' cookie): an anonymous participant of this study keeps it. New
/// participants only join open studies; known ones may come back to a closing or closed
/// study to finish or to see their completion code.
pub async fn join(
    db: &Db,
    slug: &str,
    external: ExternalIds,
    current: Option<&ParticipantToken>,
) -> Result<(Study, ParticipantToken), StudyError> {
    let external = external.validated()?;
    let study = studies::by_slug(&db.pool, slug).await?;
    if study.status == StudyStatus::Draft {
        return Err(StudyError::NotOpen);
    }
    if let Some(token) = current {
        if let Some((study_id, platform, external_id)) =
            q::token_owner(&db.pool, &token.hash()).await?
        {
            let same_person = match external.identity() {
                None => true,
                Some((p, e)) => platform.as_deref() == Some(p) && external_id.as_deref() == Some(e),
            };
            if study_id == study.id && same_person {
                return Ok((study, token.clone()));
            }
        }
    }
    let token = ParticipantToken::generate();
    let may_add = study.status == StudyStatus::Open;
    match q::join_participant(&db.pool, study.id, &token.hash(), &external, may_add).await? {
        Some(_) => Ok((study, token)),
        None => Err(StudyError::NotOpen),
    }
}

/// Whether a person with these crowd IDs may see the study's start page: anyone while it is
/// open, and people already in it while it is closing or closed (to resume, or to get
/// their completion code again).
pub async fn may_enter(db: &Db, study: &Study, external: &ExternalIds) -> Result<bool, StudyError> {
    Ok(match study.status {
        StudyStatus::Open => true,
        StudyStatus::Draft => false,
        StudyStatus::Closing | StudyStatus::Closed => {
            q::is_known(&db.pool, study.id, external).await?
        }
    })
}

/// Feeds a recorded vote into the plan's anytime-valid evidence and applies the study's
/// stopping rule (every model pair decided, or the vote budget reached): the study then
/// closes the "closing" way, so people in progress finish. No query unless it stops.
async fn after_decisive_vote(
    db: &Db,
    plan: &std::sync::Arc<std::sync::Mutex<StudyPlan>>,
    r: &q::VoteResult,
    pair: Uuid,
    a_wins: Option<bool>,
) -> Result<(), StudyError> {
    if let Some(a_wins) = a_wins {
        lock(plan).record_outcome(pair, a_wins);
    }
    let (Some(study_id), true, true) = (r.study_id, r.stop_when_decided, r.status_open) else {
        return Ok(());
    };
    let stop = {
        let plan = lock(plan);
        let votes: u64 = plan.pairs.iter().map(|p| p.votes).sum();
        allocation::should_stop(
            &plan.evidence,
            allocation::LIVE_ALPHA,
            votes,
            r.vote_budget.map(|b| b.max(0) as u64),
        )
    };
    if stop && studies::close_study_when_decided(&db.pool, study_id).await? {
        tracing::info!(study = %study_id, "stopping rule met: the study is closing");
    }
    Ok(())
}

/// Records a vote exactly once.
pub async fn vote(
    db: &Db,
    scheduler: &Scheduler,
    token: &ParticipantToken,
    assignment_id: Uuid,
    choice: Choice,
    response_ms: Option<i32>,
) -> Result<VoteOutcome, StudyError> {
    if let Some(ms) = response_ms {
        if !(0..=86_400_000).contains(&ms) {
            return Err(StudyError::invalid(
                "response_ms",
                "must be between 0 and 86400000",
            ));
        }
    }
    let hash = token.hash();
    let vote = q::VoteInput {
        assignment_id,
        token_hash: hash.clone(),
        choice,
        response_ms,
    };
    let r = match db.votes.run(vote).await {
        Ok(r) => r,
        Err(e) => {
            scheduler.known().forget(&hash);
            return Err(e.into());
        }
    };
    // What this process remembers of the participant: answered here, or in doubt.
    if r.inserted {
        scheduler.known().answered(&hash, assignment_id);
    } else {
        scheduler.known().forget(&hash);
    }
    if !r.found {
        return Err(StudyError::NotFound("assignment".into()));
    }
    if !r.mine {
        // Either a foreign assignment or an unknown token: both are refused.
        return Err(StudyError::Forbidden);
    }
    if r.inserted {
        if let (Some(pair), Some(study)) = (r.pair_id, r.study_id) {
            if let Some(plan) = scheduler.get(study) {
                let a_left = r.a_left.unwrap_or(false);
                lock(&plan).record_vote(assignment_id, pair, a_left);
                // Decisive votes feed the anytime-valid evidence: which image won.
                let a_wins = match choice {
                    Choice::Left => Some(a_left),
                    Choice::Right => Some(!a_left),
                    Choice::Tie | Choice::BothBad => None,
                };
                after_decisive_vote(db, &plan, &r, pair, a_wins).await?;
            }
        }
        return Ok(VoteOutcome::Recorded);
    }
    // Not inserted: answered before (idempotent, even after the study closed), or refused
    // by the study's rules.
    if r.voted {
        return Ok(VoteOutcome::AlreadyRecorded);
    }
    if !r.study_open {
        return Err(StudyError::NotOpen);
    }
    if !r.allowed {
        return Err(StudyError::invalid(
            "choice",
            format!("'{}' is not offered in this study", choice.as_str()),
        ));
    }
    if !r.room {
        return Err(StudyError::Conflict(
            "this participant has already given every vote the study asks for".into(),
        ));
    }
    // A concurrent request with the same vote won the race.
    Ok(VoteOutcome::AlreadyRecorded)
}
