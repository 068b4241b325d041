//! Adaptive allocation and the live stopping rule, as pure functions over the evidence per
//! model pair (anytime-valid states, fed with votes as they arrive). The scheduler asks
//! `choose_model_pair` at the one point where it picks a model pair; everything else it
//! guarantees (prompts balanced within a pair, block-randomised sides, no repeats, one open
//! assignment) is applied after that choice exactly as under uniform allocation.

pub use crate::domain::Allocation;
use crate::stats::holm::holm;
use crate::stats::sequential::{cs_at, Sequential};

/// The significance level live decisions and allocation use (the report's default).
pub const LIVE_ALPHA: f64 = 0.05;

/// Share of comparisons that adaptive allocation still hands out the uniform way
/// (fewest-first), so every pair keeps being sampled and a wrong early lead can be corrected.
pub const EXPLORATION: f64 = 0.1;

/// Holm across the model pairs on the anytime-valid p-values: which pairs are decided.
/// Every model pair of the study is in the family, voted on or not.
pub fn decided(evidence: &[Sequential], alpha: f64) -> Vec<bool> {
    let p: Vec<f64> = evidence.iter().map(Sequential::p_value).collect();
    holm(&p).into_iter().map(|adj| adj < alpha).collect()
}

/// The stopping rule: every model pair decided, or `votes` reached `budget`.
pub fn should_stop(evidence: &[Sequential], alpha: f64, votes: u64, budget: Option<u64>) -> bool {
    if budget.is_some_and(|b| votes >= b) {
        return true;
    }
    !evidence.is_empty() && decided(evidence, alpha).into_iter().all(|d| d)
}

/// How much one more vote is expected to narrow the pair's confidence set at its current
/// counts (a smoothed win-rate estimate weighs the two possible outcomes).
pub fn expected_shrink(wins_a: u64, wins_b: u64, alpha: f64) -> f64 {
    let width = |s: u64, f: u64| {
        let [lo, hi] = cs_at(s, f, alpha);
        hi - lo
    };
    let p = (wins_a as f64 + 1.0) / ((wins_a + wins_b) as f64 + 2.0);
    width(wins_a, wins_b) - (p * width(wins_a + 1, wins_b) + (1.0 - p) * width(wins_a, wins_b + 1))
}

/// The model pair the next comparison should come from, or `None` to leave the choice to
/// fewest-first: when `explore` is drawn (with chance `EXPLORATION`), when every available
/// pair is decided, or when no pair is available. `available[i]` says whether the
/// participant can still be shown something of model pair `i`.
pub fn choose_model_pair(
    evidence: &[Sequential],
    available: &[bool],
    alpha: f64,
    explore: bool,
) -> Option<usize> {
    if explore {
        return None;
    }
    let decided = decided(evidence, alpha);
    let mut best: Option<(usize, f64)> = None;
    for (i, e) in evidence.iter().enumerate() {
        if decided[i] || !available.get(i).copied().unwrap_or(false) {
            continue;
        }
        let gain = expected_shrink(e.wins_a, e.wins_b, alpha);
        // Strictly greater: equal gains keep the lower index, so the choice is reproducible.
        if best.is_none_or(|(_, g)| gain > g) {
            best = Some((i, gain));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(counts: &[(u64, u64)]) -> Vec<Sequential> {
        counts
            .iter()
            .map(|&(s, f)| Sequential::from_counts(s, f, LIVE_ALPHA))
            .collect()
    }

    #[test]
    fn decided_pairs_get_no_adaptive_votes() {
        // Pair 0 is far past any threshold (90 of 100); pair 1 is open.
        let e = evidence(&[(90, 10), (30, 28)]);
        assert_eq!(decided(&e, LIVE_ALPHA), vec![true, false]);
        assert_eq!(
            choose_model_pair(&e, &[true, true], LIVE_ALPHA, false),
            Some(1)
        );
        // Exploring or nothing available: the scheduler's fewest-first decides.
        assert_eq!(choose_model_pair(&e, &[true, true], LIVE_ALPHA, true), None);
        assert_eq!(
            choose_model_pair(&e, &[true, false], LIVE_ALPHA, false),
            None
        );
    }

    #[test]
    fn the_pair_with_fewer_votes_shrinks_more() {
        let e = evidence(&[(60, 55), (6, 5)]);
        assert_eq!(
            choose_model_pair(&e, &[true, true], LIVE_ALPHA, false),
            Some(1)
        );
        assert!(expected_shrink(6, 5, LIVE_ALPHA) > expected_shrink(60, 55, LIVE_ALPHA));
    }

    #[test]
    fn stopping_rule_needs_every_pair_or_the_budget() {
        let all = evidence(&[(90, 10), (5, 95)]);
        let one_open = evidence(&[(90, 10), (50, 50)]);
        assert!(should_stop(&all, LIVE_ALPHA, 200, None));
        assert!(!should_stop(&one_open, LIVE_ALPHA, 200, None));
        assert!(!should_stop(&one_open, LIVE_ALPHA, 200, Some(201)));
        assert!(should_stop(&one_open, LIVE_ALPHA, 201, Some(201)));
        // A study without pairs has nothing decided.
        assert!(!should_stop(&[], LIVE_ALPHA, 0, None));
    }

    #[test]
    fn allocation_parses_and_names_itself() {
        assert_eq!(
            Allocation::parse("adaptive").ok(),
            Some(Allocation::Adaptive)
        );
        assert_eq!(
            Allocation::parse(" uniform").ok(),
            Some(Allocation::Uniform)
        );
        let err = Allocation::parse("greedy").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("allocation") && e.contains("greedy")));
        assert_eq!(Allocation::Adaptive.as_str(), "adaptive");
    }
}
