//! The training loop: one step is a teacher forward (no gradients), a student forward
//! with features, the three losses, backward, gradient accumulation, clipping, warm-up
//! and AdamW (plus an optional EMA). Randomness of step s comes from a generator seeded
//! by (seed, s), so a resumed run draws exactly what an uninterrupted one would.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::dataset::{Batch, Dataset};
use super::error::{DistillError, Result};
use super::loss::{feature_loss, losses, mse, LossConfig};
use super::mapping::LayerMap;
use super::optim::{clip_grad_norm, ema_update, AdamW, AdamWConfig};
use super::plan::Student;
use super::precision::LossScaler;
use super::student::TrainableUNet;
use crate::engine::unet::{AddedCond, UNet2DConditionModel, UNetOutput};

/// The most optimizer steps a stage (or a whole run) may take.
pub const MAX_STEPS: u64 = 10_000_000;

/// Hyper-parameters of a run. Deserialised with defaults for missing fields (a job payload
/// names only what it changes) and no unknown ones (a misspelt field is an error, not a
/// silently ignored setting).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub steps: u64,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub adamw: AdamWConfig,
    pub warmup_steps: u64,
    /// 0 disables clipping.
    pub max_grad_norm: f64,
    pub ema_decay: Option<f64>,
    pub loss: LossConfig,
    pub seed: u64,
    /// 0 disables.
    pub checkpoint_every: u64,
    pub eval_every: u64,
}

impl TrainConfig {
    /// Checks every field; the message names the field and the accepted range.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, rule: &str, got: String| {
            Err(DistillError::Training(format!(
                "{field} must be {rule} (got {got})"
            )))
        };
        if self.steps == 0 || self.steps > MAX_STEPS {
            return bad("steps", "1-10000000", self.steps.to_string());
        }
        if self.batch_size == 0 || self.batch_size > 4096 {
            return bad("batch_size", "1-4096", self.batch_size.to_string());
        }
        if self.grad_accum == 0 || self.grad_accum > 4096 {
            return bad("grad_accum", "1-4096", self.grad_accum.to_string());
        }
        let a = &self.adamw;
        if !(a.lr.is_finite() && a.lr > 0.0 && a.lr <= 1.0) {
            return bad("lr", "in (0, 1]", a.lr.to_string());
        }
        for (field, v) in [("beta1", a.beta1), ("beta2", a.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return bad(field, "in [0, 1)", v.to_string());
            }
        }
        if !(a.eps.is_finite() && a.eps > 0.0) {
            return bad("eps", "positive", a.eps.to_string());
        }
        if !(a.weight_decay.is_finite() && (0.0..=1.0).contains(&a.weight_decay)) {
            return bad("weight_decay", "in [0, 1]", a.weight_decay.to_string());
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            return bad(
                "max_grad_norm",
                "0 (off) or positive",
                self.max_grad_norm.to_string(),
            );
        }
        if let Some(d) = self.ema_decay {
            if !(d > 0.0 && d < 1.0) {
                return bad("ema_decay", "in (0, 1)", d.to_string());
            }
        }
        let l = &self.loss;
        for (field, v) in [
            ("lambda_task", l.lambda_task),
            ("lambda_out", l.lambda_out),
            ("lambda_feat", l.lambda_feat),
        ] {
            if !(v.is_finite() && (0.0..=1000.0).contains(&v)) {
                return bad(field, "in [0, 1000]", v.to_string());
            }
        }
        if l.lambda_task + l.lambda_out + l.lambda_feat == 0.0 {
            return bad(
                "lambda_task + lambda_out + lambda_feat",
                "positive",
                "0".into(),
            );
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 1,
            grad_accum: 1,
            adamw: AdamWConfig::default(),
            warmup_steps: 0,
            max_grad_norm: 1.0,
            ema_decay: None,
            loss: LossConfig::default(),
            seed: 0,
            checkpoint_every: 0,
            eval_every: 0,
        }
    }
}

/// Loss components of one optimizer step (averaged over accumulated micro-batches).
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepLog {
    pub step: u64,
    pub loss: f32,
    pub task: f32,
    pub output: f32,
    pub features: f32,
    pub grad_norm: f64,
    pub lr: f64,
    /// f16 only: the loss scale used for this step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// The gradients overflowed (f16) and the optimizer step was skipped.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

/// Student-vs-teacher agreement on held-out samples.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct EvalLog {
    pub step: u64,
    pub output_mse: f32,
    pub feature_mse: f32,
}

/// Training noise schedule: SDXL's scaled-linear betas (0.00085..0.012, 1000 steps).
pub fn alphas_cumprod(steps: usize, beta_start: f64, beta_end: f64) -> Vec<f64> {
    let (a, b) = (beta_start.sqrt(), beta_end.sqrt());
    let mut acc = 1.0;
    (0..steps)
        .map(|i| {
            let s = a + (b - a) * i as f64 / (steps.max(2) - 1) as f64;
            acc *= 1.0 - s * s;
            acc
        })
        .collect()
}

pub struct Trainer {
    pub teacher: UNet2DConditionModel,
    pub student: TrainableUNet,
    pub map: LayerMap,
    pub opt: AdamW,
    pub ema: HashMap<String, Tensor>,
    pub cfg: TrainConfig,
    pub step: u64,
    /// Dynamic loss scaling, when training in f16.
    pub scaler: Option<LossScaler>,
    alphas: Vec<f64>,
    device: Device,
    dtype: DType,
}

fn step_rng(seed: u64, step: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ (step + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

impl Trainer {
    pub fn new(
        teacher: UNet2DConditionModel,
        student: &Student,
        map: LayerMap,
        weights: &HashMap<String, Tensor>,
        cfg: TrainConfig,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        if cfg.batch_size == 0 || cfg.grad_accum == 0 {
            return Err(DistillError::Training(
                "batch size and gradient accumulation must be at least 1".into(),
            ));
        }
        Ok(Self {
            teacher,
            student: TrainableUNet::new(student, weights, dtype, device)?,
            map,
            opt: AdamW::new(cfg.adamw),
            ema: HashMap::new(),
            cfg,
            step: 0,
            scaler: LossScaler::for_dtype(dtype),
            alphas: alphas_cumprod(1000, 0.00085, 0.012),
            device: device.clone(),
            dtype,
        })
    }

    /// Noisy latents, timesteps and the noise, drawn from `rng`.
    fn noised(&self, b: &Batch, rng: &mut StdRng) -> Result<(Tensor, Tensor, Tensor)> {
        let n = b.latents.dim(0)?;
        let ts: Vec<usize> = (0..n)
            .map(|_| rng.gen_range(0..self.alphas.len()))
            .collect();
        let noise = crate::engine::noise::randn(rng, b.latents.shape(), &Device::Cpu)?
            .to_dtype(self.dtype)?
            .to_device(&self.device)?;
        let col = |f: &dyn Fn(f64) -> f64| -> Result<Tensor> {
            let v: Vec<f32> = ts.iter().map(|&t| f(self.alphas[t]) as f32).collect();
            Ok(Tensor::from_vec(v, (n, 1, 1, 1), &self.device)?.to_dtype(self.dtype)?)
        };
        let noisy = (b.latents.broadcast_mul(&col(&|a| a.sqrt())?)?
            + noise.broadcast_mul(&col(&|a| (1.0 - a).sqrt())?)?)?;
        let t = Tensor::from_vec(
            ts.iter().map(|&t| t as f32).collect::<Vec<_>>(),
            n,
            &self.device,
        )?;
        Ok((noisy, t, noise))
    }

    /// Noises a batch (drawing from `rng`) and runs teacher and student on it, both with
    /// features; returns (teacher, student, the noise added).
    fn forward_pair(
        &self,
        b: &Batch,
        rng: &mut StdRng,
    ) -> Result<(UNetOutput, UNetOutput, Tensor)> {
        let (noisy, t, noise) = self.noised(b, rng)?;
        let added = AddedCond {
            text_embeds: b.pooled.clone(),
            time_ids: b.time_ids.clone(),
        };
        let tout = self
            .teacher
            .forward_with_features(&noisy, &t, &b.embeds, Some(&added))?;
        let sout = self
            .student
            .unet
            .forward_with_features(&noisy, &t, &b.embeds, Some(&added))?;
        Ok((tout, sout, noise))
    }

    fn lr_at(&self, step: u64) -> f64 {
        let warm = if self.cfg.warmup_steps == 0 {
            1.0
        } else {
            ((step + 1) as f64 / self.cfg.warmup_steps as f64).min(1.0)
        };
        self.cfg.adamw.lr * warm
    }

    /// One optimizer step over `grad_accum` micro-batches drawn from `data`.
    pub fn train_step(&mut self, data: &Dataset) -> Result<StepLog> {
        if data.is_empty() {
            return Err(DistillError::Training("no training samples".into()));
        }
        let mut rng = step_rng(self.cfg.seed, self.step);
        let accum = self.cfg.grad_accum;
        let scale = self.scaler.map_or(1.0, |s| s.scale);
        let mut grads: HashMap<String, Tensor> = HashMap::new();
        let (mut total, mut task, mut out, mut feat) = (0f32, 0f32, 0f32, 0f32);
        for _ in 0..accum {
            let idx: Vec<usize> = (0..self.cfg.batch_size)
                .map(|_| rng.gen_range(0..data.len()))
                .collect();
            let b = data.batch(&idx, &self.device, self.dtype)?;
            let (tout, sout, noise) = self.forward_pair(&b, &mut rng)?;
            let l = losses(&sout, &tout, &noise, &self.map, &self.cfg.loss)?;
            // The loss is f32; its gradient reaches the f16 network multiplied by `scale`
            // and is divided by it again in f32 (1 without a scaler).
            let store = (l.total.clone() * (scale / accum as f64))?.backward()?;
            for (name, var) in &self.student.vars {
                if let Some(g) = store.get(var.as_tensor()) {
                    let g = (g.to_dtype(DType::F32)? / scale)?;
                    let sum = match grads.remove(name) {
                        Some(prev) => (prev + g)?,
                        None => g,
                    };
                    grads.insert(name.clone(), sum);
                }
            }
            total += l.total.to_dtype(DType::F32)?.to_scalar::<f32>()? / accum as f32;
            task += l.task / accum as f32;
            out += l.output / accum as f32;
            feat += l.features / accum as f32;
        }
        let grad_norm = clip_grad_norm(&mut grads, self.cfg.max_grad_norm)?;
        let lr = self.lr_at(self.step);
        let loss_scale = self.scaler.map(|s| s.scale);
        let apply = match self.scaler.as_mut() {
            Some(s) => s.update(grad_norm.is_finite()),
            None => true,
        };
        if apply {
            let st = &mut self.student;
            self.opt.step(&st.vars, st.master.as_mut(), &grads, lr)?;
            if let Some(d) = self.cfg.ema_decay {
                ema_update(&mut self.ema, &st.vars, st.master.as_ref(), d)?;
            }
        }
        self.step += 1;
        Ok(StepLog {
            step: self.step,
            loss: total,
            task,
            output: out,
            features: feat,
            grad_norm,
            lr,
            loss_scale,
            skipped: !apply,
        })
    }

    /// Output MSE and feature loss of the student against the teacher on `held`, with
    /// noise and timesteps fixed by the seed (the same at every evaluation).
    pub fn evaluate(&self, held: &Dataset) -> Result<EvalLog> {
        let mut rng = StdRng::seed_from_u64(self.cfg.seed ^ 0xE7A1_0000);
        let (mut out, mut feat, mut n) = (0f32, 0f32, 0usize);
        let bs = self.cfg.batch_size.max(1);
        let mut start = 0;
        while start < held.len() {
            let idx: Vec<usize> = (start..(start + bs).min(held.len())).collect();
            start += bs;
            let b = held.batch(&idx, &self.device, self.dtype)?;
            let (tout, sout, _) = self.forward_pair(&b, &mut rng)?;
            let k = idx.len() as f32;
            out += mse(&sout.sample, &tout.sample)?.to_scalar::<f32>()? * k;
            feat +=
                feature_loss(&sout, &tout, &self.map, self.cfg.loss.level)?.to_scalar::<f32>()? * k;
            n += idx.len();
        }
        let n = n.max(1) as f32;
        Ok(EvalLog {
            step: self.step,
            output_mse: out / n,
            feature_mse: feat / n,
        })
    }

    /// The weights to export: the EMA when kept, else the current weights (f32, CPU).
    pub fn export_weights(&self) -> Result<HashMap<String, Tensor>> {
        if self.cfg.ema_decay.is_some() && !self.ema.is_empty() {
            return self
                .ema
                .iter()
                .map(|(k, v)| Ok((k.clone(), v.to_device(&Device::Cpu)?)))
                .collect();
        }
        self.student.weights()
    }

    /// Writes weights (the f32 master weights in mixed precision), optimizer moments, EMA,
    /// the loss scaler and the step to `dir` (replaced whole).
    pub fn save_checkpoint(&self, dir: &Path) -> Result<()> {
        let tmp = dir.with_extension("tmp");
        let cerr = |m: String| DistillError::Checkpoint {
            file: dir.to_path_buf(),
            message: m,
        };
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(DistillError::io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(DistillError::io(&tmp))?;
        let mut state: HashMap<String, Tensor> = HashMap::new();
        for (prefix, m) in [
            ("m.", &self.opt.m),
            ("v.", &self.opt.v),
            ("ema.", &self.ema),
        ] {
            for (k, t) in m {
                state.insert(format!("{prefix}{k}"), t.to_device(&Device::Cpu)?);
            }
        }
        candle_core::safetensors::save(&self.student.weights()?, tmp.join("student.safetensors"))
            .map_err(|e| cerr(e.to_string()))?;
        candle_core::safetensors::save(&state, tmp.join("optimizer.safetensors"))
            .map_err(|e| cerr(e.to_string()))?;
        let meta = serde_json::json!({
            "step": self.step,
            "adamw_steps": self.opt.steps,
            "loss_scaler": self.scaler,
            "config": self.cfg,
        });
        std::fs::write(tmp.join("state.json"), meta.to_string())
            .map_err(DistillError::io(tmp.join("state.json")))?;
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(DistillError::io(dir))?;
        }
        std::fs::rename(&tmp, dir).map_err(DistillError::io(dir))
    }

    /// Restores what `save_checkpoint` wrote.
    pub fn load_checkpoint(&mut self, dir: &Path) -> Result<()> {
        let cerr = |m: String| DistillError::Checkpoint {
            file: dir.to_path_buf(),
            message: m,
        };
        let text = std::fs::read_to_string(dir.join("state.json"))
            .map_err(DistillError::io(dir.join("state.json")))?;
        let meta: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| cerr(e.to_string()))?;
        let get = |k: &str| {
            meta[k]
                .as_u64()
                .ok_or_else(|| cerr(format!("state.json: `{k}` missing")))
        };
        let (step, adamw_steps) = (get("step")?, get("adamw_steps")?);
        let w = candle_core::safetensors::load(dir.join("student.safetensors"), &Device::Cpu)
            .map_err(|e| cerr(e.to_string()))?;
        if let Some((name, _)) = self.student.vars.iter().find(|(n, _)| !w.contains_key(n)) {
            return Err(cerr(format!("student.safetensors lacks `{name}`")));
        }
        self.student.set_weights(&w)?;
        // A checkpoint of an f16 run carries its scaler; one from another dtype starts
        // this run's afresh.
        if self.scaler.is_some() {
            if let Ok(s) = serde_json::from_value::<LossScaler>(meta["loss_scaler"].clone()) {
                self.scaler = Some(s);
            }
        }
        let s = candle_core::safetensors::load(dir.join("optimizer.safetensors"), &self.device)
            .map_err(|e| cerr(e.to_string()))?;
        let (mut m, mut v, mut ema) = (HashMap::new(), HashMap::new(), HashMap::new());
        for (k, t) in s {
            if let Some(n) = k.strip_prefix("m.") {
                m.insert(n.to_string(), t);
            } else if let Some(n) = k.strip_prefix("v.") {
                v.insert(n.to_string(), t);
            } else if let Some(n) = k.strip_prefix("ema.") {
                ema.insert(n.to_string(), t);
            }
        }
        self.opt.m = m;
        self.opt.v = v;
        self.opt.steps = adamw_steps;
        self.ema = ema;
        self.step = step;
        Ok(())
    }
}
