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
use crate::engine::weights::{in_file, var_builder, weights_file};

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

/// The VAE encoder of a pipeline folder.
pub fn load_vae(model: &Path, device: &Device) -> Result<(AutoEncoderKL, VaeConfig)> {
    let dir = model.join("vae");
    let cfg_file = dir.join("config.json");
    let config: VaeConfig = read_json(&cfg_file)?;
    let cc = candle_config(&config, &cfg_file)?;
    let wfile = weights_file(&dir)?;
    // The encoder runs in f32: it runs once per image and SDXL's VAE overflows in f16.
    let vb = var_builder(&wfile, DType::F32, device)?;
    let vae = AutoEncoderKL::new(vb, 3, 3, cc).map_err(in_file(&wfile))?;
    Ok((vae, config))
}

/// Encodes every record (one at a time: memory stays flat) into a dataset.
pub fn encode(
    model: &Path,
    records: &[Record],
    size: usize,
    device: &Device,
    mut progress: impl FnMut(usize),
) -> Result<Dataset> {
    let (vae, vcfg) = load_vae(model, device)?;
    let text = TextEncoders::load(model, DType::F32, device)?;
    let (mut lat, mut emb, mut pool) = (Vec::new(), Vec::new(), Vec::new());
    for (i, r) in records.iter().enumerate() {
        let x = load_image(&r.file, size)?.unsqueeze(0)?.to_device(device)?;
        // One posterior sample per image, drawn once: the cache fixes it for all runs.
        let mut z = vae.encode(&x)?.sample()?;
        if let Some(shift) = vcfg.shift_factor {
            z = (z - shift)?;
        }
        lat.push((z * vcfg.scaling_factor)?.to_device(&Device::Cpu)?);
        let e = text.encode(std::slice::from_ref(&r.text), None, device)?;
        emb.push(e.embeds.to_dtype(DType::F32)?.to_device(&Device::Cpu)?);
        pool.push(e.pooled.to_dtype(DType::F32)?.to_device(&Device::Cpu)?);
        progress(i + 1);
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
    progress: impl FnMut(usize),
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
