//! `arenaxl generate` and `arenaxl bench unet`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use clap::Args;

use crate::engine::device::{parse_device, parse_dtype};
use crate::engine::nn::Kernels;
use crate::engine::params::random_weights;
use crate::engine::presets::ModelConfigs;
use crate::engine::unet::layout::UNetLayout;
use crate::engine::unet::{AddedCond, UNet2DConditionModel};
use crate::engine::{GenerateRequest, Pipeline, SchedulerKind};

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A diffusers SDXL pipeline folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Prompt; repeat for a batch (images are written as OUT-0.png, OUT-1.png, ...).
    #[arg(long, required = true)]
    pub prompt: Vec<String>,
    /// What to steer away from (used when guidance > 1).
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Denoising steps.
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// Classifier-free guidance scale; 1 or less disables guidance.
    #[arg(long, default_value_t = 5.0)]
    pub guidance: f64,
    /// Seed of the starting noise (and of euler-a's noise).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image width in pixels, a multiple of 8.
    #[arg(long, default_value_t = 1024)]
    pub width: usize,
    /// Image height in pixels, a multiple of 8.
    #[arg(long, default_value_t = 1024)]
    pub height: usize,
    /// euler, ddim, dpmpp-2m or euler-a (default: the folder's scheduler).
    #[arg(long)]
    pub scheduler: Option<String>,
    /// Initial latents (safetensors; tensor `latents` or the only tensor), scaled by the
    /// scheduler's init_noise_sigma like diffusers' `latents=`.
    #[arg(long)]
    pub latents: Option<PathBuf>,
    /// f32, f16, or bf16 (CUDA only).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
}

fn load_latents(file: &Path, device: &Device) -> anyhow::Result<Tensor> {
    let mut tensors = candle_core::safetensors::load(file, device)
        .with_context(|| format!("{}: cannot read latents", file.display()))?;
    if let Some(t) = tensors.remove("latents") {
        return Ok(t);
    }
    match tensors.len() {
        1 => Ok(tensors.into_values().next().context("empty latents file")?),
        n => anyhow::bail!(
            "{}: expected a tensor named `latents` or exactly one tensor, found {n}",
            file.display()
        ),
    }
}

fn output_paths(out: &Path, n: usize) -> Vec<PathBuf> {
    if n == 1 {
        return vec![out.to_path_buf()];
    }
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    let ext = out.extension().and_then(|s| s.to_str()).unwrap_or("png");
    (0..n)
        .map(|i| out.with_file_name(format!("{stem}-{i}.{ext}")))
        .collect()
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let device = parse_device(&args.device)?;
    let dtype = parse_dtype(&args.dtype)?;
    let scheduler = args
        .scheduler
        .as_deref()
        .map(str::parse::<SchedulerKind>)
        .transpose()?;
    let latents = args
        .latents
        .as_deref()
        .map(|f| load_latents(f, &device))
        .transpose()?;
    let mut pipe = Pipeline::load(&args.model, &device, dtype)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let req = GenerateRequest {
        prompts: args.prompt.clone(),
        negative_prompt: args.negative_prompt.clone(),
        steps: args.steps,
        guidance: args.guidance,
        seed: args.seed,
        width: args.width,
        height: args.height,
        scheduler,
        latents,
    };
    let bar = indicatif::ProgressBar::new(args.steps as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} steps {elapsed_precise} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let images = pipe.generate(&req, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    for (image, path) in images.iter().zip(output_paths(&args.out, images.len())) {
        image
            .save(&path)
            .with_context(|| format!("{}: cannot write image", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct BenchUnetArgs {
    /// UNet shape to time, with random weights (ignored with --unet-dir).
    #[arg(long, default_value = "tiny-sdxl")]
    pub preset: String,
    /// A diffusers `unet/` folder (config.json + weights) to time instead of a preset.
    #[arg(long)]
    pub unet_dir: Option<PathBuf>,
    /// CPU threads (sets RAYON_NUM_THREADS before any work starts).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Batch size (2 = one image with classifier-free guidance).
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Image height in pixels (latents are 1/8); default: the config's sample_size x 8.
    #[arg(long)]
    pub height: Option<usize>,
    #[arg(long)]
    pub width: Option<usize>,
    /// Timed calls after one warm-up call.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Print one JSON line.
    #[arg(long)]
    pub json: bool,
    /// cpu or cuda:N (tools/gpu-check.sh times the GPU this way).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, f16 or bf16 (weights and activations).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

pub fn bench(args: BenchUnetArgs) -> anyhow::Result<()> {
    if let Some(n) = args.threads {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let dev = parse_device(&args.device)?;
    let dtype = parse_dtype(&args.dtype)?;
    crate::engine::device::check(&dev, dtype)?;
    let (unet, label) = match &args.unet_dir {
        Some(dir) => (
            UNet2DConditionModel::load(dir, dtype, &dev, Kernels { fused: true })?,
            dir.display().to_string(),
        ),
        None => {
            let cfg = ModelConfigs::preset(&args.preset)?.unet;
            let file = Path::new("unet/config.json");
            let layout = UNetLayout::resolve(&cfg, file)?;
            let weights = random_weights(0, dtype, |vb| {
                UNet2DConditionModel::from_parts(
                    cfg.clone(),
                    layout.clone(),
                    Kernels::default(),
                    vb,
                )
                .map(|_| ())
            })?;
            let vb = candle_nn::VarBuilder::from_tensors(weights, dtype, &dev);
            (
                UNet2DConditionModel::from_parts(cfg, layout, Kernels { fused: true }, vb)?,
                format!("preset {}", args.preset),
            )
        }
    };
    let c = &unet.config;
    let h = args.height.unwrap_or(c.sample_size * 8) / 8;
    let w = args.width.unwrap_or(c.sample_size * 8) / 8;
    let b = args.batch.max(1);
    let ctx_dim = match &c.cross_attention_dim {
        crate::engine::config::PerBlock::All(v) => *v,
        crate::engine::config::PerBlock::Each(v) => v.first().copied().unwrap_or(0),
    };
    let sample = Tensor::randn(0f32, 1f32, (b, c.in_channels, h, w), &dev)?.to_dtype(dtype)?;
    let context = Tensor::randn(0f32, 1f32, (b, 77, ctx_dim), &dev)?.to_dtype(dtype)?;
    let added = match &unet.layout.add {
        Some(a) => Some(AddedCond {
            text_embeds: Tensor::randn(0f32, 1f32, (b, a.in_dim - 6 * a.time_dim), &dev)?
                .to_dtype(dtype)?,
            time_ids: Tensor::ones((b, 6), DType::F32, &dev)?.affine(1024.0, 0.0)?,
        }),
        None => None,
    };
    let t = Tensor::new(&[500f32], &dev)?;
    let mut times = Vec::with_capacity(args.iters);
    for i in 0..=args.iters {
        let start = Instant::now();
        let y = unet.forward(&sample, &t, &context, added.as_ref())?;
        // Force the computation to finish before the clock stops.
        y.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
        if i > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let threads = candle_core::utils::get_num_threads();
    if args.json {
        let v = serde_json::json!({
            "model": label, "batch": b, "latent": [h, w], "threads": threads,
            "iters": times.len(), "median_ms": median * 1e3,
            "device": args.device, "dtype": args.dtype,
        });
        println!("{v}");
    } else {
        println!(
            "{label}: batch {b}, latents {h}x{w}, {threads} threads: median {:.1} ms over {} calls",
            median * 1e3,
            times.len()
        );
    }
    Ok(())
}
