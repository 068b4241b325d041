//! Dynamic loss scaling for f16 training. f16's smallest normal number is 6e-5, so the
//! small gradients of a deep network underflow to zero in a half-precision backward pass;
//! the loss is multiplied by a large factor before backward and the gradients divided by it
//! in f32. When a step's gradients overflow (inf/NaN) the step is skipped and the factor
//! halved; after `growth_interval` good steps in a row it is doubled (PyTorch's GradScaler
//! policy). bf16 has f32's exponent range and needs none of this.

use candle_core::DType;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossScaler {
    pub scale: f64,
    /// Good (finite) steps since the scale last changed.
    pub good_steps: u64,
    pub growth_interval: u64,
}

/// 2^16, as PyTorch's GradScaler starts.
pub const INITIAL_SCALE: f64 = 65536.0;
pub const GROWTH_INTERVAL: u64 = 2000;
/// Never scale below 1 (halving forever would only hide a real divergence) nor above
/// 2^24 (no gain past f16's range).
const MIN_SCALE: f64 = 1.0;
const MAX_SCALE: f64 = 16_777_216.0;

impl LossScaler {
    /// A scaler for training in `dtype`: f16 only.
    pub fn for_dtype(dtype: DType) -> Option<Self> {
        (dtype == DType::F16).then_some(Self {
            scale: INITIAL_SCALE,
            good_steps: 0,
            growth_interval: GROWTH_INTERVAL,
        })
    }

    /// Records whether this step's gradients were finite and adjusts the scale; returns
    /// whether the optimizer should apply the step.
    pub fn update(&mut self, finite: bool) -> bool {
        if !finite {
            self.scale = (self.scale * 0.5).max(MIN_SCALE);
            self.good_steps = 0;
            return false;
        }
        self.good_steps += 1;
        if self.good_steps >= self.growth_interval {
            self.scale = (self.scale * 2.0).min(MAX_SCALE);
            self.good_steps = 0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_on_overflow_and_grows_after_good_steps() {
        assert!(LossScaler::for_dtype(DType::BF16).is_none());
        assert!(LossScaler::for_dtype(DType::F32).is_none());
        let mut s = LossScaler::for_dtype(DType::F16).unwrap();
        s.growth_interval = 3;
        assert!(!s.update(false));
        assert_eq!(s.scale, INITIAL_SCALE / 2.0);
        assert!(s.update(true) && s.update(true));
        assert_eq!(s.scale, INITIAL_SCALE / 2.0);
        assert!(s.update(true));
        assert_eq!((s.scale, s.good_steps), (INITIAL_SCALE, 0));
        for _ in 0..100 {
            s.update(false);
        }
        assert_eq!(s.scale, 1.0);
    }
}
