//! Inter-rater agreement on nominal categories: Krippendorff's alpha and Fleiss' kappa.
//!
//! Both take, per item, the number of ratings in each category. Raters' identities do not
//! matter to either statistic, only how the ratings of one item split over categories.

/// Krippendorff's alpha for nominal data, as the `krippendorff` package computes it:
/// α = 1 - D_o / D_e from the coincidence matrix. Items with fewer than two ratings carry
/// no pairable values and are skipped. `None` when there is no disagreement to expect
/// (fewer than two pairable values, or every value in one category).
pub fn krippendorff_alpha_nominal(items: &[Vec<u32>]) -> Option<f64> {
    let k = items.iter().map(Vec::len).max().unwrap_or(0);
    let mut coincidence = vec![0.0; k * k];
    for item in items {
        let m: u32 = item.iter().sum();
        if m < 2 {
            continue;
        }
        let w = 1.0 / (m as f64 - 1.0);
        for (c, &nc) in item.iter().enumerate() {
            for (d, &nd) in item.iter().enumerate() {
                let pairs = if c == d {
                    nc as f64 * (nc as f64 - 1.0)
                } else {
                    nc as f64 * nd as f64
                };
                coincidence[c * k + d] += pairs * w;
            }
        }
    }
    let n_c: Vec<f64> = (0..k)
        .map(|c| (0..k).map(|d| coincidence[c * k + d]).sum())
        .collect();
    let n: f64 = n_c.iter().sum();
    if n < 2.0 {
        return None;
    }
    let mut observed = 0.0;
    let mut expected = 0.0;
    for c in 0..k {
        for d in 0..k {
            if c != d {
                observed += coincidence[c * k + d];
                expected += n_c[c] * n_c[d] / (n - 1.0);
            }
        }
    }
    if expected <= 0.0 {
        return None;
    }
    Some(1.0 - observed / expected)
}

/// Fleiss' kappa, as statsmodels `fleiss_kappa(table, method="fleiss")` computes it.
/// Every item must have the same number (≥ 2) of ratings; `None` otherwise, or when the
/// expected agreement is 1 (all ratings in one category), where kappa is undefined.
pub fn fleiss_kappa(items: &[Vec<u32>]) -> Option<f64> {
    let first = items.first()?;
    let raters: u32 = first.iter().sum();
    if raters < 2 || items.iter().any(|it| it.iter().sum::<u32>() != raters) {
        return None;
    }
    let k = items.iter().map(Vec::len).max().unwrap_or(0);
    let r = raters as f64;
    let n_items = items.len() as f64;
    let mut cat_totals = vec![0.0; k];
    let mut p_mean = 0.0;
    for item in items {
        let sq: f64 = item.iter().map(|&c| (c as f64) * (c as f64)).sum();
        p_mean += (sq - r) / (r * (r - 1.0));
        for (t, &c) in cat_totals.iter_mut().zip(item) {
            *t += c as f64;
        }
    }
    p_mean /= n_items;
    let total = n_items * r;
    let p_exp: f64 = cat_totals.iter().map(|t| (t / total) * (t / total)).sum();
    if (1.0 - p_exp).abs() < 1e-15 {
        return None;
    }
    Some((p_mean - p_exp) / (1.0 - p_exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_agreement_is_one() {
        let items = vec![vec![3, 0], vec![0, 3], vec![3, 0]];
        assert_eq!(fleiss_kappa(&items), Some(1.0));
        let a = krippendorff_alpha_nominal(&items).unwrap_or(f64::NAN);
        assert!((a - 1.0).abs() < 1e-15);
    }

    #[test]
    fn unequal_raters_rejected_by_fleiss() {
        assert_eq!(fleiss_kappa(&[vec![2, 0], vec![1, 2]]), None);
        assert_eq!(fleiss_kappa(&[vec![2, 0], vec![2, 0]]), None);
    }
}
