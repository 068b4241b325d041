//! Which pair a participant sees next, and on which side each image goes.
//!
//! The counts that drive balancing live in memory per study (loaded from the database on
//! first use and whenever the study's pairs change), so choosing a pair costs no query.
//! Rules:
//! - never the same prompt and model pair twice for one participant (also enforced by a
//!   unique index, in case two servers share a database);
//! - fewest first: the model pair with the fewest counted assignments, then the prompt with
//!   the fewest, then the pair itself, at random among equals. An assignment counts once
//!   voted, or while it is open and younger than the study's assignment timeout: counting
//!   open ones spreads concurrent participants instead of sending all of them to the same
//!   pair until their votes arrive, and letting abandoned ones expire hands their pair out
//!   again, so the balance ends up in votes;
//! - sides are balanced per model pair: the plan proposes model A on the side it has been on
//!   less often (at random when even); the server's database then decides from the model
//!   pair's shared counter (blocks of two with opposite sides, the first drawn from a hash),
//!   so processes sharing a database keep one side balance;
//! - one balance for every process: once a plan sees another process issue comparisons in
//!   its study (each insert marks its model pair with this process's id and says whether
//!   another id marked it since the plan was read), it re-reads the counts (votes and side
//!   counts per pair, open assignments) when they are older than a few milliseconds — 2 ms plus
//!   100 µs per pair, so a re-read (a scan of the pairs) costs a small share of the time
//!   between them — and counts its own picks in between, so several `serve` processes on
//!   one database balance together. Alone on its study, a process never re-reads;
//! - under adaptive allocation the model pair comes from `allocation::choose_model_pair`
//!   (the rules above then pick the prompt and sides within it); otherwise, and for its
//!   exploration share, fewest-first as above.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use uuid::Uuid;

use super::allocation::{self, Allocation, EXPLORATION, LIVE_ALPHA};
pub use crate::domain::content::PairRow;
use crate::stats::sequential::Sequential;

/// A candidate pair with the counts that balance it.
#[derive(Debug, Clone)]
pub struct PairSlot {
    pub id: Uuid,
    pub prompt: usize,
    pub model_pair: usize,
    pub image_a: Uuid,
    pub image_b: Uuid,
    /// Votes plus open, unexpired assignments: what balancing counts.
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
    /// Counted assignments with model A on the left minus those with it on the right.
    side_skew: Vec<i64>,
    pair_index: HashMap<Uuid, usize>,
    /// Open assignments this plan counts, by id: their pair's index and side.
    open: HashMap<Uuid, (usize, bool)>,
    /// The same, oldest first, with when they were issued: expiry pops from the front.
    open_order: VecDeque<(Instant, Uuid)>,
    /// How long an unanswered assignment counts.
    pub timeout: Duration,
    /// When the counts were last read from the database.
    synced_at: Option<Instant>,
    /// This process's own picks that a re-read may not show yet: still being stored, or
    /// stored after the re-read was sent. A re-read keeps counting them.
    own: HashMap<Uuid, OwnPick>,
    /// The database's clock when the plan was read: a comparison another process issued
    /// since shows that the study is shared.
    pub loaded_at: DateTime<Utc>,
    /// Another process shares this study: re-read the counts (see [`sync_every`]).
    pub shared: bool,
}

/// A pick of this process, by assignment id: its pair, model A's side, when it was picked
/// and when its assignment was stored (`None` while the insert is in flight).
#[derive(Debug, Clone, Copy)]
struct OwnPick {
    pair: usize,
    a_left: bool,
    picked_at: Instant,
    stored_at: Option<Instant>,
}

/// How stale a plan's counts may get before they are read again from the database: a
/// re-read scans every pair of the study, so larger studies re-read less often. (At 20 µs
/// per pair, three processes on the 300 pairs of `bench votes` re-read every 8 ms each and
/// Postgres used twice the CPU per vote of one process; at 100 µs (32 ms): 7-10 % more cycles/s
/// in all, model pairs and sides still within ±2 at the end of the run. At 500 µs no
/// faster, and model pairs 10 apart at the end of one run.)
pub fn sync_every(pairs: usize) -> Duration {
    Duration::from_micros(2_000 + 100 * pairs as u64).min(Duration::from_millis(200))
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
        /// Model A (the pair's `image_a`) is on the left.
        a_left: bool,
    },
    Gold {
        prompt_id: Uuid,
        image: Uuid,
        broken_side_left: bool,
    },
}

/// An open assignment when the plan is loaded: its id, pair and age.
#[derive(Debug, Clone)]
pub struct OpenAssignment {
    pub id: Uuid,
    pub pair_id: Uuid,
    pub age: Duration,
    pub a_left: bool,
}

impl StudyPlan {
    /// A plan from the database's rows; `open` are the unanswered assignments counted in
    /// `rows`' `issued`, which expire `timeout` after they were issued.
    pub fn new(
        version: i64,
        rows: Vec<PairRow>,
        gold: Vec<(Uuid, Uuid, String)>,
        open: Vec<OpenAssignment>,
        timeout: Duration,
    ) -> StudyPlan {
        let mut plan = StudyPlan {
            version,
            timeout,
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
                plan.side_skew.push(0);
                plan.evidence.push(Sequential::new(LIVE_ALPHA, false));
                plan.model_pair_ids.len() - 1
            });
            plan.prompt_issued[prompt] += row.issued;
            plan.model_pair_issued[model_pair] += row.issued;
            plan.side_skew[model_pair] += 2 * row.a_left as i64 - row.votes as i64;
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
        plan.track_open(open, Instant::now());
        plan.synced_at = Some(Instant::now());
        plan
    }

    /// Remembers open assignments (already counted) so they can expire.
    fn track_open(&mut self, open: Vec<OpenAssignment>, now: Instant) {
        for o in open {
            if let Some(&i) = self.pair_index.get(&o.pair_id) {
                let mp = self.pairs[i].model_pair;
                self.side_skew[mp] += if o.a_left { 1 } else { -1 };
                self.open.insert(o.id, (i, o.a_left));
                self.open_order
                    .push_back((now.checked_sub(o.age).unwrap_or(now), o.id));
            }
        }
    }

    /// Whether the counts are older than [`sync_every`]; marks them fresh, so that of
    /// several concurrent requests one re-reads them.
    pub fn claim_sync(&mut self, now: Instant) -> bool {
        if !self.shared {
            return false;
        }
        match self.synced_at {
            Some(at) if now.saturating_duration_since(at) < sync_every(self.pairs.len()) => false,
            _ => {
                self.synced_at = Some(now);
                true
            }
        }
    }

    /// Replaces the counts with the database's, as read by a query sent at `sent`: `votes`
    /// per pair (id, votes, votes with A on the left) plus the open assignments, which also
    /// replace the ones tracked here. This process's picks that the read cannot have seen
    /// (stored after it was sent, or still being stored) are counted on top.
    pub fn sync(&mut self, sent: Instant, votes: &[(Uuid, i64, i64)], open: Vec<OpenAssignment>) {
        self.model_pair_issued.iter_mut().for_each(|c| *c = 0);
        self.prompt_issued.iter_mut().for_each(|c| *c = 0);
        self.side_skew.iter_mut().for_each(|c| *c = 0);
        for slot in &mut self.pairs {
            slot.issued = 0;
        }
        for &(id, n, a_left) in votes {
            if let Some(&i) = self.pair_index.get(&id) {
                let slot = &mut self.pairs[i];
                let n = n.max(0) as u64;
                slot.votes = n;
                slot.issued = n;
                self.model_pair_issued[slot.model_pair] += n;
                self.prompt_issued[slot.prompt] += n;
                self.side_skew[slot.model_pair] += 2 * a_left - n as i64;
            }
        }
        for o in &open {
            if let Some(&i) = self.pair_index.get(&o.pair_id) {
                let (mp, prompt) = (self.pairs[i].model_pair, self.pairs[i].prompt);
                self.pairs[i].issued += 1;
                self.model_pair_issued[mp] += 1;
                self.prompt_issued[prompt] += 1;
            }
        }
        let now = Instant::now();
        let in_read: HashSet<Uuid> = open.iter().map(|o| o.id).collect();
        self.open.clear();
        self.open_order.clear();
        self.track_open(open, now);
        // Stored before the read was sent: the read has it (open or voted). A pick whose
        // insert never returned (a database error) stops counting after the timeout.
        let timeout = self.timeout;
        self.own.retain(|_, o| match o.stored_at {
            Some(at) => at >= sent,
            None => now.saturating_duration_since(o.picked_at) < timeout,
        });
        let unseen: Vec<(Uuid, OwnPick)> = self
            .own
            .iter()
            .filter(|(id, _)| !in_read.contains(id))
            .map(|(id, o)| (*id, *o))
            .collect();
        for (id, o) in unseen {
            self.count(o.pair, o.a_left);
            if let Some(at) = o.stored_at {
                self.open.insert(id, (o.pair, o.a_left));
                self.open_order.push_back((at, id));
            }
        }
    }

    /// When the plan was read, by the database's clock.
    pub fn with_loaded_at(mut self, loaded_at: DateTime<Utc>) -> StudyPlan {
        self.loaded_at = loaded_at;
        self
    }

    /// A comparison stored by this process found that another process had issued one of
    /// the study's comparisons since the plan was read: from now on the counts are re-read.
    pub fn other_process_seen(&mut self) {
        if !self.shared {
            tracing::info!(
                "another process issues comparisons in this study: balancing through the database"
            );
        }
        self.shared = true;
    }

    /// Remembers the pick just made as assignment `id` until a re-read shows it.
    pub fn track_pick(&mut self, id: Uuid, pair_id: Uuid, a_left: bool) {
        if let Some(&pair) = self.pair_index.get(&pair_id) {
            let picked_at = Instant::now();
            self.own.insert(
                id,
                OwnPick {
                    pair,
                    a_left,
                    picked_at,
                    stored_at: None,
                },
            );
        }
    }

    /// Counts an assignment that was stored as open until it is answered or expires. For
    /// this process's own pick, `a_left` is the side the database decided, which may differ
    /// from the one the plan proposed.
    pub fn opened(&mut self, assignment: Uuid, pair_id: Uuid, a_left: bool, at: Instant) {
        if let Some(&i) = self.pair_index.get(&pair_id) {
            if let Some(own) = self.own.get_mut(&assignment) {
                if own.a_left != a_left {
                    self.side_skew[self.pairs[i].model_pair] += if a_left { 2 } else { -2 };
                    own.a_left = a_left;
                }
                own.stored_at = Some(Instant::now());
            }
            // Alone on the study no re-read will come to settle it: forget it now, or the
            // map would grow with every comparison this process ever issued.
            if !self.shared {
                self.own.remove(&assignment);
            }
            self.open.insert(assignment, (i, a_left));
            self.open_order.push_back((at, assignment));
        }
    }

    /// Stops counting open assignments issued `timeout` or longer before `now`: their
    /// participants left, and their pairs are handed out again.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.open_order.front() {
            if now.saturating_duration_since(at) < self.timeout {
                break;
            }
            self.open_order.pop_front();
            if let Some((i, a_left)) = self.open.remove(&id) {
                self.uncount(i, a_left);
            }
        }
    }

    fn uncount(&mut self, i: usize, a_left: bool) {
        let slot = &mut self.pairs[i];
        slot.issued = slot.issued.saturating_sub(1);
        let (mp, prompt) = (slot.model_pair, slot.prompt);
        self.model_pair_issued[mp] = self.model_pair_issued[mp].saturating_sub(1);
        self.prompt_issued[prompt] = self.prompt_issued[prompt].saturating_sub(1);
        self.side_skew[mp] -= if a_left { 1 } else { -1 };
    }

    fn count(&mut self, i: usize, a_left: bool) {
        let (mp, prompt) = (self.pairs[i].model_pair, self.pairs[i].prompt);
        self.pairs[i].issued += 1;
        self.model_pair_issued[mp] += 1;
        self.prompt_issued[prompt] += 1;
        self.side_skew[mp] += if a_left { 1 } else { -1 };
    }

    /// Model A on the left minus on the right, per model pair, in `model_pair_ids` order.
    pub fn side_skews(&self) -> &[i64] {
        &self.side_skew
    }

    /// The counted assignments per model pair, in `model_pair_ids` order.
    pub fn model_pair_counts(&self) -> &[u64] {
        &self.model_pair_issued
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
        self.expire(Instant::now());
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
        let a_left = match self.side_skew[mp].cmp(&0) {
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => rng.gen_bool(0.5),
        };
        self.count(i, a_left);
        let slot = &self.pairs[i];
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
            a_left,
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

    /// Takes back this process's pick `id`, which could not be stored.
    pub fn unissue(&mut self, id: Uuid) {
        if let Some(o) = self.own.remove(&id) {
            self.uncount(o.pair, o.a_left);
        }
    }

    /// A vote on `assignment`: an open assignment this plan counts turns into a vote (the
    /// count stays); any other (expired, or issued by another process) is counted now.
    pub fn record_vote(&mut self, assignment: Uuid, pair_id: Uuid, a_left: bool) {
        if let Some(&i) = self.pair_index.get(&pair_id) {
            self.pairs[i].votes += 1;
            if self.open.remove(&assignment).is_none() {
                self.count(i, a_left);
            }
        }
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
