//! transformers' `CLIPTextModel` / `CLIPTextModelWithProjection`. candle-transformers'
//! CLIP cannot be configured from a `config.json` (its config fields are private) and has
//! no pooled/projected output, so the engine carries its own.

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};

use super::config::ClipTextConfig;
use super::nn::{linear, linear_no_bias, softmax_last_dim, Kernels, LayerNorm};

#[derive(Debug, Clone, Copy)]
enum Act {
    QuickGelu,
    Gelu,
    GeluTanh,
    Relu,
}

#[derive(Debug, Clone)]
struct SelfAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
    scale: f64,
    kernels: Kernels,
}

impl SelfAttention {
    fn new(c: &ClipTextConfig, kernels: Kernels, vb: VarBuilder) -> Result<Self> {
        let h = c.hidden_size;
        Ok(Self {
            q: linear(h, h, vb.pp("q_proj"))?,
            k: linear(h, h, vb.pp("k_proj"))?,
            v: linear(h, h, vb.pp("v_proj"))?,
            out: linear(h, h, vb.pp("out_proj"))?,
            heads: c.num_attention_heads,
            scale: ((h / c.num_attention_heads) as f64).powf(-0.5),
            kernels,
        })
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, n, self.heads, c / self.heads))?
                .transpose(1, 2)?
                .contiguous()
        };
        let dtype = x.dtype();
        let q = split(self.q.forward(x)?)?.to_dtype(DType::F32)?;
        let k = split(self.k.forward(x)?)?.to_dtype(DType::F32)?;
        let v = split(self.v.forward(x)?)?;
        let scores = (q * self.scale)?.matmul(&k.t()?)?.broadcast_add(mask)?;
        let probs = softmax_last_dim(&scores, self.kernels)?.to_dtype(dtype)?;
        let o = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))?;
        self.out.forward(&o)
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    attn: SelfAttention,
    ln1: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    ln2: LayerNorm,
    act: Act,
}

impl EncoderLayer {
    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let x = (self.attn.forward(&self.ln1.forward(x)?, mask)? + x)?;
        let h = self.fc1.forward(&self.ln2.forward(&x)?)?;
        let h = match self.act {
            Act::QuickGelu => (&h * candle_nn::ops::sigmoid(&(&h * 1.702)?)?)?,
            Act::Gelu => h.gelu_erf()?,
            Act::GeluTanh => h.gelu()?,
            Act::Relu => h.relu()?,
        };
        self.fc2.forward(&h)? + x
    }
}

/// What the SDXL pipeline takes from a text encoder.
#[derive(Debug, Clone)]
pub struct ClipOutput {
    /// After the final layer norm.
    pub last_hidden_state: Tensor,
    /// `hidden_states[-2]`: the output of the second-to-last layer, no final norm.
    pub penultimate: Tensor,
    /// `last_hidden_state` at the end-of-text token.
    pub pooled: Tensor,
    /// `text_projection(pooled)`, for `CLIPTextModelWithProjection`.
    pub text_embeds: Option<Tensor>,
}

#[derive(Debug, Clone)]
pub struct ClipTextModel {
    token_embedding: Embedding,
    position_embedding: Embedding,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
    text_projection: Option<Linear>,
    eos_token_id: u32,
}

impl ClipTextModel {
    /// `with_projection` selects `CLIPTextModelWithProjection` (adds `text_projection`).
    pub fn new(c: &ClipTextConfig, with_projection: bool, vb: VarBuilder) -> Result<Self> {
        let kernels = Kernels { fused: true };
        let act = match c.hidden_act.as_str() {
            "quick_gelu" => Act::QuickGelu,
            "gelu" => Act::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Act::GeluTanh,
            "relu" => Act::Relu,
            other => candle_core::bail!("hidden_act `{other}` is not supported"),
        };
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!("num_attention_heads must divide hidden_size");
        }
        // transformers 4 saved `text_model.*`; transformers 5 drops the prefix for
        // CLIPTextModel (CLIPTextModelWithProjection keeps it).
        let tm = if vb.contains_tensor("text_model.embeddings.token_embedding.weight") {
            vb.pp("text_model")
        } else {
            vb.clone()
        };
        let h = c.hidden_size;
        let emb = tm.pp("embeddings");
        let enc = tm.pp("encoder").pp("layers");
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = enc.pp(i);
                Ok(EncoderLayer {
                    attn: SelfAttention::new(c, kernels, l.pp("self_attn"))?,
                    ln1: LayerNorm::new(h, c.layer_norm_eps, kernels, l.pp("layer_norm1"))?,
                    fc1: linear(h, c.intermediate_size, l.pp("mlp").pp("fc1"))?,
                    fc2: linear(c.intermediate_size, h, l.pp("mlp").pp("fc2"))?,
                    ln2: LayerNorm::new(h, c.layer_norm_eps, kernels, l.pp("layer_norm2"))?,
                    act,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let text_projection = if with_projection {
            let dim = c.projection_dim.unwrap_or(h);
            Some(linear_no_bias(h, dim, vb.pp("text_projection"))?)
        } else {
            None
        };
        Ok(Self {
            token_embedding: candle_nn::embedding(c.vocab_size, h, emb.pp("token_embedding"))?,
            position_embedding: candle_nn::embedding(
                c.max_position_embeddings,
                h,
                emb.pp("position_embedding"),
            )?,
            layers,
            final_layer_norm: LayerNorm::new(
                h,
                c.layer_norm_eps,
                kernels,
                tm.pp("final_layer_norm"),
            )?,
            text_projection,
            eos_token_id: c.eos_token_id,
        })
    }

    fn causal_mask(n: usize, device: &Device) -> Result<Tensor> {
        let m: Vec<f32> = (0..n)
            .flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        Tensor::from_vec(m, (n, n), device)
    }

    /// End-of-text positions, chosen the way transformers does: legacy configs
    /// (`eos_token_id == 2`) take the highest id, others the first `eos_token_id`.
    fn eos_positions(&self, ids: &[Vec<u32>]) -> Vec<usize> {
        ids.iter()
            .map(|row| {
                if self.eos_token_id == 2 {
                    let max = row.iter().copied().max().unwrap_or(0);
                    row.iter().position(|&t| t == max).unwrap_or(0)
                } else {
                    row.iter()
                        .position(|&t| t == self.eos_token_id)
                        .unwrap_or(0)
                }
            })
            .collect()
    }

    /// `ids`: (batch, seq) u32 token ids.
    pub fn forward(&self, ids: &Tensor) -> Result<ClipOutput> {
        let (b, n) = ids.dims2()?;
        let dev = ids.device();
        let positions = Tensor::arange(0u32, n as u32, dev)?;
        let x = self
            .token_embedding
            .forward(ids)?
            .broadcast_add(&self.position_embedding.forward(&positions)?)?;
        let mask = Self::causal_mask(n, dev)?;
        let mut x = x;
        let mut penultimate = x.clone();
        let last = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            if i + 1 == last {
                penultimate = x.clone();
            }
            x = layer.forward(&x, &mask)?;
        }
        let last_hidden_state = self.final_layer_norm.forward(&x)?;
        let rows = ids.to_vec2::<u32>()?;
        let pooled = self
            .eos_positions(&rows)
            .iter()
            .enumerate()
            .map(|(i, &p)| last_hidden_state.i((i, p))?.unsqueeze(0))
            .collect::<Result<Vec<_>>>()?;
        let pooled = Tensor::cat(&pooled, 0)?;
        debug_assert_eq!(pooled.dim(0)?, b);
        let text_embeds = match &self.text_projection {
            Some(p) => Some(p.forward(&pooled)?),
            None => None,
        };
        Ok(ClipOutput {
            last_hidden_state,
            penultimate,
            pooled,
            text_embeds,
        })
    }
}
