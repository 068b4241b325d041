//! `Transformer2DModel` (continuous input) with `BasicTransformerBlock`s: self-attention,
//! cross-attention to the text embedding, and a GEGLU feed-forward.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};

use crate::engine::conv::{conv2d, Conv2d};
use crate::engine::kernels;
use crate::engine::nn::{
    forward_linear, forward_linear_add, group_norm, linear, linear_no_bias, softmax_last_dim,
    GroupNorm, Kernels, LayerNorm,
};

#[derive(Debug, Clone)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    scale: f64,
    upcast: bool,
    kernels: Kernels,
}

impl Attention {
    pub fn new(
        dim: usize,
        context: usize,
        heads: usize,
        head_dim: usize,
        upcast: bool,
        kernels: Kernels,
        vb: VarBuilder,
    ) -> Result<Self> {
        let inner = heads * head_dim;
        Ok(Self {
            to_q: linear_no_bias(dim, inner, vb.pp("to_q"))?,
            to_k: linear_no_bias(context, inner, vb.pp("to_k"))?,
            to_v: linear_no_bias(context, inner, vb.pp("to_v"))?,
            to_out: linear(inner, dim, vb.pp("to_out.0"))?,
            heads,
            scale: (head_dim as f64).powf(-0.5),
            upcast,
            kernels,
        })
    }

    fn split_heads(&self, x: Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        x.reshape((b, n, self.heads, c / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// The attention's output plus `residual` (the block's skip connection), added where
    /// the output is made.
    pub fn forward_add(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        residual: &Tensor,
    ) -> Result<Tensor> {
        let ctx = context.unwrap_or(x);
        if kernels::applies(&[
            x,
            ctx,
            self.to_q.weight(),
            self.to_k.weight(),
            self.to_v.weight(),
        ]) {
            // f32 inference: the heads are read in place and the scores never held whole.
            let (q, k, v) = (
                forward_linear(&self.to_q, x)?,
                forward_linear(&self.to_k, ctx)?,
                forward_linear(&self.to_v, ctx)?,
            );
            let out = kernels::attention(&q, &k, &v, self.heads, self.scale as f32)?;
            return forward_linear_add(&self.to_out, &out, residual);
        }
        let q = self.split_heads(self.to_q.forward(x)?)?;
        let k = self.split_heads(self.to_k.forward(ctx)?)?;
        let v = self.split_heads(self.to_v.forward(ctx)?)?;
        let dtype = q.dtype();
        // Half-precision scores overflow easily; softmax is taken in f32 either way.
        let (q, k) = if self.upcast || dtype != DType::F32 {
            (q.to_dtype(DType::F32)?, k.to_dtype(DType::F32)?)
        } else {
            (q, k)
        };
        // Scaling q rather than the (tokens x tokens) scores touches far fewer elements.
        let scores = (q * self.scale)?.matmul(&k.t()?)?;
        let probs = softmax_last_dim(&scores, self.kernels)?.to_dtype(dtype)?;
        let out = probs.matmul(&v)?;
        let (b, h, n, d) = out.dims4()?;
        self.to_out
            .forward(&out.transpose(1, 2)?.reshape((b, n, h * d))?)?
            + residual
    }
}

#[derive(Debug, Clone)]
struct GeGluFeedForward {
    proj: Linear,
    out: Linear,
}

impl GeGluFeedForward {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        let inner = dim * 4;
        Ok(Self {
            proj: linear(dim, inner * 2, vb.pp("net.0.proj"))?,
            out: linear(inner, dim, vb.pp("net.2"))?,
        })
    }
}

impl GeGluFeedForward {
    /// The feed-forward's output plus `residual` (the block's last skip connection).
    fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let h = forward_linear(&self.proj, x)?;
        if kernels::applies(&[&h]) {
            return forward_linear_add(&self.out, &kernels::geglu(&h)?, residual);
        }
        let half = h.dim(D::Minus1)? / 2;
        let value = h.narrow(D::Minus1, 0, half)?;
        let gate = h.narrow(D::Minus1, half, half)?;
        self.out.forward(&(value * gate.gelu_erf()?)?)? + residual
    }
}

#[derive(Debug, Clone)]
pub struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: GeGluFeedForward,
}

impl BasicTransformerBlock {
    pub fn new(
        dim: usize,
        heads: usize,
        cross_dim: usize,
        kernels: Kernels,
        vb: VarBuilder,
    ) -> Result<Self> {
        let hd = dim / heads;
        Ok(Self {
            norm1: LayerNorm::new(dim, 1e-5, kernels, vb.pp("norm1"))?,
            attn1: Attention::new(dim, dim, heads, hd, false, kernels, vb.pp("attn1"))?,
            norm2: LayerNorm::new(dim, 1e-5, kernels, vb.pp("norm2"))?,
            attn2: Attention::new(dim, cross_dim, heads, hd, false, kernels, vb.pp("attn2"))?,
            norm3: LayerNorm::new(dim, 1e-5, kernels, vb.pp("norm3"))?,
            ff: GeGluFeedForward::new(dim, vb.pp("ff"))?,
        })
    }

    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let x = self.attn1.forward_add(&self.norm1.forward(x)?, None, x)?;
        let x = self
            .attn2
            .forward_add(&self.norm2.forward(&x)?, Some(context), &x)?;
        self.ff.forward_add(&self.norm3.forward(&x)?, &x)
    }
}

#[derive(Debug, Clone)]
enum Proj {
    Conv(Conv2d),
    Linear(Linear),
}

#[derive(Debug, Clone)]
pub struct Transformer2DModel {
    norm: GroupNorm,
    proj_in: Proj,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Proj,
}

pub struct Transformer2DOptions {
    pub heads: usize,
    pub depth: usize,
    pub cross_dim: usize,
    pub groups: usize,
    pub linear_projection: bool,
    pub kernels: Kernels,
}

impl Transformer2DModel {
    pub fn new(ch: usize, o: &Transformer2DOptions, vb: VarBuilder) -> Result<Self> {
        let proj = |name: &str| -> Result<Proj> {
            Ok(if o.linear_projection {
                Proj::Linear(linear(ch, ch, vb.pp(name))?)
            } else {
                Proj::Conv(conv2d(ch, ch, 1, 1, vb.pp(name))?)
            })
        };
        let vbb = vb.pp("transformer_blocks");
        let blocks = (0..o.depth)
            .map(|i| BasicTransformerBlock::new(ch, o.heads, o.cross_dim, o.kernels, vbb.pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            norm: group_norm(o.groups, ch, 1e-6, vb.pp("norm"))?,
            proj_in: proj("proj_in")?,
            blocks,
            proj_out: proj("proj_out")?,
        })
    }

    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let residual = x;
        let x = self.norm.forward(x)?;
        let to_tokens = |t: Tensor| -> Result<Tensor> {
            t.permute((0, 2, 3, 1))?.reshape((b, h * w, t.dim(1)?))
        };
        let mut t = match &self.proj_in {
            Proj::Conv(conv) => to_tokens(conv.forward(&x)?)?,
            Proj::Linear(lin) => forward_linear(lin, &to_tokens(x)?)?,
        };
        for block in &self.blocks {
            t = block.forward(&t, context)?;
        }
        let to_map = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, h, w, c))?.permute((0, 3, 1, 2))?.contiguous()
        };
        let out = match &self.proj_out {
            Proj::Conv(conv) => conv.forward(&to_map(t)?)?,
            Proj::Linear(lin) => to_map(forward_linear(lin, &t)?)?,
        };
        out + residual
    }
}
