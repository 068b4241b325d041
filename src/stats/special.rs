//! Special functions the tests and intervals need, written out so that their accuracy is
//! known and tested (about 1e-14 relative in the ranges a votes report uses):
//! log-gamma, the regularised incomplete beta and gamma functions, the beta quantile,
//! the standard normal CDF and quantile, and the binomial pmf in log space.

use std::f64::consts::PI;

/// Lanczos coefficients (g = 607/128, 15 terms, after Godfrey); relative error ~1e-15.
const LANCZOS_G: f64 = 607.0 / 128.0;
const LANCZOS: [f64; 15] = [
    0.999_999_999_999_997_1,
    57.156_235_665_862_92,
    -59.597_960_355_475_49,
    14.136_097_974_741_747,
    -0.491_913_816_097_620_2,
    0.339_946_499_848_118_9e-4,
    0.465_236_289_270_485_8e-4,
    -0.983_744_753_048_795_6e-4,
    0.158_088_703_224_912_5e-3,
    -0.210_264_441_724_104_9e-3,
    0.217_439_618_115_212_6e-3,
    -0.164_318_106_536_763_9e-3,
    0.844_182_239_838_527_4e-4,
    -0.261_908_384_015_814_1e-4,
    0.368_991_826_595_316_2e-5,
];

/// ln Γ(x) for x > 0.
pub fn ln_gamma(x: f64) -> f64 {
    if x < 0.5 {
        // Reflection keeps the Lanczos sum in its accurate range.
        return (PI / (PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = LANCZOS[0];
    for (i, c) in LANCZOS.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    let t = x + LANCZOS_G + 0.5;
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// ln B(a, b).
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

const EPS: f64 = 1e-16;
const TINY: f64 = 1e-300;
const MAX_ITER: usize = 100_000;

/// Continued fraction for the incomplete beta (modified Lentz); converges fast for
/// x < (a + 1) / (a + b + 2).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    let qab = a + b;
    let qap = a + 1.0;
    let qam = a - 1.0;
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..MAX_ITER {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// Regularised incomplete beta I_x(a, b) for a, b > 0.
pub fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = a * x.ln() + b * (-x).ln_1p() - ln_beta(a, b);
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_cf(a, b, x) / a
    } else {
        // Symmetry: I_x(a, b) = 1 - I_{1-x}(b, a), evaluated where the fraction converges.
        1.0 - ln_front.exp() * beta_cf(b, a, 1.0 - x) / b
    }
}

/// Upper tail 1 - I_x(a, b), computed without cancellation when it is small.
pub fn inc_beta_upper(a: f64, b: f64, x: f64) -> f64 {
    inc_beta(b, a, 1.0 - x)
}

/// Density of Beta(a, b) at x.
fn beta_pdf(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 || x >= 1.0 {
        return 0.0;
    }
    ((a - 1.0) * x.ln() + (b - 1.0) * (-x).ln_1p() - ln_beta(a, b)).exp()
}

/// Quantile of Beta(a, b): the x with I_x(a, b) = p. Newton steps kept inside a
/// shrinking bisection bracket, so it always converges.
pub fn beta_ppf(p: f64, a: f64, b: f64) -> f64 {
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    let mut x = a / (a + b);
    for _ in 0..500 {
        let f = inc_beta(a, b, x) - p;
        if f == 0.0 {
            return x;
        }
        if f < 0.0 {
            lo = x;
        } else {
            hi = x;
        }
        let pdf = beta_pdf(a, b, x);
        let mut next = if pdf > 0.0 { x - f / pdf } else { f64::NAN };
        if !(next > lo && next < hi) {
            next = 0.5 * (lo + hi);
        }
        if (next - x).abs() <= 1e-16 * x.max(1e-300) || hi - lo <= 1e-16 * hi {
            return next;
        }
        x = next;
    }
    x
}

/// Inverse survival function of Beta(a, b): the x with P(X > x) = q.
pub fn beta_isf(q: f64, a: f64, b: f64) -> f64 {
    // If X ~ Beta(a, b) then 1 - X ~ Beta(b, a); this keeps small tail areas exact.
    1.0 - beta_ppf(q, b, a)
}

/// Regularised lower incomplete gamma P(a, x).
fn inc_gamma_lower(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x < a + 1.0 {
        let mut ap = a;
        let mut del = 1.0 / a;
        let mut sum = del;
        for _ in 0..MAX_ITER {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if del.abs() < sum.abs() * EPS {
                break;
            }
        }
        sum * (-x + a * x.ln() - ln_gamma(a)).exp()
    } else {
        1.0 - inc_gamma_upper(a, x)
    }
}

/// Regularised upper incomplete gamma Q(a, x).
fn inc_gamma_upper(a: f64, x: f64) -> f64 {
    if x < a + 1.0 {
        return 1.0 - inc_gamma_lower(a, x);
    }
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / TINY;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..MAX_ITER {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    (-x + a * x.ln() - ln_gamma(a)).exp() * h
}

/// Standard normal CDF Φ(x), via erfc(z) = Q(1/2, z²) so both tails keep relative precision.
pub fn norm_cdf(x: f64) -> f64 {
    let z2 = 0.5 * x * x;
    if x >= 0.0 {
        1.0 - 0.5 * inc_gamma_upper(0.5, z2)
    } else {
        0.5 * inc_gamma_upper(0.5, z2)
    }
}

fn norm_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}

/// Standard normal quantile Φ⁻¹(p): Acklam's rational approximation (~1e-9) polished by
/// Newton steps on the accurate CDF above.
pub fn norm_ppf(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p_low = 0.02425;
    let mut x = if p < p_low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - p_low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (-p).ln_1p()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    for _ in 0..3 {
        // Work in the smaller tail so the residual is relative, not absolute.
        let (f, pdf) = if x < 0.0 {
            (norm_cdf(x) - p, norm_pdf(x))
        } else {
            ((1.0 - p) - norm_cdf(-x), norm_pdf(x))
        };
        if pdf <= 0.0 {
            break;
        }
        x -= f / pdf;
    }
    x
}

/// ln of the binomial pmf C(n, k) p^k (1-p)^(n-k).
pub fn binom_ln_pmf(k: u64, n: u64, p: f64) -> f64 {
    if k > n {
        return f64::NEG_INFINITY;
    }
    let (kf, nf) = (k as f64, n as f64);
    let ln_choose = ln_gamma(nf + 1.0) - ln_gamma(kf + 1.0) - ln_gamma(nf - kf + 1.0);
    let term_p = if k == 0 { 0.0 } else { kf * p.ln() };
    let term_q = if k == n {
        0.0
    } else {
        (nf - kf) * (-p).ln_1p()
    };
    ln_choose + term_p + term_q
}

/// Binomial CDF P(X <= k).
pub fn binom_cdf(k: i64, n: u64, p: f64) -> f64 {
    if k < 0 {
        return 0.0;
    }
    let k = k as u64;
    if k >= n {
        return 1.0;
    }
    // P(X <= k) = I_{1-p}(n - k, k + 1); the upper form keeps small tails relative.
    inc_beta_upper(k as f64 + 1.0, (n - k) as f64, p)
}

/// Binomial survival P(X > k).
pub fn binom_sf(k: i64, n: u64, p: f64) -> f64 {
    if k < 0 {
        return 1.0;
    }
    let k = k as u64;
    if k >= n {
        return 0.0;
    }
    inc_beta(k as f64 + 1.0, (n - k) as f64, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn ln_gamma_known_values() {
        assert!(close(ln_gamma(1.0), 0.0, 1e-14));
        assert!(close(ln_gamma(0.5), 0.5 * PI.ln(), 1e-14));
        // ln(10!) = ln 3628800
        assert!(close(ln_gamma(11.0), 3_628_800f64.ln(), 1e-14));
    }

    #[test]
    fn normal_quantile_known_values() {
        assert!(close(norm_ppf(0.975), 1.959_963_984_540_054, 1e-14));
        assert!(close(norm_ppf(0.8), 0.841_621_233_572_914_2, 1e-14));
        assert!(close(norm_ppf(1e-10), -6.361_340_902_404_056, 1e-12));
        assert!(close(norm_cdf(-1.0), 0.158_655_253_931_457_05, 1e-14));
    }

    #[test]
    fn beta_functions_known_values() {
        // I_0.5(2, 3) = 11/16
        assert!(close(inc_beta(2.0, 3.0, 0.5), 11.0 / 16.0, 1e-14));
        let x = beta_ppf(0.025, 3.0, 8.0);
        assert!(close(inc_beta(3.0, 8.0, x), 0.025, 1e-13));
        let y = beta_isf(0.025, 4.0, 7.0);
        assert!(close(inc_beta_upper(4.0, 7.0, y), 0.025, 1e-13));
    }

    #[test]
    fn binomial_cdf_matches_pmf_sum() {
        let sum: f64 = (0..=7).map(|k| binom_ln_pmf(k, 20, 0.5).exp()).sum();
        assert!(close(binom_cdf(7, 20, 0.5), sum, 1e-13));
        assert!(close(binom_sf(7, 20, 0.5), 1.0 - sum, 1e-13));
    }
}
