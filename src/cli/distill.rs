//! `arenaxl distill plan|train`: progressive layer-level knowledge distillation.

pub mod bench;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::distill::plan::{Keep, Plan, Student};
use crate::engine::config::UNetConfig;

#[derive(Debug, Subcommand)]
pub enum DistillCommand {
    /// Check a plan against a teacher; print the student's UNet config and its size.
    Plan(PlanArgs),
    /// Train a student (one plan, or stages) against a teacher on an image folder.
    Train(Box<TrainArgs>),
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The teacher: a diffusers SDXL pipeline folder.
    #[arg(long)]
    pub teacher: PathBuf,
    /// A built-in plan (ssd-1b, vega), a plan JSON file, or a plan's JSON text.
    #[arg(long, conflicts_with = "stages", required_unless_present = "stages")]
    pub plan: Option<String>,
    /// Stages JSON: {"teacher": "original"|"previous", "stages": [{"plan": ..., "steps": N}]}.
    #[arg(long)]
    pub stages: Option<PathBuf>,
    /// Hugging Face imagefolder: images and metadata.jsonl (file_name, text).
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder: cache/, stage-K/{train.jsonl,checkpoint/,model/}.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub hyper: HyperArgs,
    /// cpu, cuda, cuda:N, metal.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Continue from the checkpoints in --out.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The hyper-parameters of a run, shared by `distill train` and `jobs distill`.
#[derive(Debug, Args, Clone)]
pub struct HyperArgs {
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    #[arg(long, default_value_t = 1e-5)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f64,
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f64,
    #[arg(long, default_value_t = 1e-2)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Global gradient-norm clip (0: off).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Keep an EMA of the student with this decay and export it.
    #[arg(long)]
    pub ema_decay: Option<f64>,
    #[arg(long, default_value_t = 1.0)]
    pub lambda_task: f64,
    #[arg(long, default_value_t = 0.5)]
    pub lambda_out: f64,
    #[arg(long, default_value_t = 0.5)]
    pub lambda_feat: f64,
    /// Feature loss at every layer, or one per block (BK-SDM).
    #[arg(long, value_enum, default_value_t = crate::distill::FeatureLevel::Layer)]
    pub features: crate::distill::FeatureLevel,
    /// Training image size in pixels.
    #[arg(long, default_value_t = 1024)]
    pub resolution: usize,
    /// Samples held out for evaluation (the first ones of the folder).
    #[arg(long, default_value_t = 4)]
    pub held_out: usize,
    #[arg(long, default_value_t = 100)]
    pub eval_every: u64,
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = Keep::First)]
    pub keep: Keep,
    /// For --plan runs with several stages: the teacher of later stages.
    #[arg(long, value_enum, default_value_t = crate::distill::run::StageTeacher::Original)]
    pub stage_teacher: crate::distill::run::StageTeacher,
    /// Training dtype; default bf16 on a GPU, f32 on the CPU.
    #[arg(long)]
    pub dtype: Option<String>,
}

impl HyperArgs {
    /// The checked training configuration.
    pub fn train_config(&self) -> anyhow::Result<crate::distill::train::TrainConfig> {
        use crate::distill::loss::LossConfig;
        use crate::distill::optim::AdamWConfig;
        let cfg = crate::distill::train::TrainConfig {
            steps: self.steps,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            adamw: AdamWConfig {
                lr: self.lr,
                beta1: self.beta1,
                beta2: self.beta2,
                eps: 1e-8,
                weight_decay: self.weight_decay,
            },
            warmup_steps: self.warmup,
            max_grad_norm: self.max_grad_norm,
            ema_decay: self.ema_decay,
            loss: LossConfig {
                lambda_task: self.lambda_task,
                lambda_out: self.lambda_out,
                lambda_feat: self.lambda_feat,
                level: self.features,
            },
            seed: self.seed,
            checkpoint_every: self.checkpoint_every,
            eval_every: self.eval_every,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// `--plan P` or `--stages FILE` as stages.
    pub fn stages(
        &self,
        plan: Option<&str>,
        stages: Option<&Path>,
    ) -> anyhow::Result<crate::distill::run::Stages> {
        use crate::distill::run::Stages;
        Ok(match (plan, stages) {
            (Some(p), _) => Stages::single(p, self.stage_teacher),
            (None, Some(f)) => Stages::load(f)?,
            (None, None) => anyhow::bail!("give --plan or --stages"),
        })
    }
}

#[derive(Debug, Args)]
pub struct TeacherArgs {
    /// The teacher: a diffusers SDXL pipeline folder.
    #[arg(long, conflicts_with = "preset", required_unless_present = "preset")]
    pub teacher: Option<PathBuf>,
    /// The teacher: a built-in preset's config (sdxl, tiny-sdxl, ...).
    #[arg(long)]
    pub preset: Option<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub teacher: TeacherArgs,
    /// A built-in plan (ssd-1b, vega) or a plan JSON file.
    #[arg(long)]
    pub plan: String,
    /// Which teacher transformer blocks a shallower attention keeps.
    #[arg(long, value_enum, default_value_t = Keep::First)]
    pub keep: Keep,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The teacher's UNet config, its raw JSON and the file it came from.
pub fn teacher_unet(t: &TeacherArgs) -> anyhow::Result<(UNetConfig, serde_json::Value, PathBuf)> {
    match (&t.teacher, &t.preset) {
        (Some(dir), _) => {
            let file = dir.join("unet/config.json");
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let raw: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", file.display()))?;
            let cfg: UNetConfig = crate::engine::config::read_json(&file)?;
            Ok((cfg, raw, file))
        }
        (None, Some(p)) => {
            let files = crate::engine::presets::preset_files(p)?;
            let raw: serde_json::Value = serde_json::from_str(files.unet)?;
            let cfg: UNetConfig = serde_json::from_str(files.unet)?;
            Ok((
                cfg,
                raw,
                PathBuf::from(format!("<preset {p}>/unet/config.json")),
            ))
        }
        (None, None) => anyhow::bail!("give --teacher DIR or --preset NAME"),
    }
}

pub fn load_student(
    teacher: &UNetConfig,
    file: &Path,
    plan_arg: &str,
    keep: Keep,
) -> anyhow::Result<Student> {
    let (label, plan) = Plan::from_arg(plan_arg)?;
    Ok(plan.student(&label, teacher, file, keep)?)
}

pub fn run(cmd: DistillCommand) -> anyhow::Result<()> {
    match cmd {
        DistillCommand::Plan(a) => plan(a),
        DistillCommand::Train(a) => train(*a),
    }
}

fn train(a: TrainArgs) -> anyhow::Result<()> {
    use crate::distill::run::{Control, Event, RunOptions};
    let device = crate::engine::device::parse_device(&a.device)?;
    let h = &a.hyper;
    let dtype = match &h.dtype {
        Some(d) => crate::engine::device::parse_dtype(d)?,
        None if device.is_cpu() => candle_core::DType::F32,
        None => candle_core::DType::BF16,
    };
    let stages = h.stages(a.plan.as_deref(), a.stages.as_deref())?;
    let cfg = h.train_config()?;
    let records = crate::distill::data::read_imagefolder(&a.data)?;
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(records.len() as u64).with_message("encoding")
    };
    let data = crate::distill::data::cached(
        &a.teacher,
        &a.data,
        h.resolution,
        &a.out.join("cache"),
        &device,
        |i| {
            bar.set_position(i as u64);
            true
        },
    )?;
    bar.finish_and_clear();
    let opts = RunOptions {
        keep: h.keep,
        held_out: h.held_out,
        resume: a.resume,
        device,
        dtype,
    };
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(stages.total_steps(&cfg))
    };
    // Steps before each stage, so that a resumed run's bar starts where it stopped.
    let offsets = stages.offsets(&cfg);
    let mut observer = |e: Event<'_>| {
        if let Event::Step {
            stage, stages, log, ..
        } = e
        {
            bar.set_position(offsets.get(stage).copied().unwrap_or(0) + log.step);
            bar.set_message(format!("stage {}/{stages} loss {:.4}", stage + 1, log.loss));
        }
        Control::Continue
    };
    let (model, eval) = crate::distill::run::run(
        &a.teacher,
        &stages,
        &data,
        &cfg,
        &a.out,
        &opts,
        &mut observer,
    )
    .with_context(|| format!("distilling into {}", a.out.display()))?;
    bar.finish_and_clear();
    if let Some(e) = eval {
        println!(
            "held-out: output MSE {:.6}, feature MSE {:.6} (step {})",
            e.output_mse, e.feature_mse, e.step
        );
    }
    println!("student pipeline: {}", model.display());
    Ok(())
}

fn plan(a: PlanArgs) -> anyhow::Result<()> {
    let (teacher, raw, file) = teacher_unet(&a.teacher)?;
    let student = load_student(&teacher, &file, &a.plan, a.keep)?;
    let config = student.config_json(&raw)?;
    let params = student.parameters()?;
    let layout = crate::engine::unet::layout::UNetLayout::resolve(&teacher, &file)?;
    let teacher_params = crate::distill::plan::unet_parameters(&teacher, &layout)?;
    if a.json {
        let v = serde_json::json!({
            "plan": a.plan,
            "unet_config": config,
            "parameters": params,
            "teacher_parameters": teacher_params,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&config)?);
        println!(
            "student UNet: {} parameters (teacher {}, {:.1}%)",
            super::grouped(params),
            super::grouped(teacher_params),
            100.0 * params as f64 / teacher_params.max(1) as f64
        );
    }
    Ok(())
}
