//! What this process remembers of the participants it served lately, so that a request for
//! the next comparison can go straight to the statement that stores one, without reading
//! the participant first. It is only ever a hint: that statement re-checks, against the
//! database, everything the hint stands for (the token, the study's status and pairs, the
//! participant's target), and the unique indexes refuse a second open assignment or a
//! prompt and model pair seen before — so a hint gone stale (another process served the
//! participant, an admin closed the study) costs a re-read, never a wrong answer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::{Allocation, Study};

/// Participants remembered at most; beyond that, an arbitrary one is forgotten for each one
/// added (a forgotten participant's next request reads them again). An entry is about 100
/// bytes plus 48 per comparison seen: 20,000 participants with 100 each, about 100 MB.
pub const CAPACITY: usize = 20_000;

/// What a pick needs of the participant's study.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StudyTerms {
    pub id: Uuid,
    pub pairs_version: i64,
    pub gold_rate: f64,
    pub allocation: Allocation,
    pub assignment_timeout_s: i32,
}

impl From<&Study> for StudyTerms {
    fn from(s: &Study) -> StudyTerms {
        StudyTerms {
            id: s.id,
            pairs_version: s.pairs_version,
            gold_rate: s.gold_rate,
            allocation: s.allocation,
            assignment_timeout_s: s.assignment_timeout_s,
        }
    }
}

/// What a process knows of a participant between their requests.
#[derive(Debug, Clone)]
pub struct Known {
    pub participant_id: Uuid,
    /// Their study as the last statement about this participant read it.
    pub study: StudyTerms,
    /// The (prompt, model pair) combinations they have had.
    pub seen: HashSet<(Uuid, Uuid)>,
    /// The assignment this process handed them last and has not seen answered.
    pub open: Option<Uuid>,
}

/// The remembered participants by token hash; cheap to clone, shared by all requests.
#[derive(Debug, Clone, Default)]
pub struct KnownParticipants {
    by_token: Arc<Mutex<HashMap<String, Known>>>,
}

impl KnownParticipants {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        // A panic elsewhere while holding the lock leaves hints, which are re-checked anyway.
        self.by_token.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is known of the token's participant with no assignment open: the case a
    /// request may act on without reading them first.
    pub fn ready(&self, token_hash: &str) -> Option<Known> {
        self.map()
            .get(token_hash)
            .filter(|k| k.open.is_none())
            .cloned()
    }

    pub fn remember(&self, token_hash: &str, known: Known) {
        let mut map = self.map();
        if map.len() >= CAPACITY && !map.contains_key(token_hash) {
            if let Some(any) = map.keys().next().cloned() {
                map.remove(&any);
            }
        }
        map.insert(token_hash.to_string(), known);
    }

    pub fn forget(&self, token_hash: &str) {
        self.map().remove(token_hash);
    }

    /// A vote on `assignment` was recorded here: if it answers the assignment this process
    /// handed out, the participant has none open now; anything else means another process
    /// served them in between, and they are forgotten.
    pub fn answered(&self, token_hash: &str, assignment: Uuid) {
        let mut map = self.map();
        match map.get_mut(token_hash) {
            Some(k) if k.open == Some(assignment) => k.open = None,
            Some(_) => {
                map.remove(token_hash);
            }
            None => {}
        }
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Allocation, StudyStatus};

    fn known(open: Option<Uuid>) -> Known {
        let study = Study {
            id: Uuid::new_v4(),
            slug: "s".into(),
            title: "S".into(),
            question: "Which?".into(),
            instructions: String::new(),
            consent_text: String::new(),
            notice: String::new(),
            votes_per_participant: 10,
            allow_tie: false,
            allow_both_bad: false,
            gold_rate: 0.0,
            completion_code: "C".into(),
            completion_url: String::new(),
            status: StudyStatus::Open,
            pairs_version: 1,
            fast_vote_ms: 700,
            assignment_timeout_s: 1800,
            allocation: Allocation::Uniform,
            stop_when_decided: false,
            vote_budget: None,
        };
        Known {
            participant_id: Uuid::new_v4(),
            study: StudyTerms::from(&study),
            seen: HashSet::new(),
            open,
        }
    }

    #[test]
    fn a_participant_with_an_open_assignment_is_not_ready_until_it_is_answered_here() {
        let known_ = KnownParticipants::default();
        let a = Uuid::new_v4();
        known_.remember("t", known(Some(a)));
        assert!(
            known_.ready("t").is_none(),
            "an open assignment must be re-read"
        );
        known_.answered("t", a);
        let k = known_.ready("t").expect("answered here: ready");
        assert_eq!(k.open, None);
    }

    #[test]
    fn a_vote_on_another_assignment_forgets_the_participant() {
        let known_ = KnownParticipants::default();
        known_.remember("t", known(Some(Uuid::new_v4())));
        known_.answered("t", Uuid::new_v4());
        assert!(known_.is_empty(), "served elsewhere: nothing to trust");
        // Unknown tokens stay unknown.
        known_.answered("u", Uuid::new_v4());
        assert!(known_.ready("u").is_none());
    }

    #[test]
    fn memory_is_bounded() {
        let known_ = KnownParticipants::default();
        let k = known(None);
        for i in 0..CAPACITY + 10 {
            known_.remember(&format!("t{i}"), k.clone());
        }
        assert_eq!(known_.len(), CAPACITY);
        // The newest is kept, and replacing a known one evicts nobody.
        assert!(known_.ready(&format!("t{}", CAPACITY + 9)).is_some());
        known_.remember(&format!("t{}", CAPACITY + 9), known(None));
        assert_eq!(known_.len(), CAPACITY);
        known_.forget(&format!("t{}", CAPACITY + 9));
        assert_eq!(known_.len(), CAPACITY - 1);
    }
}
