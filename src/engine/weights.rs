//! Finding and opening a component's safetensors weights, in every layout diffusers and
//! transformers write: one file, shards listed by a `*.safetensors.index.json`, and either
//! of those under a variant name only (`diffusion_pytorch_model.fp16.safetensors`,
//! `model.fp16-00001-of-00002.safetensors` with `model.safetensors.index.fp16.json`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::config::read_json;
use super::error::{EngineError, Result};

const STEMS: [&str; 2] = ["diffusion_pytorch_model", "model"];

/// A component's weights: the file that names them (the weights file itself, or the
/// shard index) and the safetensors files that hold them.
#[derive(Debug, Clone)]
pub struct WeightFiles {
    pub name: PathBuf,
    pub files: Vec<PathBuf>,
}

/// The weights of a component folder (`unet/`, `vae/`, `text_encoder/`...). Plain names
/// win over variants; among variants `fp16` comes first, then the others by name, so the
/// choice does not depend on directory order.
pub fn weights_files(dir: &Path) -> Result<WeightFiles> {
    let mut variants: Vec<String> = vec![String::new(), ".fp16".into()];
    let mut others = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            for stem in STEMS {
                if let Some(v) = variant_of(&name, stem) {
                    others.insert(v);
                }
            }
        }
    }
    variants.extend(others.into_iter().filter(|v| v != ".fp16"));
    for variant in &variants {
        for stem in STEMS {
            let single = dir.join(format!("{stem}{variant}.safetensors"));
            if single.is_file() {
                return Ok(WeightFiles {
                    name: single.clone(),
                    files: vec![single],
                });
            }
            // diffusers and transformers put the variant before `.json` in index names.
            let index = dir.join(format!("{stem}.safetensors.index{variant}.json"));
            if index.is_file() {
                return shards(dir, &index);
            }
        }
    }
    Err(EngineError::Missing {
        file: dir.join("diffusion_pytorch_model.safetensors"),
    })
}

/// `.fp16` for `model.fp16.safetensors`, `model.fp16-00001-of-00002.safetensors` or
/// `model.safetensors.index.fp16.json`; None for other names.
fn variant_of(name: &str, stem: &str) -> Option<String> {
    let rest = name.strip_prefix(stem)?;
    if let Some(v) = rest
        .strip_prefix(".safetensors.index.")
        .and_then(|r| r.strip_suffix(".json"))
    {
        return Some(format!(".{v}"));
    }
    let v = rest.strip_prefix('.')?.strip_suffix(".safetensors")?;
    let v = v.split('-').next().unwrap_or(v);
    (!v.is_empty() && !v.contains('.')).then(|| format!(".{v}"))
}

#[derive(serde::Deserialize)]
struct ShardIndex {
    weight_map: std::collections::BTreeMap<String, String>,
}

/// The shard files a `*.safetensors.index*.json` names, each checked to exist.
fn shards(dir: &Path, index: &Path) -> Result<WeightFiles> {
    let idx: ShardIndex = read_json(index)?;
    let names: BTreeSet<&String> = idx.weight_map.values().collect();
    if names.is_empty() {
        return Err(EngineError::field(index, "weight_map", "is empty"));
    }
    let mut files = Vec::new();
    for n in names {
        // Shards live beside the index; a name with a path in it is not a shard name.
        if n.contains('/') || n.contains('\\') || n == ".." {
            return Err(EngineError::field(
                index,
                "weight_map",
                format!("`{n}` is not a file name in the folder"),
            ));
        }
        let f = dir.join(n);
        if !f.is_file() {
            return Err(EngineError::field(
                index,
                "weight_map",
                format!("shard `{n}` is missing"),
            ));
        }
        files.push(f);
    }
    Ok(WeightFiles {
        name: index.to_path_buf(),
        files,
    })
}

/// A `VarBuilder` over a component's safetensors files, converting to `dtype` on access
/// (f16 and bf16 files load as f32 and vice versa).
///
/// The files are memory-mapped so that a 10 GB f32 checkpoint loaded as f16 (or onto a GPU)
/// never sits in host memory whole; each tensor is copied out as the network asks for it.
pub fn var_builder(w: &WeightFiles, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    // SAFETY: the mappings are only read, and only while the network is being built (the
    // tensors are copied out of them). The one hazard of mmap, another process truncating
    // or rewriting the checkpoint during those seconds, is the same as for any reader of
    // a file being overwritten; checkpoints are not written while a model loads.
    unsafe { VarBuilder::from_mmaped_safetensors(&w.files, dtype, device) }.map_err(|e| {
        EngineError::Weights {
            file: w.name.clone(),
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
