//! `arenaxl simulate` on small studies: the anytime-valid test keeps its type-I error under
//! a look after every vote while the repeated fixed-n test does not, adaptive allocation
//! decides with fewer votes than uniform, and bad `--models` input is named.

use arenaxl::cli::simulate::{parse_models, simulate, table, Settings};
use arenaxl::study::allocation::Allocation;

fn settings(models: &str, allocation: Allocation, runs: u64, null_runs: u64) -> Settings {
    Settings {
        models: parse_models(models).unwrap_or_else(|e| panic!("{e}")),
        allocation,
        max_votes: 20_000,
        runs,
        seed: 7,
        prompts: 30,
        votes_per_participant: 20,
        null_runs,
        null_votes: 300,
    }
}

#[test]
fn anytime_valid_test_keeps_alpha_where_repeated_fixed_n_test_does_not() {
    let s = simulate(&settings("A=1000,B=1000", Allocation::Uniform, 1, 500));
    let n = &s.null;
    // 500 runs: the standard error at 5% is 1 point; allow three.
    assert!(
        n.type1_anytime <= 0.05 + 3.0 * n.monte_carlo_se,
        "anytime-valid type-I error {}",
        n.type1_anytime
    );
    // 300 looks at the exact test push its error far above alpha.
    assert!(
        n.type1_fixed_every_vote > 0.15,
        "repeated fixed-n type-I error {}",
        n.type1_fixed_every_vote
    );
    assert!(n.type1_fixed_once <= 0.05 + 3.0 * n.monte_carlo_se);
}

#[test]
fn adaptive_allocation_decides_with_fewer_votes_and_no_more_errors() {
    // One close pair (B vs C, 55.7%) and two clear ones.
    let models = "A=1000,B=900,C=860";
    let uniform = simulate(&settings(models, Allocation::Uniform, 16, 0));
    let adaptive = simulate(&settings(models, Allocation::Adaptive, 16, 0));
    assert_eq!(uniform.all_decided, 1.0, "{}", table(&uniform));
    assert_eq!(adaptive.all_decided, 1.0, "{}", table(&adaptive));
    assert!(
        adaptive.votes_mean < 0.8 * uniform.votes_mean,
        "adaptive {} vs uniform {}",
        adaptive.votes_mean,
        uniform.votes_mean
    );
    assert!(adaptive.wrong_decision_runs <= uniform.wrong_decision_runs + 1.0 / 16.0);
}

#[test]
fn same_seed_same_figures() {
    let a = simulate(&settings("A=1000,B=950", Allocation::Adaptive, 8, 20));
    let b = simulate(&settings("A=1000,B=950", Allocation::Adaptive, 8, 20));
    assert_eq!(table(&a), table(&b));
}

#[test]
fn bad_model_lists_are_named() {
    for (input, needle) in [
        ("A=1000", "at least two"),
        ("A=1000,B", "'B' is not NAME=RATING"),
        ("A=1000,B=x", "rating of 'B=x'"),
        ("A=1000,A=900", "not used twice"),
    ] {
        let err = parse_models(input)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(needle), "{input}: {err}");
    }
}
