//! The trainable student: the engine's UNet built over a `VarMap` (every parameter a
//! `Var`) with the differentiable, non-fused kernels, holding the given weights. In f16 or
//! bf16 the `Var`s are only the half-precision working copy: the weights themselves are
//! f32 master copies that the optimizer updates (mixed-precision training).

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
    /// f32 master weights by name (on the training device) when the network computes in
    /// f16/bf16. An AdamW update at lr 1e-5 is far below bf16's resolution (8 bits of
    /// mantissa) for most weights; applied to the half-precision copy it would round away,
    /// applied here it accumulates and the copy is refreshed from it.
    pub master: Option<HashMap<String, Tensor>>,
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
        let mut master = (dtype != DType::F32).then(HashMap::new);
        for (name, var) in &vars {
            let w = weights.get(name).ok_or_else(|| {
                DistillError::Training(format!("no initial weight for student `{name}`"))
            })?;
            let w32 = w.to_dtype(DType::F32)?.to_device(device)?;
            var.set(&w32.to_dtype(dtype)?)?;
            if let Some(m) = master.as_mut() {
                m.insert(name.clone(), w32);
            }
        }
        Ok(Self {
            varmap,
            unet,
            vars,
            master,
        })
    }

    /// Replaces the weights (f32 tensors by name, e.g. from a checkpoint): the master
    /// copies when kept, and the working copy from them.
    pub fn set_weights(&mut self, weights: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in &self.vars {
            let w = weights
                .get(name)
                .ok_or_else(|| DistillError::Training(format!("no weight for student `{name}`")))?;
            let w32 = w.to_dtype(DType::F32)?.to_device(var.device())?;
            var.set(&w32.to_dtype(var.dtype())?)?;
            if let Some(m) = self.master.as_mut() {
                m.insert(name.clone(), w32);
            }
        }
        Ok(())
    }

    /// Current weights by name (on the CPU, f32): the master copies when kept.
    pub fn weights(&self) -> Result<HashMap<String, Tensor>> {
        if let Some(m) = &self.master {
            return m
                .iter()
                .map(|(n, t)| Ok((n.clone(), t.to_device(&Device::Cpu)?)))
                .collect();
        }
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
