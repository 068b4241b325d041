//! `EulerAncestralDiscreteScheduler`, its noise drawn from a seeded generator so that the
//! same seed gives the same image (torch's generator cannot be reproduced here).

use candle_core::{Result as CResult, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::common::Prediction;
use super::euler::{predict_x0, sigma_schedule};
use super::Scheduler;
use crate::engine::config::SchedulerConfig;
use crate::engine::error::Result;
use crate::engine::noise::randn;

#[derive(Debug, Clone)]
pub struct EulerAncestral {
    prediction: Prediction,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    init: f64,
    rng: StdRng,
}

impl EulerAncestral {
    pub fn new(c: &SchedulerConfig, steps: usize, seed: u64) -> Result<Self> {
        let (s, timesteps, sigmas, init) = sigma_schedule(c, steps, false)?;
        Ok(Self {
            prediction: s.prediction,
            timesteps,
            sigmas,
            init,
            rng: StdRng::seed_from_u64(seed ^ 0x5eed_a9c3),
        })
    }
}

impl Scheduler for EulerAncestral {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f64 {
        self.init
    }
    fn scale_model_input(&self, sample: &Tensor, i: usize) -> CResult<Tensor> {
        let s = self.sigmas[i];
        sample / (s * s + 1.0).sqrt()
    }
    fn step(&mut self, model_output: &Tensor, i: usize, sample: &Tensor) -> CResult<Tensor> {
        let (from, to) = (self.sigmas[i], self.sigmas[i + 1]);
        let x0 = predict_x0(self.prediction, model_output, sample, from)?;
        let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let down = (to * to - up * up).max(0.0).sqrt();
        let derivative = ((sample - &x0)? / from)?;
        let prev = (sample + (derivative * (down - from))?)?;
        let noise =
            randn(&mut self.rng, sample.shape(), sample.device())?.to_dtype(sample.dtype())?;
        prev + (noise * up)?
    }
}
