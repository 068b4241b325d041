//! Element-wise math over f32 slices, written so the compiler vectorises it: e^x (with its
//! sum, for softmax), SiLU, GELU (erf form) times a value, and sums for the normalisation
//! statistics. The scalar libm calls they replace (`expf`, `erff`) cannot be vectorised;
//! on a UNet call they cost more than the arithmetic around them. The loops are also
//! compiled for AVX-512 and for AVX2 with FMA, and the widest the CPU has is chosen at run
//! time.

/// Runs `$body` (a loop over slices) compiled for AVX-512 or AVX2+FMA when the CPU has
/// them, for the baseline otherwise.
macro_rules! dispatch {
    ($name:ident ( $($arg:ident : $ty:ty),* ) $body:block) => {
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn widest($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the feature `widest` is compiled for.
                    unsafe { widest($($arg),*) };
                    return;
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `wide` is compiled for.
                    unsafe { wide($($arg),*) };
                    return;
                }
            }
            body($($arg),*)
        }
    };
}

/// e^x without branches: 2^n · e^r with n = round(x·log₂e) and |r| ≤ ln2/2, e^r by Cephes'
/// degree-6 polynomial. Relative error under 3e-7 for x in [-87, 88]; below that the
/// result is e^-87 (≈1.6e-38) instead of a denormal or 0, above it e^88.3.
#[inline(always)]
fn exp1(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so n·LN2_HI is exact for the n that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer in plain float ops.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.3);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    // n as an integer, read off t's mantissa (t's last bit is worth 1 there): `n as i32`
    // is Rust's saturating cast, which compiles to one scalar conversion per lane and had
    // made this loop several times slower than its arithmetic.
    let ni = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((ni + 127) << 23) as u32)
}

/// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error under 1.5e-7), odd in x.
#[inline(always)]
fn erf1(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let mut p = 1.061_405_4_f32;
    p = p * t - 1.453_152_1;
    p = p * t + 1.421_413_8;
    p = p * t - 0.284_496_74;
    p = p * t + 0.254_829_6;
    let e = 1.0 - p * t * exp1(-a * a);
    e.copysign(x)
}

/// Replaces every x by e^(x − shift) and returns their sum (f64 over f32 lanes), in one
/// pass: a softmax row's numerators and denominator.
pub fn exp_shifted_sum(xs: &mut [f32], shift: f32) -> f64 {
    let mut total = 0f64;
    for block in xs.chunks_mut(1024) {
        let mut acc = [0f32; 16];
        exp_block(block, shift, &mut acc);
        total += acc.iter().map(|&v| v as f64).sum::<f64>();
    }
    total
}

dispatch!(exp_block(block: &mut [f32], shift: f32, acc: &mut [f32; 16]) {
    let mut lanes = block.chunks_exact_mut(16);
    for chunk in &mut lanes {
        for (a, x) in acc.iter_mut().zip(chunk.iter_mut()) {
            *x = exp1(*x - shift);
            *a += *x;
        }
    }
    for (a, x) in acc.iter_mut().zip(lanes.into_remainder()) {
        *x = exp1(*x - shift);
        *a += *x;
    }
});

dispatch!(silu_in_place(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x /= 1.0 + exp1(-*x);
    }
});

dispatch!(gelu_times(out: &mut [f32], value: &[f32], gate: &[f32]) {
    for ((o, &v), &g) in out.iter_mut().zip(value).zip(gate) {
        *o = v * (0.5 * g * (1.0 + erf1(g * std::f32::consts::FRAC_1_SQRT_2)));
    }
});

/// The largest value (−∞ for none; NaNs are passed over), in 16 lanes: a fold with
/// `f32::max` is not vectorised and, over a softmax row, costs as much as its exponentials.
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    max_lanes(xs, &mut acc);
    acc.into_iter().fold(f32::NEG_INFINITY, f32::max)
}

dispatch!(max_lanes(xs: &[f32], acc: &mut [f32; 16]) {
    let mut lanes = xs.chunks_exact(16);
    for chunk in &mut lanes {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = if x > *a { x } else { *a };
        }
    }
    for (a, &x) in acc.iter_mut().zip(lanes.remainder()) {
        *a = if x > *a { x } else { *a };
    }
});

/// Σ (x − shift)² when `square`, else Σ (x − shift), in f32 lanes of 16 per block of 1024
/// elements, the blocks added in f64: close to an f64 sum, at vector speed.
pub fn sum(xs: &[f32], shift: f32, square: bool) -> f64 {
    let mut total = 0f64;
    for block in xs.chunks(1024) {
        let mut acc = [0f32; 16];
        sum_block(block, shift, square, &mut acc);
        total += acc.iter().map(|&v| v as f64).sum::<f64>();
    }
    total
}

dispatch!(sum_block(block: &[f32], shift: f32, square: bool, acc: &mut [f32; 16]) {
    let mut lanes = block.chunks_exact(16);
    for chunk in &mut lanes {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            let d = x - shift;
            *a += if square { d * d } else { d };
        }
    }
    for (a, &x) in acc.iter_mut().zip(lanes.remainder()) {
        let d = x - shift;
        *a += if square { d * d } else { d };
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(from: f32, to: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| from + (to - from) * i as f32 / (n - 1) as f32)
            .collect()
    }

    #[test]
    fn exp_is_within_3e7_relative() {
        let xs = grid(-87.0, 88.0, 100_003);
        let mut ys = xs.clone();
        exp_shifted_sum(&mut ys, 0.0);
        for (&x, &y) in xs.iter().zip(&ys) {
            let want = (x as f64).exp();
            let rel = ((y as f64 - want) / want).abs();
            assert!(rel < 3e-7, "exp({x}) = {y}, want {want} (rel {rel:e})");
        }
        let mut far = [-1000.0f32, -88.0, 1000.0];
        exp_shifted_sum(&mut far, 0.0);
        assert!(far[0] >= 0.0 && far[0] < 1e-37 && far[1] < 1e-37 && far[2].is_finite());
    }

    #[test]
    fn shifted_exp_and_its_sum_in_one_pass() {
        let xs = grid(-20.0, 5.0, 2_049);
        let mut ys = xs.clone();
        let sum = exp_shifted_sum(&mut ys, 5.0);
        let mut want = 0f64;
        for (&x, &y) in xs.iter().zip(&ys) {
            let e = (x as f64 - 5.0).exp();
            want += e;
            assert!(((y as f64 - e) / e).abs() < 3e-7, "exp({x} - 5)");
        }
        assert!(((sum - want) / want).abs() < 1e-6);
    }

    #[test]
    fn silu_and_gelu_match_their_definitions() {
        let xs = grid(-30.0, 30.0, 20_001);
        let mut silu = xs.clone();
        silu_in_place(&mut silu);
        let values = grid(-2.0, 3.0, xs.len());
        let mut gelu = vec![0f32; xs.len()];
        gelu_times(&mut gelu, &values, &xs);
        for ((&x, &v), (&s, &g)) in xs.iter().zip(&values).zip(silu.iter().zip(&gelu)) {
            let x64 = x as f64;
            let want_silu = x64 / (1.0 + (-x64).exp());
            assert!(
                (s as f64 - want_silu).abs() < 1e-6 * (1.0 + x64.abs()),
                "silu({x})"
            );
            let want_gelu = v as f64 * 0.5 * x64 * (1.0 + libm::erf(x64 / 2f64.sqrt()));
            assert!(
                (g as f64 - want_gelu).abs() < 1e-6 * (1.0 + (v as f64 * x64).abs()),
                "{v} * gelu({x}) = {g}, want {want_gelu}"
            );
        }
    }

    #[test]
    fn max_is_the_largest_value_whatever_its_place() {
        for n in [0usize, 1, 15, 16, 17, 1024, 1_031] {
            let xs: Vec<f32> = (0..n).map(|i| ((i * 7919) % 997) as f32 - 500.0).collect();
            let want = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&xs), want, "{n} values");
            for at in [0, n / 2, n.saturating_sub(1)]
                .into_iter()
                .filter(|_| n > 0)
            {
                let mut ys = xs.clone();
                ys[at] = 1e30;
                assert_eq!(max(&ys), 1e30, "{n} values, the largest at {at}");
            }
        }
        assert_eq!(max(&[f32::NAN, -3.0, f32::NAN]), -3.0);
        assert_eq!(max(&[f32::NEG_INFINITY; 20]), f32::NEG_INFINITY);
    }

    #[test]
    fn sums_are_close_to_f64_sums() {
        let xs: Vec<f32> = (0..40_001)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.013 - 3.0)
            .collect();
        let shift = 0.25f32;
        let plain: f64 = xs.iter().map(|&x| x as f64 - shift as f64).sum();
        let squares: f64 = xs.iter().map(|&x| (x as f64 - shift as f64).powi(2)).sum();
        assert!((sum(&xs, shift, false) - plain).abs() < 1e-6 * xs.len() as f64);
        assert!((sum(&xs, shift, true) - squares).abs() < 1e-6 * squares);
        assert_eq!(sum(&[], 0.0, true), 0.0);
    }
}
