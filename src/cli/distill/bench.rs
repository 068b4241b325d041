//! `arenaxl bench distill`: training steps per second of the distillation step on a tiny
//! teacher (CPU), optionally next to the same step in PyTorch (tools/distill_bench.py).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Tensor};
use clap::Args;

use crate::distill::dataset::Dataset;
use crate::distill::optim::AdamWConfig;
use crate::distill::plan::Keep;
use crate::distill::prune::{initial_weights, prune};
use crate::distill::train::{TrainConfig, Trainer};
use crate::engine::config::{read_json, UNetConfig};
use crate::engine::nn::Kernels;
use crate::engine::unet::UNet2DConditionModel;

#[derive(Debug, Args)]
pub struct BenchDistillArgs {
    /// Teacher preset (random weights), written to a temporary folder.
    #[arg(long, default_value = "tiny-sdxl")]
    pub preset: String,
    #[arg(long, default_value = "vega")]
    pub plan: String,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Latent size (pixels / 8).
    #[arg(long, default_value_t = 16)]
    pub latent: usize,
    /// Timed steps after two warm-up steps.
    #[arg(long, default_value_t = 10)]
    pub steps: u64,
    /// CPU threads for both (RAYON_NUM_THREADS, torch.set_num_threads).
    #[arg(long)]
    pub threads: Option<usize>,
    /// A Python with torch + diffusers: also time tools/distill_bench.py and print the ratio.
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// A teacher pipeline folder to use instead of writing the preset (tools/gpu-check.sh
    /// reuses the full-size SDXL it wrote).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Training dtype: f32, f16 or bf16 (f32 master weights either way).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

pub fn bench(a: BenchDistillArgs) -> anyhow::Result<()> {
    if let Some(n) = a.threads {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let dev = crate::engine::device::parse_device(&a.device)?;
    let dtype = crate::engine::device::parse_dtype(&a.dtype)?;
    crate::engine::device::check(&dev, dtype)?;
    let tmp = tempfile::tempdir()?;
    let (teacher, student_dir) = match &a.teacher {
        Some(t) => (t.clone(), tmp.path().join("student")),
        None => (tmp.path().join("teacher"), tmp.path().join("student")),
    };
    if a.teacher.is_none() {
        crate::engine::presets::init_model_folder(&a.preset, &teacher, 0)?;
    }
    let cfg_file = teacher.join("unet/config.json");
    let cfg: UNetConfig = read_json(&cfg_file)?;
    let student = super::load_student(&cfg, &cfg_file, &a.plan, Keep::First)?;
    // The student folder is only for the PyTorch comparison.
    if a.python.is_some() {
        prune(&teacher, &student, &student_dir)?;
    }
    let tunet =
        UNet2DConditionModel::load(&teacher.join("unet"), dtype, &dev, Kernels { fused: true })?;
    let weights = initial_weights(&teacher.join("unet"), &student)?;
    let add = student
        .layout
        .add
        .as_ref()
        .context("the bench needs an SDXL-style UNet")?;
    let ctx = match &cfg.cross_attention_dim {
        crate::engine::config::PerBlock::All(v) => *v,
        crate::engine::config::PerBlock::Each(v) => v.first().copied().unwrap_or(0),
    };
    let n = a.batch.max(1) * 4;
    let data = Dataset {
        latents: Tensor::randn(0f32, 1f32, (n, 4, a.latent, a.latent), &dev)?,
        embeds: Tensor::randn(0f32, 1f32, (n, 77, ctx), &dev)?,
        pooled: Tensor::randn(0f32, 1f32, (n, add.in_dim - 6 * add.time_dim), &dev)?,
        time_ids: Tensor::ones((n, 6), DType::F32, &dev)?.affine((a.latent * 8) as f64, 0.0)?,
    };
    let tc = TrainConfig {
        steps: a.steps,
        batch_size: a.batch.max(1),
        adamw: AdamWConfig {
            lr: 1e-4,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut t = Trainer::new(
        tunet,
        &student,
        student.map.clone(),
        &weights,
        tc,
        &dev,
        dtype,
    )?;
    for _ in 0..2 {
        t.train_step(&data)?;
    }
    let start = Instant::now();
    for _ in 0..a.steps {
        t.train_step(&data)?;
    }
    let ours = a.steps as f64 / start.elapsed().as_secs_f64();
    println!(
        "candle: {ours:.3} steps/s ({} teacher -> {} student, batch {}, latents {}x{}, {} {}, {} threads)",
        a.teacher
            .as_ref()
            .map(|t| t.display().to_string())
            .unwrap_or_else(|| a.preset.clone()),
        a.plan,
        a.batch,
        a.latent,
        a.latent,
        a.device,
        a.dtype,
        a.threads
            .map(|n| n.to_string())
            .unwrap_or_else(|| "all".into())
    );
    if let Some(py) = &a.python {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/distill_bench.py");
        let out = std::process::Command::new(py)
            .arg(&script)
            .arg(&teacher)
            .arg(&student_dir)
            .args([
                "--batch",
                &a.batch.to_string(),
                "--latent",
                &a.latent.to_string(),
            ])
            .args(["--steps", &a.steps.to_string()])
            .args(["--threads", &a.threads.unwrap_or(0).to_string()])
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            anyhow::bail!(
                "{}: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let theirs: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("steps_per_s "))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no `steps_per_s` line in: {text}"))?;
        println!("pytorch: {theirs:.3} steps/s");
        println!("ratio candle/pytorch: {:.2}", ours / theirs);
    }
    Ok(())
}
