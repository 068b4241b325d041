//! `DPMSolverMultistepScheduler` as DPM-Solver++ 2M (midpoint), final sigma zero.

use candle_core::{Result as CResult, Tensor};

use super::common::{
    linspace, require, round_even, trailing_timesteps, ClassDefaults, Prediction, Schedule, Spacing,
};
use super::Scheduler;
use crate::engine::config::SchedulerConfig;
use crate::engine::error::{EngineError, Result};

const DEFAULTS: ClassDefaults = ClassDefaults {
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    spacing: "linspace",
};

#[derive(Debug, Clone)]
pub struct DpmSolverPp2m {
    prediction: Prediction,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    previous: Option<Tensor>,
}

/// (alpha_t, sigma_t) of the VP process at Karras noise level `sigma`.
fn alpha_sigma(sigma: f64) -> (f64, f64) {
    let a = 1.0 / (sigma * sigma + 1.0).sqrt();
    (a, sigma * a)
}

fn lambda(sigma: f64) -> f64 {
    let (a, s) = alpha_sigma(sigma);
    a.ln() - s.ln()
}

impl DpmSolverPp2m {
    pub fn new(c: &SchedulerConfig, steps: usize) -> Result<Self> {
        let s = Schedule::new(c, &DEFAULTS)?;
        require(
            "final_sigmas_type",
            c.final_sigmas_type.as_deref(),
            "zero",
            " with dpmpp-2m",
        )?;
        // The folder's own DPM settings must describe DPM-Solver++ 2M; a folder whose
        // scheduler is another class leaves these unset.
        require(
            "algorithm_type",
            c.algorithm_type.as_deref(),
            "dpmsolver++",
            " (only dpmsolver++)",
        )?;
        if let Some(o) = c.solver_order.filter(|&o| o != 2) {
            return Err(EngineError::field(
                "scheduler/scheduler_config.json",
                "solver_order",
                format!("{o} is not supported (only 2)"),
            ));
        }
        require(
            "solver_type",
            c.solver_type.as_deref(),
            "midpoint",
            " (only midpoint)",
        )?;
        let n = s.train_steps;
        let timesteps: Vec<f64> = match s.spacing {
            Spacing::Linspace => {
                let mut t: Vec<f64> = linspace(0.0, n as f64 - 1.0, steps + 1)
                    .into_iter()
                    .map(round_even)
                    .rev()
                    .collect();
                t.pop();
                t
            }
            Spacing::Leading => {
                let ratio = n / (steps + 1);
                (1..=steps)
                    .rev()
                    .map(|i| (i * ratio + s.steps_offset) as f64)
                    .collect()
            }
            Spacing::Trailing => trailing_timesteps(s.train_steps, steps),
        };
        let sigmas = s.sigmas_at(&timesteps);
        Ok(Self {
            prediction: s.prediction,
            timesteps,
            sigmas,
            previous: None,
        })
    }

    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }
}

impl Scheduler for DpmSolverPp2m {
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
        let (s0, t) = (self.sigmas[i], self.sigmas[i + 1]);
        let (alpha_s0, sigma_s0) = alpha_sigma(s0);
        let x0 = match self.prediction {
            Prediction::Epsilon => ((sample - (model_output * sigma_s0)?)? / alpha_s0)?,
            Prediction::VPrediction => ((sample * alpha_s0)? - (model_output * sigma_s0)?)?,
        };
        let (alpha_t, sigma_t) = alpha_sigma(t);
        let h = lambda(t) - lambda(s0);
        // At sigma 0, lambda is +inf and exp(-h) is 0: the update returns x0 itself.
        let em1 = (-h).exp() - 1.0;
        let ratio = sigma_t / sigma_s0;
        let n = self.timesteps.len();
        // The last step is first order (final sigma zero); so is the first.
        let first_order = self.previous.is_none() || (i + 1 == n);
        let out = match (&self.previous, first_order) {
            (Some(prev), false) => {
                let s1 = self.sigmas[i - 1];
                let h0 = lambda(s0) - lambda(s1);
                let r0 = h0 / h;
                let d1 = ((&x0 - prev)? * (1.0 / r0))?;
                ((sample * ratio)? - (&x0 * (alpha_t * em1))?)? - (d1 * (0.5 * alpha_t * em1))?
            }
            _ => (sample * ratio)? - (&x0 * (alpha_t * em1))?,
        }?;
        self.previous = Some(x0);
        Ok(out)
    }
}
