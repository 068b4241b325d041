//! AdamW over named variables with its state in the open, so that checkpoints hold the
//! moments and a resumed run continues exactly (candle_nn's AdamW keeps them private).
//! Also gradient-norm clipping and an EMA of the weights.

use std::collections::HashMap;

use candle_core::{DType, Result, Tensor, Var};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-5,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

/// Moments are kept in f32 whatever the weights' dtype.
pub struct AdamW {
    pub cfg: AdamWConfig,
    pub steps: u64,
    pub m: HashMap<String, Tensor>,
    pub v: HashMap<String, Tensor>,
}

impl AdamW {
    pub fn new(cfg: AdamWConfig) -> Self {
        Self {
            cfg,
            steps: 0,
            m: HashMap::new(),
            v: HashMap::new(),
        }
    }

    /// One update with learning rate `lr` (after warm-up scaling) from averaged grads.
    /// With `master` (f32 weights of f16/bf16 vars) the update is applied to the master
    /// copy and the var is refreshed from it; without, to the var itself.
    pub fn step(
        &mut self,
        vars: &[(String, Var)],
        mut master: Option<&mut HashMap<String, Tensor>>,
        grads: &HashMap<String, Tensor>,
        lr: f64,
    ) -> Result<()> {
        self.steps += 1;
        let c = self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.steps as i32);
        let bc2 = 1.0 - c.beta2.powi(self.steps as i32);
        for (name, var) in vars {
            let Some(g) = grads.get(name) else { continue };
            let g = g.to_dtype(DType::F32)?;
            let m = match self.m.get(name) {
                Some(m) => ((m * c.beta1)? + (&g * (1.0 - c.beta1))?)?,
                None => (&g * (1.0 - c.beta1))?,
            };
            let v = match self.v.get(name) {
                Some(v) => ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?,
                None => (g.sqr()? * (1.0 - c.beta2))?,
            };
            let update = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + c.eps)?)?;
            let w = match master.as_deref().and_then(|m| m.get(name)) {
                Some(w) => w.clone(),
                None => var.as_tensor().to_dtype(DType::F32)?,
            };
            let w = ((&w * (1.0 - lr * c.weight_decay))? - (update * lr)?)?;
            var.set(&w.to_dtype(var.dtype())?)?;
            if let Some(m) = master.as_deref_mut() {
                m.insert(name.clone(), w);
            }
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        Ok(())
    }
}

/// Scales the gradients so that their global L2 norm is at most `max_norm`; returns the
/// norm before clipping.
pub fn clip_grad_norm(grads: &mut HashMap<String, Tensor>, max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for g in grads.values() {
        sq += g
            .to_dtype(DType::F32)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f32>()? as f64;
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let s = max_norm / (norm + 1e-6);
        for g in grads.values_mut() {
            *g = (&*g * s)?;
        }
    }
    Ok(norm)
}

/// Exponential moving average of the weights (kept in f32; of the master weights when the
/// vars are a half-precision copy).
pub fn ema_update(
    ema: &mut HashMap<String, Tensor>,
    vars: &[(String, Var)],
    master: Option<&HashMap<String, Tensor>>,
    decay: f64,
) -> Result<()> {
    for (name, var) in vars {
        let w = match master.and_then(|m| m.get(name)) {
            Some(w) => w.clone(),
            None => var.as_tensor().to_dtype(DType::F32)?,
        };
        let e = match ema.get(name) {
            Some(e) => ((e * decay)? + (w * (1.0 - decay))?)?,
            None => w,
        };
        ema.insert(name.clone(), e);
    }
    Ok(())
}
