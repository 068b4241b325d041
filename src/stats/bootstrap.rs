//! Cluster bootstrap over aggregated counts.
//!
//! Votes are grouped into clusters (a participant, a prompt, or each vote alone) and
//! each cluster's votes are pre-aggregated into a few (pair, score, games) entries, so a
//! bootstrap round costs one pass over those entries instead of one over the raw votes.

use super::rng::SplitMix64;

/// Per-cluster counts in compressed-row form: cluster `c` owns entries
/// `offsets[c]..offsets[c + 1]`; each entry is a pair index, twice the score of the pair's
/// first model (wins count 2, ties and both-bad 1) and the number of games.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterCounts {
    pub offsets: Vec<usize>,
    pub pair: Vec<u32>,
    pub score2: Vec<u32>,
    pub games: Vec<u32>,
}

impl ClusterCounts {
    pub fn n_clusters(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
}

/// Draws one resample of the clusters (with replacement, as many as there are) and adds
/// up their counts into `score2` and `games` (indexed by pair, cleared first).
pub fn resample(
    clusters: &ClusterCounts,
    rng: &mut SplitMix64,
    multiplicity: &mut Vec<u32>,
    score2: &mut [u64],
    games: &mut [u64],
) {
    let c = clusters.n_clusters();
    multiplicity.clear();
    multiplicity.resize(c, 0);
    for _ in 0..c {
        multiplicity[rng.below(c as u64) as usize] += 1;
    }
    score2.iter_mut().for_each(|s| *s = 0);
    games.iter_mut().for_each(|g| *g = 0);
    for (cluster, &mult) in multiplicity.iter().enumerate() {
        if mult == 0 {
            continue;
        }
        let mult = mult as u64;
        for e in clusters.offsets[cluster]..clusters.offsets[cluster + 1] {
            let p = clusters.pair[e] as usize;
            score2[p] += mult * clusters.score2[e] as u64;
            games[p] += mult * clusters.games[e] as u64;
        }
    }
}

/// Runs `rounds` bootstrap rounds on all available cores and returns `stat` of each
/// round, in round order. Round `r` uses its own random stream of `seed`, so the result
/// does not depend on the number of threads.
pub fn run<T, F>(
    clusters: &ClusterCounts,
    n_pairs: usize,
    rounds: usize,
    seed: u64,
    stat: F,
) -> Vec<T>
where
    T: Send,
    F: Fn(&[u64], &[u64]) -> T + Sync,
{
    if rounds == 0 {
        return Vec::new();
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, rounds);
    let per_thread = rounds.div_ceil(threads);
    let stat = &stat;
    let mut out: Vec<T> = Vec::with_capacity(rounds);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let start = t * per_thread;
                let end = ((t + 1) * per_thread).min(rounds);
                scope.spawn(move || {
                    let mut multiplicity = Vec::new();
                    let mut score2 = vec![0u64; n_pairs];
                    let mut games = vec![0u64; n_pairs];
                    (start..end)
                        .map(|r| {
                            let mut rng = SplitMix64::for_stream(seed, r as u64);
                            resample(
                                clusters,
                                &mut rng,
                                &mut multiplicity,
                                &mut score2,
                                &mut games,
                            );
                            stat(&score2, &games)
                        })
                        .collect::<Vec<T>>()
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                // A panic in a worker is a bug in `stat`; re-raise it on this thread.
                Err(payload) => std::panic::resume_unwind(payload),
            }
        }
    });
    out
}

/// Percentile with linear interpolation between order statistics (numpy's default).
/// NaN values are ignored; `None` when no value is left.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_clusters() -> ClusterCounts {
        ClusterCounts {
            offsets: vec![0, 1, 3],
            pair: vec![0, 0, 1],
            score2: vec![4, 1, 0],
            games: vec![2, 1, 3],
        }
    }

    #[test]
    fn resample_totals_are_multiples_of_clusters() {
        let cc = two_clusters();
        let totals = run(&cc, 2, 50, 9, |s, g| (s.to_vec(), g.to_vec()));
        assert_eq!(totals.len(), 50);
        for (s, g) in &totals {
            // Two draws: games of pair 1 is 3 times the draws of cluster 1.
            let draws1 = g[1] / 3;
            assert_eq!(g[0], 2 * (2 - draws1) + draws1);
            assert_eq!(s[0], 4 * (2 - draws1) + draws1);
        }
        assert_eq!(totals, run(&cc, 2, 50, 9, |s, g| (s.to_vec(), g.to_vec())));
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        assert_eq!(
            percentile(&[4.0, 1.0, 3.0, 2.0, f64::NAN], 0.25),
            Some(1.75)
        );
        assert_eq!(percentile(&[], 0.5), None);
    }
}
