//! `EulerDiscreteScheduler` (s_churn = 0, linear sigma interpolation, optionally Karras
//! sigmas and a final sigma of `sigma_min`).

use candle_core::{Result as CResult, Tensor};

use super::common::{
    final_sigma, interp, karras_sigmas, linspace, require, round_even, sigma_to_t,
    trailing_timesteps, ClassDefaults, FinalSigma, Prediction, Schedule, Spacing,
};
use super::Scheduler;
use crate::engine::config::SchedulerConfig;
use crate::engine::error::Result;

pub const DEFAULTS: ClassDefaults = ClassDefaults {
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    spacing: "linspace",
};

/// Timesteps and sigmas (with the final sigma) shared by Euler and Euler ancestral.
/// `karras_option`: whether the class has `use_karras_sigmas` (Euler does, Euler ancestral
/// does not and, like diffusers, ignores the key).
pub fn sigma_schedule(
    c: &SchedulerConfig,
    steps: usize,
    karras_option: bool,
) -> Result<(Schedule, Vec<f64>, Vec<f64>, f64)> {
    let s = Schedule::new(c, &DEFAULTS)?;
    require(
        "interpolation_type",
        c.interpolation_type.as_deref(),
        "linear",
        "",
    )?;
    let final_sigma = if karras_option {
        final_sigma(c)?
    } else {
        require(
            "final_sigmas_type",
            c.final_sigmas_type.as_deref(),
            "zero",
            "",
        )?;
        FinalSigma::Zero
    };
    let n = s.train_steps as f64;
    let mut timesteps: Vec<f64> = match s.spacing {
        Spacing::Linspace => linspace(0.0, n - 1.0, steps)
            .into_iter()
            .rev()
            .map(|t| t as f32 as f64)
            .collect(),
        Spacing::Leading => {
            let ratio = (s.train_steps / steps) as f64;
            (0..steps)
                .rev()
                .map(|i| round_even(i as f64 * ratio) + s.steps_offset as f64)
                .collect()
        }
        Spacing::Trailing => trailing_timesteps(s.train_steps, steps),
    };
    let mut sigmas = s.sigmas_at(&timesteps);
    let train = s.train_sigmas();
    if karras_option && s.karras {
        // The Karras range spans the sigmas of the spaced timesteps, unless the config
        // pins it; timesteps then follow the new sigmas (fractional, as in diffusers).
        // (np.interp's f64 values, before the f32 rounding of the final array.)
        let hi = c.sigma_max.unwrap_or_else(|| interp(timesteps[0], &train));
        let lo = c
            .sigma_min
            .unwrap_or_else(|| interp(timesteps[steps - 1], &train));
        let log: Vec<f32> = train.iter().map(|x| x.ln()).collect();
        let k = karras_sigmas(lo, hi, steps);
        timesteps = k
            .iter()
            .map(|&x| sigma_to_t(x, &log) as f32 as f64)
            .collect();
        sigmas = k.into_iter().map(|x| x as f32 as f64).collect();
        sigmas.push(0.0);
    }
    if final_sigma == FinalSigma::SigmaMin {
        if let (Some(last), Some(&min)) = (sigmas.last_mut(), train.first()) {
            *last = min as f64;
        }
    }
    let max = sigmas.iter().copied().fold(0.0, f64::max);
    let init = match s.spacing {
        Spacing::Linspace | Spacing::Trailing => max,
        Spacing::Leading => ((max * max + 1.0) as f32).sqrt() as f64,
    };
    Ok((s, timesteps, sigmas, init))
}

/// x0 predicted from the model output at noise level `sigma` (Karras-style sample).
pub fn predict_x0(
    p: Prediction,
    model_output: &Tensor,
    sample: &Tensor,
    sigma: f64,
) -> CResult<Tensor> {
    match p {
        Prediction::Epsilon => sample - (model_output * sigma)?,
        Prediction::VPrediction => {
            let s2 = sigma * sigma + 1.0;
            (model_output * (-sigma / s2.sqrt()))? + (sample / s2)?
        }
    }
}

#[derive(Debug, Clone)]
pub struct Euler {
    prediction: Prediction,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    init: f64,
}

impl Euler {
    pub fn new(c: &SchedulerConfig, steps: usize) -> Result<Self> {
        let (s, timesteps, sigmas, init) = sigma_schedule(c, steps, true)?;
        Ok(Self {
            prediction: s.prediction,
            timesteps,
            sigmas,
            init,
        })
    }

    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }
}

impl Scheduler for Euler {
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
        let sigma = self.sigmas[i];
        let x0 = predict_x0(self.prediction, model_output, sample, sigma)?;
        let derivative = ((sample - &x0)? / sigma)?;
        let dt = self.sigmas[i + 1] - sigma;
        sample + (derivative * dt)?
    }
}
