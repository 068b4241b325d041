//! Registered models: checking a diffusers folder before it is accepted, hashing its
//! weights for provenance, and the worker's cache of loaded pipelines (kept between jobs,
//! least recently used evicted first when a memory budget is exceeded).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};
use sha2::{Digest, Sha256};

use crate::db::generation::{self, ModelRow};
use crate::db::Db;
use crate::engine::presets::{component_info, ModelConfigs};
use crate::engine::Pipeline;

use super::JobError;

/// Every `*.safetensors` file under `dir`, sorted by relative path.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, JobError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)
            .map_err(|e| JobError::Invalid(format!("cannot read {}: {e}", d.display())))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "safetensors") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// sha256 over every weights file (relative path, then bytes), so that the same folder
/// copied elsewhere hashes the same and any changed tensor changes the hash.
pub fn weights_hash(dir: &Path) -> Result<(String, u64), JobError> {
    let files = weight_files(dir)?;
    if files.is_empty() {
        return Err(JobError::Invalid(format!(
            "{}: no *.safetensors weights found",
            dir.display()
        )));
    }
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for f in &files {
        let rel = f.strip_prefix(dir).unwrap_or(f);
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0u8]);
        let mut file = std::fs::File::open(f)
            .map_err(|e| JobError::Invalid(format!("cannot open {}: {e}", f.display())))?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            hasher.update(&buf[..n]);
        }
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Checks a model folder (its configs load and fit together, weights are present) and
/// returns the weights hash and a summary of its components.
pub fn inspect_folder(dir: &Path) -> Result<(String, serde_json::Value), JobError> {
    if !dir.is_dir() {
        return Err(JobError::Invalid(format!(
            "{} is not a folder",
            dir.display()
        )));
    }
    let configs = ModelConfigs::folder(dir)?;
    let components = component_info(&configs)?;
    let (hash, bytes) = weights_hash(dir)?;
    let info = serde_json::json!({
        "components": components,
        "weights_bytes": bytes,
        "parameters": components.iter().map(|c| c.parameters).sum::<u64>(),
    });
    Ok((hash, info))
}

/// Registers a model folder under a name (1-100 characters, no '#'). An absolute folder is
/// stored canonicalised; a relative one is checked under `models_dir` and stored relative,
/// so that each worker finds it under its own `--models-dir`.
pub async fn register(
    db: &Db,
    name: &str,
    folder: &Path,
    models_dir: Option<&Path>,
) -> Result<ModelRow, JobError> {
    let name = crate::domain::ModelName::parse("model", name)?;
    let name = name.as_str();
    let (check, stored) = match models_dir {
        Some(base) if folder.is_relative() => {
            if folder
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(JobError::Invalid(format!(
                    "model folder {}: a relative folder must stay inside the models directory",
                    folder.display()
                )));
            }
            (base.join(folder), folder.to_path_buf())
        }
        _ => {
            let abs = std::fs::canonicalize(folder).map_err(|e| {
                JobError::Invalid(format!("model folder {}: {e}", folder.display()))
            })?;
            (abs.clone(), abs)
        }
    };
    let (hash, info) = tokio::task::spawn_blocking(move || inspect_folder(&check))
        .await
        .map_err(|e| JobError::Failed(format!("model check failed: {e}")))??;
    Ok(
        generation::upsert_registered(&db.pool, name, &stored.to_string_lossy(), &hash, &info)
            .await?,
    )
}

/// Where a registered model's folder is on this machine: a relative folder lives under the
/// models directory (each machine may mount the shared models somewhere else).
pub fn model_folder(model: &ModelRow, models_dir: Option<&Path>) -> Result<PathBuf, JobError> {
    let folder = PathBuf::from(model.folder.clone().ok_or_else(|| {
        JobError::Permanent(format!("model '{}' has no registered folder", model.name))
    })?);
    Ok(match models_dir {
        Some(dir) if folder.is_relative() => dir.join(folder),
        _ => folder,
    })
}

/// The models directory shared by the web server and workers (`ARENAXL_MODELS_DIR`).
pub fn models_dir_from_env() -> Option<PathBuf> {
    std::env::var_os("ARENAXL_MODELS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

struct Loaded {
    folder: PathBuf,
    dtype: DType,
    pipeline: Pipeline,
    bytes: u64,
    last_used: u64,
}

/// Loaded pipelines of one device. The budget counts weight bytes as stored on disk
/// scaled to the dtype they are loaded in, which is what they occupy on the device.
pub struct ModelCache {
    budget_bytes: u64,
    loaded: Vec<Loaded>,
    clock: u64,
    /// Seconds spent loading models, for the benchmark's breakdown.
    pub load_seconds: f64,
}

impl ModelCache {
    pub fn new(budget_bytes: u64) -> ModelCache {
        ModelCache {
            budget_bytes,
            loaded: Vec::new(),
            clock: 0,
            load_seconds: 0.0,
        }
    }

    /// Estimated bytes of the loaded weights.
    pub fn loaded_bytes(&self) -> u64 {
        self.loaded.iter().map(|l| l.bytes).sum()
    }

    pub fn loaded_folders(&self) -> Vec<PathBuf> {
        self.loaded.iter().map(|l| l.folder.clone()).collect()
    }

    /// The pipeline of `folder` in `dtype`, loading it (and evicting others) if needed.
    pub fn get(
        &mut self,
        folder: &Path,
        device: &Device,
        dtype: DType,
    ) -> Result<&mut Pipeline, JobError> {
        self.clock += 1;
        let now = self.clock;
        if let Some(i) = self
            .loaded
            .iter()
            .position(|l| l.folder == folder && l.dtype == dtype)
        {
            self.loaded[i].last_used = now;
            return Ok(&mut self.loaded[i].pipeline);
        }
        // What the weights occupy on the device once loaded in `dtype`.
        let parameters: u64 = component_info(&ModelConfigs::folder(folder)?)?
            .iter()
            .map(|c| c.parameters)
            .sum();
        let bytes = parameters.saturating_mul(dtype.size_in_bytes() as u64);
        while !self.loaded.is_empty()
            && self.loaded.iter().map(|l| l.bytes).sum::<u64>() + bytes > self.budget_bytes
        {
            let lru = self
                .loaded
                .iter()
                .enumerate()
                .min_by_key(|(_, l)| l.last_used)
                .map(|(i, _)| i)
                .unwrap_or(0);
            let gone = self.loaded.remove(lru);
            tracing::info!(
                "evicted model {} to stay within the memory budget",
                gone.folder.display()
            );
        }
        let started = Instant::now();
        let pipeline = Pipeline::load(folder, device, dtype)?;
        self.load_seconds += started.elapsed().as_secs_f64();
        self.loaded.push(Loaded {
            folder: folder.to_path_buf(),
            dtype,
            pipeline,
            bytes,
            last_used: now,
        });
        let last = self.loaded.len() - 1;
        Ok(&mut self.loaded[last].pipeline)
    }
}
