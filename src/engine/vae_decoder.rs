//! The decoder half of diffusers' `AutoencoderKL`. candle-transformers' VAE mixes up
//! batch items in its mid-block attention (a batch of two decodes differently from two
//! batches of one), so the engine decodes with its own; candle's is still used to lay
//! out complete random-weight checkpoints and count their parameters.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::nn::{for_inference, group_norm, linear, GroupNorm};

use crate::engine::conv::{conv2d, Conv2d};

use super::config::VaeConfig;
use super::unet::resnet::{ResnetBlock2D, Upsample2D};

/// Single-head spatial self-attention of the VAE mid block.
#[derive(Debug, Clone)]
struct SpatialAttention {
    norm: GroupNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
}

fn linear_or_conv1x1(ch: usize, vb: VarBuilder) -> Result<Linear> {
    // Very old checkpoints store these projections as 1x1 convolutions.
    if vb.contains_tensor("weight") && vb.get((ch, ch), "weight").is_err() {
        let w = vb.get((ch, ch, 1, 1), "weight")?.reshape((ch, ch))?;
        return for_inference(Linear::new(w, Some(vb.get(ch, "bias")?)));
    }
    linear(ch, ch, vb)
}

impl SpatialAttention {
    fn new(ch: usize, groups: usize, vb: VarBuilder) -> Result<Self> {
        let names = if vb.contains_tensor("to_q.weight") || !vb.contains_tensor("query.weight") {
            ["to_q", "to_k", "to_v", "to_out.0"]
        } else {
            ["query", "key", "value", "proj_attn"]
        };
        Ok(Self {
            norm: group_norm(groups, ch, 1e-6, vb.pp("group_norm"))?,
            q: linear_or_conv1x1(ch, vb.pp(names[0]))?,
            k: linear_or_conv1x1(ch, vb.pp(names[1]))?,
            v: linear_or_conv1x1(ch, vb.pp(names[2]))?,
            out: linear_or_conv1x1(ch, vb.pp(names[3]))?,
        })
    }
}

impl Module for SpatialAttention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let dtype = x.dtype();
        let t = self
            .norm
            .forward(x)?
            .reshape((b, c, h * w))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = self.q.forward(&t)?.to_dtype(candle_core::DType::F32)?;
        let k = self.k.forward(&t)?.to_dtype(candle_core::DType::F32)?;
        let v = self.v.forward(&t)?;
        let scores = (q / (c as f64).sqrt())?.matmul(&k.t()?)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        let o = self.out.forward(&probs.matmul(&v)?)?;
        let o = o.transpose(1, 2)?.reshape((b, c, h, w))?;
        o + x
    }
}

#[derive(Debug, Clone)]
pub struct VaeDecoder {
    post_quant_conv: Option<Conv2d>,
    conv_in: Conv2d,
    mid_first: ResnetBlock2D,
    mid_attn: Option<SpatialAttention>,
    mid_second: ResnetBlock2D,
    up: Vec<(Vec<ResnetBlock2D>, Option<Upsample2D>)>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl VaeDecoder {
    /// `vb` is rooted at the VAE (it holds `decoder.*` and `post_quant_conv.*`).
    pub fn new(c: &VaeConfig, groups: usize, vb: VarBuilder) -> Result<Self> {
        let eps = 1e-6;
        let chans = &c.block_out_channels;
        let top = *chans
            .last()
            .ok_or_else(|| candle_core::Error::Msg("no VAE blocks".into()))?;
        let post_quant_conv = if c.use_post_quant_conv {
            Some(conv2d(
                c.latent_channels,
                c.latent_channels,
                1,
                1,
                vb.pp("post_quant_conv"),
            )?)
        } else {
            None
        };
        let d = vb.pp("decoder");
        let mid = d.pp("mid_block");
        let resnet = |cin, cout, vb| ResnetBlock2D::new(cin, cout, None, groups, eps, vb);
        let mid_attn = if c.mid_block_add_attention {
            Some(SpatialAttention::new(top, groups, mid.pp("attentions.0"))?)
        } else {
            None
        };
        let mut up = Vec::with_capacity(chans.len());
        let mut out = top;
        for (i, &ch) in chans.iter().rev().enumerate() {
            let prev = out;
            out = ch;
            let ub = d.pp("up_blocks").pp(i);
            let resnets = (0..=c.layers_per_block)
                .map(|j| resnet(if j == 0 { prev } else { out }, out, ub.pp("resnets").pp(j)))
                .collect::<Result<Vec<_>>>()?;
            let upsampler = if i + 1 < chans.len() {
                Some(Upsample2D::new(out, ub.pp("upsamplers.0"))?)
            } else {
                None
            };
            up.push((resnets, upsampler));
        }
        Ok(Self {
            post_quant_conv,
            conv_in: conv2d(c.latent_channels, top, 3, 1, d.pp("conv_in"))?,
            mid_first: resnet(top, top, mid.pp("resnets.0"))?,
            mid_attn,
            mid_second: resnet(top, top, mid.pp("resnets.1"))?,
            up,
            norm_out: group_norm(groups, chans[0], eps, d.pp("conv_norm_out"))?,
            conv_out: conv2d(chans[0], 3, 3, 1, d.pp("conv_out"))?,
        })
    }
}

impl Module for VaeDecoder {
    fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let z = match &self.post_quant_conv {
            Some(c) => c.forward(z)?,
            None => z.clone(),
        };
        let mut h = self.conv_in.forward(&z)?;
        h = self.mid_first.forward(&h, None)?;
        if let Some(a) = &self.mid_attn {
            h = a.forward(&h)?;
        }
        h = self.mid_second.forward(&h, None)?;
        for (resnets, upsampler) in &self.up {
            for r in resnets {
                h = r.forward(&h, None)?;
            }
            if let Some(u) = upsampler {
                h = u.forward(&h, None)?;
            }
        }
        self.conv_out.forward(&self.norm_out.forward_silu(&h)?)
    }
}
