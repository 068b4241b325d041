//! `DPMSolverMultistepScheduler` as DPM-Solver++ 2M (midpoint), with Karras sigmas,
//! `final_sigmas_type`, `euler_at_final`, `lower_order_final` and `lambda_min_clipped`.

use candle_core::{Result as CResult, Tensor};

use super::common::{
    arange_down, final_sigma, karras_sigmas, linspace, require, round_even, sigma_to_t,
    ClassDefaults, FinalSigma, Prediction, Schedule, Spacing,
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
    last_first_order: bool,
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
        let final_sigma = final_sigma(c)?;
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
        let last = last_timestep(&s, c.lambda_min_clipped.unwrap_or(f64::NEG_INFINITY));
        let mut timesteps: Vec<f64> = match s.spacing {
            Spacing::Linspace => {
                let mut t: Vec<f64> = linspace(0.0, last as f64 - 1.0, steps + 1)
                    .into_iter()
                    .map(round_even)
                    .rev()
                    .collect();
                t.pop();
                t
            }
            Spacing::Leading => {
                let ratio = last / (steps + 1);
                (1..=steps)
                    .rev()
                    .map(|i| (i * ratio + s.steps_offset) as f64)
                    .collect()
            }
            Spacing::Trailing => arange_down(last as f64, 0.0, n as f64 / steps as f64)
                .into_iter()
                .map(|t| round_even(t) - 1.0)
                .collect(),
        };
        let train = s.train_sigmas();
        let mut sigmas = if s.karras {
            // The Karras range is the whole training range; timesteps follow the sigmas,
            // rounded to whole steps.
            let log: Vec<f32> = train.iter().map(|x| x.ln()).collect();
            let (lo, hi) = (train[0] as f64, train[n - 1] as f64);
            let k = karras_sigmas(lo, hi, steps);
            // diffusers rounds these timesteps except for the cosine schedule, whose
            // fractional ones its int64 cast truncates.
            let cosine = c.beta_schedule.as_deref() == Some("squaredcos_cap_v2");
            timesteps = k
                .iter()
                .map(|&x| {
                    let t = sigma_to_t(x, &log);
                    if cosine {
                        t.trunc()
                    } else {
                        round_even(t)
                    }
                })
                .collect();
            let mut k: Vec<f64> = k.into_iter().map(|x| x as f32 as f64).collect();
            k.push(0.0);
            k
        } else {
            s.sigmas_at(&timesteps)
        };
        if final_sigma == FinalSigma::SigmaMin {
            if let Some(l) = sigmas.last_mut() {
                *l = train[0] as f64;
            }
        }
        // diffusers' `lower_order_final` rule for the last step: first order when the final
        // sigma is 0, when `euler_at_final` asks for it, or (by default) for short schedules.
        let last_first_order = final_sigma == FinalSigma::Zero
            || c.euler_at_final == Some(true)
            || (c.lower_order_final.unwrap_or(true) && timesteps.len() < 15);
        Ok(Self {
            prediction: s.prediction,
            timesteps,
            sigmas,
            previous: None,
            last_first_order,
        })
    }

    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }
}

/// One past the last usable training timestep once `lambda_min_clipped` trims the noisiest
/// ones (`num_train_timesteps - searchsorted(flip(lambda_t), lambda_min_clipped)`).
fn last_timestep(s: &Schedule, lambda_min_clipped: f64) -> usize {
    let n = s.train_steps;
    if lambda_min_clipped == f64::NEG_INFINITY {
        return n;
    }
    let below = s
        .alphas_cumprod
        .iter()
        .map(|&a| (a.sqrt().ln() - (1.0 - a).sqrt().ln()) as f64)
        .filter(|&l| l < lambda_min_clipped)
        .count();
    n - below.min(n - 1)
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
        // The first step is first order (no history); so is the last, by diffusers' rule.
        let first_order = self.previous.is_none() || (i + 1 == n && self.last_first_order);
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
