//! Finding and opening a component's safetensors weights.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
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

/// A `VarBuilder` over one safetensors file, converting to `dtype` on access.
///
/// The file is memory-mapped so that a 10 GB f32 checkpoint loaded as f16 (or onto a GPU)
/// never sits in host memory whole; each tensor is copied out as the network asks for it.
pub fn var_builder(file: &Path, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    // SAFETY: the mapping is only read, and only while the network is being built (the
    // tensors are copied out of it). The one hazard of mmap, another process truncating
    // or rewriting the checkpoint during those seconds, is the same as for any reader of
    // a file being overwritten; checkpoints are not written while a model loads.
    unsafe { VarBuilder::from_mmaped_safetensors(&[file], dtype, device) }.map_err(|e| {
        EngineError::Weights {
            file: file.to_path_buf(),
            message: e.to_string(),
        }
    })
}

/// Turns a candle error raised while building a network into one naming the weights file.
pub fn in_file(file: &Path) -> impl Fn(candle_core::Error) -> EngineError + '_ {
    move |e| EngineError::Weights {
        file: file.to_path_buf(),
        message: e.to_string(),
    }
}
