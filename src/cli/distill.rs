//! `arenaxl distill plan|train`: progressive layer-level knowledge distillation.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::distill::plan::{Keep, Plan, Student};
use crate::engine::config::UNetConfig;

#[derive(Debug, Subcommand)]
pub enum DistillCommand {
    /// Check a plan against a teacher; print the student's UNet config and its size.
    Plan(PlanArgs),
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
    }
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
            super::model::grouped(params),
            super::model::grouped(teacher_params),
            100.0 * params as f64 / teacher_params.max(1) as f64
        );
    }
    Ok(())
}
