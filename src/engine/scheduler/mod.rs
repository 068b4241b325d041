//! Samplers, one file each, configured from `scheduler/scheduler_config.json` as
//! diffusers' `from_config` would configure the chosen class.

pub mod common;
pub mod ddim;
pub mod dpm_solver;
pub mod euler;
pub mod euler_ancestral;

use std::str::FromStr;

use candle_core::{Result as CResult, Tensor};

use super::config::SchedulerConfig;
use super::error::{EngineError, Result};

/// One denoising schedule, set up for a fixed number of steps.
pub trait Scheduler {
    /// The UNet timestep of each step.
    fn timesteps(&self) -> &[f64];
    /// Factor applied to the initial noise (also to user-supplied latents).
    fn init_noise_sigma(&self) -> f64;
    fn scale_model_input(&self, sample: &Tensor, step: usize) -> CResult<Tensor>;
    fn step(&mut self, model_output: &Tensor, step: usize, sample: &Tensor) -> CResult<Tensor>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    Euler,
    Ddim,
    DpmPp2m,
    EulerAncestral,
}

impl FromStr for SchedulerKind {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "euler" => Ok(Self::Euler),
            "ddim" => Ok(Self::Ddim),
            "dpmpp-2m" => Ok(Self::DpmPp2m),
            "euler-a" => Ok(Self::EulerAncestral),
            other => Err(EngineError::Request(format!(
                "unknown scheduler `{other}` (expected euler, ddim, dpmpp-2m or euler-a)"
            ))),
        }
    }
}

impl SchedulerKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Euler => "euler",
            Self::Ddim => "ddim",
            Self::DpmPp2m => "dpmpp-2m",
            Self::EulerAncestral => "euler-a",
        }
    }

    /// The scheduler a model folder names, when it is one of ours.
    pub fn from_class(class: &str) -> Option<Self> {
        match class {
            "EulerDiscreteScheduler" => Some(Self::Euler),
            "DDIMScheduler" => Some(Self::Ddim),
            "DPMSolverMultistepScheduler" => Some(Self::DpmPp2m),
            "EulerAncestralDiscreteScheduler" => Some(Self::EulerAncestral),
            _ => None,
        }
    }

    pub fn build(self, c: &SchedulerConfig, steps: usize, seed: u64) -> Result<Box<dyn Scheduler>> {
        if steps == 0 {
            return Err(EngineError::Request("steps must be at least 1".into()));
        }
        if steps > c.num_train_timesteps.unwrap_or(1000) {
            return Err(EngineError::Request(
                "steps exceed num_train_timesteps".into(),
            ));
        }
        Ok(match self {
            Self::Euler => Box::new(euler::Euler::new(c, steps)?),
            Self::Ddim => Box::new(ddim::Ddim::new(c, steps)?),
            Self::DpmPp2m => Box::new(dpm_solver::DpmSolverPp2m::new(c, steps)?),
            Self::EulerAncestral => Box::new(euler_ancestral::EulerAncestral::new(c, steps, seed)?),
        })
    }
}
