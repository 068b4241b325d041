//! Noise-schedule arithmetic shared by the schedulers, in f32 where diffusers uses
//! float32 tensors so that timesteps and sigmas agree to the last few ulps.

use crate::engine::config::SchedulerConfig;
use crate::engine::error::{EngineError, Result};

/// How inference timesteps are spread over the training range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spacing {
    Leading,
    Trailing,
    Linspace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    Epsilon,
    VPrediction,
}

/// The parts of `scheduler_config.json` every scheduler here uses, with the chosen
/// class's defaults filled in.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub train_steps: usize,
    pub alphas_cumprod: Vec<f32>,
    pub spacing: Spacing,
    pub steps_offset: usize,
    pub prediction: Prediction,
    /// `use_karras_sigmas`: read by the classes that define it (Euler, DPM-Solver); the
    /// others ignore it, as diffusers' `from_config` drops keys a class does not have.
    pub karras: bool,
}

pub struct ClassDefaults {
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: &'static str,
    pub spacing: &'static str,
}

const FILE: &str = "scheduler/scheduler_config.json";

impl Schedule {
    pub fn new(c: &SchedulerConfig, d: &ClassDefaults) -> Result<Self> {
        let n = c.num_train_timesteps.unwrap_or(1000);
        if n == 0 {
            return Err(EngineError::field(
                FILE,
                "num_train_timesteps",
                "must be positive",
            ));
        }
        let start = c.beta_start.unwrap_or(d.beta_start);
        let end = c.beta_end.unwrap_or(d.beta_end);
        let betas: Vec<f32> = if let Some(b) = &c.trained_betas {
            if b.len() != n {
                return Err(EngineError::field(
                    FILE,
                    "trained_betas",
                    "length differs from num_train_timesteps",
                ));
            }
            b.iter().map(|&x| x as f32).collect()
        } else {
            let lin = |a: f64, b: f64| -> Vec<f64> {
                (0..n)
                    .map(|i| {
                        if n == 1 {
                            a
                        } else {
                            a + (b - a) * i as f64 / (n - 1) as f64
                        }
                    })
                    .collect()
            };
            match c.beta_schedule.as_deref().unwrap_or(d.beta_schedule) {
                "linear" => lin(start, end).into_iter().map(|x| x as f32).collect(),
                "scaled_linear" => lin(start.sqrt(), end.sqrt())
                    .into_iter()
                    .map(|x| (x as f32) * (x as f32))
                    .collect(),
                "squaredcos_cap_v2" => {
                    let f = |t: f64| {
                        ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
                            .cos()
                            .powi(2)
                    };
                    (0..n)
                        .map(|i| {
                            let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
                            (1.0 - f(t2) / f(t1)).min(0.999) as f32
                        })
                        .collect()
                }
                other => {
                    return Err(EngineError::field(
                        FILE,
                        "beta_schedule",
                        format!("`{other}` is not supported"),
                    ))
                }
            }
        };
        if c.rescale_betas_zero_snr == Some(true) {
            return Err(EngineError::field(
                FILE,
                "rescale_betas_zero_snr",
                "true is not supported",
            ));
        }
        let mut acc = 1f32;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        let spacing = match c.timestep_spacing.as_deref().unwrap_or(d.spacing) {
            "leading" => Spacing::Leading,
            "trailing" => Spacing::Trailing,
            "linspace" => Spacing::Linspace,
            other => {
                return Err(EngineError::field(
                    FILE,
                    "timestep_spacing",
                    format!("`{other}` is not supported"),
                ))
            }
        };
        let prediction = match c.prediction_type.as_deref().unwrap_or("epsilon") {
            "epsilon" => Prediction::Epsilon,
            "v_prediction" => Prediction::VPrediction,
            other => {
                return Err(EngineError::field(
                    FILE,
                    "prediction_type",
                    format!("`{other}` is not supported"),
                ))
            }
        };
        // Options that would change the schedule and are not implemented are refused
        // rather than ignored.
        for (field, on) in [
            ("thresholding", c.thresholding),
            ("use_exponential_sigmas", c.use_exponential_sigmas),
            ("use_beta_sigmas", c.use_beta_sigmas),
            ("use_lu_lambdas", c.use_lu_lambdas),
            ("use_flow_sigmas", c.use_flow_sigmas),
        ] {
            if on == Some(true) {
                return Err(EngineError::field(FILE, field, "true is not supported"));
            }
        }
        require("timestep_type", c.timestep_type.as_deref(), "discrete", "")?;
        Ok(Self {
            train_steps: n,
            alphas_cumprod,
            spacing,
            steps_offset: c.steps_offset.unwrap_or(0),
            prediction,
            karras: c.use_karras_sigmas == Some(true),
        })
    }

    /// `((1 - ᾱ) / ᾱ) ** 0.5` per training step, in f32 as diffusers computes it.
    pub fn train_sigmas(&self) -> Vec<f32> {
        self.alphas_cumprod
            .iter()
            .map(|&a| ((1.0 - a) / a).sqrt())
            .collect()
    }

    /// The training sigmas interpolated at `timesteps` (rounded through f32, as diffusers'
    /// float32 tensors are), followed by the final sigma 0.
    pub fn sigmas_at(&self, timesteps: &[f64]) -> Vec<f64> {
        let train = self.train_sigmas();
        let mut sigmas: Vec<f64> = timesteps
            .iter()
            .map(|&t| interp(t, &train) as f32 as f64)
            .collect();
        sigmas.push(0.0);
        sigmas
    }
}

/// Karras et al.'s noise levels: `n` sigmas from `max` down to `min`, evenly spaced in
/// `sigma ** (1 / 7)` (diffusers' `_convert_to_karras`).
pub fn karras_sigmas(min: f64, max: f64, n: usize) -> Vec<f64> {
    const RHO: f64 = 7.0;
    let (lo, hi) = (min.powf(1.0 / RHO), max.powf(1.0 / RHO));
    linspace(0.0, 1.0, n)
        .into_iter()
        .map(|r| (hi + r * (lo - hi)).powf(RHO))
        .collect()
}

/// The (fractional) training timestep whose sigma is `sigma`, by linear interpolation of
/// log sigma between neighbouring training steps (diffusers' `_sigma_to_t`; `log_sigmas`
/// ascending, in f32 as numpy computes them from the float32 schedule).
pub fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let n = log_sigmas.len();
    if n < 2 {
        return 0.0;
    }
    let ls = sigma.max(1e-10).ln();
    // The last index whose log sigma is <= ls (0 when none is), kept below n - 1.
    let low = log_sigmas
        .iter()
        .rposition(|&l| ls - l as f64 >= 0.0)
        .unwrap_or(0)
        .min(n - 2);
    let (lo, hi) = (log_sigmas[low] as f64, log_sigmas[low + 1] as f64);
    let w = ((lo - ls) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// Where the last sigma goes (`final_sigmas_type`): to 0, or to the schedule's smallest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalSigma {
    Zero,
    SigmaMin,
}

pub fn final_sigma(c: &SchedulerConfig) -> Result<FinalSigma> {
    match c.final_sigmas_type.as_deref() {
        None | Some("zero") => Ok(FinalSigma::Zero),
        Some("sigma_min") => Ok(FinalSigma::SigmaMin),
        Some(other) => Err(EngineError::field(
            FILE,
            "final_sigmas_type",
            format!("`{other}` is not supported (zero or sigma_min)"),
        )),
    }
}

/// "trailing" spacing: `round(arange(n, 0, -n / steps)) - 1`, shared by every scheduler.
pub fn trailing_timesteps(train_steps: usize, steps: usize) -> Vec<f64> {
    let n = train_steps as f64;
    arange_down(n, 0.0, n / steps as f64)
        .into_iter()
        .map(|t| round_even(t) - 1.0)
        .collect()
}

/// `np.linspace(a, b, n)`.
/// Refuses a scheduler option whose value would change the schedule in a way this engine does
/// not implement (absent means the supported default); `note` ends the message.
pub fn require(field: &str, value: Option<&str>, supported: &str, note: &str) -> Result<()> {
    match value {
        Some(v) if v != supported => Err(EngineError::field(
            FILE,
            field,
            format!("`{v}` is not supported{note}"),
        )),
        _ => Ok(()),
    }
}

pub fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![a],
        _ => {
            let step = (b - a) / (n - 1) as f64;
            (0..n)
                .map(|i| if i == n - 1 { b } else { a + step * i as f64 })
                .collect()
        }
    }
}

/// `np.arange(start, stop, -step)` for positive `step`, descending.
pub fn arange_down(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let count = ((start - stop) / step).ceil().max(0.0) as usize;
    (0..count).map(|i| start - step * i as f64).collect()
}

/// numpy's round-half-to-even.
pub fn round_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// `np.interp(x, arange(len(ys)), ys)`.
pub fn interp(x: f64, ys: &[f32]) -> f64 {
    if ys.is_empty() {
        return 0.0;
    }
    if x <= 0.0 {
        return ys[0] as f64;
    }
    let last = ys.len() - 1;
    if x >= last as f64 {
        return ys[last] as f64;
    }
    let i = x.floor() as usize;
    let f = x - i as f64;
    ys[i] as f64 + (ys[i + 1] as f64 - ys[i] as f64) * f
}
