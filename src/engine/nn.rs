//! Building blocks shared by the engine's networks. The UNet is trained by the
//! distillation code, so every op here has a backward pass unless `fused` is asked for
//! (candle's fused layer-norm and last-dim softmax kernels have none). Group norm and the
//! linear layers take the CPU kernels of `engine::kernels` for f32 inference on their own:
//! those apply only where nothing tracks gradients.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::kernels;

/// Which kernels to use where candle offers a fast path without gradients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kernels {
    pub fused: bool,
}

pub fn softmax_last_dim(xs: &Tensor, k: Kernels) -> Result<Tensor> {
    if k.fused && xs.is_contiguous() {
        candle_nn::ops::softmax_last_dim(xs)
    } else {
        candle_nn::ops::softmax(xs, D::Minus1)
    }
}

/// LayerNorm over the last dimension, statistics in f32 for half-precision inputs.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    kernels: Kernels,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f64, kernels: Kernels, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.))?;
        let bias = vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.))?;
        Ok(Self {
            weight,
            bias,
            eps,
            kernels,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.kernels.fused && x.is_contiguous() {
            return candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps as f32);
        }
        let dtype = x.dtype();
        let x = match dtype {
            DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
            _ => x.clone(),
        };
        let n = x.dim(D::Minus1)? as f64;
        let mean = (x.sum_keepdim(D::Minus1)? / n)?;
        let x = x.broadcast_sub(&mean)?;
        let var = (x.sqr()?.sum_keepdim(D::Minus1)? / n)?;
        let x = x.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        x.to_dtype(dtype)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// `candle_nn::linear`, with the weight laid out for inference (see [`for_inference`]).
pub fn linear(cin: usize, cout: usize, vb: VarBuilder) -> Result<candle_nn::Linear> {
    for_inference(candle_nn::linear(cin, cout, vb)?)
}

/// `candle_nn::linear_no_bias`, with the weight laid out for inference.
pub fn linear_no_bias(cin: usize, cout: usize, vb: VarBuilder) -> Result<candle_nn::Linear> {
    for_inference(candle_nn::linear_no_bias(cin, cout, vb)?)
}

/// Stores an f32 CPU weight (out, in) that is not a training variable transposed, as an
/// (in, out) row-major matrix, and gives the layer a view of it: same values and shape, but
/// gemm multiplies by a row-major right-hand side much faster than by a transposed one at
/// the UNet's shapes (measured: 154×2048 by 2048×512 at 206 instead of 63 GFLOPS). candle's
/// own matmul sees the same row-major matrix. Variables (the student in distillation) and
/// other devices and dtypes are left as they are.
pub fn for_inference(layer: candle_nn::Linear) -> Result<candle_nn::Linear> {
    let w = layer.weight();
    if !kernels::applies(&[w]) || w.rank() != 2 {
        return Ok(layer);
    }
    let transposed = kernels::transpose(w)?;
    Ok(candle_nn::Linear::new(
        transposed.t()?,
        layer.bias().cloned(),
    ))
}

/// A linear layer's forward pass: the bias-fused CPU kernel for f32 inference, candle's
/// otherwise.
pub fn forward_linear(layer: &candle_nn::Linear, x: &Tensor) -> Result<Tensor> {
    linear_onto(layer, x, None)
}

/// A linear layer's output plus `residual` (the transformer's skip connections): on the
/// CPU kernel's path the product is accumulated onto the residual, with no separate add.
pub fn forward_linear_add(
    layer: &candle_nn::Linear,
    x: &Tensor,
    residual: &Tensor,
) -> Result<Tensor> {
    linear_onto(layer, x, Some(residual))
}

/// The kernel when every tensor involved allows it, candle's layer (and add) otherwise.
fn linear_onto(layer: &candle_nn::Linear, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
    let mut involved = vec![x, layer.weight()];
    involved.extend(layer.bias());
    involved.extend(residual);
    if kernels::applies(&involved) {
        return kernels::linear(x, layer.weight(), layer.bias(), residual);
    }
    let out = layer.forward(x)?;
    match residual {
        Some(r) => out + r,
        None => Ok(out),
    }
}

/// diffusers' GroupNorm (`weight` and `bias` per channel), optionally followed by SiLU, which
/// the CPU kernel applies in the same pass.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    inner: candle_nn::GroupNorm,
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

pub fn group_norm(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<GroupNorm> {
    let weight = vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.))?;
    let bias = vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.))?;
    Ok(GroupNorm {
        inner: candle_nn::GroupNorm::new(weight.clone(), bias.clone(), channels, groups, eps)?,
        weight,
        bias,
        groups,
        eps,
    })
}

impl GroupNorm {
    /// The normalised input through SiLU, as every ResNet block and output head uses it.
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, true)
    }

    fn run(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        if kernels::applies(&[x, &self.weight, &self.bias]) {
            return kernels::group_norm(x, &self.weight, &self.bias, self.groups, self.eps, silu);
        }
        let y = self.inner.forward(x)?;
        if silu {
            y.silu()
        } else {
            Ok(y)
        }
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, false)
    }
}

/// diffusers' `get_timestep_embedding`: sinusoidal features of (possibly fractional)
/// timesteps, computed in f32.
pub fn timestep_embedding(
    timesteps: &Tensor,
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
) -> Result<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = -(10000f64.ln()) * i as f64 / (half as f64 - freq_shift);
            exponent.exp() as f32
        })
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), timesteps.device())?;
    let t = timesteps.to_dtype(DType::F32)?.unsqueeze(1)?;
    let args = t.broadcast_mul(&freqs)?;
    let (sin, cos) = (args.sin()?, args.cos()?);
    let emb = if flip_sin_to_cos {
        Tensor::cat(&[cos, sin], 1)?
    } else {
        Tensor::cat(&[sin, cos], 1)?
    };
    if dim % 2 == 1 {
        emb.pad_with_zeros(1, 0, 1)
    } else {
        Ok(emb)
    }
}
