//! The participant flow: join a study, get the next comparison, vote. Shared by the
//! server-rendered pages and the JSON API; neither knows the rules behind it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::participation::Stored;
use crate::db::{participation as q, studies, Db};

use super::allocation;
use super::plans::{lock, Scheduler};
use super::scheduler::{OpenAssignment, Pick, StudyPlan};
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

async fn plan_for(
    db: &Db,
    scheduler: &Scheduler,
    study: &Study,
    version: i64,
) -> Result<std::sync::Arc<std::sync::Mutex<StudyPlan>>, StudyError> {
    let timeout = Duration::from_secs(study.assignment_timeout_s.max(1) as u64);
    if let Some(plan) = scheduler.current(study.id, version) {
        lock(&plan).timeout = timeout;
        return Ok(plan);
    }
    let rows = q::load_plan_rows(&db.pool, study.id).await?;
    let outcomes = studies::pair_outcomes(&db.pool, study.id).await?;
    // Loading is not atomic with the version read; re-read it so a concurrent import is not missed.
    let version_now = q::pairs_version(&db.pool, study.id).await?;
    Ok(scheduler.install(
        study.id,
        StudyPlan::new(
            version_now.min(version),
            rows.pairs,
            rows.gold,
            open_assignments(rows.open),
            timeout,
        )
        .with_allocation(study.allocation, &outcomes)
        .with_loaded_at(rows.loaded_at),
    ))
}

fn open_assignments(rows: Vec<q::OpenRow>) -> Vec<OpenAssignment> {
    rows.into_iter()
        .map(|o| OpenAssignment {
            id: o.id,
            pair_id: o.pair_id,
            age: Duration::from_millis(o.age_ms.max(0) as u64),
            a_left: o.a_left,
        })
        .collect()
}

/// Re-reads the plan's counts when they are older than `SYNC_EVERY`, so that processes
/// sharing the database balance together (one request per interval does it).
async fn sync_counts(
    db: &Db,
    scheduler: &Scheduler,
    plan: &std::sync::Mutex<StudyPlan>,
    study_id: Uuid,
) -> Result<(), StudyError> {
    let sent = Instant::now();
    if !lock(plan).claim_sync(sent) {
        return Ok(());
    }
    scheduler.count_reread();
    let counts = q::load_counts(&db.pool, study_id).await?;
    lock(plan).sync(sent, &counts.votes, open_assignments(counts.open));
    Ok(())
}

/// The participant's current comparison (the unanswered one, if any), a new one, or the end.
/// Concurrent calls with one token get the same assignment: the database holds at most one
/// open assignment per participant, and whoever loses that race reads the winner's.
pub async fn next(
    db: &Db,
    scheduler: &Scheduler,
    token: &ParticipantToken,
) -> Result<(Study, Next), StudyError> {
    let mut state = db
        .states
        .run(token.hash())
        .await?
        .ok_or(StudyError::Unauthenticated)?;
    let study = Study::try_from(state.study)?;
    let is_prolific = state.is_prolific;
    let done = |ended_early: bool| Next::Done {
        completion_code: study.completion_code.clone(),
        redirect_url: is_prolific.then(|| study.redirect_url()),
        ended_early,
    };
    if state.votes_done >= study.votes_per_participant {
        let next = done(false);
        return Ok((study, next));
    }
    match study.status {
        StudyStatus::Draft => return Err(StudyError::NotOpen),
        StudyStatus::Closed => {
            let next = done(true);
            return Ok((study, next));
        }
        StudyStatus::Open | StudyStatus::Closing => {}
    }
    let progress = Progress {
        done: state.votes_done,
        target: study.votes_per_participant,
    };
    let mut plan = None;
    // Each round either returns or learns something (a concurrent request's assignment,
    // a pair this participant has now seen); a few rounds cover any realistic race.
    for _ in 0..8 {
        if let (Some(id), Some(prompt)) = (state.open_assignment, state.open_prompt.clone()) {
            return Ok((
                study,
                Next::Compare(Comparison {
                    assignment_id: id,
                    prompt,
                    progress,
                }),
            ));
        }
        let plan = match &plan {
            Some(p) => std::sync::Arc::clone(p),
            None => {
                let p = plan_for(db, scheduler, &study, study.pairs_version).await?;
                sync_counts(db, scheduler, &p, study.id).await?;
                plan = Some(std::sync::Arc::clone(&p));
                p
            }
        };
        let seen: HashSet<(Uuid, Uuid)> = state
            .seen_prompts
            .iter()
            .copied()
            .zip(state.seen_model_pairs.iter().copied())
            .collect();
        let id = Uuid::new_v4();
        let (pick, prompt, loaded_at) = {
            let mut plan = lock(&plan);
            // The setting can change while the plan stays loaded: take it from the study.
            plan.allocation = study.allocation;
            let Some(pick) = plan.pick(&seen, study.gold_rate, &mut rand::thread_rng()) else {
                break;
            };
            let prompt_id = match &pick {
                Pick::Pair { prompt_id, .. } | Pick::Gold { prompt_id, .. } => *prompt_id,
            };
            if let Pick::Pair {
                pair_id, a_left, ..
            } = &pick
            {
                plan.track_pick(id, *pair_id, *a_left);
            }
            let prompt = plan.prompt_text(prompt_id).unwrap_or_default().to_string();
            (pick, prompt, plan.loaded_at)
        };
        let issued_at = Instant::now();
        let by = (scheduler.issuer(), loaded_at);
        let (stored, pair) =
            match store_pick(db, state.participant_id, study.id, id, &pick, by).await {
                Ok(stored) => stored,
                Err(e) => {
                    lock(&plan).unissue(id);
                    return Err(e);
                }
            };
        match stored {
            Stored::Stored => {
                if let Some((pair, actual, other)) = pair {
                    let mut plan = lock(&plan);
                    plan.opened(id, pair, actual, issued_at);
                    if other {
                        plan.other_process_seen();
                    }
                }
                return Ok((
                    study,
                    Next::Compare(Comparison {
                        assignment_id: id,
                        prompt,
                        progress,
                    }),
                ));
            }
            Stored::AlreadyOpen | Stored::Seen => {
                if pair.is_some() {
                    lock(&plan).unissue(id);
                }
                state = db
                    .states
                    .run(token.hash())
                    .await?
                    .ok_or(StudyError::Unauthenticated)?;
            }
        }
    }
    // A study whose images are not there yet has nothing to show: never hand out a
    // completion code for no work.
    if state.votes_done == 0 {
        return Err(StudyError::NothingToCompare);
    }
    // Nothing new is left for this participant (a small study): they are done early.
    let next = done(false);
    Ok((study, next))
}

/// Stores the scheduler's pick as the participant's open assignment, `by` this process
/// (its issuer id, and when its plan was read); for comparisons, the pair it counts
/// against, the side stored for model A and whether another process issues in the study.
async fn store_pick(
    db: &Db,
    participant_id: Uuid,
    study_id: Uuid,
    id: Uuid,
    pick: &Pick,
    by: (Uuid, chrono::DateTime<chrono::Utc>),
) -> Result<(Stored, Option<(Uuid, bool, bool)>), StudyError> {
    Ok(match pick {
        Pick::Pair {
            pair_id,
            prompt_id,
            model_pair_id,
            left_image,
            right_image,
            a_left,
        } => {
            // The plan proposed sides from its own counts; the database decides them from
            // the model pair's counter, which every process shares.
            let (image_a, image_b) = if *a_left {
                (*left_image, *right_image)
            } else {
                (*right_image, *left_image)
            };
            let (stored, actual, other) = q::insert_pair_assignment(
                &db.relaxed,
                id,
                participant_id,
                study_id,
                *pair_id,
                *prompt_id,
                *model_pair_id,
                (image_a, image_b),
                by.0,
                by.1,
            )
            .await?;
            (stored, Some((*pair_id, actual, other)))
        }
        Pick::Gold {
            prompt_id,
            image,
            broken_side_left,
        } => {
            let side = if *broken_side_left { "left" } else { "right" };
            let stored = q::insert_assignment(
                &db.relaxed,
                id,
                participant_id,
                study_id,
                None,
                *prompt_id,
                None,
                *image,
                *image,
                Some(side),
            )
            .await?;
            (stored, None)
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
    let vote = q::VoteInput {
        assignment_id,
        token_hash: token.hash(),
        choice,
        response_ms,
    };
    let r = db.votes.run(vote).await?;
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
