//! Helpers shared by the engine and distillation tests: the committed reference fixtures
//! and tensor comparisons. (No database here, unlike `tests/common`.)
#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::{DType, Tensor};

/// A file of `tests/fixtures/engine` (written by `tools/engine_fixtures.py`).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/engine")
        .join(name)
}

/// ‖a − b‖ / ‖b‖ over all elements, `a` taken in f32.
pub fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F32).unwrap();
    let sum_sq = |t: &Tensor| {
        t.sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let d = sum_sq(&(&a - b).unwrap());
    (d / sum_sq(b).max(1e-30)).sqrt()
}

/// The largest absolute element-wise difference.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
