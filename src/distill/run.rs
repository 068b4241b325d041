//! A whole distillation run: stages (each a plan applied to the previous stage's trained
//! student), the training loop with a JSONL log, periodic evaluation and checkpoints,
//! resume, a progress bar, and export as a diffusers pipeline folder.

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use super::dataset::Dataset;
use super::error::{DistillError, Result};
use super::mapping::LayerMap;
use super::plan::{Keep, Plan};
use super::prune::{initial_weights, write_pipeline_shell};
use super::train::{EvalLog, TrainConfig, Trainer};
use crate::engine::config::{read_json, UNetConfig};
use crate::engine::nn::Kernels;
use crate::engine::unet::UNet2DConditionModel;

/// Which teacher later stages learn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageTeacher {
    /// The original teacher throughout (features matched through the composed maps).
    #[default]
    Original,
    /// Each stage learns from the previous stage's student.
    Previous,
}

/// One stage: a plan (built-in name or file) and optionally its own step count.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Stage {
    pub plan: String,
    #[serde(default)]
    pub steps: Option<u64>,
}

/// `--stages FILE`: `{"teacher": "original", "stages": [{"plan": "ssd-1b"}, {"plan": "vega"}]}`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Stages {
    #[serde(default)]
    pub teacher: StageTeacher,
    pub stages: Vec<Stage>,
}

impl Stages {
    pub fn load(file: &Path) -> Result<Stages> {
        let text = std::fs::read_to_string(file).map_err(DistillError::io(file))?;
        let s: Stages = serde_json::from_str(&text).map_err(|e| DistillError::Json {
            file: file.to_path_buf(),
            message: e.to_string(),
        })?;
        if s.stages.is_empty() {
            return Err(DistillError::Json {
                file: file.to_path_buf(),
                message: "`stages` is empty".into(),
            });
        }
        Ok(s)
    }
}

pub struct RunOptions {
    pub keep: Keep,
    pub held_out: usize,
    pub resume: bool,
    pub progress: bool,
    pub device: Device,
    pub dtype: DType,
}

fn append(log: &Path, v: &serde_json::Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(DistillError::io(log))?;
    writeln!(f, "{v}").map_err(DistillError::io(log))
}

/// Runs every stage; returns the final pipeline folder and the last evaluation.
pub fn run(
    teacher: &Path,
    stages: &Stages,
    data: &Dataset,
    base: &TrainConfig,
    out: &Path,
    o: &RunOptions,
) -> Result<(PathBuf, Option<EvalLog>)> {
    let (held, train) = data.split(o.held_out)?;
    if train.is_empty() {
        return Err(DistillError::Training(format!(
            "{} samples leave none for training after {} held out",
            data.len(),
            o.held_out
        )));
    }
    let mut init = teacher.to_path_buf();
    let mut map_to_teacher: Option<LayerMap> = None;
    let mut last = None;
    for (k, stage) in stages.stages.iter().enumerate() {
        let dir = out.join(format!("stage-{k}"));
        std::fs::create_dir_all(&dir).map_err(DistillError::io(&dir))?;
        let cfg_file = init.join("unet/config.json");
        let cfg: UNetConfig = read_json(&cfg_file)?;
        let (label, plan) = Plan::from_arg(&stage.plan)?;
        let student = plan.student(&label, &cfg, &cfg_file, o.keep)?;
        let (teacher_dir, map) = match (stages.teacher, &map_to_teacher) {
            (StageTeacher::Original, Some(prev)) => (teacher, student.map.through(prev)),
            _ => (init.as_path(), student.map.clone()),
        };
        let model = dir.join("model");
        let done = model.join("unet/diffusion_pytorch_model.safetensors");
        if !(o.resume && done.is_file()) {
            let mut cfg = base.clone();
            if let Some(s) = stage.steps {
                cfg.steps = s;
            }
            let weights = initial_weights(&init.join("unet"), &student)?;
            let tunet = UNet2DConditionModel::load(
                &teacher_dir.join("unet"),
                o.dtype,
                &o.device,
                Kernels { fused: true },
            )?;
            let mut t = Trainer::new(
                tunet,
                &student,
                map.clone(),
                &weights,
                cfg,
                &o.device,
                o.dtype,
            )?;
            last = Some(train_stage(&mut t, &train, &held, &dir, o)?);
            write_pipeline_shell(&init, &student, &model)?;
            let file = model.join("unet/diffusion_pytorch_model.safetensors");
            candle_core::safetensors::save(&t.export_weights()?, &file).map_err(|e| {
                DistillError::Weights {
                    file: file.clone(),
                    message: e.to_string(),
                }
            })?;
        }
        map_to_teacher = Some(match map_to_teacher {
            Some(prev) => student.map.through(&prev),
            None => student.map.clone(),
        });
        init = model;
    }
    Ok((init, last))
}

fn train_stage(
    t: &mut Trainer,
    train: &Dataset,
    held: &Dataset,
    dir: &Path,
    o: &RunOptions,
) -> Result<EvalLog> {
    let ck = dir.join("checkpoint");
    let log = dir.join("train.jsonl");
    if o.resume && ck.join("state.json").is_file() {
        t.load_checkpoint(&ck)?;
    } else if log.exists() {
        std::fs::remove_file(&log).map_err(DistillError::io(&log))?;
    }
    let bar = if o.progress {
        indicatif::ProgressBar::new(t.cfg.steps)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_position(t.step);
    while t.step < t.cfg.steps {
        let s = t.train_step(train)?;
        append(&log, &to_json(&s))?;
        bar.set_message(format!("loss {:.4}", s.loss));
        bar.inc(1);
        if t.cfg.eval_every > 0 && t.step.is_multiple_of(t.cfg.eval_every) && !held.is_empty() {
            let e = t.evaluate(held)?;
            append(&log, &serde_json::json!({ "eval": e }))?;
        }
        if t.cfg.checkpoint_every > 0 && t.step.is_multiple_of(t.cfg.checkpoint_every) {
            t.save_checkpoint(&ck)?;
        }
    }
    bar.finish_and_clear();
    t.save_checkpoint(&ck)?;
    let e = t.evaluate(held)?;
    append(&log, &serde_json::json!({ "eval": e, "final": true }))?;
    Ok(e)
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
