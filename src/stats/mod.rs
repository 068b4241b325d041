//! Pure preference statistics: binomial tests, confidence intervals, multiple-comparison
//! corrections, anytime-valid (sequential) tests, Bradley-Terry ratings, bootstrap, agreement.
//! No I/O, no database. The distributions and special functions are statrs' (checked
//! against scipy far into the tails by tests/stats/tails.rs).

pub mod agreement;
pub mod binomial;
pub mod bootstrap;
pub mod bt;
pub mod holm;
pub mod intervals;
pub mod power;
pub mod rng;
pub mod sequential;

use statrs::distribution::{ContinuousCDF, Normal};

/// Whether `x` can be a significance level or a power: strictly between 0 and 1.
pub fn is_level(x: f64) -> bool {
    x > 0.0 && x < 1.0
}

/// Standard normal quantile Φ⁻¹(p); `None` unless 0 < p < 1 (statrs panics outside [0, 1]).
pub fn normal_ppf(p: f64) -> Option<f64> {
    is_level(p).then(|| Normal::standard().inverse_cdf(p))
}

/// The z with P(Z > z) = q, as scipy's `norm.isf`: taken from the lower tail, so a small
/// q keeps its precision (1 - q would round it away).
pub fn normal_isf(q: f64) -> Option<f64> {
    normal_ppf(q).map(|z| -z)
}
