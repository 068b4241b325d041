//! Resolves a `UNetConfig` into per-block specifications, the way diffusers'
//! `UNet2DConditionModel.__init__` expands its arguments (ints broadcast per block,
//! `attention_head_dim` standing in for `num_attention_heads`, reversed lists for the
//! up path). Everything inconsistent is rejected here, naming the config field.

use std::path::Path;

use crate::engine::config::{Depth, DepthSpec, UNetConfig};
use crate::engine::error::{EngineError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct AttnSpec {
    pub heads: usize,
    pub cross_dim: usize,
    /// Transformer blocks per layer of the block.
    pub depths: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DownSpec {
    pub in_ch: usize,
    pub out_ch: usize,
    pub layers: usize,
    pub attn: Option<AttnSpec>,
    pub downsample: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpSpec {
    pub in_ch: usize,
    pub prev_out: usize,
    pub out_ch: usize,
    pub layers: usize,
    pub attn: Option<AttnSpec>,
    pub upsample: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MidSpec {
    CrossAttn {
        ch: usize,
        attn: AttnSpec,
    },
    /// `UNetMidBlock2D` as built by the UNet (`num_layers=0`, no attention): one resnet.
    Resnet {
        ch: usize,
    },
    None,
}

/// `addition_embed_type: "text_time"`.
#[derive(Debug, Clone, PartialEq)]
pub struct TextTimeSpec {
    pub time_dim: usize,
    pub in_dim: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UNetLayout {
    pub in_channels: usize,
    pub out_channels: usize,
    pub base: usize,
    pub time_dim: usize,
    pub groups: usize,
    pub eps: f64,
    pub linear_projection: bool,
    pub conv_in_kernel: usize,
    pub conv_out_kernel: usize,
    pub add: Option<TextTimeSpec>,
    pub down: Vec<DownSpec>,
    pub mid: MidSpec,
    pub up: Vec<UpSpec>,
}

fn unsupported(file: &Path, field: &str, value: impl std::fmt::Debug) -> EngineError {
    EngineError::field(
        file,
        field,
        format!("value {value:?} is not supported by this engine"),
    )
}

fn check_heads(ch: usize, heads: usize, file: &Path, field: &str) -> Result<()> {
    if heads == 0 || !ch.is_multiple_of(heads) {
        return Err(EngineError::field(
            file,
            field,
            format!("{heads} heads do not divide {ch} channels"),
        ));
    }
    Ok(())
}

impl UNetLayout {
    pub fn resolve(c: &UNetConfig, file: &Path) -> Result<Self> {
        if c.only_cross_attention {
            return Err(unsupported(file, "only_cross_attention", true));
        }
        if c.dual_cross_attention {
            return Err(unsupported(file, "dual_cross_attention", true));
        }
        if let Some(v) = &c.class_embed_type {
            return Err(unsupported(file, "class_embed_type", v));
        }
        if let Some(v) = c.encoder_hid_dim {
            return Err(unsupported(file, "encoder_hid_dim", v));
        }
        if let Some(v) = c.time_cond_proj_dim {
            return Err(unsupported(file, "time_cond_proj_dim", v));
        }
        if c.num_class_embeds.is_some() {
            return Err(unsupported(file, "num_class_embeds", c.num_class_embeds));
        }
        if c.act_fn != "silu" {
            return Err(unsupported(file, "act_fn", &c.act_fn));
        }
        if c.resnet_time_scale_shift != "default" {
            return Err(unsupported(
                file,
                "resnet_time_scale_shift",
                &c.resnet_time_scale_shift,
            ));
        }
        if c.time_embedding_type != "positional" {
            return Err(unsupported(
                file,
                "time_embedding_type",
                &c.time_embedding_type,
            ));
        }
        if c.attention_type != "default" {
            return Err(unsupported(file, "attention_type", &c.attention_type));
        }
        if c.resnet_out_scale_factor != 1.0 {
            return Err(unsupported(
                file,
                "resnet_out_scale_factor",
                c.resnet_out_scale_factor,
            ));
        }
        if c.downsample_padding != 1 {
            return Err(unsupported(
                file,
                "downsample_padding",
                c.downsample_padding,
            ));
        }
        for (field, k) in [
            ("conv_in_kernel", c.conv_in_kernel),
            ("conv_out_kernel", c.conv_out_kernel),
        ] {
            if k.is_multiple_of(2) {
                return Err(unsupported(file, field, k));
            }
        }
        let n = c.down_block_types.len();
        if n == 0 || c.block_out_channels.len() != n {
            return Err(EngineError::field(
                file,
                "block_out_channels",
                format!(
                    "has {} entries but down_block_types has {n}",
                    c.block_out_channels.len()
                ),
            ));
        }
        if c.up_block_types.len() != n {
            return Err(EngineError::field(
                file,
                "up_block_types",
                format!(
                    "has {} entries but down_block_types has {n}",
                    c.up_block_types.len()
                ),
            ));
        }
        let groups = c
            .norm_num_groups
            .ok_or_else(|| unsupported(file, "norm_num_groups", "null"))?;
        for (i, ch) in c.block_out_channels.iter().enumerate() {
            if groups == 0 || !ch.is_multiple_of(groups) {
                return Err(EngineError::field(
                    file,
                    "norm_num_groups",
                    format!("{groups} groups do not divide block_out_channels[{i}] = {ch}"),
                ));
            }
        }
        let layers = c.layers_per_block.resolve(n, file, "layers_per_block")?;
        let cross = c
            .cross_attention_dim
            .resolve(n, file, "cross_attention_dim")?;
        // diffusers: `num_attention_heads = num_attention_heads or attention_head_dim`.
        let (heads, heads_field) = match &c.num_attention_heads {
            Some(h) => (
                h.resolve(n, file, "num_attention_heads")?,
                "num_attention_heads",
            ),
            None => (
                c.attention_head_dim
                    .resolve(n, file, "attention_head_dim")?,
                "attention_head_dim",
            ),
        };
        let depth_field = "transformer_layers_per_block";
        let depths: Vec<Depth> = match &c.transformer_layers_per_block {
            DepthSpec::All(v) => vec![Depth::All(*v); n],
            DepthSpec::Each(v) if v.len() == n => v.clone(),
            DepthSpec::Each(v) => {
                return Err(EngineError::field(
                    file,
                    depth_field,
                    format!("has {} entries but there are {n} blocks", v.len()),
                ))
            }
        };
        let base = c.block_out_channels[0];
        let time_dim = c.time_embedding_dim.unwrap_or(base * 4);

        let mut down = Vec::with_capacity(n);
        let mut out_ch = base;
        for (i, kind) in c.down_block_types.iter().enumerate() {
            let in_ch = out_ch;
            out_ch = c.block_out_channels[i];
            let attn = match kind.as_str() {
                "DownBlock2D" => None,
                "CrossAttnDownBlock2D" => {
                    check_heads(out_ch, heads[i], file, heads_field)?;
                    Some(AttnSpec {
                        heads: heads[i],
                        cross_dim: cross[i],
                        depths: depths[i].resolve(layers[i], file, depth_field)?,
                    })
                }
                other => return Err(unsupported(file, "down_block_types", other)),
            };
            down.push(DownSpec {
                in_ch,
                out_ch,
                layers: layers[i],
                attn,
                downsample: i + 1 < n,
            });
        }

        let top = c.block_out_channels[n - 1];
        let mid = match c.mid_block_type.as_deref() {
            None => MidSpec::None,
            Some("UNetMidBlock2D") => MidSpec::Resnet { ch: top },
            Some("UNetMidBlock2DCrossAttn") => {
                check_heads(top, heads[n - 1], file, heads_field)?;
                // The mid block has one layer; diffusers indexes a per-layer list with 0.
                let depth = match &depths[n - 1] {
                    Depth::All(v) => *v,
                    Depth::Each(v) => v.first().copied().unwrap_or(1),
                };
                MidSpec::CrossAttn {
                    ch: top,
                    attn: AttnSpec {
                        heads: heads[n - 1],
                        cross_dim: cross[n - 1],
                        depths: vec![depth],
                    },
                }
            }
            Some(other) => return Err(unsupported(file, "mid_block_type", other)),
        };

        let rev_depths: Vec<Depth> = match &c.reverse_transformer_layers_per_block {
            Some(v) if v.len() == n => v.clone(),
            Some(v) => {
                return Err(EngineError::field(
                    file,
                    "reverse_transformer_layers_per_block",
                    format!("has {} entries but there are {n} blocks", v.len()),
                ))
            }
            None => {
                if depths.iter().any(|d| matches!(d, Depth::Each(_))) {
                    return Err(EngineError::field(
                        file,
                        "reverse_transformer_layers_per_block",
                        "is required when transformer_layers_per_block has per-layer lists",
                    ));
                }
                depths.iter().rev().cloned().collect()
            }
        };
        let rev_channels: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
        let mut up = Vec::with_capacity(n);
        let mut out_ch = rev_channels[0];
        for (i, kind) in c.up_block_types.iter().enumerate() {
            let prev_out = out_ch;
            out_ch = rev_channels[i];
            let in_ch = rev_channels[(i + 1).min(n - 1)];
            let block_layers = layers[n - 1 - i] + 1;
            let attn = match kind.as_str() {
                "UpBlock2D" => None,
                "CrossAttnUpBlock2D" => {
                    let h = heads[n - 1 - i];
                    check_heads(out_ch, h, file, heads_field)?;
                    Some(AttnSpec {
                        heads: h,
                        cross_dim: cross[n - 1 - i],
                        depths: rev_depths[i].resolve(
                            block_layers,
                            file,
                            "reverse_transformer_layers_per_block",
                        )?,
                    })
                }
                other => return Err(unsupported(file, "up_block_types", other)),
            };
            up.push(UpSpec {
                in_ch,
                prev_out,
                out_ch,
                layers: block_layers,
                attn,
                upsample: i + 1 < n,
            });
        }

        let add = match c.addition_embed_type.as_deref() {
            None => None,
            Some("text_time") => {
                let time = c.addition_time_embed_dim.ok_or_else(|| {
                    EngineError::field(file, "addition_time_embed_dim", "required for text_time")
                })?;
                let in_dim = c.projection_class_embeddings_input_dim.ok_or_else(|| {
                    EngineError::field(
                        file,
                        "projection_class_embeddings_input_dim",
                        "required for text_time",
                    )
                })?;
                Some(TextTimeSpec {
                    time_dim: time,
                    in_dim,
                })
            }
            Some(other) => return Err(unsupported(file, "addition_embed_type", other)),
        };

        Ok(UNetLayout {
            in_channels: c.in_channels,
            out_channels: c.out_channels,
            base,
            time_dim,
            groups,
            eps: c.norm_eps,
            linear_projection: c.use_linear_projection,
            conv_in_kernel: c.conv_in_kernel,
            conv_out_kernel: c.conv_out_kernel,
            add,
            down,
            mid,
            up,
        })
    }
}
