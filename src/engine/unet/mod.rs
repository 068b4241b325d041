//! Config-driven `UNet2DConditionModel` for the SDXL family. Parameter names follow the
//! diffusers checkpoints, so loading is a plain `VarBuilder` walk.

pub mod attention;
pub mod blocks;
pub mod layout;
pub mod resnet;

use std::path::Path;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::engine::conv::{conv2d, Conv2d};

use self::blocks::{record, Common, DownBlock, Features, MidBlock, UpBlock};
use self::layout::{MidSpec, UNetLayout};
use super::config::UNetConfig;
use super::error::EngineError;
use super::nn::{linear, timestep_embedding, Kernels};

#[derive(Debug, Clone)]
struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    fn new(cin: usize, dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            linear_1: linear(cin, dim, vb.pp("linear_1"))?,
            linear_2: linear(dim, dim, vb.pp("linear_2"))?,
        })
    }
}

impl Module for TimestepEmbedding {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear_2.forward(&self.linear_1.forward(x)?.silu()?)
    }
}

/// SDXL micro-conditioning: pooled text embedding and the six size/crop ids.
#[derive(Debug, Clone)]
pub struct AddedCond {
    pub text_embeds: Tensor,
    pub time_ids: Tensor,
}

/// UNet output plus every resnet/transformer output by name (`down.{i}.resnets.{j}`,
/// `down.{i}.attentions.{j}`, `mid`, `up.{i}.resnets.{j}`, `up.{i}.attentions.{j}`).
#[derive(Debug, Clone)]
pub struct UNetOutput {
    pub sample: Tensor,
    pub features: Features,
}

#[derive(Debug, Clone)]
pub struct UNet2DConditionModel {
    pub config: UNetConfig,
    pub layout: UNetLayout,
    conv_in: Conv2d,
    time_embedding: TimestepEmbedding,
    add_embedding: Option<TimestepEmbedding>,
    down: Vec<DownBlock>,
    mid: Option<MidBlock>,
    up: Vec<UpBlock>,
    conv_norm_out: super::nn::GroupNorm,
    conv_out: Conv2d,
}

impl UNet2DConditionModel {
    /// Builds the network; `file` is the config's path, used in error messages.
    pub fn new(
        config: &UNetConfig,
        file: &Path,
        kernels: Kernels,
        vb: VarBuilder,
    ) -> std::result::Result<Self, EngineError> {
        let layout = UNetLayout::resolve(config, file)?;
        Ok(Self::from_parts(config.clone(), layout, kernels, vb)?)
    }

    /// Builds from an already resolved layout (see `layout::UNetLayout::resolve`).
    pub fn from_parts(
        config: UNetConfig,
        l: UNetLayout,
        kernels: Kernels,
        vb: VarBuilder,
    ) -> Result<Self> {
        let c = Common {
            temb: l.time_dim,
            groups: l.groups,
            eps: l.eps,
            linear_projection: l.linear_projection,
            kernels,
        };
        let conv_in = conv2d(l.in_channels, l.base, l.conv_in_kernel, 1, vb.pp("conv_in"))?;
        let time_embedding = TimestepEmbedding::new(l.base, l.time_dim, vb.pp("time_embedding"))?;
        let add_embedding = match &l.add {
            Some(a) => Some(TimestepEmbedding::new(
                a.in_dim,
                l.time_dim,
                vb.pp("add_embedding"),
            )?),
            None => None,
        };
        let down = l
            .down
            .iter()
            .enumerate()
            .map(|(i, s)| DownBlock::new(s, &c, vb.pp("down_blocks").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let mid = match &l.mid {
            MidSpec::CrossAttn { ch, attn } => {
                Some(MidBlock::new(*ch, Some(attn), &c, vb.pp("mid_block"))?)
            }
            MidSpec::Resnet { ch } => Some(MidBlock::new(*ch, None, &c, vb.pp("mid_block"))?),
            MidSpec::None => None,
        };
        let up =
            l.up.iter()
                .enumerate()
                .map(|(i, s)| UpBlock::new(s, &c, vb.pp("up_blocks").pp(i)))
                .collect::<Result<Vec<_>>>()?;
        let conv_norm_out = super::nn::group_norm(l.groups, l.base, l.eps, vb.pp("conv_norm_out"))?;
        let conv_out = conv2d(
            l.base,
            l.out_channels,
            l.conv_out_kernel,
            1,
            vb.pp("conv_out"),
        )?;
        Ok(Self {
            config,
            layout: l,
            conv_in,
            time_embedding,
            add_embedding,
            down,
            mid,
            up,
            conv_norm_out,
            conv_out,
        })
    }

    /// `timesteps`: one value per batch item, or a single value for all (any float dtype).
    pub fn forward(
        &self,
        sample: &Tensor,
        timesteps: &Tensor,
        encoder_hidden_states: &Tensor,
        added: Option<&AddedCond>,
    ) -> Result<Tensor> {
        if sample.device().is_cpu() {
            // On the CPU the whole call runs on a thread of rayon's pool, whose threads do the
            // parallel work (gemm, the engine's kernels): the caller's thread sleeps instead
            // of being one more thread competing for the cores with the pool's.
            return rayon::scope(|_| {
                self.run(sample, timesteps, encoder_hidden_states, added, &mut None)
            });
        }
        self.run(sample, timesteps, encoder_hidden_states, added, &mut None)
    }

    pub fn forward_with_features(
        &self,
        sample: &Tensor,
        timesteps: &Tensor,
        encoder_hidden_states: &Tensor,
        added: Option<&AddedCond>,
    ) -> Result<UNetOutput> {
        let mut features = Features::new();
        let sample = self.run(
            sample,
            timesteps,
            encoder_hidden_states,
            added,
            &mut Some(&mut features),
        )?;
        Ok(UNetOutput { sample, features })
    }

    fn embed_time(&self, timesteps: &Tensor, batch: usize, dtype: DType) -> Result<Tensor> {
        let t = timesteps.flatten_all()?;
        let t = if t.dim(0)? == 1 && batch > 1 {
            t.broadcast_as(batch)?.contiguous()?
        } else {
            t
        };
        let l = &self.layout;
        let f = timestep_embedding(
            &t,
            l.base,
            self.config.flip_sin_to_cos,
            self.config.freq_shift,
        )?;
        self.time_embedding.forward(&f.to_dtype(dtype)?)
    }

    fn run(
        &self,
        sample: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        added: Option<&AddedCond>,
        feats: &mut Option<&mut Features>,
    ) -> Result<Tensor> {
        let (batch, _, _, _) = sample.dims4()?;
        let dtype = sample.dtype();
        let mut emb = self.embed_time(timesteps, batch, dtype)?;
        if let (Some(add), Some(spec)) = (&self.add_embedding, &self.layout.add) {
            let Some(cond) = added else {
                candle_core::bail!(
                    "this UNet needs text_embeds and time_ids (addition_embed_type text_time)"
                )
            };
            let ids = cond.time_ids.flatten_all()?;
            let time = timestep_embedding(
                &ids,
                spec.time_dim,
                self.config.flip_sin_to_cos,
                self.config.freq_shift,
            )?
            .reshape((batch, ()))?;
            let input = Tensor::cat(&[&cond.text_embeds.to_dtype(DType::F32)?, &time], 1)?
                .to_dtype(dtype)?;
            emb = (emb + add.forward(&input)?)?;
        }
        let x = if self.config.center_input_sample {
            ((sample * 2.0)? - 1.0)?
        } else {
            sample.clone()
        };
        let mut h = self.conv_in.forward(&x)?;
        let mut skips = vec![h.clone()];
        for (i, block) in self.down.iter().enumerate() {
            let (out, s) = block.forward(&h, &emb, context, i, feats)?;
            h = out;
            skips.extend(s);
        }
        if let Some(mid) = &self.mid {
            h = mid.forward(&h, &emb, context)?;
            record(feats, || "mid".to_string(), &h);
        }
        for (i, block) in self.up.iter().enumerate() {
            let n = block.num_layers();
            let split = skips
                .len()
                .checked_sub(n)
                .ok_or_else(|| candle_core::Error::Msg("skip connections exhausted".into()))?;
            let own: Vec<Tensor> = skips.split_off(split);
            let size = skips
                .last()
                .map(|t| (t.dim(2).unwrap_or(0), t.dim(3).unwrap_or(0)));
            h = block.forward(&h, &own, &emb, context, size, i, feats)?;
        }
        let h = self.conv_norm_out.forward_silu(&h)?;
        self.conv_out.forward(&h)
    }
}

impl UNet2DConditionModel {
    /// Loads `dir/config.json` and the weights next to it.
    pub fn load(
        dir: &Path,
        dtype: DType,
        device: &candle_core::Device,
        kernels: Kernels,
    ) -> std::result::Result<Self, EngineError> {
        let cfg_file = dir.join("config.json");
        let config: UNetConfig = super::config::read_config(&cfg_file)?;
        let layout = UNetLayout::resolve(&config, &cfg_file)?;
        let wfiles = super::weights::weights_files(dir)?;
        let vb = super::weights::var_builder(&wfiles, dtype, device)?;
        Self::from_parts(config, layout, kernels, vb).map_err(super::weights::in_file(&wfiles.name))
    }
}
