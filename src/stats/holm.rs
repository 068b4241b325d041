//! Holm's step-down adjustment, as statsmodels `multipletests(method="holm")` returns it.

/// Holm-adjusted p-values, in the order given. Each sorted p-value is multiplied by the
/// number of hypotheses not yet rejected, made monotone with a running maximum, capped at 1.
pub fn holm(pvalues: &[f64]) -> Vec<f64> {
    let m = pvalues.len();
    let mut order: Vec<usize> = (0..m).collect();
    // Stable sort keeps statsmodels' tie order (it uses a stable argsort too).
    order.sort_by(|&a, &b| pvalues[a].total_cmp(&pvalues[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0_f64;
    for (rank, &idx) in order.iter().enumerate() {
        let value = (pvalues[idx] * (m - rank) as f64).min(1.0);
        running = running.max(value);
        adjusted[idx] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_hand_example() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.5]);
        let want = [0.04, 0.09, 0.09, 0.5];
        for (a, w) in adj.iter().zip(want) {
            assert!((a - w).abs() < 1e-15, "{adj:?}");
        }
        assert!(holm(&[]).is_empty());
    }
}
