//! The three losses of layer-level distillation: task (predicted vs true noise), output
//! (student vs teacher prediction) and features (student vs teacher at every kept layer).

use candle_core::{DType, Result, Tensor};

use super::mapping::{FeatureLevel, LayerMap};
use crate::engine::unet::UNetOutput;

/// Weights of the loss components. Defaults are those of Segmind's training code.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Weight of the task loss; 1 in the method, settable for teachers that do not
    /// predict noise (random-weight test models).
    pub lambda_task: f64,
    pub lambda_out: f64,
    pub lambda_feat: f64,
    pub level: FeatureLevel,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            lambda_task: 1.0,
            lambda_out: 0.5,
            lambda_feat: 0.5,
            level: FeatureLevel::Layer,
        }
    }
}

/// The total (differentiable) and each component's value.
pub struct Losses {
    pub total: Tensor,
    pub task: f32,
    pub output: f32,
    pub features: f32,
}

/// Mean squared error, computed in f32.
pub fn mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    (a.to_dtype(DType::F32)? - b.to_dtype(DType::F32)?)?
        .sqr()?
        .mean_all()
}

fn names(o: &UNetOutput) -> Vec<String> {
    o.features.iter().map(|(n, _)| n.clone()).collect()
}

/// Sum of MSEs over the matched feature pairs; the teacher side is detached.
pub fn feature_loss(
    student: &UNetOutput,
    teacher: &UNetOutput,
    map: &LayerMap,
    level: FeatureLevel,
) -> Result<Tensor> {
    let pairs = map.feature_pairs(&names(student), &names(teacher), level);
    let find = |o: &UNetOutput, n: &str| -> Result<Tensor> {
        o.features
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| candle_core::Error::Msg(format!("feature `{n}` missing")))
    };
    let mut total = Tensor::zeros((), DType::F32, student.sample.device())?;
    for (s, t) in pairs {
        total = (total + mse(&find(student, &s)?, &find(teacher, &t)?.detach())?)?;
    }
    Ok(total)
}

pub fn losses(
    student: &UNetOutput,
    teacher: &UNetOutput,
    noise: &Tensor,
    map: &LayerMap,
    cfg: &LossConfig,
) -> Result<Losses> {
    let task = mse(&student.sample, noise)?;
    let output = mse(&student.sample, &teacher.sample.detach())?;
    let features = feature_loss(student, teacher, map, cfg.level)?;
    let total = (((&task * cfg.lambda_task)? + (&output * cfg.lambda_out)?)?
        + (&features * cfg.lambda_feat)?)?;
    Ok(Losses {
        task: task.to_scalar()?,
        output: output.to_scalar()?,
        features: features.to_scalar()?,
        total,
    })
}
