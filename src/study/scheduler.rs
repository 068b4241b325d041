//! Which pair a participant sees next, and on which side each image goes.
//!
//! The counts that drive balancing live in memory per study (loaded from the database on
//! first use and whenever the study's pairs change), so choosing a pair costs no query.
//! Rules:
//! - never the same prompt and model pair twice for one participant (also enforced by a
//!   unique index, in case two servers share a database);
//! - fewest first: the model pair with the fewest assignments, then the prompt with the
//!   fewest, then the pair itself, at random among equals. Counting assignments rather than
//!   finished votes spreads concurrent participants instead of sending all of them to the
//!   same pair until their votes arrive; for one participant at a time the two are equal;
//! - sides are block-randomised per model pair: of every two consecutive assignments of a
//!   model pair, one shows model A on the left and the other on the right, in random order,
//!   so sides are random for each assignment and balanced within one per model pair;
//! - under adaptive allocation the model pair comes from `allocation::choose_model_pair`
//!   (the rules above then pick the prompt and sides within it); otherwise, and for its
//!   exploration share, fewest-first as above.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use rand::Rng;
use uuid::Uuid;

use super::allocation::{self, Allocation, EXPLORATION, LIVE_ALPHA};
use crate::stats::sequential::Sequential;

/// A candidate pair with the counts that balance it.
#[derive(Debug, Clone)]
pub struct PairSlot {
    pub id: Uuid,
    pub prompt: usize,
    pub model_pair: usize,
    pub image_a: Uuid,
    pub image_b: Uuid,
    pub issued: u64,
    pub votes: u64,
}

/// An image that can serve as a gold check.
#[derive(Debug, Clone)]
pub struct GoldImage {
    pub image: Uuid,
    pub prompt: usize,
}

#[derive(Debug, Default)]
pub struct StudyPlan {
    pub version: i64,
    pub prompt_ids: Vec<Uuid>,
    pub prompt_texts: Vec<String>,
    pub model_pair_ids: Vec<Uuid>,
    pub pairs: Vec<PairSlot>,
    pub gold_images: Vec<GoldImage>,
    pub allocation: Allocation,
    /// Anytime-valid evidence per model pair (index as in `model_pair_ids`).
    pub evidence: Vec<Sequential>,
    prompt_issued: Vec<u64>,
    model_pair_issued: Vec<u64>,
    /// The side drawn for the first assignment of the current block of two, per model pair.
    block_side: Vec<bool>,
    pair_index: HashMap<Uuid, usize>,
}

/// One pair as the database holds it.
#[derive(Debug, Clone)]
pub struct PairRow {
    pub id: Uuid,
    pub prompt_id: Uuid,
    pub prompt_text: String,
    pub model_pair_id: Uuid,
    pub image_a: Uuid,
    pub image_b: Uuid,
    pub issued: u64,
    pub votes: u64,
}

/// What the scheduler decided for a participant.
#[derive(Debug, Clone, PartialEq)]
pub enum Pick {
    Pair {
        pair_id: Uuid,
        prompt_id: Uuid,
        model_pair_id: Uuid,
        left_image: Uuid,
        right_image: Uuid,
    },
    Gold {
        prompt_id: Uuid,
        image: Uuid,
        broken_side_left: bool,
    },
}

impl StudyPlan {
    pub fn new(version: i64, rows: Vec<PairRow>, gold: Vec<(Uuid, Uuid, String)>) -> StudyPlan {
        let mut plan = StudyPlan {
            version,
            ..StudyPlan::default()
        };
        let mut prompt_index: HashMap<Uuid, usize> = HashMap::new();
        let mut mp_index: HashMap<Uuid, usize> = HashMap::new();
        let mut prompt_of = |plan: &mut StudyPlan, id: Uuid, text: &str| -> usize {
            *prompt_index.entry(id).or_insert_with(|| {
                plan.prompt_ids.push(id);
                plan.prompt_texts.push(text.to_string());
                plan.prompt_issued.push(0);
                plan.prompt_ids.len() - 1
            })
        };
        for row in rows {
            let prompt = prompt_of(&mut plan, row.prompt_id, &row.prompt_text);
            let model_pair = *mp_index.entry(row.model_pair_id).or_insert_with(|| {
                plan.model_pair_ids.push(row.model_pair_id);
                plan.model_pair_issued.push(0);
                plan.block_side.push(false);
                plan.evidence.push(Sequential::new(LIVE_ALPHA, false));
                plan.model_pair_ids.len() - 1
            });
            plan.prompt_issued[prompt] += row.issued;
            plan.model_pair_issued[model_pair] += row.issued;
            plan.pair_index.insert(row.id, plan.pairs.len());
            plan.pairs.push(PairSlot {
                id: row.id,
                prompt,
                model_pair,
                image_a: row.image_a,
                image_b: row.image_b,
                issued: row.issued,
                votes: row.votes,
            });
        }
        for (image, prompt_id, text) in gold {
            let prompt = prompt_of(&mut plan, prompt_id, &text);
            plan.gold_images.push(GoldImage { image, prompt });
        }
        plan
    }

    /// Sets the allocation and seeds the evidence from stored (pair id, wins of image A,
    /// wins of image B) counts.
    pub fn with_allocation(
        mut self,
        allocation: Allocation,
        outcomes: &[(Uuid, u64, u64)],
    ) -> Self {
        self.allocation = allocation;
        let mut counts = vec![(0u64, 0u64); self.model_pair_ids.len()];
        for (pair, a, b) in outcomes {
            if let Some(&i) = self.pair_index.get(pair) {
                let c = &mut counts[self.pairs[i].model_pair];
                c.0 += a;
                c.1 += b;
            }
        }
        self.evidence = counts
            .into_iter()
            .map(|(a, b)| Sequential::from_counts(a, b, LIVE_ALPHA))
            .collect();
        self
    }

    pub fn prompt_text(&self, prompt_id: Uuid) -> Option<&str> {
        self.prompt_ids
            .iter()
            .position(|p| *p == prompt_id)
            .map(|i| self.prompt_texts[i].as_str())
    }

    /// Chooses the next comparison for a participant who has seen `seen` (prompt, model
    /// pair) combinations, or `None` when nothing new is left. `gold_rate` is the chance
    /// of a gold check instead.
    pub fn pick<R: Rng>(
        &mut self,
        seen: &HashSet<(Uuid, Uuid)>,
        gold_rate: f64,
        rng: &mut R,
    ) -> Option<Pick> {
        if !self.gold_images.is_empty() && gold_rate > 0.0 && rng.gen_bool(gold_rate.min(1.0)) {
            let gold = &self.gold_images[rng.gen_range(0..self.gold_images.len())];
            return Some(Pick::Gold {
                prompt_id: self.prompt_ids[gold.prompt],
                image: gold.image,
                broken_side_left: rng.gen_bool(0.5),
            });
        }
        let focus = match self.allocation {
            Allocation::Uniform => None,
            Allocation::Adaptive => {
                let explore = rng.gen_bool(EXPLORATION);
                let available = self.available_model_pairs(seen);
                allocation::choose_model_pair(&self.evidence, &available, LIVE_ALPHA, explore)
            }
        };
        let mut best: Option<(usize, (u64, u64, u64))> = None;
        let mut ties = 0u32;
        for (i, slot) in self.pairs.iter().enumerate() {
            if focus.is_some_and(|mp| mp != slot.model_pair) {
                continue;
            }
            if seen.contains(&(
                self.prompt_ids[slot.prompt],
                self.model_pair_ids[slot.model_pair],
            )) {
                continue;
            }
            let key = if focus.is_some() {
                // Within the chosen model pair its own least-shown prompt comes first, so
                // prompts stay balanced within the pair however uneven the pairs are.
                (slot.issued, self.prompt_issued[slot.prompt], 0)
            } else {
                (
                    self.model_pair_issued[slot.model_pair],
                    self.prompt_issued[slot.prompt],
                    slot.issued,
                )
            };
            match &best {
                Some((_, k)) if key > *k => {}
                Some((_, k)) if key == *k => {
                    // Reservoir sampling: each of the equal candidates is kept with equal chance.
                    ties += 1;
                    if rng.gen_range(0..ties) == 0 {
                        best = Some((i, key));
                    }
                }
                _ => {
                    best = Some((i, key));
                    ties = 1;
                }
            }
        }
        let (i, _) = best?;
        let mp = self.pairs[i].model_pair;
        let n = self.model_pair_issued[mp];
        let a_left = if n.is_multiple_of(2) {
            let side = rng.gen_bool(0.5);
            self.block_side[mp] = side;
            side
        } else {
            !self.block_side[mp]
        };
        self.model_pair_issued[mp] += 1;
        self.prompt_issued[self.pairs[i].prompt] += 1;
        let slot = &mut self.pairs[i];
        slot.issued += 1;
        let (left_image, right_image) = if a_left {
            (slot.image_a, slot.image_b)
        } else {
            (slot.image_b, slot.image_a)
        };
        Some(Pick::Pair {
            pair_id: slot.id,
            prompt_id: self.prompt_ids[slot.prompt],
            model_pair_id: self.model_pair_ids[slot.model_pair],
            left_image,
            right_image,
        })
    }

    /// Per model pair: whether the participant has some prompt of it left to see.
    fn available_model_pairs(&self, seen: &HashSet<(Uuid, Uuid)>) -> Vec<bool> {
        let mut available = vec![false; self.model_pair_ids.len()];
        for slot in &self.pairs {
            if !available[slot.model_pair]
                && !seen.contains(&(
                    self.prompt_ids[slot.prompt],
                    self.model_pair_ids[slot.model_pair],
                ))
            {
                available[slot.model_pair] = true;
            }
        }
        available
    }

    /// Adds a decisive vote to the evidence of the pair's model pair (`a_wins`: the pair's
    /// image A was chosen).
    pub fn record_outcome(&mut self, pair_id: Uuid, a_wins: bool) {
        if let Some(&i) = self.pair_index.get(&pair_id) {
            let mp = self.pairs[i].model_pair;
            if let Some(e) = self.evidence.get_mut(mp) {
                e.push(a_wins);
            }
        }
    }

    /// Takes back an assignment that could not be stored.
    pub fn unissue(&mut self, pair_id: Uuid) {
        if let Some(&i) = self.pair_index.get(&pair_id) {
            let slot = &mut self.pairs[i];
            slot.issued = slot.issued.saturating_sub(1);
            let (mp, prompt) = (slot.model_pair, slot.prompt);
            self.model_pair_issued[mp] = self.model_pair_issued[mp].saturating_sub(1);
            self.prompt_issued[prompt] = self.prompt_issued[prompt].saturating_sub(1);
        }
    }

    pub fn record_vote(&mut self, pair_id: Uuid) {
        if let Some(&i) = self.pair_index.get(&pair_id) {
            self.pairs[i].votes += 1;
        }
    }
}

/// The plans of all studies this process serves.
#[derive(Debug, Default, Clone)]
pub struct Scheduler {
    plans: Arc<Mutex<HashMap<Uuid, Arc<Mutex<StudyPlan>>>>>,
}

impl Scheduler {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn plan(prompts: usize, model_pairs: usize) -> StudyPlan {
        let prompt_ids: Vec<Uuid> = (0..prompts).map(|_| Uuid::new_v4()).collect();
        let mp_ids: Vec<Uuid> = (0..model_pairs).map(|_| Uuid::new_v4()).collect();
        let mut rows = Vec::new();
        for p in &prompt_ids {
            for mp in &mp_ids {
                rows.push(PairRow {
                    id: Uuid::new_v4(),
                    prompt_id: *p,
                    prompt_text: "x".into(),
                    model_pair_id: *mp,
                    image_a: Uuid::new_v4(),
                    image_b: Uuid::new_v4(),
                    issued: 0,
                    votes: 0,
                });
            }
        }
        StudyPlan::new(1, rows, vec![])
    }

    #[test]
    fn balances_model_pairs_prompts_and_sides() {
        let mut plan = plan(10, 3);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut a_left: HashMap<Uuid, i64> = HashMap::new();
        for _ in 0..20 {
            let mut seen = HashSet::new();
            for _ in 0..6 {
                match plan.pick(&seen, 0.0, &mut rng).unwrap() {
                    Pick::Pair {
                        pair_id,
                        prompt_id,
                        model_pair_id,
                        left_image,
                        ..
                    } => {
                        assert!(
                            seen.insert((prompt_id, model_pair_id)),
                            "same prompt and model pair twice"
                        );
                        let slot = plan.pairs.iter().find(|s| s.id == pair_id).unwrap();
                        *a_left.entry(model_pair_id).or_default() +=
                            if left_image == slot.image_a { 1 } else { -1 };
                    }
                    Pick::Gold { .. } => unreachable!(),
                }
            }
        }
        let per_mp: Vec<u64> = plan.model_pair_issued.clone();
        assert_eq!(
            per_mp.iter().max().unwrap() - per_mp.iter().min().unwrap(),
            0,
            "{per_mp:?}"
        );
        let per_prompt = &plan.prompt_issued;
        assert!(
            per_prompt.iter().max().unwrap() - per_prompt.iter().min().unwrap() <= 1,
            "{per_prompt:?}"
        );
        for (mp, diff) in a_left {
            assert!(diff.abs() <= 1, "model pair {mp} side imbalance {diff}");
        }
    }

    #[test]
    fn runs_out_when_everything_was_seen() {
        let mut plan = plan(2, 1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut seen = HashSet::new();
        for _ in 0..2 {
            if let Some(Pick::Pair {
                prompt_id,
                model_pair_id,
                ..
            }) = plan.pick(&seen, 0.0, &mut rng)
            {
                seen.insert((prompt_id, model_pair_id));
            }
        }
        assert_eq!(plan.pick(&seen, 0.0, &mut rng), None);
    }
}
