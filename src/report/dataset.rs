//! Votes turned into compact integer records: models sorted by name (so model id order is
//! byte order), unordered pairs sorted by (model_a, model_b), outcomes relative to model_a.

use std::collections::HashMap;

use super::votes::{Choice, VoteRecord};

/// Outcome of one comparison from model_a's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    WinA,
    WinB,
    Tie,
    BothBad,
}

impl Outcome {
    /// Index in the agreement categories `a`, `b`, `tie`, `both_bad`.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct CompactVote {
    pub participant: u32,
    pub prompt: u32,
    pub pair: u32,
    pub category: Option<u32>,
    pub outcome: Outcome,
    /// The raw choice (for position bias).
    pub choice: Choice,
    /// Index of the source row in the input slice.
    pub row: u32,
}

pub(crate) struct Dataset<'a> {
    pub models: Vec<&'a str>,
    pub pairs: Vec<(u32, u32)>,
    pub categories: Vec<&'a str>,
    pub n_participants: usize,
    pub n_prompts: usize,
    pub votes: Vec<CompactVote>,
}

/// Interns strings to dense ids in first-seen order.
struct Interner<'a> {
    ids: HashMap<&'a str, u32>,
    names: Vec<&'a str>,
}

impl<'a> Interner<'a> {
    fn new() -> Self {
        Self {
            ids: HashMap::new(),
            names: Vec::new(),
        }
    }
    fn id(&mut self, s: &'a str) -> u32 {
        let next = self.names.len() as u32;
        *self.ids.entry(s).or_insert_with(|| {
            self.names.push(s);
            next
        })
    }
}

/// Builds the dataset from the comparison rows for which `keep(row)` holds.
pub(crate) fn build<'a>(
    votes: &'a [VoteRecord],
    keep: impl Fn(&VoteRecord) -> bool,
) -> Dataset<'a> {
    let mut models = Interner::new();
    let mut participants = Interner::new();
    let mut prompts = Interner::new();
    let mut categories = Interner::new();
    // First pass: raw ids in first-seen order; the sides are kept aside until the models
    // are renumbered.
    let mut compact = Vec::with_capacity(votes.len());
    let mut sides = Vec::with_capacity(votes.len());
    for (row, v) in votes.iter().enumerate() {
        if v.gold || !keep(v) {
            continue;
        }
        sides.push((models.id(&v.model_left), models.id(&v.model_right)));
        compact.push(CompactVote {
            participant: participants.id(&v.participant_id),
            prompt: prompts.id(&v.prompt_id),
            pair: 0,
            category: v.category.as_deref().map(|c| categories.id(c)),
            outcome: Outcome::Tie,
            choice: v.choice,
            row: row as u32,
        });
    }
    // Renumber models in byte order of their names.
    let mut order: Vec<u32> = (0..models.names.len() as u32).collect();
    order.sort_by(|&a, &b| models.names[a as usize].cmp(models.names[b as usize]));
    let mut rank = vec![0u32; order.len()];
    for (r, &m) in order.iter().enumerate() {
        rank[m as usize] = r as u32;
    }
    let sorted_models: Vec<&str> = order.iter().map(|&m| models.names[m as usize]).collect();
    // Pairs: discover, then renumber in (a, b) order.
    let mut pair_ids: HashMap<(u32, u32), u32> = HashMap::new();
    let mut pair_list: Vec<(u32, u32)> = Vec::new();
    let mut left_is_a = Vec::with_capacity(compact.len());
    for (v, &(l, r)) in compact.iter_mut().zip(&sides) {
        let (l, r) = (rank[l as usize], rank[r as usize]);
        let key = (l.min(r), l.max(r));
        let next = pair_list.len() as u32;
        v.pair = *pair_ids.entry(key).or_insert_with(|| {
            pair_list.push(key);
            next
        });
        left_is_a.push(l < r);
    }
    let mut pair_order: Vec<u32> = (0..pair_list.len() as u32).collect();
    pair_order.sort_by_key(|&p| pair_list[p as usize]);
    let mut pair_rank = vec![0u32; pair_order.len()];
    for (r, &p) in pair_order.iter().enumerate() {
        pair_rank[p as usize] = r as u32;
    }
    for (v, &a_left) in compact.iter_mut().zip(&left_is_a) {
        v.pair = pair_rank[v.pair as usize];
        v.outcome = match (v.choice, a_left) {
            (Choice::Left, true) | (Choice::Right, false) => Outcome::WinA,
            (Choice::Left, false) | (Choice::Right, true) => Outcome::WinB,
            (Choice::Tie, _) => Outcome::Tie,
            (Choice::BothBad, _) => Outcome::BothBad,
        };
    }
    Dataset {
        models: sorted_models,
        pairs: pair_order.iter().map(|&p| pair_list[p as usize]).collect(),
        categories: categories.names,
        n_participants: participants.names.len(),
        n_prompts: prompts.names.len(),
        votes: compact,
    }
}
