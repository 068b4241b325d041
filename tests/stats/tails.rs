//! The distributions under the report (statrs') against scipy and statsmodels far into the
//! tails: exact-test p-values down to 1e-300 with n up to 1,000,000, Clopper-Pearson and
//! Wilson bounds at levels down to 1e-10, normal quantiles, sample sizes and ln B(a, b)
//! (tests/fixtures/stats/tails.expected.json, written by `tools/stats_reference.py tails`).

use std::path::PathBuf;

use arenaxl::stats::binomial::binom_test_two_sided;
use arenaxl::stats::intervals::{clopper_pearson, wilson};
use arenaxl::stats::power::n_needed;
use arenaxl::stats::{normal_isf, normal_ppf};
use serde_json::Value;

/// Relative agreement wanted where a value is not rounding noise around zero. The issue's
/// measurement put statrs' worst case (binomial cdf at n = 1,000,000) at 1.03e-9.
const REL_TOL: f64 = 1e-8;
/// Below this a p-value has underflowed (scipy gives 0 at 480,000 of 1,000,000).
const P_FLOOR: f64 = 1e-300;
/// Below this an interval bound is zero up to rounding (a Wilson bound of 0 computes as
/// 4e-22 in statsmodels).
const BOUND_FLOOR: f64 = 1e-15;

fn expected() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stats/tails.expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("fixture: {key} missing in {v}"))
}

fn int(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("fixture: {key} missing in {v}"))
}

/// Close in relative terms, or, below `floor`, both below it: a tiny p-value must match
/// relatively (1e-200 cannot pass as 1e-210), a bound that is zero up to rounding need not.
fn assert_close(what: &str, actual: f64, expected: f64, floor: f64) {
    let ok = if expected.abs() < floor {
        actual.abs() < floor
    } else {
        ((actual - expected) / expected).abs() <= REL_TOL
    };
    assert!(ok, "{what}: got {actual:e}, scipy/statsmodels {expected:e}");
}

#[test]
fn exact_test_p_values_hold_relative_precision_far_into_the_tails() {
    let cases = expected()["binomtest"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(cases.len() >= 20, "fixture holds {} cases", cases.len());
    for case in &cases {
        let (k, n, p) = (int(case, "k"), int(case, "n"), num(case, "p"));
        let got = binom_test_two_sided(k, n, p).unwrap_or(f64::NAN);
        assert_close(
            &format!("binomtest({k}, {n}, {p})"),
            got,
            num(case, "pvalue"),
            P_FLOOR,
        );
    }
}

#[test]
fn interval_bounds_match_statsmodels_at_a_million_votes_and_tiny_levels() {
    let cases = expected()["intervals"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(cases.len() >= 10);
    for case in &cases {
        let (k, n, alpha) = (int(case, "k"), int(case, "n"), num(case, "alpha"));
        for (method, got) in [
            ("beta", clopper_pearson(k, n, alpha)),
            ("wilson", wilson(k, n, alpha)),
        ] {
            let [lo, hi] = got.unwrap_or_else(|| panic!("{method}({k}, {n}, {alpha}): none"));
            let want = &case[method];
            for (side, g, w) in [("low", lo, &want[0]), ("high", hi, &want[1])] {
                let w = w.as_f64().unwrap_or(f64::NAN);
                assert_close(
                    &format!("{method}({k}, {n}, {alpha}) {side}"),
                    g,
                    w,
                    BOUND_FLOOR,
                );
            }
        }
    }
}

#[test]
fn normal_quantiles_sample_sizes_and_ln_beta_match_scipy() {
    let exp = expected();
    for case in exp["norm_ppf"].as_array().cloned().unwrap_or_default() {
        let p = num(&case, "p");
        let got = normal_ppf(p).unwrap_or(f64::NAN);
        assert_close(&format!("norm.ppf({p})"), got, num(&case, "x"), P_FLOOR);
        // norm.isf(q) = -norm.ppf(q): the upper quantile of a tiny area, as Wilson uses it.
        let isf = normal_isf(p).unwrap_or(f64::NAN);
        assert_close(&format!("norm.isf({p})"), isf, -num(&case, "x"), P_FLOOR);
    }
    for case in exp["power"].as_array().cloned().unwrap_or_default() {
        let (p1, alpha, power) = (num(&case, "p1"), num(&case, "alpha"), num(&case, "power"));
        assert_eq!(
            n_needed(p1, alpha, power),
            Some(int(&case, "n")),
            "n_needed({p1}, {alpha}, {power})"
        );
    }
    for case in exp["ln_beta"].as_array().cloned().unwrap_or_default() {
        let (a, b) = (num(&case, "a"), num(&case, "b"));
        let got = statrs::function::beta::ln_beta(a, b);
        let want = num(&case, "value");
        // ln B enters the anytime p-value as exp(-ln Λ): an absolute error of 1e-9 in ln B
        // is a relative 1e-9 in the p-value. (Log-gammas near 1.3e7 cancel here, so a
        // relative bound on ln B itself would be meaningless.)
        assert!(
            (got - want).abs() <= 1e-9,
            "ln_beta({a}, {b}): {got} vs {want}"
        );
    }
}

#[test]
fn levels_outside_zero_one_are_refused_not_a_panic() {
    for alpha in [0.0, 1.0, -0.5, 2.0, f64::NAN, f64::INFINITY] {
        assert_eq!(clopper_pearson(3, 10, alpha), None, "alpha {alpha}");
        assert_eq!(wilson(3, 10, alpha), None, "alpha {alpha}");
        assert_eq!(n_needed(0.6, alpha, 0.8), None, "alpha {alpha}");
        assert_eq!(n_needed(0.6, 0.05, alpha), None, "power {alpha}");
    }
    assert_eq!(normal_ppf(f64::NAN), None);
}
