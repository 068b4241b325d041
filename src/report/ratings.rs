//! Bradley-Terry ratings on the Elo scale, per connected component, with cluster-bootstrap
//! percentile intervals and the rank upper bound.

use super::dataset::{CompactVote, Dataset, Outcome};
use super::model::{Component, ModelRating};
use super::pairs::PairCounts;
use super::settings::{Cluster, ReportSettings};
use super::ReportError;
use crate::stats::bootstrap::{self, ClusterCounts};
use crate::stats::bt::{self, BtPair, Estimator, ELO_PER_NAT};

pub(crate) struct Ratings {
    pub models: Vec<ModelRating>,
    pub components: Vec<Component>,
    pub warnings: Vec<String>,
}

/// One component's models (global ids) and pairs (global pair ids, local endpoints).
struct Part {
    models: Vec<usize>,
    pair_ids: Vec<usize>,
    local_pairs: Vec<BtPair>,
    /// Local index of the anchor model, with its rating.
    anchor: Option<(usize, f64)>,
}

impl Part {
    /// Fits from per-pair doubled scores and games (indexed by global pair id) and returns
    /// the ratings of this part's models (in `models` order).
    fn fit(
        &self,
        score2: impl Fn(usize) -> f64,
        games: impl Fn(usize) -> f64,
    ) -> Result<(Vec<f64>, Estimator), bt::BtError> {
        let score: Vec<f64> = self.pair_ids.iter().map(|&p| score2(p) / 2.0).collect();
        let games: Vec<f64> = self.pair_ids.iter().map(|&p| games(p)).collect();
        let fit = bt::fit(self.models.len(), &self.local_pairs, &score, &games)?;
        // θ has mean 0: centre on 1000, or move so the anchor sits at its rating.
        let shift = match self.anchor {
            Some((i, r)) => r - ELO_PER_NAT * fit.theta[i],
            None => 1000.0,
        };
        Ok((
            fit.theta.iter().map(|t| shift + ELO_PER_NAT * t).collect(),
            fit.estimator,
        ))
    }
}

pub(crate) fn compute(
    ds: &Dataset,
    counts: &[PairCounts],
    settings: &ReportSettings,
) -> Result<Ratings, ReportError> {
    let m = ds.models.len();
    let anchor_id = match &settings.anchor {
        Some(a) => Some((
            ds.models
                .iter()
                .position(|&name| name == a.model)
                .ok_or_else(|| ReportError::UnknownAnchor(a.model.clone()))?,
            a.rating,
        )),
        None => None,
    };
    let bt_pairs: Vec<BtPair> = ds
        .pairs
        .iter()
        .map(|&(a, b)| BtPair {
            i: a as usize,
            j: b as usize,
        })
        .collect();
    let games: Vec<f64> = counts.iter().map(|c| c.total() as f64).collect();
    let score2: Vec<f64> = counts
        .iter()
        .map(|c| (2 * c.wins_a + c.ties + c.both_bad) as f64)
        .collect();
    let comp = bt::components(m, &bt_pairs, &games);
    let n_comp = comp.iter().max().map_or(0, |c| c + 1);
    let mut local = vec![0usize; m];
    let mut parts: Vec<Part> = (0..n_comp)
        .map(|_| Part {
            models: Vec::new(),
            pair_ids: Vec::new(),
            local_pairs: Vec::new(),
            anchor: None,
        })
        .collect();
    for (g, &c) in comp.iter().enumerate() {
        local[g] = parts[c].models.len();
        parts[c].models.push(g);
    }
    for (p, bp) in bt_pairs.iter().enumerate() {
        let part = &mut parts[comp[bp.i]];
        part.pair_ids.push(p);
        part.local_pairs.push(BtPair {
            i: local[bp.i],
            j: local[bp.j],
        });
    }
    if let Some((g, r)) = anchor_id {
        parts[comp[g]].anchor = Some((local[g], r));
    }

    let mut warnings = Vec::new();
    let mut rating = vec![f64::NAN; m];
    let mut estimators = Vec::with_capacity(n_comp);
    for part in &parts {
        let (r, est) = part
            .fit(|p| score2[p], |p| games[p])
            .map_err(ReportError::Fit)?;
        for (&g, v) in part.models.iter().zip(r) {
            rating[g] = v;
        }
        if est == Estimator::PriorFallback {
            warnings.push(no_mle_warning(ds, part, &score2, &games));
        }
        estimators.push(est);
    }
    if n_comp > 1 {
        let names: Vec<String> = parts
            .iter()
            .map(|p| {
                format!(
                    "{{{}}}",
                    p.models
                        .iter()
                        .map(|&g| ds.models[g])
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect();
        warnings.push(format!(
            "the comparison graph is disconnected into {n_comp} parts: {}; models in different parts were never compared, directly or through others, so their ratings cannot be compared; each part is rated separately{}",
            names.join(" | "),
            if settings.anchor.is_some() { " (the anchor fixes only its own part; the others are centred on 1000)" } else { " and centred on 1000" }
        ));
    }

    // Bootstrap: each round refits every part on resampled clusters.
    let clusters = cluster_counts(&ds.votes, settings.cluster);
    let rounds = bootstrap::run(
        &clusters,
        ds.pairs.len(),
        settings.bootstrap,
        settings.seed,
        |s2, g| {
            let mut out = vec![f64::NAN; m];
            let mut fallback = vec![false; parts.len()];
            for (k, part) in parts.iter().enumerate() {
                if let Ok((r, est)) = part.fit(|p| s2[p] as f64, |p| g[p] as f64) {
                    for (&gm, v) in part.models.iter().zip(r) {
                        out[gm] = v;
                    }
                    fallback[k] = est == Estimator::PriorFallback;
                }
            }
            (out, fallback)
        },
    );
    let failed = rounds
        .iter()
        .filter(|(r, _)| r.iter().any(|v| v.is_nan()))
        .count();
    if failed > 0 {
        warnings.push(format!(
            "{failed} bootstrap rounds failed to converge and were left out of the intervals"
        ));
    }
    let alpha = settings.alpha;
    let ci: Vec<Option<[f64; 2]>> = (0..m)
        .map(|g| {
            let values: Vec<f64> = rounds.iter().map(|(r, _)| r[g]).collect();
            let lo = bootstrap::percentile(&values, alpha / 2.0)?;
            let hi = bootstrap::percentile(&values, 1.0 - alpha / 2.0)?;
            Some([lo, hi])
        })
        .collect();

    let mut n_votes = vec![0u64; m];
    for (bp, c) in bt_pairs.iter().zip(counts) {
        n_votes[bp.i] += c.total();
        n_votes[bp.j] += c.total();
    }
    let mut models: Vec<ModelRating> = (0..m)
        .map(|g| ModelRating {
            name: ds.models[g].to_string(),
            rating: rating[g],
            ci: ci[g],
            rank_ub: ci[g].map(|[_, hi]| {
                let above = parts[comp[g]]
                    .models
                    .iter()
                    .filter(|&&o| ci[o].is_some_and(|[lo, _]| lo > hi))
                    .count();
                1 + above as u64
            }),
            n_votes: n_votes[g],
            component: comp[g],
        })
        .collect();
    models.sort_by(|x, y| {
        x.component
            .cmp(&y.component)
            .then(y.rating.total_cmp(&x.rating))
            .then(x.name.cmp(&y.name))
    });
    let components = parts
        .iter()
        .zip(&estimators)
        .enumerate()
        .map(|(k, (part, est))| Component {
            models: part
                .models
                .iter()
                .map(|&g| ds.models[g].to_string())
                .collect(),
            estimator: match est {
                Estimator::Mle => "mle",
                Estimator::PriorFallback => "prior_fallback",
            },
            bootstrap_fallback_rounds: rounds.iter().filter(|(_, f)| f[k]).count() as u64,
        })
        .collect();
    Ok(Ratings {
        models,
        components,
        warnings,
    })
}

fn no_mle_warning(ds: &Dataset, part: &Part, score2: &[f64], games: &[f64]) -> String {
    let mut scored = vec![0.0; part.models.len()];
    let mut played = vec![0.0; part.models.len()];
    for (bp, &p) in part.local_pairs.iter().zip(&part.pair_ids) {
        scored[bp.i] += score2[p] / 2.0;
        scored[bp.j] += games[p] - score2[p] / 2.0;
        played[bp.i] += games[p];
        played[bp.j] += games[p];
    }
    let mut notes = Vec::new();
    for (k, &g) in part.models.iter().enumerate() {
        if scored[k] == 0.0 {
            notes.push(format!("{} never won or tied", ds.models[g]));
        } else if scored[k] == played[k] {
            notes.push(format!("{} never lost or tied", ds.models[g]));
        }
    }
    let why = if notes.is_empty() {
        "one group of models never lost or tied against the rest".to_string()
    } else {
        notes.join(", ")
    };
    format!(
        "no finite maximum-likelihood rating exists ({why}); these ratings use a weak N(0, {:.0}²) prior on log-strength ({:.0} Elo points), so extreme ratings mean only 'far apart'",
        (1.0 / bt::PRIOR_PRECISION).sqrt(),
        ELO_PER_NAT * (1.0 / bt::PRIOR_PRECISION).sqrt()
    )
}

/// Aggregates the votes into per-cluster counts: one entry per (cluster, pair).
pub(crate) fn cluster_counts(votes: &[CompactVote], cluster: Cluster) -> ClusterCounts {
    let mut keyed: Vec<(u64, u32)> = votes
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let c = match cluster {
                Cluster::Participant => v.participant as u64,
                Cluster::Prompt => v.prompt as u64,
                Cluster::None => i as u64,
            };
            let s2 = match v.outcome {
                Outcome::WinA => 2,
                Outcome::WinB => 0,
                Outcome::Tie | Outcome::BothBad => 1,
            };
            ((c << 32) | v.pair as u64, s2)
        })
        .collect();
    keyed.sort_unstable_by_key(|&(k, _)| k);
    let mut cc = ClusterCounts {
        offsets: vec![0],
        ..ClusterCounts::default()
    };
    let mut current_cluster = None;
    for (k, s2) in keyed {
        let (c, p) = (k >> 32, (k & 0xFFFF_FFFF) as u32);
        if current_cluster != Some(c) {
            if current_cluster.is_some() {
                cc.offsets.push(cc.pair.len());
            }
            current_cluster = Some(c);
        } else if cc.pair.last() == Some(&p) {
            let last = cc.pair.len() - 1;
            cc.score2[last] += s2;
            cc.games[last] += 1;
            continue;
        }
        cc.pair.push(p);
        cc.score2.push(s2);
        cc.games.push(1);
    }
    if current_cluster.is_some() {
        cc.offsets.push(cc.pair.len());
    }
    cc
}
