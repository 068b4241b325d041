//! `VarBuilder` backends that build a network without a checkpoint: one records
//! parameter shapes without allocating (parameter counts of full-size models), one draws
//! seeded random weights (random-weight model folders).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::{Init, VarBuilder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::noise::randn;

/// Names the engine's and candle's constructors probe to pick a checkpoint layout; a
/// fresh checkpoint uses the current diffusers/transformers layout.
fn modern_layout(name: &str) -> bool {
    name.ends_with("to_q.weight") || name == "text_model.embeddings.token_embedding.weight"
}

#[derive(Default, Clone)]
struct Shapes(Arc<Mutex<Vec<(String, Shape)>>>);

impl candle_nn::var_builder::SimpleBackend for Shapes {
    fn get(&self, s: Shape, name: &str, _h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Constructors that probe a layout may ask for the same tensor twice.
        seen.retain(|(n, _)| n != name);
        seen.push((name.to_string(), s.clone()));
        // A broadcast scalar has the right shape and costs nothing.
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }
    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("shape recorder cannot provide `{name}` without a shape")
    }
    fn contains_tensor(&self, name: &str) -> bool {
        modern_layout(name)
    }
}

/// Builds a network with `build` and returns its parameters' names and shapes.
pub fn record_shapes<T>(
    build: impl FnOnce(VarBuilder) -> Result<T>,
) -> Result<Vec<(String, Shape)>> {
    let shapes = Shapes::default();
    let vb = VarBuilder::from_backend(Box::new(shapes.clone()), DType::F32, Device::Cpu);
    build(vb)?;
    let v = std::mem::take(&mut *shapes.0.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(v)
}

pub fn count(shapes: &[(String, Shape)]) -> u64 {
    shapes.iter().map(|(_, s)| s.elem_count() as u64).sum()
}

#[derive(Clone)]
struct Random {
    rng: Arc<Mutex<StdRng>>,
    made: Arc<Mutex<HashMap<String, Tensor>>>,
}

impl candle_nn::var_builder::SimpleBackend for Random {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let fan_in: usize = s.dims().iter().skip(1).product::<usize>().max(1);
        let t = match h {
            Init::Const(v) => Tensor::full(v as f32, s.clone(), &Device::Cpu)?,
            Init::Randn { mean, stdev } => ((randn(&mut rng, &s, &Device::Cpu)? * stdev)? + mean)?,
            Init::Uniform { lo, up } => {
                let v: Vec<f32> = (0..s.elem_count())
                    .map(|_| rng.gen_range(lo..up) as f32)
                    .collect();
                Tensor::from_vec(v, s.clone(), &Device::Cpu)?
            }
            // Linear/conv weights: variance 1/fan_in keeps activations at unit scale.
            Init::Kaiming { .. } => (randn(&mut rng, &s, &Device::Cpu)? / (fan_in as f64).sqrt())?,
        };
        let t = t.to_dtype(dtype)?.to_device(dev)?;
        self.made
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), t.clone());
        Ok(t)
    }
    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("random init cannot provide `{name}` without a shape")
    }
    fn contains_tensor(&self, name: &str) -> bool {
        modern_layout(name)
    }
}

/// Builds a network with `build` over seeded random weights and returns them by name.
pub fn random_weights<T>(
    seed: u64,
    dtype: DType,
    build: impl FnOnce(VarBuilder) -> Result<T>,
) -> Result<HashMap<String, Tensor>> {
    let r = Random {
        rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
        made: Arc::new(Mutex::new(HashMap::new())),
    };
    let vb = VarBuilder::from_backend(Box::new(r.clone()), dtype, Device::Cpu);
    build(vb)?;
    let v = std::mem::take(&mut *r.made.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(v)
}
