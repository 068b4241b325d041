//! `DDIMScheduler` with eta = 0.

use candle_core::{Result as CResult, Tensor};

use super::common::{
    linspace, round_even, trailing_timesteps, ClassDefaults, Prediction, Schedule, Spacing,
};
use super::Scheduler;
use crate::engine::config::SchedulerConfig;
use crate::engine::error::Result;

const DEFAULTS: ClassDefaults = ClassDefaults {
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    spacing: "leading",
};

#[derive(Debug, Clone)]
pub struct Ddim {
    s: Schedule,
    timesteps: Vec<f64>,
    final_alpha: f32,
    clip: Option<f64>,
    stride: usize,
}

impl Ddim {
    pub fn new(c: &SchedulerConfig, steps: usize) -> Result<Self> {
        let s = Schedule::new(c, &DEFAULTS)?;
        let n = s.train_steps;
        let timesteps: Vec<f64> = match s.spacing {
            Spacing::Leading => {
                let ratio = n / steps;
                (0..steps)
                    .rev()
                    .map(|i| (i * ratio + s.steps_offset) as f64)
                    .collect()
            }
            Spacing::Linspace => linspace(0.0, n as f64 - 1.0, steps)
                .into_iter()
                .rev()
                .map(round_even)
                .collect(),
            Spacing::Trailing => trailing_timesteps(s.train_steps, steps),
        };
        let final_alpha = if c.set_alpha_to_one.unwrap_or(true) {
            1.0
        } else {
            s.alphas_cumprod[0]
        };
        let clip = if c.clip_sample.unwrap_or(true) {
            Some(c.clip_sample_range.unwrap_or(1.0))
        } else {
            None
        };
        Ok(Self {
            stride: n / steps,
            s,
            timesteps,
            final_alpha,
            clip,
        })
    }

    fn alpha(&self, t: i64) -> f64 {
        if t >= 0 {
            self.s.alphas_cumprod[(t as usize).min(self.s.train_steps - 1)] as f64
        } else {
            self.final_alpha as f64
        }
    }
}

impl Scheduler for Ddim {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    fn scale_model_input(&self, sample: &Tensor, _i: usize) -> CResult<Tensor> {
        Ok(sample.clone())
    }
    fn step(&mut self, model_output: &Tensor, i: usize, sample: &Tensor) -> CResult<Tensor> {
        let t = self.timesteps[i] as i64;
        let a_t = self.alpha(t);
        let a_prev = self.alpha(t - self.stride as i64);
        let b_t = 1.0 - a_t;
        let (x0, eps) = match self.s.prediction {
            Prediction::Epsilon => (
                ((sample - (model_output * b_t.sqrt())?)? / a_t.sqrt())?,
                model_output.clone(),
            ),
            Prediction::VPrediction => (
                ((sample * a_t.sqrt())? - (model_output * b_t.sqrt())?)?,
                ((model_output * a_t.sqrt())? + (sample * b_t.sqrt())?)?,
            ),
        };
        let x0 = match self.clip {
            Some(r) => x0.clamp(-r, r)?,
            None => x0,
        };
        (x0 * a_prev.sqrt())? + (eps * (1.0 - a_prev).sqrt())?
    }
}
