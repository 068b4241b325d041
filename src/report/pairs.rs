//! Head-to-head statistics per pair: counts, exact test, intervals, Holm, sample size,
//! and the anytime-valid test over the votes in time order.

use super::dataset::{CompactVote, Outcome};
use super::model::{PairStats, SequentialStats};
use super::settings::TARGET_POWER;
use crate::stats::sequential::Sequential;
use crate::stats::{binomial, holm, intervals, power};

/// Vote counts of one pair, from model_a's side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PairCounts {
    pub wins_a: u64,
    pub wins_b: u64,
    pub ties: u64,
    pub both_bad: u64,
}

impl PairCounts {
    pub(crate) fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::WinA => self.wins_a += 1,
            Outcome::WinB => self.wins_b += 1,
            Outcome::Tie => self.ties += 1,
            Outcome::BothBad => self.both_bad += 1,
        }
    }
    pub(crate) fn total(&self) -> u64 {
        self.wins_a + self.wins_b + self.ties + self.both_bad
    }
}

/// Counts per pair over the given votes.
pub(crate) fn count<'v>(
    n_pairs: usize,
    votes: impl Iterator<Item = &'v CompactVote>,
) -> Vec<PairCounts> {
    let mut counts = vec![PairCounts::default(); n_pairs];
    for v in votes {
        counts[v.pair as usize].add(v.outcome);
    }
    counts
}

/// The anytime-valid state per pair after the given votes, which must come in time order;
/// ties and both-bad are left out, as for the exact test.
pub(crate) fn sequential<'v>(
    n_pairs: usize,
    votes_in_time_order: impl Iterator<Item = &'v CompactVote>,
    alpha: f64,
) -> Vec<Sequential> {
    let mut seq = vec![Sequential::new(alpha, true); n_pairs];
    for v in votes_in_time_order {
        match v.outcome {
            Outcome::WinA => seq[v.pair as usize].push(true),
            Outcome::WinB => seq[v.pair as usize].push(false),
            Outcome::Tie | Outcome::BothBad => {}
        }
    }
    seq
}

/// Statistics for every pair with at least one vote, in pair order (model_a, model_b);
/// the Holm adjustment runs over the pairs that have a p-value.
pub(crate) fn stats(
    models: &[&str],
    pairs: &[(u32, u32)],
    counts: &[PairCounts],
    seq: &[Sequential],
    alpha: f64,
) -> Vec<PairStats> {
    let mut seq_of_row = Vec::new();
    let mut out: Vec<PairStats> = pairs
        .iter()
        .zip(counts)
        .zip(seq)
        .filter(|((_, c), _)| c.total() > 0)
        .map(|((&(a, b), c), sq)| {
            seq_of_row.push(sq);
            let n = c.wins_a + c.wins_b;
            let win_rate = (n > 0).then(|| c.wins_a as f64 / n as f64);
            PairStats {
                model_a: models[a as usize].to_string(),
                model_b: models[b as usize].to_string(),
                wins_a: c.wins_a,
                wins_b: c.wins_b,
                ties: c.ties,
                both_bad: c.both_bad,
                n_decisive: n,
                win_rate_a: win_rate,
                p_value: binomial::binom_test_two_sided(c.wins_a, n, 0.5),
                ci_wilson: intervals::wilson(c.wins_a, n, alpha),
                ci_clopper_pearson: intervals::clopper_pearson(c.wins_a, n, alpha),
                p_holm: None,
                significant: false,
                n_needed: win_rate.and_then(|p| power::n_needed(p, alpha, TARGET_POWER)),
                sequential: None,
            }
        })
        .collect();
    let tested: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].p_value.is_some())
        .collect();
    let raw: Vec<f64> = tested.iter().filter_map(|&i| out[i].p_value).collect();
    for (&i, adj) in tested.iter().zip(holm::holm(&raw)) {
        out[i].p_holm = Some(adj);
        out[i].significant = adj < alpha;
    }
    let raw: Vec<f64> = tested.iter().map(|&i| seq_of_row[i].p_value()).collect();
    for (&i, adj) in tested.iter().zip(holm::holm(&raw)) {
        let sq = seq_of_row[i];
        out[i].sequential = Some(SequentialStats {
            p_value: sq.p_value(),
            p_holm: adj,
            cs: sq.cs().unwrap_or([0.0, 1.0]),
            decided: adj < alpha,
        });
    }
    out
}
