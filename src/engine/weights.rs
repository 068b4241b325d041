//! Finding and opening a component's safetensors weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::error::{EngineError, Result};

/// The weights file of a component folder (`unet/`, `vae/`, `text_encoder/`...).
pub fn weights_file(dir: &Path) -> Result<PathBuf> {
    for name in ["diffusion_pytorch_model.safetensors", "model.safetensors"] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    for name in [
        "diffusion_pytorch_model.fp16.safetensors",
        "model.fp16.safetensors",
    ] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(EngineError::Missing {
        file: dir.join("diffusion_pytorch_model.safetensors"),
    })
}

pub fn load_tensors(file: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(file, device).map_err(|e| EngineError::Weights {
        file: file.to_path_buf(),
        message: e.to_string(),
    })
}

/// A `VarBuilder` over one safetensors file, converting to `dtype` on access.
pub fn var_builder(file: &Path, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    let tensors = load_tensors(file, device)?;
    Ok(VarBuilder::from_tensors(tensors, dtype, device))
}

/// Turns a candle error raised while building a network into one naming the weights file.
pub fn in_file(file: &Path) -> impl Fn(candle_core::Error) -> EngineError + '_ {
    move |e| EngineError::Weights {
        file: file.to_path_buf(),
        message: e.to_string(),
    }
}
