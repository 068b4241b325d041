//! The participant's next comparison. A participant this process served last time (see
//! [`super::known`]) costs one statement: the scheduler picks from what is remembered, and
//! the statement that stores the pick checks that it still holds. Anyone else — and anyone
//! for whom that check fails — is read from the database first.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::db::assignments as a;
use crate::db::issuing::{Issue, Issued, Stored};
use crate::db::participation::ParticipantState;
use crate::db::{studies, Db};

use super::known::{Known, KnownParticipants, StudyTerms};
use super::participation::{Comparison, Next, ParticipantToken, Progress};
use super::plans::{lock, Scheduler};
use super::scheduler::{OpenAssignment, Pick, StudyPlan};
use super::{Study, StudyError, StudyStatus};

/// The participant's current comparison (the unanswered one, if any), a new one, or the end.
/// Concurrent calls with one token get the same assignment: the database holds at most one
/// open assignment per participant, and whoever loses that race reads the winner's.
pub async fn next(
    db: &Db,
    scheduler: &Scheduler,
    token: &ParticipantToken,
) -> Result<(Study, Next), StudyError> {
    let hash = token.hash();
    let known = scheduler.known();
    let mut hint = known.ready(&hash);
    let mut fresh: Option<Facts> = None;
    // Each round either returns or learns something (a concurrent request's assignment, a
    // pair this participant has now seen, that the hint was stale); a few rounds cover any
    // realistic race.
    for _ in 0..8 {
        let (k, facts) = match hint.take() {
            Some(k) => (k, None),
            None => match read_participant(db, &hash).await?.settle(known, &hash) {
                ControlFlow::Break(answer) => return Ok(answer),
                ControlFlow::Continue((k, facts)) => (k, Some(facts)),
            },
        };
        match pick_and_store(db, scheduler, &hash, k, facts.is_some()).await? {
            Round::Shown(shown) => {
                let (k, study, comparison) = *shown;
                known.remember(&hash, k);
                return Ok((study, Next::Compare(comparison)));
            }
            Round::NothingLeft => {
                known.forget(&hash);
                // Nothing new for them, by what was just read: the end (below).
                if let Some(facts) = facts {
                    fresh = Some(facts);
                    break;
                }
            }
            Round::Stale => known.forget(&hash),
        }
    }
    let facts = match fresh {
        Some(facts) => facts,
        None => match read_participant(db, &hash).await?.settle(known, &hash) {
            ControlFlow::Break(answer) => return Ok(answer),
            ControlFlow::Continue((_, facts)) => facts,
        },
    };
    // A study whose images are not there yet has nothing to show: never hand out a
    // completion code for no work.
    if facts.votes_done == 0 {
        return Err(StudyError::NothingToCompare);
    }
    // Nothing new is left for this participant (a small study): they are done early.
    let next = done(&facts.study, facts.is_prolific, false);
    Ok((facts.study, next))
}

fn done(study: &Study, is_prolific: bool, ended_early: bool) -> Next {
    Next::Done {
        completion_code: study.completion_code.clone(),
        redirect_url: is_prolific.then(|| study.redirect_url()),
        ended_early,
    }
}

/// A participant as the database has them now.
enum Read {
    /// Finished, or their study ended: nothing to pick.
    Answer(Study, Next),
    /// They have an unanswered assignment: show it again.
    Open(Known, Study, Comparison),
    Pick(Known, Facts),
}

impl Read {
    /// The answer a read gives at once (the end, or the open comparison again), with the
    /// participant remembered or forgotten accordingly; else what a pick starts from.
    fn settle(
        self,
        known: &KnownParticipants,
        hash: &str,
    ) -> ControlFlow<(Study, Next), (Known, Facts)> {
        match self {
            Read::Answer(study, next) => {
                known.forget(hash);
                ControlFlow::Break((study, next))
            }
            Read::Open(k, study, comparison) => {
                known.remember(hash, k);
                ControlFlow::Break((study, Next::Compare(comparison)))
            }
            Read::Pick(k, facts) => ControlFlow::Continue((k, facts)),
        }
    }
}

/// What the end of the study for a participant depends on, as read.
struct Facts {
    study: Study,
    votes_done: i32,
    is_prolific: bool,
}

async fn read_participant(db: &Db, hash: &str) -> Result<Read, StudyError> {
    let state: ParticipantState = db
        .states
        .run(hash.to_string())
        .await?
        .ok_or(StudyError::Unauthenticated)?;
    let study = Study::try_from(state.study)?;
    if state.votes_done >= study.votes_per_participant {
        let next = done(&study, state.is_prolific, false);
        return Ok(Read::Answer(study, next));
    }
    match study.status {
        StudyStatus::Draft => return Err(StudyError::NotOpen),
        StudyStatus::Closed => {
            let next = done(&study, state.is_prolific, true);
            return Ok(Read::Answer(study, next));
        }
        StudyStatus::Open | StudyStatus::Closing => {}
    }
    let seen: HashSet<(Uuid, Uuid)> = state
        .seen_prompts
        .iter()
        .copied()
        .zip(state.seen_model_pairs.iter().copied())
        .collect();
    let mut k = Known {
        participant_id: state.participant_id,
        study: StudyTerms::from(&study),
        seen,
        open: None,
    };
    if let (Some(id), Some(prompt)) = (state.open_assignment, state.open_prompt) {
        k.open = Some(id);
        let progress = Progress {
            done: state.votes_done,
            target: study.votes_per_participant,
        };
        let comparison = Comparison {
            assignment_id: id,
            prompt,
            progress,
        };
        return Ok(Read::Open(k, study, comparison));
    }
    let facts = Facts {
        study,
        votes_done: state.votes_done,
        is_prolific: state.is_prolific,
    };
    Ok(Read::Pick(k, facts))
}

/// How one pick went.
enum Round {
    Shown(Box<(Known, Study, Comparison)>),
    /// The scheduler has nothing this participant has not seen.
    NothingLeft,
    /// What was known of the participant no longer holds, or a concurrent request won.
    Stale,
}

/// Picks a comparison for the participant as `k` describes them and stores it, if that
/// still holds; `k`, updated, is what to remember of them then. `read`: `k` was just read
/// from the database (else it is remembered, and a plan that is not loaded at its version
/// means that the study changed: read it again).
async fn pick_and_store(
    db: &Db,
    scheduler: &Scheduler,
    hash: &str,
    mut k: Known,
    read: bool,
) -> Result<Round, StudyError> {
    let study = k.study;
    let Some(plan) = plan_for(db, scheduler, &study, read).await? else {
        return Ok(Round::Stale);
    };
    sync_counts(db, scheduler, &plan, study.id).await?;
    let id = Uuid::new_v4();
    let (pick, prompt, loaded_at) = {
        let mut plan = lock(&plan);
        // The setting can change while the plan stays loaded: take it from the study.
        plan.allocation = study.allocation;
        let Some(pick) = plan.pick(&k.seen, study.gold_rate, &mut rand::thread_rng()) else {
            return Ok(Round::NothingLeft);
        };
        if let Pick::Pair {
            pair_id, a_left, ..
        } = &pick
        {
            plan.track_pick(id, *pair_id, *a_left);
        }
        let prompt_id = match &pick {
            Pick::Pair { prompt_id, .. } | Pick::Gold { prompt_id, .. } => *prompt_id,
        };
        let prompt = plan.prompt_text(prompt_id).unwrap_or_default().to_string();
        (pick, prompt, plan.loaded_at)
    };
    let what = match pick {
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
            let (image_a, image_b) = if a_left {
                (left_image, right_image)
            } else {
                (right_image, left_image)
            };
            Issued::Pair {
                pair_id,
                prompt_id,
                model_pair_id,
                image_a,
                image_b,
                issuer: scheduler.issuer(),
                since: loaded_at,
            }
        }
        Pick::Gold {
            prompt_id,
            image,
            broken_side_left,
        } => Issued::Gold {
            prompt_id,
            image,
            broken_left: broken_side_left,
        },
    };
    let issue = Issue {
        id,
        participant_id: k.participant_id,
        token_hash: hash.to_string(),
        study_id: study.id,
        pairs_version: study.pairs_version,
        what,
    };
    let issued_at = Instant::now();
    let stored = match db.issues.run(issue).await {
        Ok(stored) => stored,
        Err(e) => {
            lock(&plan).unissue(id);
            return Err(e.into());
        }
    };
    let row = match stored {
        Stored::Stored(row) => row,
        Stored::Refused | Stored::AlreadyOpen | Stored::Seen => {
            lock(&plan).unissue(id);
            return Ok(Round::Stale);
        }
    };
    if let Issued::Pair {
        pair_id,
        prompt_id,
        model_pair_id,
        ..
    } = what
    {
        let mut plan = lock(&plan);
        plan.opened(id, pair_id, row.a_left, issued_at);
        if row.other {
            plan.other_process_seen();
        }
        k.seen.insert((prompt_id, model_pair_id));
    }
    let row = *row;
    let study = Study::try_from(row.study)?;
    let progress = Progress {
        done: row.votes_done,
        target: study.votes_per_participant,
    };
    k.study = StudyTerms::from(&study);
    k.open = Some(id);
    let comparison = Comparison {
        assignment_id: id,
        prompt,
        progress,
    };
    Ok(Round::Shown(Box::new((k, study, comparison))))
}

/// The study's plan at its current pairs version. When it is missing or outdated it is
/// loaded if `may_load`; else `None` (a remembered participant's study has changed since).
async fn plan_for(
    db: &Db,
    scheduler: &Scheduler,
    study: &StudyTerms,
    may_load: bool,
) -> Result<Option<Arc<Mutex<StudyPlan>>>, StudyError> {
    let version = study.pairs_version;
    let timeout = Duration::from_secs(study.assignment_timeout_s.max(1) as u64);
    if let Some(plan) = scheduler.current(study.id, version) {
        lock(&plan).timeout = timeout;
        return Ok(Some(plan));
    }
    if !may_load {
        return Ok(None);
    }
    let rows = a::load_plan_rows(&db.pool, study.id).await?;
    let outcomes = studies::pair_outcomes(&db.pool, study.id).await?;
    // Loading is not atomic with the version read; re-read it so a concurrent import is not missed.
    let version_now = a::pairs_version(&db.pool, study.id).await?;
    Ok(Some(
        scheduler.install(
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
        ),
    ))
}

fn open_assignments(rows: Vec<a::OpenRow>) -> Vec<OpenAssignment> {
    rows.into_iter()
        .map(|o| OpenAssignment {
            id: o.id,
            pair_id: o.pair_id,
            age: Duration::from_millis(o.age_ms.max(0) as u64),
            a_left: o.a_left,
        })
        .collect()
}

/// Re-reads the plan's counts when they are older than the plan's sync interval, so that
/// processes sharing the database balance together (one request per interval does it).
async fn sync_counts(
    db: &Db,
    scheduler: &Scheduler,
    plan: &Mutex<StudyPlan>,
    study_id: Uuid,
) -> Result<(), StudyError> {
    let sent = Instant::now();
    if !lock(plan).claim_sync(sent) {
        return Ok(());
    }
    scheduler.count_reread();
    let counts = a::load_counts(&db.pool, study_id).await?;
    lock(plan).sync(sent, &counts.votes, open_assignments(counts.open));
    Ok(())
}
