//! A whole distillation run: stages (each a plan applied to the previous stage's trained
//! student), the training loop with a JSONL log, periodic evaluation and checkpoints,
//! resume, and export as a diffusers pipeline folder. Progress goes to an observer (the
//! CLI's progress bar, a worker's job record) that can also ask the run to stop.

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use super::dataset::Dataset;
use super::error::{DistillError, Result};
use super::mapping::LayerMap;
use super::plan::{Keep, Plan, Student};
use super::prune::{initial_weights, write_pipeline_shell};
use super::train::{EvalLog, StepLog, TrainConfig, Trainer, MAX_STEPS};
use crate::engine::config::{read_json, UNetConfig};
use crate::engine::nn::Kernels;
use crate::engine::unet::UNet2DConditionModel;

/// Which teacher later stages learn from.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum StageTeacher {
    /// The original teacher throughout (features matched through the composed maps).
    #[default]
    Original,
    /// Each stage learns from the previous stage's student.
    Previous,
}

/// One stage: a plan (built-in name or file) and optionally its own step count.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub plan: String,
    #[serde(default)]
    pub steps: Option<u64>,
}

/// `--stages FILE`: `{"teacher": "original", "stages": [{"plan": "ssd-1b"}, {"plan": "vega"}]}`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
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

impl Stages {
    /// One stage of `plan`.
    pub fn single(plan: &str, teacher: StageTeacher) -> Stages {
        Stages {
            teacher,
            stages: vec![Stage {
                plan: plan.to_string(),
                steps: None,
            }],
        }
    }

    /// Checks every stage's plan against the model it prunes (the teacher, then each
    /// stage's student) before anything is trained; returns the students.
    pub fn check(
        &self,
        teacher: &UNetConfig,
        teacher_file: &Path,
        keep: Keep,
    ) -> Result<Vec<Student>> {
        let mut cfg = teacher.clone();
        let mut out = Vec::new();
        for (k, stage) in self.stages.iter().enumerate() {
            if let Some(n) = stage.steps {
                if n == 0 || n > MAX_STEPS {
                    return Err(DistillError::Training(format!(
                        "stage {}: steps must be 1-{MAX_STEPS} (got {n})",
                        k + 1
                    )));
                }
            }
            let (label, plan) = Plan::from_arg(&stage.plan)?;
            let student = plan.student(&label, &cfg, teacher_file, keep)?;
            cfg = student.config.clone();
            out.push(student);
        }
        if out.is_empty() || out.len() > 100 {
            return Err(DistillError::Training(format!(
                "a run has 1-100 stages (got {})",
                out.len()
            )));
        }
        Ok(out)
    }

    /// Replaces plans read from files by their JSON text, so that a queued job carries
    /// its plans itself: a worker on another machine, or a resume after the file changed,
    /// trains exactly what was checked.
    pub fn inline_plans(&mut self) -> Result<()> {
        for stage in &mut self.stages {
            if Plan::builtin(&stage.plan).is_some() || stage.plan.trim_start().starts_with('{') {
                continue;
            }
            let (_, plan) = Plan::from_arg(&stage.plan)?;
            stage.plan = serde_json::to_string(&plan).map_err(|e| DistillError::Plan {
                plan: stage.plan.clone(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Steps before each stage (where a stage's progress starts on a whole-run count).
    pub fn offsets(&self, base: &TrainConfig) -> Vec<u64> {
        self.stages
            .iter()
            .scan(0, |acc, s| {
                let before = *acc;
                *acc += s.steps.unwrap_or(base.steps);
                Some(before)
            })
            .collect()
    }

    /// Optimizer steps of all stages together.
    pub fn total_steps(&self, base: &TrainConfig) -> u64 {
        self.stages
            .iter()
            .map(|s| s.steps.unwrap_or(base.steps))
            .sum()
    }
}

pub struct RunOptions {
    pub keep: Keep,
    pub held_out: usize,
    pub resume: bool,
    pub device: Device,
    pub dtype: DType,
}

/// What a run reports while it trains. `stage` counts from 0.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Step {
        stage: usize,
        stages: usize,
        /// Steps of this stage.
        steps: u64,
        log: &'a StepLog,
    },
    Eval {
        stage: usize,
        log: &'a EvalLog,
    },
}

/// The observer's answer to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Stop now; `checkpoint` saves the state first, so that `--resume` loses nothing.
    Stop {
        checkpoint: bool,
    },
}

/// Receives the run's events; `Control::Stop` ends the run with `DistillError::Stopped`.
pub type Observer<'a> = &'a mut dyn FnMut(Event<'_>) -> Control;

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
    observer: Observer<'_>,
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
            let stage_of = (k, stages.stages.len());
            last = train_stage(&mut t, &train, &held, &dir, o, stage_of, observer)?;
            write_pipeline_shell(&init, &student, &model)?;
            let file = model.join("unet/diffusion_pytorch_model.safetensors");
            super::save_atomic(&t.export_weights()?, &file)?;
        } else {
            // A stage finished by an earlier attempt: its final evaluation is in its log.
            last = final_eval(&dir.join("train.jsonl"));
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
    (stage, stages): (usize, usize),
    observer: Observer<'_>,
) -> Result<Option<EvalLog>> {
    let ck = dir.join("checkpoint");
    let log = dir.join("train.jsonl");
    if o.resume && ck.join("state.json").is_file() {
        t.load_checkpoint(&ck)?;
    } else if log.exists() {
        std::fs::remove_file(&log).map_err(DistillError::io(&log))?;
    }
    let stop = |t: &Trainer, control: Control| -> Result<()> {
        match control {
            Control::Continue => Ok(()),
            Control::Stop { checkpoint } => {
                if checkpoint {
                    t.save_checkpoint(&ck)?;
                }
                Err(DistillError::Stopped { step: t.step })
            }
        }
    };
    while t.step < t.cfg.steps {
        let s = t.train_step(train)?;
        append(&log, &to_json(&s))?;
        let steps = t.cfg.steps;
        stop(
            t,
            observer(Event::Step {
                stage,
                stages,
                steps,
                log: &s,
            }),
        )?;
        if t.cfg.eval_every > 0 && t.step.is_multiple_of(t.cfg.eval_every) && !held.is_empty() {
            let e = t.evaluate(held)?;
            append(&log, &serde_json::json!({ "eval": e }))?;
            stop(t, observer(Event::Eval { stage, log: &e }))?;
        }
        if t.cfg.checkpoint_every > 0 && t.step.is_multiple_of(t.cfg.checkpoint_every) {
            t.save_checkpoint(&ck)?;
        }
    }
    t.save_checkpoint(&ck)?;
    // Without held-out samples there is nothing to measure (not an MSE of 0).
    if held.is_empty() {
        return Ok(None);
    }
    let e = t.evaluate(held)?;
    append(&log, &serde_json::json!({ "eval": e, "final": true }))?;
    // The run is over; an observer's stop request changes nothing now.
    let _ = observer(Event::Eval { stage, log: &e });
    Ok(Some(e))
}

/// The `{"eval": …, "final": true}` line of a finished stage's log.
fn final_eval(log: &Path) -> Option<EvalLog> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        if v["final"].as_bool() != Some(true) {
            return None;
        }
        serde_json::from_value(v["eval"].clone()).ok()
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
