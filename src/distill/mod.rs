//! Progressive layer-level knowledge distillation of SDXL-family UNets (the SSD-1B /
//! Segmind-Vega method): plans that say which transformer blocks and resnets a student
//! keeps, pruning a teacher into a student initialised by name, and training the student
//! to match the teacher's output and every kept layer. Depends on `engine` only: no HTTP,
//! no SQL.

pub mod data;
pub mod dataset;
pub mod error;
pub mod loss;
pub mod mapping;
pub mod optim;
pub mod plan;
pub mod precision;
pub mod prune;
pub mod run;
pub mod student;
pub mod train;

pub use error::{DistillError, Result};

/// Writes tensors to `file` through a temporary file and a rename, so that a crash leaves
/// either the old file or the whole new one: resume treats an existing file as done.
pub fn save_atomic(
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    file: &std::path::Path,
) -> Result<()> {
    let tmp = file.with_extension("safetensors.partial");
    let err = |e: String| DistillError::Weights {
        file: file.to_path_buf(),
        message: e,
    };
    candle_core::safetensors::save(tensors, &tmp).map_err(|e| err(e.to_string()))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, file).map_err(|e| err(e.to_string()))
}
pub use mapping::{FeatureLevel, LayerMap};
pub use plan::{Keep, MidPlan, Plan};
