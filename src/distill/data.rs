//! Training data: a Hugging Face `imagefolder` (images plus `metadata.jsonl` with
//! `file_name` and `text`), resized and centre-cropped, encoded once to VAE latents
//! (candle's `AutoEncoderKL` encoder, diffusers names) and text embeddings (the engine's
//! encoders), and cached on disk as one safetensors file.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;

use super::dataset::Dataset;
use super::error::{DistillError, Result};
use crate::engine::config::{read_json, VaeConfig};
use crate::engine::text::TextEncoders;
use crate::engine::vae::candle_config;
use crate::engine::weights::{in_file, weights_files};

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub file: PathBuf,
    pub text: String,
}

/// Reads `metadata.jsonl`; every line must name an existing file and carry a caption.
pub fn read_imagefolder(dir: &Path) -> Result<Vec<Record>> {
    let meta = dir.join("metadata.jsonl");
    let text = std::fs::read_to_string(&meta).map_err(DistillError::io(&meta))?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let err = |m: String| DistillError::Data {
            file: meta.clone(),
            message: format!("line {}: {m}", i + 1),
        };
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| err(e.to_string()))?;
        let name = v["file_name"]
            .as_str()
            .ok_or_else(|| err("no `file_name` string".into()))?;
        let caption = v["text"]
            .as_str()
            .ok_or_else(|| err("no `text` string".into()))?;
        let file = dir.join(name);
        if !file.is_file() {
            return Err(err(format!("{} does not exist", file.display())));
        }
        out.push(Record {
            file,
            text: caption.to_string(),
        });
    }
    if out.is_empty() {
        return Err(DistillError::Data {
            file: meta,
            message: "no samples".into(),
        });
    }
    Ok(out)
}

/// Shorter side resized to `size`, centre crop, as a (3, size, size) tensor in [-1, 1].
pub fn load_image(file: &Path, size: usize) -> Result<Tensor> {
    let img = image::open(file).map_err(|e| DistillError::Data {
        file: file.to_path_buf(),
        message: e.to_string(),
    })?;
    let (w, h) = (img.width().max(1), img.height().max(1));
    let scale = size as f64 / w.min(h) as f64;
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).max(size as u32),
        ((h as f64 * scale).round() as u32).max(size as u32),
    );
    let img = img
        .resize_exact(nw, nh, image::imageops::FilterType::Triangle)
        .crop_imm(
            (nw - size as u32) / 2,
            (nh - size as u32) / 2,
            size as u32,
            size as u32,
        )
        .to_rgb8();
    let data: Vec<f32> = img
        .into_raw()
        .iter()
        .map(|&b| b as f32 / 127.5 - 1.0)
        .collect();
    Ok(Tensor::from_vec(data, (size, size, 3), &Device::Cpu)?.permute((2, 0, 1))?)
}

/// The VAE encoder of a pipeline folder, as two networks whose `sample()` is exact: one
/// gives the posterior mean, the other its log-variance. candle's `sample()` draws from the
/// device's unseeded generator and keeps mean and variance private, so the same data would
/// otherwise give different latents (and a different student) on every run; with both
/// halves in hand the sample is drawn from our own seeded generator. The trick: the
/// quant_conv output channels of the half not wanted are zeroed and given a bias of -200,
/// so its standard deviation exp(-100) vanishes below f32 resolution.
pub struct PosteriorEncoder {
    mean: AutoEncoderKL,
    logvar: Option<AutoEncoderKL>,
    pub config: VaeConfig,
}

pub fn load_vae(model: &Path, device: &Device) -> Result<PosteriorEncoder> {
    let dir = model.join("vae");
    let cfg_file = dir.join("config.json");
    let config: VaeConfig = read_json(&cfg_file)?;
    let cc = candle_config(&config, &cfg_file)?;
    let wfiles = weights_files(&dir)?;
    let wfile = wfiles.name.clone();
    // The encoder runs in f32: it runs once per image and SDXL's VAE overflows in f16.
    let mut tensors = std::collections::HashMap::new();
    for f in &wfiles.files {
        for (k, v) in candle_core::safetensors::load(f, device).map_err(in_file(f))? {
            tensors.insert(k, v.to_dtype(DType::F32).map_err(in_file(f))?);
        }
    }
    let build = |t: std::collections::HashMap<String, Tensor>| -> Result<AutoEncoderKL> {
        let vb = candle_nn::VarBuilder::from_tensors(t, DType::F32, device);
        Ok(AutoEncoderKL::new(vb, 3, 3, cc.clone()).map_err(in_file(&wfile))?)
    };
    let quant = (
        tensors.get("quant_conv.weight").cloned(),
        tensors.get("quant_conv.bias").cloned(),
    );
    let (Some(w), Some(b)) = quant else {
        // No quant_conv: fall back to candle's own (unseeded) sample.
        return Ok(PosteriorEncoder {
            mean: build(tensors)?,
            logvar: None,
            config,
        });
    };
    let c = w.dim(0)? / 2;
    let silence =
        |w: &Tensor, b: &Tensor, keep: &Tensor, keep_b: &Tensor| -> Result<(Tensor, Tensor)> {
            let zeros = w.narrow(0, c, c)?.zeros_like()?;
            let off = (b.narrow(0, c, c)?.zeros_like()? - 200.0)?;
            Ok((
                Tensor::cat(&[keep, &zeros], 0)?,
                Tensor::cat(&[keep_b, &off], 0)?,
            ))
        };
    let (wm, bm) = silence(&w, &b, &w.narrow(0, 0, c)?, &b.narrow(0, 0, c)?)?;
    let (wl, bl) = silence(&w, &b, &w.narrow(0, c, c)?, &b.narrow(0, c, c)?)?;
    let mut other = tensors.clone();
    other.insert("quant_conv.weight".into(), wl);
    other.insert("quant_conv.bias".into(), bl);
    tensors.insert("quant_conv.weight".into(), wm);
    tensors.insert("quant_conv.bias".into(), bm);
    Ok(PosteriorEncoder {
        mean: build(tensors)?,
        logvar: Some(build(other)?),
        config,
    })
}

impl PosteriorEncoder {
    /// One posterior sample of `x`, drawn from `rng` (diffusers clamps the log-variance to
    /// [-30, 20] the same way).
    pub fn sample(&self, x: &Tensor, rng: &mut rand::rngs::StdRng) -> Result<Tensor> {
        let mean = self.mean.encode(x)?.sample()?;
        let Some(lv) = &self.logvar else {
            return Ok(mean);
        };
        let std = (lv.encode(x)?.sample()?.clamp(-30f32, 20f32)? * 0.5)?.exp()?;
        let eps = crate::engine::noise::randn(rng, mean.shape(), &Device::Cpu)?
            .to_device(mean.device())?;
        Ok((mean + (std * eps)?)?)
    }
}

/// Encodes every record (one at a time: memory stays flat) into a dataset. `progress` gets
/// the number encoded so far and answers whether to go on (false: `Stopped`).
pub fn encode(
    model: &Path,
    records: &[Record],
    size: usize,
    device: &Device,
    mut progress: impl FnMut(usize) -> bool,
) -> Result<Dataset> {
    let vae = load_vae(model, device)?;
    let vcfg = &vae.config;
    let text = TextEncoders::load(model, DType::F32, device)?;
    let (mut lat, mut emb, mut pool) = (Vec::new(), Vec::new(), Vec::new());
    for (i, r) in records.iter().enumerate() {
        let x = load_image(&r.file, size)?.unsqueeze(0)?.to_device(device)?;
        // One posterior sample per image, drawn once from a generator seeded by the
        // image's position: the same folder gives the same latents on every run.
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(i as u64);
        let mut z = vae.sample(&x, &mut rng)?;
        if let Some(shift) = vcfg.shift_factor {
            z = (z - shift)?;
        }
        lat.push((z * vcfg.scaling_factor)?.to_device(&Device::Cpu)?);
        let e = text.encode(std::slice::from_ref(&r.text), None, device)?;
        emb.push(e.embeds.to_dtype(DType::F32)?.to_device(&Device::Cpu)?);
        pool.push(e.pooled.to_dtype(DType::F32)?.to_device(&Device::Cpu)?);
        if !progress(i + 1) {
            return Err(DistillError::Stopped { step: 0 });
        }
    }
    let n = records.len();
    let s = size as f32;
    let ids = Tensor::new(&[s, s, 0., 0., s, s], &Device::Cpu)?
        .unsqueeze(0)?
        .repeat((n, 1))?;
    Ok(Dataset {
        latents: Tensor::cat(&lat, 0)?,
        embeds: Tensor::cat(&emb, 0)?,
        pooled: Tensor::cat(&pool, 0)?,
        time_ids: ids,
    })
}

/// The cached dataset for (model, data, size), encoding it on first use.
pub fn cached(
    model: &Path,
    data: &Path,
    size: usize,
    cache_dir: &Path,
    device: &Device,
    progress: impl FnMut(usize) -> bool,
) -> Result<Dataset> {
    let file = cache_dir.join(format!("latents-{size}.safetensors"));
    if file.is_file() {
        return Dataset::load(&file);
    }
    let records = read_imagefolder(data)?;
    let d = encode(model, &records, size, device, progress)?;
    std::fs::create_dir_all(cache_dir).map_err(DistillError::io(cache_dir))?;
    d.save(&file)?;
    Ok(d)
}
