//! Down, mid and up blocks, built from the resolved layout like diffusers'
//! `get_down_block` / `get_mid_block` / `get_up_block`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::{Transformer2DModel, Transformer2DOptions};
use super::layout::{AttnSpec, DownSpec, UpSpec};
use super::resnet::{Downsample2D, ResnetBlock2D, Upsample2D};
use crate::engine::nn::Kernels;

/// Named intermediate outputs, collected only when asked for.
pub type Features = Vec<(String, Tensor)>;

pub(crate) fn record(feats: &mut Option<&mut Features>, name: impl FnOnce() -> String, t: &Tensor) {
    if let Some(f) = feats.as_deref_mut() {
        f.push((name(), t.clone()));
    }
}

/// Shared construction parameters.
#[derive(Debug, Clone, Copy)]
pub struct Common {
    pub temb: usize,
    pub groups: usize,
    pub eps: f64,
    pub linear_projection: bool,
    pub kernels: Kernels,
}

fn transformers(
    ch: usize,
    attn: &AttnSpec,
    c: &Common,
    vb: VarBuilder,
) -> Result<Vec<Transformer2DModel>> {
    attn.depths
        .iter()
        .enumerate()
        .map(|(i, &depth)| {
            let o = Transformer2DOptions {
                heads: attn.heads,
                depth,
                cross_dim: attn.cross_dim,
                groups: c.groups,
                linear_projection: c.linear_projection,
                kernels: c.kernels,
            };
            Transformer2DModel::new(ch, &o, vb.pp(i))
        })
        .collect()
}

/// `DownBlock2D` or `CrossAttnDownBlock2D`.
#[derive(Debug, Clone)]
pub struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    downsampler: Option<Downsample2D>,
}

impl DownBlock {
    pub fn new(s: &DownSpec, c: &Common, vb: VarBuilder) -> Result<Self> {
        let resnets = (0..s.layers)
            .map(|j| {
                let cin = if j == 0 { s.in_ch } else { s.out_ch };
                ResnetBlock2D::new(
                    cin,
                    s.out_ch,
                    Some(c.temb),
                    c.groups,
                    c.eps,
                    vb.pp("resnets").pp(j),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let attentions = match &s.attn {
            Some(a) => transformers(s.out_ch, a, c, vb.pp("attentions"))?,
            None => Vec::new(),
        };
        let downsampler = if s.downsample {
            Some(Downsample2D::new(s.out_ch, vb.pp("downsamplers.0"))?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            attentions,
            downsampler,
        })
    }

    /// Returns the block output and the skip states it contributes.
    pub fn forward(
        &self,
        x: &Tensor,
        temb: &Tensor,
        context: &Tensor,
        index: usize,
        feats: &mut Option<&mut Features>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut h = x.clone();
        let mut skips = Vec::with_capacity(self.resnets.len() + 1);
        for (j, resnet) in self.resnets.iter().enumerate() {
            h = resnet.forward(&h, Some(temb))?;
            record(feats, || format!("down.{index}.resnets.{j}"), &h);
            if let Some(attn) = self.attentions.get(j) {
                h = attn.forward(&h, context)?;
                record(feats, || format!("down.{index}.attentions.{j}"), &h);
            }
            skips.push(h.clone());
        }
        if let Some(d) = &self.downsampler {
            h = d.forward(&h)?;
            skips.push(h.clone());
        }
        Ok((h, skips))
    }
}

/// `UNetMidBlock2DCrossAttn` (resnet, transformer, resnet) or the single-resnet
/// `UNetMidBlock2D` that SSD-1B and Vega use.
#[derive(Debug, Clone)]
pub struct MidBlock {
    first: ResnetBlock2D,
    layers: Vec<(Transformer2DModel, ResnetBlock2D)>,
}

impl MidBlock {
    pub fn new(ch: usize, attn: Option<&AttnSpec>, c: &Common, vb: VarBuilder) -> Result<Self> {
        let resnet = |j: usize| {
            ResnetBlock2D::new(
                ch,
                ch,
                Some(c.temb),
                c.groups,
                c.eps,
                vb.pp("resnets").pp(j),
            )
        };
        let first = resnet(0)?;
        let layers = match attn {
            Some(a) => transformers(ch, a, c, vb.pp("attentions"))?
                .into_iter()
                .enumerate()
                .map(|(j, t)| Ok((t, resnet(j + 1)?)))
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        Ok(Self { first, layers })
    }

    pub fn forward(&self, x: &Tensor, temb: &Tensor, context: &Tensor) -> Result<Tensor> {
        let mut h = self.first.forward(x, Some(temb))?;
        for (attn, resnet) in &self.layers {
            h = attn.forward(&h, context)?;
            h = resnet.forward(&h, Some(temb))?;
        }
        Ok(h)
    }
}

/// `UpBlock2D` or `CrossAttnUpBlock2D`.
#[derive(Debug, Clone)]
pub struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    upsampler: Option<Upsample2D>,
}

impl UpBlock {
    pub fn new(s: &UpSpec, c: &Common, vb: VarBuilder) -> Result<Self> {
        let resnets = (0..s.layers)
            .map(|j| {
                let skip = if j + 1 == s.layers { s.in_ch } else { s.out_ch };
                let cin = if j == 0 { s.prev_out } else { s.out_ch };
                ResnetBlock2D::new(
                    cin + skip,
                    s.out_ch,
                    Some(c.temb),
                    c.groups,
                    c.eps,
                    vb.pp("resnets").pp(j),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let attentions = match &s.attn {
            Some(a) => transformers(s.out_ch, a, c, vb.pp("attentions"))?,
            None => Vec::new(),
        };
        let upsampler = if s.upsample {
            Some(Upsample2D::new(s.out_ch, vb.pp("upsamplers.0"))?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            attentions,
            upsampler,
        })
    }

    pub fn num_layers(&self) -> usize {
        self.resnets.len()
    }

    /// `skips` are this block's skip states, in the order they were produced.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &Tensor,
        skips: &[Tensor],
        temb: &Tensor,
        context: &Tensor,
        upsample_size: Option<(usize, usize)>,
        index: usize,
        feats: &mut Option<&mut Features>,
    ) -> Result<Tensor> {
        let mut h = x.clone();
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = &skips[skips.len() - 1 - j];
            h = resnet.forward(&Tensor::cat(&[&h, skip], 1)?, Some(temb))?;
            record(feats, || format!("up.{index}.resnets.{j}"), &h);
            if let Some(attn) = self.attentions.get(j) {
                h = attn.forward(&h, context)?;
                record(feats, || format!("up.{index}.attentions.{j}"), &h);
            }
        }
        match &self.upsampler {
            Some(u) => u.forward(&h, upsample_size),
            None => Ok(h),
        }
    }
}
