//! Seeded Gaussian noise, drawn on the CPU so that a seed gives the same latents on every
//! device.

use candle_core::{Device, Result, Shape, Tensor};
use rand::rngs::StdRng;
use rand::Rng;

pub fn randn(rng: &mut StdRng, shape: &Shape, device: &Device) -> Result<Tensor> {
    let n = shape.elem_count();
    let mut v = Vec::with_capacity(n + 1);
    while v.len() < n {
        // Box-Muller; u1 is kept away from 0 so that ln() stays finite.
        let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
        let u2: f64 = rng.gen();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        v.push((r * theta.cos()) as f32);
        v.push((r * theta.sin()) as f32);
    }
    v.truncate(n);
    Tensor::from_vec(v, shape.clone(), &Device::Cpu)?.to_device(device)
}
