//! Confidence intervals for a binomial proportion, as statsmodels `proportion_confint`
//! computes them (`method="wilson"` and `method="beta"`), on statrs' distributions.

use statrs::distribution::{Beta, Continuous, ContinuousCDF};

use super::{is_level, normal_isf};

/// Wilson score interval at level 1 - alpha; `None` when `n == 0` or alpha is not in (0, 1).
pub fn wilson(k: u64, n: u64, alpha: f64) -> Option<[f64; 2]> {
    if n == 0 || k > n || !is_level(alpha) {
        return None;
    }
    let nf = n as f64;
    let p = k as f64 / nf;
    let z = normal_isf(alpha / 2.0)?;
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let center = (p + z2 / (2.0 * nf)) / denom;
    let dist = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
    Some([center - dist, center + dist])
}

/// Clopper-Pearson ("exact", beta quantile) interval at level 1 - alpha; `None` when
/// `n == 0` or alpha is not in (0, 1).
pub fn clopper_pearson(k: u64, n: u64, alpha: f64) -> Option<[f64; 2]> {
    if n == 0 || k > n || !is_level(alpha) {
        return None;
    }
    let (kf, nf) = (k as f64, n as f64);
    let tail = alpha / 2.0;
    let low = if k == 0 {
        0.0
    } else {
        beta_tail_quantile(&Beta::new(kf, nf - kf + 1.0).ok()?, tail, Tail::Lower)
    };
    let high = if k == n {
        1.0
    } else {
        beta_tail_quantile(&Beta::new(kf + 1.0, nf - kf).ok()?, tail, Tail::Upper)
    };
    Some([low, high])
}

#[derive(Clone, Copy)]
enum Tail {
    Lower,
    Upper,
}

/// The x with P(X < x) = area (lower) or P(X > x) = area (upper).
///
/// The one piece not taken from statrs as it is: `Beta::inverse_cdf` (statrs 0.18) is off
/// by up to 1.3e-4 relative when a is tiny and b huge — the upper bound for 0 wins in
/// 1,000,000 votes comes out 3.68840e-6 where statsmodels (and the closed form
/// 1 - 0.025^(1/n)) give 3.68887e-6; 1 win in 1,000,000 is 1.4e-6 off
/// (tests/stats/tails.rs). Its answer is a good start, so a few Newton steps on statrs'
/// own CDF (accurate there: the regularised incomplete beta) polish it to that CDF's
/// accuracy (within 1e-10 of statsmodels at n = 1,000,000). The
/// upper tail is solved on the survival function, so a small area keeps its precision.
fn beta_tail_quantile(dist: &Beta, area: f64, tail: Tail) -> f64 {
    let mut x = match tail {
        Tail::Lower => dist.inverse_cdf(area),
        Tail::Upper => dist.inverse_cdf(1.0 - area),
    };
    for _ in 0..8 {
        let density = dist.pdf(x);
        if !(density > 0.0 && density.is_finite()) {
            break;
        }
        // The residual's slope is +density for the CDF and -density for the survival.
        let step = match tail {
            Tail::Lower => (dist.cdf(x) - area) / density,
            Tail::Upper => (area - dist.sf(x)) / density,
        };
        let next = x - step;
        if !(next > 0.0 && next < 1.0) {
            break;
        }
        x = next;
        if step.abs() <= 1e-15 * x {
            break;
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_contain_estimate_and_are_ordered() {
        for (k, n) in [(0u64, 5u64), (3, 10), (10, 10), (517, 1000)] {
            let est = k as f64 / n as f64;
            for ci in [wilson(k, n, 0.05), clopper_pearson(k, n, 0.05)] {
                let [lo, hi] = ci.unwrap_or([f64::NAN; 2]);
                assert!(lo <= est + 1e-12 && est <= hi + 1e-12, "{k}/{n}: {lo} {hi}");
                assert!(lo > -1e-12 && hi < 1.0 + 1e-12);
            }
        }
        assert_eq!(wilson(0, 0, 0.05), None);
        assert_eq!(clopper_pearson(3, 10, 1.5), None);
        assert_eq!(wilson(3, 10, f64::NAN), None);
        // Clopper-Pearson for 0 of n has the closed form 1 - (alpha/2)^(1/n).
        let [_, hi] = clopper_pearson(0, 5, 0.05).unwrap_or([f64::NAN; 2]);
        assert!((hi - (1.0 - 0.025f64.powf(0.2))).abs() < 1e-13);
    }
}
