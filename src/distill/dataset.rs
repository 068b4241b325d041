//! Training samples held in memory: VAE latents (already scaled as the UNet sees them),
//! text embeddings, pooled embeddings and SDXL time ids, saved as one safetensors cache.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::error::{DistillError, Result};

#[derive(Debug, Clone)]
pub struct Dataset {
    pub latents: Tensor,
    pub embeds: Tensor,
    pub pooled: Tensor,
    pub time_ids: Tensor,
}

/// One batch on the training device.
pub struct Batch {
    pub latents: Tensor,
    pub embeds: Tensor,
    pub pooled: Tensor,
    pub time_ids: Tensor,
}

const KEYS: [&str; 4] = ["latents", "embeds", "pooled", "time_ids"];

impl Dataset {
    pub fn len(&self) -> usize {
        self.latents.dim(0).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn batch(&self, idx: &[usize], device: &Device, dtype: DType) -> Result<Batch> {
        let ids = Tensor::from_vec(
            idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            idx.len(),
            &Device::Cpu,
        )?;
        let pick = |t: &Tensor, d: DType| -> Result<Tensor> {
            Ok(t.index_select(&ids, 0)?.to_dtype(d)?.to_device(device)?)
        };
        Ok(Batch {
            latents: pick(&self.latents, dtype)?,
            embeds: pick(&self.embeds, dtype)?,
            pooled: pick(&self.pooled, dtype)?,
            // Time ids feed a sinusoidal embedding computed in f32.
            time_ids: pick(&self.time_ids, DType::F32)?,
        })
    }

    /// The first `n` samples and the rest (held-out first, so it never depends on size).
    pub fn split(&self, n: usize) -> Result<(Dataset, Dataset)> {
        let n = n.min(self.len());
        let part = |s: usize, len: usize| -> Result<Dataset> {
            Ok(Dataset {
                latents: self.latents.narrow(0, s, len)?,
                embeds: self.embeds.narrow(0, s, len)?,
                pooled: self.pooled.narrow(0, s, len)?,
                time_ids: self.time_ids.narrow(0, s, len)?,
            })
        };
        Ok((part(0, n)?, part(n, self.len() - n)?))
    }

    pub fn save(&self, file: &Path) -> Result<()> {
        let map: HashMap<String, Tensor> = KEYS
            .iter()
            .zip([&self.latents, &self.embeds, &self.pooled, &self.time_ids])
            .map(|(k, t)| (k.to_string(), t.clone()))
            .collect();
        super::save_atomic(&map, file)
    }

    pub fn load(file: &Path) -> Result<Dataset> {
        let err = |message: String| DistillError::Data {
            file: file.to_path_buf(),
            message,
        };
        let mut m =
            candle_core::safetensors::load(file, &Device::Cpu).map_err(|e| err(e.to_string()))?;
        let mut take = |k: &str| m.remove(k).ok_or_else(|| err(format!("no `{k}` tensor")));
        let d = Dataset {
            latents: take("latents")?,
            embeds: take("embeds")?,
            pooled: take("pooled")?,
            time_ids: take("time_ids")?,
        };
        let n = d.len();
        for (k, t) in KEYS[1..].iter().zip([&d.embeds, &d.pooled, &d.time_ids]) {
            if t.dim(0)? != n {
                return Err(err(format!("`{k}` has {} samples, latents {n}", t.dim(0)?)));
            }
        }
        Ok(d)
    }
}
