//! Student initialisation: writes the student as a diffusers pipeline folder, the
//! teacher's other components copied, every student UNet parameter taken from the
//! teacher parameter the layer map names (kept transformer blocks renumbered).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::error::{DistillError, Result};
use super::plan::Student;
use crate::engine::params::record_shapes;
use crate::engine::unet::UNet2DConditionModel;
use crate::engine::weights::weights_files;

/// What pruning wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PruneReport {
    pub tensors: usize,
    pub parameters: u64,
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(DistillError::io(to))?;
    for entry in std::fs::read_dir(from).map_err(DistillError::io(from))? {
        let entry = entry.map_err(DistillError::io(from))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(DistillError::io(&dst))?;
        }
    }
    Ok(())
}

/// Copies every component of `teacher` but `unet/` into `out`, and writes the student's
/// `unet/config.json`. Returns the UNet folder.
pub fn write_pipeline_shell(
    teacher: &Path,
    student: &Student,
    out: &Path,
) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(out).map_err(DistillError::io(out))?;
    for entry in std::fs::read_dir(teacher).map_err(DistillError::io(teacher))? {
        let entry = entry.map_err(DistillError::io(teacher))?;
        if entry.file_name() == "unet" {
            continue;
        }
        let src = entry.path();
        let dst = out.join(entry.file_name());
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(DistillError::io(&dst))?;
        }
    }
    let cfg_in = teacher.join("unet/config.json");
    let text = std::fs::read_to_string(&cfg_in).map_err(DistillError::io(&cfg_in))?;
    let raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| DistillError::Json {
        file: cfg_in.clone(),
        message: e.to_string(),
    })?;
    let unet = out.join("unet");
    std::fs::create_dir_all(&unet).map_err(DistillError::io(&unet))?;
    let cfg_out = unet.join("config.json");
    let json = serde_json::to_string_pretty(&student.config_json(&raw)?).map_err(|e| {
        DistillError::Json {
            file: cfg_out.clone(),
            message: e.to_string(),
        }
    })?;
    std::fs::write(&cfg_out, json).map_err(DistillError::io(&cfg_out))?;
    Ok(unet)
}

/// The student's parameter names and shapes, in construction order.
pub fn student_shapes(student: &Student) -> Result<Vec<(String, candle_core::Shape)>> {
    Ok(record_shapes(|vb| {
        UNet2DConditionModel::from_parts(
            student.config.clone(),
            student.layout.clone(),
            Default::default(),
            vb,
        )
        .map(|_| ())
    })?)
}

/// The student's initial weights taken from a teacher UNet folder, in the file's dtype.
pub fn initial_weights(teacher_unet: &Path, student: &Student) -> Result<HashMap<String, Tensor>> {
    let wfiles = weights_files(teacher_unet)?;
    let file = wfiles.name.clone();
    let werr = |message: String| DistillError::Weights {
        file: file.clone(),
        message,
    };
    // SAFETY: read-only mapping of a checkpoint that is not written while we read it.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&wfiles.files) }
        .map_err(|e| werr(e.to_string()))?;
    let mut out = HashMap::new();
    for (name, shape) in student_shapes(student)? {
        let t_name = student
            .map
            .teacher_param(&name)
            .ok_or_else(|| werr(format!("no teacher parameter for student `{name}`")))?;
        let t = st
            .load(&t_name, &Device::Cpu)
            .map_err(|e| werr(format!("`{t_name}` (for student `{name}`): {e}")))?;
        if t.shape() != &shape {
            return Err(werr(format!(
                "`{t_name}` has shape {:?} but student `{name}` needs {:?}",
                t.dims(),
                shape.dims()
            )));
        }
        out.insert(name, t);
    }
    Ok(out)
}

/// `model prune`: the whole student pipeline folder.
pub fn prune(teacher: &Path, student: &Student, out: &Path) -> Result<PruneReport> {
    let weights = initial_weights(&teacher.join("unet"), student)?;
    let unet = write_pipeline_shell(teacher, student, out)?;
    let file = unet.join("diffusion_pytorch_model.safetensors");
    candle_core::safetensors::save(&weights, &file).map_err(|e| DistillError::Weights {
        file: file.clone(),
        message: e.to_string(),
    })?;
    Ok(PruneReport {
        tensors: weights.len(),
        parameters: weights.values().map(|t| t.elem_count() as u64).sum(),
    })
}
