//! `arenaxl simulate`: whole studies in memory, through the real scheduler (`StudyPlan`,
//! with its allocation) and the real anytime-valid statistics, with simulated participants
//! of known preference. It answers: how many votes until every pair is decided, how often a
//! decision is wrong, and, for a null study of equal models, how often each test claims a
//! difference when someone looks after every vote.

use std::collections::{HashMap, HashSet};

use anyhow::{bail, Context};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use uuid::Uuid;

use crate::stats::binomial::binom_test_two_sided;
use crate::study::allocation::{decided, Allocation, LIVE_ALPHA};
use crate::study::scheduler::{PairRow, Pick, StudyPlan};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Models and their true Elo ratings, e.g. A=1000,B=980,C=900 (at least two).
    #[arg(long)]
    pub models: String,
    /// uniform (fewest-first) or adaptive.
    #[arg(long, default_value = "uniform")]
    pub allocation: String,
    /// Vote budget of each simulated study: a run that has not decided every pair by then
    /// counts as undecided.
    #[arg(long, default_value_t = 20_000)]
    pub max_votes: u64,
    /// Simulated studies.
    #[arg(long, default_value_t = 200)]
    pub runs: u64,
    /// Seed; the same seed gives the same figures on any machine and thread count.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Prompts per study (each model pair has an image pair for every prompt).
    #[arg(long, default_value_t = 40)]
    pub prompts: usize,
    /// Comparisons per simulated participant.
    #[arg(long, default_value_t = 20)]
    pub votes_per_participant: u64,
    /// Runs of the null study (every model at the same rating).
    #[arg(long, default_value_t = 2_000)]
    pub null_runs: u64,
    /// Votes of each null study, with a look after every vote.
    #[arg(long, default_value_t = 2_000)]
    pub null_votes: u64,
}

/// What one setting of the simulation gives.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub models: Vec<(String, f64)>,
    pub allocation: &'static str,
    pub alpha: f64,
    pub runs: u64,
    pub max_votes: u64,
    /// Share of runs in which every pair was decided within the budget.
    pub all_decided: f64,
    /// Votes until every pair was decided; runs that ran out of budget count as
    /// `max_votes`, so with `all_decided < 1` these are lower bounds.
    pub votes_mean: f64,
    pub votes_p10: u64,
    pub votes_p50: u64,
    pub votes_p90: u64,
    /// Share of runs with at least one pair decided in the wrong direction.
    pub wrong_decision_runs: f64,
    pub null: NullSummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct NullSummary {
    pub runs: u64,
    pub votes: u64,
    /// Any pair decided (Holm on anytime-valid p-values) at any look.
    pub type1_anytime: f64,
    /// Any pair significant (Holm on exact binomial p-values) at any look.
    pub type1_fixed_every_vote: f64,
    /// The exact test looked at once, after the last vote.
    pub type1_fixed_once: f64,
    /// Monte-Carlo standard error of a rate of alpha over these runs.
    pub monte_carlo_se: f64,
}

/// The preference study as the scheduler sees it, plus what the simulation needs to vote.
struct World {
    ratings: Vec<f64>,
    /// Per pair id: (model a, model b, image a).
    pairs: HashMap<Uuid, (usize, usize, Uuid)>,
    rows: Vec<PairRow>,
    model_pairs: Vec<(usize, usize)>,
}

fn world(ratings: &[f64], prompts: usize, rng: &mut StdRng) -> World {
    let mut id = || Uuid::from_u128(rng.gen());
    let mut model_pairs = Vec::new();
    for a in 0..ratings.len() {
        for b in a + 1..ratings.len() {
            model_pairs.push((a, b));
        }
    }
    let mp_ids: Vec<Uuid> = model_pairs.iter().map(|_| id()).collect();
    let mut pairs = HashMap::new();
    let mut rows = Vec::new();
    for p in 0..prompts {
        let prompt_id = id();
        for (&(a, b), &mp) in model_pairs.iter().zip(&mp_ids) {
            let (pair, image_a, image_b) = (id(), id(), id());
            pairs.insert(pair, (a, b, image_a));
            rows.push(PairRow {
                id: pair,
                prompt_id,
                prompt_text: format!("prompt {p}"),
                model_pair_id: mp,
                image_a,
                image_b,
                issued: 0,
                votes: 0,
                a_left: 0,
            });
        }
    }
    World {
        ratings: ratings.to_vec(),
        pairs,
        rows,
        model_pairs,
    }
}

/// Chance that model `a` beats model `b` under the Elo (Bradley-Terry) model.
fn win_prob(ra: f64, rb: f64) -> f64 {
    1.0 / (1.0 + 10f64.powf((rb - ra) / 400.0))
}

/// Drives one study: participants join one after another, each asks the scheduler for up to
/// `per_participant` comparisons and answers each at once (so one open assignment at a
/// time), until `max_votes` or until `after_vote` says stop. Returns the votes cast.
fn drive(
    w: &World,
    plan: &mut StudyPlan,
    max_votes: u64,
    per_participant: u64,
    rng: &mut StdRng,
    mut after_vote: impl FnMut(&StudyPlan, u64) -> bool,
) -> u64 {
    let mut votes = 0u64;
    while votes < max_votes {
        let mut seen = HashSet::new();
        let mut answered = 0u64;
        while answered < per_participant && votes < max_votes {
            let Some(Pick::Pair {
                pair_id,
                prompt_id,
                model_pair_id,
                a_left,
                ..
            }) = plan.pick(&seen, 0.0, rng)
            else {
                break;
            };
            seen.insert((prompt_id, model_pair_id));
            let Some(&(a, b, _)) = w.pairs.get(&pair_id) else {
                break;
            };
            let a_wins = rng.gen_bool(win_prob(w.ratings[a], w.ratings[b]));
            // The comparison is answered at once: opened, then voted (counted once).
            let assignment = Uuid::from_u128(rng.gen());
            plan.opened(assignment, pair_id, a_left, std::time::Instant::now());
            plan.record_vote(assignment, pair_id, a_left);
            plan.record_outcome(pair_id, a_wins);
            votes += 1;
            answered += 1;
            if after_vote(plan, votes) {
                return votes;
            }
        }
        if answered == 0 {
            // Not even a fresh participant can be served: the study has no pairs.
            break;
        }
    }
    votes
}

/// A plan over the simulated study (nothing open; simulated answers never expire).
fn new_plan(w: &World, allocation: crate::study::allocation::Allocation) -> StudyPlan {
    StudyPlan::new(
        0,
        w.rows.clone(),
        vec![],
        vec![],
        std::time::Duration::from_secs(u64::from(u32::MAX)),
    )
    .with_allocation(allocation, &[])
}

struct RunResult {
    /// Votes until every pair was decided, if within the budget.
    decided_at: Option<u64>,
    wrong: bool,
}

fn run_study(args: &Settings, ratings: &[f64], seed: u64) -> RunResult {
    let mut rng = StdRng::seed_from_u64(seed);
    let w = world(ratings, args.prompts, &mut rng);
    let mut plan = new_plan(&w, args.allocation);
    // Direction of each pair at the vote it became decided (A better?); decisions stay.
    let mut direction: Vec<Option<bool>> = vec![None; w.model_pairs.len()];
    let mut decided_at = None;
    drive(
        &w,
        &mut plan,
        args.max_votes,
        args.votes_per_participant,
        &mut rng,
        |plan, votes| {
            let now = decided(&plan.evidence, LIVE_ALPHA);
            for (i, d) in now.iter().enumerate() {
                if *d && direction[i].is_none() {
                    let e = &plan.evidence[i];
                    direction[i] = Some(e.wins_a > e.wins_b);
                }
            }
            let all = now.iter().all(|d| *d);
            if all {
                decided_at = Some(votes);
            }
            all
        },
    );
    let wrong = w.model_pairs.iter().zip(&direction).any(|(&(a, b), d)| {
        // With equal ratings every decision is wrong.
        d.is_some_and(|a_better| ratings[a] == ratings[b] || a_better != (ratings[a] > ratings[b]))
    });
    RunResult { decided_at, wrong }
}

/// For each n up to `max_n`, the largest k <= n/2 with an exact two-sided p-value below
/// `level` (or -1): the exact test rejects exactly when min(wins) <= that k.
fn exact_critical(max_n: u64, level: f64) -> Vec<i64> {
    let mut out = vec![-1i64; max_n as usize + 1];
    for (n, slot) in out.iter_mut().enumerate().skip(1) {
        let n = n as u64;
        // p(k) rises with k up to n/2: binary search for the last k below the level.
        let (mut lo, mut hi) = (0u64, n / 2 + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if binom_test_two_sided(mid, n, 0.5).is_some_and(|p| p < level) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        *slot = lo as i64 - 1;
    }
    out
}

/// (anytime-valid rejected at some look, exact test rejected at some look, exact test
/// rejected at the end) for one null study.
fn run_null(args: &Settings, n_models: usize, critical: &[i64], seed: u64) -> [bool; 3] {
    let mut rng = StdRng::seed_from_u64(seed);
    let w = world(&vec![1000.0; n_models], args.prompts, &mut rng);
    let mut plan = new_plan(&w, args.allocation);
    let exact_rejects = |plan: &StudyPlan| {
        // Holm rejects at least one pair exactly when the smallest p-value is below
        // alpha / m, i.e. some pair's count is at or beyond the critical value.
        plan.evidence.iter().any(|e| {
            let n = e.n() as usize;
            n < critical.len() && e.wins_a.min(e.wins_b) as i64 <= critical[n]
        })
    };
    let (mut anytime, mut fixed) = (false, false);
    drive(
        &w,
        &mut plan,
        args.null_votes,
        args.votes_per_participant,
        &mut rng,
        |plan, _| {
            anytime |= decided(&plan.evidence, LIVE_ALPHA).iter().any(|d| *d);
            fixed |= exact_rejects(plan);
            false
        },
    );
    [anytime, fixed, exact_rejects(&plan)]
}

/// The parsed settings of one simulation.
#[derive(Debug, Clone)]
pub struct Settings {
    pub models: Vec<(String, f64)>,
    pub allocation: Allocation,
    pub max_votes: u64,
    pub runs: u64,
    pub seed: u64,
    pub prompts: usize,
    pub votes_per_participant: u64,
    pub null_runs: u64,
    pub null_votes: u64,
}

/// `A=1000,B=980` into names and ratings, with the offending item named on error.
pub fn parse_models(s: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((name, rating)) = item.split_once('=') else {
            bail!("--models: '{item}' is not NAME=RATING");
        };
        let rating: f64 = rating
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite())
            .with_context(|| format!("--models: rating of '{item}' is not a number"))?;
        let name = name.trim().to_string();
        if name.is_empty() || out.iter().any(|(n, _)| *n == name) {
            bail!("--models: '{item}' needs a name that is not empty and not used twice");
        }
        out.push((name, rating));
    }
    if out.len() < 2 {
        bail!("--models: give at least two models, e.g. A=1000,B=980");
    }
    Ok(out)
}

/// Runs `f(i)` for i in 0..n on every core; results in index order, so the figures do not
/// depend on the number of threads.
fn parallel<T: Send>(n: u64, f: impl Fn(u64) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map(|t| t.get() as u64)
        .unwrap_or(1)
        .clamp(1, n.max(1));
    let mut chunks: Vec<Vec<(u64, T)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                scope.spawn(move || {
                    (t..n)
                        .step_by(threads as usize)
                        .map(|i| (i, f(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            // A panic in a run is a bug: pass it on rather than report partial figures.
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut all: Vec<(u64, T)> = chunks.drain(..).flatten().collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

fn run_seed(seed: u64, stream: u64, i: u64) -> u64 {
    // Distinct, well-mixed seeds per run and per kind of study.
    let mut z = seed ^ (stream << 56) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs the simulation: `runs` studies with the given ratings and `null_runs` null studies.
pub fn simulate(s: &Settings) -> Summary {
    let ratings: Vec<f64> = s.models.iter().map(|(_, r)| *r).collect();
    let results = parallel(s.runs, |i| run_study(s, &ratings, run_seed(s.seed, 1, i)));
    let mut votes: Vec<u64> = results
        .iter()
        .map(|r| r.decided_at.unwrap_or(s.max_votes))
        .collect();
    votes.sort_unstable();
    let q = |f: f64| {
        let i = ((votes.len() as f64 - 1.0) * f).round() as usize;
        votes.get(i).copied().unwrap_or(0)
    };
    let share = |k: usize, n: u64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let m = ratings.len() * (ratings.len() - 1) / 2;
    let critical = exact_critical(s.null_votes, LIVE_ALPHA / m as f64);
    let null = parallel(s.null_runs, |i| {
        run_null(s, ratings.len(), &critical, run_seed(s.seed, 2, i))
    });
    let count = |k: usize| null.iter().filter(|r| r[k]).count();
    Summary {
        models: s.models.clone(),
        allocation: s.allocation.as_str(),
        alpha: LIVE_ALPHA,
        runs: s.runs,
        max_votes: s.max_votes,
        all_decided: share(
            results.iter().filter(|r| r.decided_at.is_some()).count(),
            s.runs,
        ),
        votes_mean: votes.iter().sum::<u64>() as f64 / votes.len().max(1) as f64,
        votes_p10: q(0.1),
        votes_p50: q(0.5),
        votes_p90: q(0.9),
        wrong_decision_runs: share(results.iter().filter(|r| r.wrong).count(), s.runs),
        null: NullSummary {
            runs: s.null_runs,
            votes: s.null_votes,
            type1_anytime: share(count(0), s.null_runs),
            type1_fixed_every_vote: share(count(1), s.null_runs),
            type1_fixed_once: share(count(2), s.null_runs),
            monte_carlo_se: (LIVE_ALPHA * (1.0 - LIVE_ALPHA) / s.null_runs.max(1) as f64).sqrt(),
        },
    }
}

/// The summary as the Markdown tables the README and docs/statistics.md show.
pub fn table(s: &Summary) -> String {
    let models: Vec<String> = s.models.iter().map(|(n, r)| format!("{n}={r}")).collect();
    let mut out = format!(
        "| models | allocation | runs | all pairs decided | votes to decide: mean | p10 | median | p90 | runs with a wrong decision |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n\
         | {} | {} | {} | {:.1}% | {:.0} | {} | {} | {} | {:.1}% |\n",
        models.join(","),
        s.allocation,
        s.runs,
        100.0 * s.all_decided,
        s.votes_mean,
        s.votes_p10,
        s.votes_p50,
        s.votes_p90,
        100.0 * s.wrong_decision_runs,
    );
    let n = &s.null;
    if n.runs > 0 {
        out.push_str(&format!(
            "\nNull study ({} equal models, {} runs of {} votes, a look after every vote, alpha = {}):\n\n\
             | test | type-I error (any pair, Holm) |\n|---|---:|\n\
             | anytime-valid, every vote | {:.2}% |\n\
             | exact binomial, every vote | {:.2}% |\n\
             | exact binomial, once at the end | {:.2}% |\n\n\
             Monte-Carlo standard error at alpha: {:.2} percentage points.\n",
            s.models.len(),
            n.runs,
            n.votes,
            s.alpha,
            100.0 * n.type1_anytime,
            100.0 * n.type1_fixed_every_vote,
            100.0 * n.type1_fixed_once,
            100.0 * n.monte_carlo_se,
        ));
    }
    out
}

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let allocation = Allocation::parse(&args.allocation).map_err(|e| anyhow::anyhow!("--{e}"))?;
    if args.runs == 0 || args.max_votes == 0 || args.prompts == 0 || args.votes_per_participant == 0
    {
        bail!("--runs, --max-votes, --prompts and --votes-per-participant must be at least 1");
    }
    let settings = Settings {
        models: parse_models(&args.models)?,
        allocation,
        max_votes: args.max_votes,
        runs: args.runs,
        seed: args.seed,
        prompts: args.prompts,
        votes_per_participant: args.votes_per_participant,
        null_runs: args.null_runs,
        null_votes: args.null_votes,
    };
    let summary = simulate(&settings);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", table(&summary));
    }
    Ok(())
}
