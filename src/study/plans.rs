//! The plans of all studies this process serves (one [`StudyPlan`] each), what the
//! process is to the others on its database (the issuer id it marks its comparisons with,
//! and how often it had to re-read counts because another process issues in a study too),
//! and the participants it served lately.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::known::KnownParticipants;
use super::scheduler::StudyPlan;

/// The plans of all studies this process serves.
#[derive(Debug, Clone)]
pub struct Scheduler {
    plans: Arc<Mutex<HashMap<Uuid, Arc<Mutex<StudyPlan>>>>>,
    /// This process, as the `model_pairs.last_issuer` it writes with each comparison.
    issuer: Uuid,
    /// Re-reads of the counts so far (`/metrics`): none while alone on its studies.
    rereads: Arc<AtomicU64>,
    /// The participants this process served lately.
    known: KnownParticipants,
}

impl Default for Scheduler {
    fn default() -> Scheduler {
        Scheduler {
            plans: Arc::default(),
            issuer: Uuid::new_v4(),
            rereads: Arc::default(),
            known: KnownParticipants::default(),
        }
    }
}

impl Scheduler {
    pub fn issuer(&self) -> Uuid {
        self.issuer
    }

    pub fn known(&self) -> &KnownParticipants {
        &self.known
    }

    pub fn count_reread(&self) {
        self.rereads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rereads(&self) -> u64 {
        self.rereads.load(Ordering::Relaxed)
    }

    /// The plan for a study if it is loaded and current.
    pub fn current(&self, study: Uuid, version: i64) -> Option<Arc<Mutex<StudyPlan>>> {
        let plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        plans
            .get(&study)
            .filter(|p| lock(p).version == version)
            .cloned()
    }

    pub fn install(&self, study: Uuid, plan: StudyPlan) -> Arc<Mutex<StudyPlan>> {
        let plan = Arc::new(Mutex::new(plan));
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        plans.insert(study, plan.clone());
        plan
    }

    pub fn get(&self, study: Uuid) -> Option<Arc<Mutex<StudyPlan>>> {
        self.plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&study)
            .cloned()
    }
}

/// Locks a plan; a panic elsewhere while holding it leaves counts that are still usable.
pub fn lock(plan: &Mutex<StudyPlan>) -> std::sync::MutexGuard<'_, StudyPlan> {
    plan.lock().unwrap_or_else(|p| p.into_inner())
}
