//! Agreement between participants who judged the same item: a prompt and an unordered
//! model pair. Each judgement is one of four nominal categories, taken relative to the
//! pair (so left/right placement does not matter): `a` (model_a preferred), `b`, `tie`,
//! `both_bad`.

use std::collections::HashMap;

use super::dataset::CompactVote;
use super::model::Agreement;
use crate::stats::agreement::{fleiss_kappa, krippendorff_alpha_nominal};

/// Agreement over items judged by two or more participants; `None` when there are none.
///
/// Krippendorff's alpha uses every such item (it allows unequal numbers of ratings).
/// Fleiss' kappa needs equal numbers, so it uses the items with the most common number
/// of ratings (ties go to the larger number).
pub(crate) fn compute(votes: &[CompactVote]) -> Option<Agreement> {
    // Sort (item, participant, file order) instead of hashing: one pass then finds each
    // participant's first vote per item and each item's counts (a third of the time of
    // hash maps at a million votes).
    let mut keyed: Vec<(u64, u32, u32)> = votes
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                ((v.prompt as u64) << 32) | v.pair as u64,
                v.participant,
                i as u32,
            )
        })
        .collect();
    keyed.sort_unstable();
    // Each participant gives one rating per item: a repeated judgement of the same item
    // by the same person is not a second rater, so only their first vote counts.
    let mut multi: Vec<[u32; 4]> = Vec::new();
    let mut k = 0;
    while k < keyed.len() {
        let item = keyed[k].0;
        let mut counts = [0u32; 4];
        let mut last_participant = None;
        while k < keyed.len() && keyed[k].0 == item {
            let (_, participant, row) = keyed[k];
            if last_participant != Some(participant) {
                counts[votes[row as usize].outcome.index()] += 1;
                last_participant = Some(participant);
            }
            k += 1;
        }
        if counts.iter().sum::<u32>() >= 2 {
            multi.push(counts);
        }
    }
    if multi.is_empty() {
        return None;
    }
    let tables: Vec<Vec<u32>> = multi.iter().map(|c| c.to_vec()).collect();
    let mut by_size: HashMap<u32, u64> = HashMap::new();
    for t in &tables {
        *by_size.entry(t.iter().sum()).or_default() += 1;
    }
    let (raters, _) = by_size
        .iter()
        .max_by_key(|(size, count)| (**count, **size))
        .map(|(s, c)| (*s, *c))
        .unwrap_or((2, 0));
    let fleiss_items: Vec<Vec<u32>> = tables
        .iter()
        .filter(|t| t.iter().sum::<u32>() == raters)
        .cloned()
        .collect();
    Some(Agreement {
        n_items: tables.len() as u64,
        krippendorff_alpha: krippendorff_alpha_nominal(&tables),
        fleiss_kappa: fleiss_kappa(&fleiss_items),
        fleiss_n_items: fleiss_items.len() as u64,
        fleiss_raters_per_item: raters as u64,
    })
}
