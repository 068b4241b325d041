//! The participant flow: join a study, get the next comparison, vote. Shared by the
//! server-rendered pages and the JSON API; neither knows the rules behind it.

use std::collections::HashSet;

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::{participation as q, studies, Db};

use super::allocation::{self, Allocation};
use super::scheduler::{lock, Pick, Scheduler, StudyPlan};
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
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteOutcome {
    Recorded,
    AlreadyRecorded,
}

/// Joins a study: checks it is open and stores a new participant.
pub async fn join(
    db: &Db,
    slug: &str,
    external: ExternalIds,
) -> Result<(Study, ParticipantToken), StudyError> {
    let external = external.validated()?;
    let study = studies::by_slug(&db.pool, slug).await?;
    if study.status != StudyStatus::Open {
        return Err(StudyError::NotOpen);
    }
    let token = ParticipantToken::generate();
    q::insert_participant(&db.pool, study.id, &token.hash(), &external).await?;
    Ok((study, token))
}

async fn plan_for(
    db: &Db,
    scheduler: &Scheduler,
    study_id: Uuid,
    version: i64,
) -> Result<std::sync::Arc<std::sync::Mutex<StudyPlan>>, StudyError> {
    if let Some(plan) = scheduler.current(study_id, version) {
        return Ok(plan);
    }
    let (rows, gold) = q::load_plan_rows(&db.pool, study_id).await?;
    let outcomes = studies::pair_outcomes(&db.pool, study_id).await?;
    // Loading is not atomic with the version read; re-read it so a concurrent import is not missed.
    let version_now = q::pairs_version(&db.pool, study_id).await?;
    Ok(scheduler.install(
        study_id,
        StudyPlan::new(version_now.min(version), rows, gold)
            .with_allocation(Allocation::Uniform, &outcomes),
    ))
}

/// The participant's current comparison (the unanswered one, if any), a new one, or the end.
pub async fn next(
    db: &Db,
    scheduler: &Scheduler,
    token: &ParticipantToken,
) -> Result<(Study, Next), StudyError> {
    let (study, next) = next_inner(db, scheduler, token).await?;
    Ok((study, next))
}

async fn next_inner(
    db: &Db,
    scheduler: &Scheduler,
    token: &ParticipantToken,
) -> Result<(Study, Next), StudyError> {
    let state = q::participant_state(&db.pool, &token.hash())
        .await?
        .ok_or(StudyError::Unauthenticated)?;
    let study = studies::by_slug(&db.pool, &state.slug).await?;
    if study.status != StudyStatus::Open && state.votes_done < study.votes_per_participant {
        return Err(StudyError::NotOpen);
    }
    let progress = Progress {
        done: state.votes_done,
        target: study.votes_per_participant,
    };
    let done = || Next::Done {
        completion_code: study.completion_code.clone(),
        redirect_url: state.is_prolific.then(|| study.redirect_url()),
    };
    if state.votes_done >= study.votes_per_participant {
        return Ok((study.clone(), done()));
    }
    if let (Some(id), Some(prompt)) = (state.open_assignment, state.open_prompt.clone()) {
        return Ok((
            study.clone(),
            Next::Compare(Comparison {
                assignment_id: id,
                prompt,
                progress,
            }),
        ));
    }
    let seen: HashSet<(Uuid, Uuid)> = state
        .seen_prompts
        .iter()
        .copied()
        .zip(state.seen_model_pairs.iter().copied())
        .collect();
    let plan = plan_for(db, scheduler, state.study_id, state.pairs_version).await?;
    // Two tries: a concurrent request of the same participant may take the chosen pair first.
    for _ in 0..2 {
        let (pick, prompt) = {
            let mut plan = lock(&plan);
            // The setting can change while the plan stays loaded: take it from the study.
            plan.allocation = study.allocation;
            let Some(pick) = plan.pick(&seen, study.gold_rate, &mut rand::thread_rng()) else {
                break;
            };
            let prompt_id = match &pick {
                Pick::Pair { prompt_id, .. } | Pick::Gold { prompt_id, .. } => *prompt_id,
            };
            let prompt = plan.prompt_text(prompt_id).unwrap_or_default().to_string();
            (pick, prompt)
        };
        let id = Uuid::new_v4();
        let stored = match &pick {
            Pick::Pair {
                pair_id,
                prompt_id,
                model_pair_id,
                left_image,
                right_image,
            } => {
                let ok = q::insert_assignment(
                    &db.relaxed,
                    id,
                    state.participant_id,
                    state.study_id,
                    Some(*pair_id),
                    *prompt_id,
                    Some(*model_pair_id),
                    *left_image,
                    *right_image,
                    None,
                )
                .await?;
                if !ok {
                    lock(&plan).unissue(*pair_id);
                }
                ok
            }
            Pick::Gold {
                prompt_id,
                image,
                broken_side_left,
            } => {
                let side = if *broken_side_left { "left" } else { "right" };
                q::insert_assignment(
                    &db.relaxed,
                    id,
                    state.participant_id,
                    state.study_id,
                    None,
                    *prompt_id,
                    None,
                    *image,
                    *image,
                    Some(side),
                )
                .await?
            }
        };
        if stored {
            return Ok((
                study.clone(),
                Next::Compare(Comparison {
                    assignment_id: id,
                    prompt,
                    progress,
                }),
            ));
        }
    }
    // A study opened before its images exist (generation still running) has nothing to show:
    // never hand out a completion code for no work.
    if state.votes_done == 0 {
        return Err(StudyError::NothingToCompare);
    }
    // Nothing new is left for this participant (a small study): they are done early.
    let done = done();
    Ok((study, done))
}

/// Feeds a recorded vote into the plan's anytime-valid evidence and applies the study's
/// stopping rule (every model pair decided, or the vote budget reached).
async fn after_decisive_vote(
    db: &Db,
    plan: &std::sync::Arc<std::sync::Mutex<StudyPlan>>,
    study_id: Uuid,
    pair: Uuid,
    assignment_id: Uuid,
) -> Result<(), StudyError> {
    if let Some(a_wins) = studies::vote_outcome(&db.pool, assignment_id).await? {
        lock(plan).record_outcome(pair, a_wins);
    }
    let study = studies::by_id(&db.pool, study_id).await?;
    if !study.stop_when_decided || study.status != StudyStatus::Open {
        return Ok(());
    }
    let stop = {
        let plan = lock(plan);
        let votes: u64 = plan.pairs.iter().map(|p| p.votes).sum();
        allocation::should_stop(
            &plan.evidence,
            allocation::LIVE_ALPHA,
            votes,
            study.vote_budget.map(|b| b.max(0) as u64),
        )
    };
    if stop && studies::close_study_when_decided(&db.pool, study_id).await? {
        tracing::info!(study = %study.slug, "stopping rule met: study closed");
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
    let r = q::record_vote(&db.pool, assignment_id, &token.hash(), choice, response_ms).await?;
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
                lock(&plan).record_vote(pair);
                after_decisive_vote(db, &plan, study, pair, assignment_id).await?;
            }
        }
        return Ok(VoteOutcome::Recorded);
    }
    // Not inserted: already answered (idempotent), or refused by the study's rules.
    if !r.study_open {
        return Err(StudyError::NotOpen);
    }
    if !r.allowed {
        return Err(StudyError::invalid(
            "choice",
            format!("'{}' is not offered in this study", choice.as_str()),
        ));
    }
    Ok(VoteOutcome::AlreadyRecorded)
}
