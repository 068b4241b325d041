//! Gold (attention check) results per participant and response times.
//!
//! A gold row passes when the participant picked the side whose model name does not end
//! in `#broken`. A participant "failed gold" when they have at least one gold row and
//! their pass rate is below 1; participants without gold rows never count as failed.

use std::collections::{HashMap, HashSet};

use super::model::{GoldResult, Participants};
use super::votes::VoteRecord;

pub(crate) struct GoldSummary<'a> {
    pub summary: Participants,
    pub failed: HashSet<&'a str>,
}

pub(crate) fn summarise(votes: &[VoteRecord]) -> GoldSummary<'_> {
    let mut gold: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut everyone: HashSet<&str> = HashSet::new();
    let mut person: HashMap<&str, &str> = HashMap::new();
    let mut fast: HashSet<&str> = HashSet::new();
    let mut fast_votes = 0u64;
    let mut times: Vec<i64> = Vec::new();
    for v in votes {
        everyone.insert(&v.participant_id);
        person.insert(&v.participant_id, v.person());
        if v.fast {
            fast_votes += 1;
            fast.insert(v.person());
        }
        if let Some(ms) = v.response_ms {
            times.push(ms);
        }
        if let Some(passed) = v.gold_passed() {
            let e = gold.entry(&v.participant_id).or_default();
            e.0 += 1;
            e.1 += passed as u64;
        }
    }
    let gold_rows: u64 = gold.values().map(|g| g.0).sum();
    let gold_passed: u64 = gold.values().map(|g| g.1).sum();
    let failed: HashSet<&str> = gold
        .iter()
        .filter(|(_, (n, p))| p < n)
        .map(|(id, _)| *id)
        .collect();
    let mut failed_ids: Vec<String> = failed
        .iter()
        .map(|id| person.get(id).copied().unwrap_or(id).to_string())
        .collect();
    failed_ids.sort();
    let mut fast_ids: Vec<String> = fast.iter().map(|s| s.to_string()).collect();
    fast_ids.sort();
    let mut groups: HashMap<(u64, u64), u64> = HashMap::new();
    for &(rows, passed) in gold.values() {
        *groups.entry((rows, passed)).or_default() += 1;
    }
    let mut gold_results: Vec<GoldResult> = groups
        .into_iter()
        .map(|((gold_rows, gold_passed), participants)| GoldResult {
            gold_rows,
            gold_passed,
            participants,
        })
        .collect();
    gold_results.sort();
    GoldSummary {
        summary: Participants {
            count: everyone.len() as u64,
            with_gold: gold.len() as u64,
            gold_rows,
            gold_passed,
            gold_pass_rate: (gold_rows > 0).then(|| gold_passed as f64 / gold_rows as f64),
            failed_gold: failed.len() as u64,
            failed_gold_ids: failed_ids,
            fast_votes,
            fast_participant_ids: fast_ids,
            gold_results,
            excluded: 0,
            excluded_votes: 0,
            excluded_fast_votes: 0,
            median_response_ms: median(&mut times),
        },
        failed,
    }
}

/// Median (mean of the two middle values for an even count).
fn median(values: &mut [i64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (_, &mut hi, _) = values.select_nth_unstable(n / 2);
    if !n.is_multiple_of(2) {
        return Some(hi as f64);
    }
    let lo = values[..n / 2].iter().copied().max().unwrap_or(hi);
    Some((lo as f64 + hi as f64) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_odd_and_even() {
        assert_eq!(median(&mut [5, 1, 3]), Some(3.0));
        assert_eq!(median(&mut [4, 1, 3, 2]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}
