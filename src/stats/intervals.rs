//! Confidence intervals for a binomial proportion, as statsmodels `proportion_confint`
//! computes them (`method="wilson"` and `method="beta"`).

use super::special::{beta_isf, beta_ppf, norm_ppf};

/// Wilson score interval at level 1 - alpha; `None` when `n == 0`.
pub fn wilson(k: u64, n: u64, alpha: f64) -> Option<[f64; 2]> {
    if n == 0 || k > n {
        return None;
    }
    let nf = n as f64;
    let p = k as f64 / nf;
    let z = norm_ppf(1.0 - alpha / 2.0);
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let center = (p + z2 / (2.0 * nf)) / denom;
    let dist = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
    Some([center - dist, center + dist])
}

/// Clopper-Pearson ("exact", beta quantile) interval at level 1 - alpha; `None` when `n == 0`.
pub fn clopper_pearson(k: u64, n: u64, alpha: f64) -> Option<[f64; 2]> {
    if n == 0 || k > n {
        return None;
    }
    let (kf, nf) = (k as f64, n as f64);
    let low = if k == 0 {
        0.0
    } else {
        beta_ppf(alpha / 2.0, kf, nf - kf + 1.0)
    };
    let high = if k == n {
        1.0
    } else {
        beta_isf(alpha / 2.0, kf + 1.0, nf - kf)
    };
    Some([low, high])
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
        // Clopper-Pearson for 0 of n has the closed form 1 - (alpha/2)^(1/n).
        let [_, hi] = clopper_pearson(0, 5, 0.05).unwrap_or([f64::NAN; 2]);
        assert!((hi - (1.0 - 0.025f64.powf(0.2))).abs() < 1e-13);
    }
}
