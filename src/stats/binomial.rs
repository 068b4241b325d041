//! Exact binomial test, computed the way `scipy.stats.binomtest` computes it, on statrs'
//! binomial distribution (its tails come from the regularised incomplete beta function, so
//! p-values far below 1e-50 keep their relative precision: tests/stats/tails.rs).

use statrs::distribution::{Binomial, Discrete, DiscreteCDF};

/// Two-sided exact binomial test of `k` successes in `n` trials against probability `p`.
///
/// As in scipy: the p-value sums the probabilities of every outcome no more likely than
/// the observed one (with scipy's relative slack of 1e-7 on "no more likely").
/// Returns `None` when `n == 0` (there is nothing to test) or `p` is outside (0, 1).
pub fn binom_test_two_sided(k: u64, n: u64, p: f64) -> Option<f64> {
    if n == 0 || k > n || !(p > 0.0 && p < 1.0) {
        return None;
    }
    let dist = Binomial::new(p, n).ok()?;
    let nf = n as f64;
    let kf = k as f64;
    if kf == p * nf {
        return Some(1.0);
    }
    let ln_d = dist.ln_pmf(k) + (1.0 + 1e-7f64).ln();
    let no_more_likely = |i: u64| dist.ln_pmf(i) <= ln_d;
    let pval = if kf < p * nf {
        // Outcomes above the mode: the pmf decreases, so the qualifying ones are a suffix
        // [first, n]; P(X >= first) is the survival function at first - 1.
        let start = (p * nf).ceil() as u64;
        let first = partition_point(start, n + 1, |i| !no_more_likely(i));
        dist.cdf(k) + at_least(&dist, first)
    } else {
        // Outcomes below the mode: the pmf increases, so the qualifying ones are a prefix
        // [0, below).
        let end = (p * nf).floor() as u64 + 1;
        let below = partition_point(0, end, no_more_likely);
        below.checked_sub(1).map_or(0.0, |last| dist.cdf(last)) + at_least(&dist, k)
    };
    Some(pval.min(1.0))
}

/// P(X >= i), 0 past n.
fn at_least(dist: &Binomial, i: u64) -> f64 {
    match i.checked_sub(1) {
        None => 1.0,
        Some(before) => dist.sf(before),
    }
}

/// First index in `[lo, hi)` where `pred` turns false (pred must be true then false).
fn partition_point(mut lo: u64, mut hi: u64, pred: impl Fn(u64) -> bool) -> u64 {
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_cases_match_hand_computation() {
        // 3 of 10 at 1/2: 2 * P(X <= 3) = 2 * 176/1024.
        let p = binom_test_two_sided(3, 10, 0.5).unwrap_or(f64::NAN);
        assert!((p - 352.0 / 1024.0).abs() < 1e-14);
        assert_eq!(binom_test_two_sided(5, 10, 0.5), Some(1.0));
        assert_eq!(binom_test_two_sided(0, 0, 0.5), None);
        assert_eq!(binom_test_two_sided(11, 10, 0.5), None);
        assert_eq!(binom_test_two_sided(3, 10, 1.0), None);
        // 10 of 10: 2 / 1024; 0 of 10 likewise.
        let p = binom_test_two_sided(10, 10, 0.5).unwrap_or(f64::NAN);
        assert!((p - 2.0 / 1024.0).abs() < 1e-15);
        let p = binom_test_two_sided(0, 10, 0.5).unwrap_or(f64::NAN);
        assert!((p - 2.0 / 1024.0).abs() < 1e-15);
    }
}
