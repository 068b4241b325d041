//! Sample size for the two-sided test of a win rate against 1/2 (normal approximation).

use super::{is_level, normal_isf, normal_ppf};

/// Decisive votes needed for the given power to detect a true win rate `p1` against
/// p0 = 1/2 with a two-sided level-`alpha` test:
///
/// n = ((z_{1-α/2}·√(p0(1-p0)) + z_{power}·√(p1(1-p1))) / (p1 - p0))², rounded up.
///
/// `None` when `p1` is 1/2 (no effect to detect) or not a probability, or when alpha or
/// power is not in (0, 1).
pub fn n_needed(p1: f64, alpha: f64, power: f64) -> Option<u64> {
    let p0 = 0.5;
    if !(0.0..=1.0).contains(&p1) || p1 == p0 || !p1.is_finite() || !is_level(alpha) {
        return None;
    }
    let z_alpha = normal_isf(alpha / 2.0)?;
    let z_power = normal_ppf(power)?;
    let numer = z_alpha * (p0 * (1.0 - p0)).sqrt() + z_power * (p1 * (1.0 - p1)).sqrt();
    let n = (numer / (p1 - p0)).powi(2);
    // Guard against 1e-12 noise pushing an exact integer up by one.
    Some((n - 1e-9).ceil().max(1.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_sample_sizes() {
        // p1 = 0.6: ((1.959964*0.5 + 0.841621*0.489898)/0.1)^2 = 193.9 -> 194.
        assert_eq!(n_needed(0.6, 0.05, 0.8), Some(194));
        assert_eq!(n_needed(0.4, 0.05, 0.8), Some(194));
        assert_eq!(n_needed(0.5, 0.05, 0.8), None);
        assert_eq!(n_needed(f64::NAN, 0.05, 0.8), None);
        assert_eq!(n_needed(0.6, 0.05, 1.0), None);
        assert_eq!(n_needed(0.6, -0.1, 0.8), None);
    }
}
