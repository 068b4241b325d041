//! `ResnetBlock2D` with the "default" time-embedding norm, and the resamplers.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::engine::conv::{conv2d, Conv2d};
use crate::engine::nn::{forward_linear, group_norm, linear, GroupNorm};

#[derive(Debug, Clone)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    pub fn new(
        cin: usize,
        cout: usize,
        temb: Option<usize>,
        groups: usize,
        eps: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            norm1: group_norm(groups, cin, eps, vb.pp("norm1"))?,
            conv1: conv2d(cin, cout, 3, 1, vb.pp("conv1"))?,
            time_emb_proj: match temb {
                Some(t) => Some(linear(t, cout, vb.pp("time_emb_proj"))?),
                None => None,
            },
            norm2: group_norm(groups, cout, eps, vb.pp("norm2"))?,
            conv2: conv2d(cout, cout, 3, 1, vb.pp("conv2"))?,
            conv_shortcut: if cin != cout {
                Some(conv2d(cin, cout, 1, 1, vb.pp("conv_shortcut"))?)
            } else {
                None
            },
        })
    }

    /// `temb` is ignored by blocks built without a time embedding (the VAE's).
    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        // The time embedding and the skip connection go where the convolutions' outputs
        // start (`Conv2d::forward_onto`).
        let shift = match (&self.time_emb_proj, temb) {
            (Some(proj), Some(t)) => Some(forward_linear(proj, &t.silu()?)?),
            _ => None,
        };
        let h = self
            .conv1
            .forward_onto(&self.norm1.forward_silu(x)?, shift.as_ref(), None)?;
        let skip = match &self.conv_shortcut {
            Some(c) => c.forward(x)?,
            None => x.clone(),
        };
        self.conv2
            .forward_onto(&self.norm2.forward_silu(&h)?, None, Some(&skip))
    }
}

/// `Downsample2D` with a strided 3x3 convolution (`downsamplers.0.conv`).
#[derive(Debug, Clone)]
pub struct Downsample2D {
    conv: Conv2d,
}

impl Downsample2D {
    pub fn new(ch: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv: conv2d(ch, ch, 3, 2, vb.pp("conv"))?,
        })
    }
}

impl Module for Downsample2D {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(x)
    }
}

/// `Upsample2D`: nearest-neighbour x2 then a 3x3 convolution (`upsamplers.0.conv`).
#[derive(Debug, Clone)]
pub struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    pub fn new(ch: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv: conv2d(ch, ch, 3, 1, vb.pp("conv"))?,
        })
    }

    /// `size` is the skip connection's spatial size when it is not exactly twice ours.
    pub fn forward(&self, x: &Tensor, size: Option<(usize, usize)>) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (th, tw) = size.unwrap_or((2 * h, 2 * w));
        self.conv.forward(&x.upsample_nearest2d(th, tw)?)
    }
}
