//! The trainable student: the engine's UNet built over a `VarMap` (every parameter a
//! `Var`) with the differentiable, non-fused kernels, holding the given weights.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use super::error::{DistillError, Result};
use super::plan::Student;
use crate::engine::nn::Kernels;
use crate::engine::unet::UNet2DConditionModel;

pub struct TrainableUNet {
    pub varmap: VarMap,
    pub unet: UNet2DConditionModel,
    /// Variables by name, sorted (a fixed order for updates and checkpoints).
    pub vars: Vec<(String, Var)>,
}

impl TrainableUNet {
    pub fn new(
        student: &Student,
        weights: &HashMap<String, Tensor>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, dtype, device);
        let unet = UNet2DConditionModel::from_parts(
            student.config.clone(),
            student.layout.clone(),
            Kernels { fused: false },
            vb,
        )?;
        let mut vars: Vec<(String, Var)> = {
            let data = varmap
                .data()
                .lock()
                .map_err(|_| DistillError::Training("variable map lock poisoned".into()))?;
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, var) in &vars {
            let w = weights.get(name).ok_or_else(|| {
                DistillError::Training(format!("no initial weight for student `{name}`"))
            })?;
            var.set(&w.to_dtype(dtype)?.to_device(device)?)?;
        }
        Ok(Self { varmap, unet, vars })
    }

    /// Current weights by name (on the CPU, f32).
    pub fn weights(&self) -> Result<HashMap<String, Tensor>> {
        self.vars
            .iter()
            .map(|(n, v)| {
                Ok((
                    n.clone(),
                    v.as_tensor()
                        .to_dtype(DType::F32)?
                        .to_device(&Device::Cpu)?,
                ))
            })
            .collect()
    }
}
