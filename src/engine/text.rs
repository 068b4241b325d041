//! SDXL prompt encoding: both CLIP encoders' penultimate hidden states concatenated,
//! pooled = the second encoder's projected end-of-text embedding.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::clip::ClipTextModel;
use super::config::{read_config, ClipTextConfig};
use super::error::{EngineError, Result};
use super::tokenizer::ClipTokenizer;
use super::weights::{in_file, var_builder, weights_files};

pub struct TextEncoder {
    pub tokenizer: ClipTokenizer,
    pub model: ClipTextModel,
    pub config: ClipTextConfig,
}

impl TextEncoder {
    pub fn load(
        tok_dir: &Path,
        enc_dir: &Path,
        with_projection: bool,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let tokenizer = ClipTokenizer::load(tok_dir)?;
        let cfg_file = enc_dir.join("config.json");
        let config: ClipTextConfig = read_config(&cfg_file)?;
        if tokenizer.max_length > config.max_position_embeddings {
            return Err(EngineError::field(
                tok_dir.join("tokenizer_config.json"),
                "model_max_length",
                format!(
                    "{} exceeds the encoder's max_position_embeddings {}",
                    tokenizer.max_length, config.max_position_embeddings
                ),
            ));
        }
        let wfiles = weights_files(enc_dir)?;
        let vb = var_builder(&wfiles, dtype, device)?;
        let model =
            ClipTextModel::new(&config, with_projection, vb).map_err(in_file(&wfiles.name))?;
        Ok(Self {
            tokenizer,
            model,
            config,
        })
    }

    pub fn ids(
        &self,
        prompts: &[String],
        max_length: Option<usize>,
        device: &Device,
    ) -> Result<Tensor> {
        let rows: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| self.tokenizer.encode_padded(p, max_length))
            .collect::<Result<_>>()?;
        let n = rows.first().map(Vec::len).unwrap_or(0);
        let flat: Vec<u32> = rows.into_iter().flatten().collect();
        Ok(Tensor::from_vec(flat, (prompts.len(), n), device)?)
    }
}

#[derive(Debug, Clone)]
pub struct PromptEmbeds {
    /// (batch, tokens, hidden_1 + hidden_2)
    pub embeds: Tensor,
    /// (batch, projection_dim)
    pub pooled: Tensor,
}

pub struct TextEncoders {
    pub first: TextEncoder,
    pub second: TextEncoder,
}

impl TextEncoders {
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        Ok(Self {
            first: TextEncoder::load(
                &dir.join("tokenizer"),
                &dir.join("text_encoder"),
                false,
                dtype,
                device,
            )?,
            second: TextEncoder::load(
                &dir.join("tokenizer_2"),
                &dir.join("text_encoder_2"),
                true,
                dtype,
                device,
            )?,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.first.config.hidden_size + self.second.config.hidden_size
    }

    pub fn pooled_size(&self) -> usize {
        self.second
            .config
            .projection_dim
            .unwrap_or(self.second.config.hidden_size)
    }

    /// `max_length` overrides each tokenizer's own (diffusers pads the negative prompt to
    /// the positive embedding's length).
    pub fn encode(
        &self,
        prompts: &[String],
        max_length: Option<usize>,
        device: &Device,
    ) -> Result<PromptEmbeds> {
        let out1 = self
            .first
            .model
            .forward(&self.first.ids(prompts, max_length, device)?)?;
        let out2 = self
            .second
            .model
            .forward(&self.second.ids(prompts, max_length, device)?)?;
        let pooled = out2
            .text_embeds
            .ok_or_else(|| EngineError::Request("text_encoder_2 has no text_projection".into()))?;
        let (a, b) = (&out1.penultimate, &out2.penultimate);
        if a.dim(1)? != b.dim(1)? {
            return Err(EngineError::field(
                "tokenizer_2/tokenizer_config.json",
                "model_max_length",
                "differs from tokenizer/tokenizer_config.json",
            ));
        }
        let embeds = Tensor::cat(&[a, &b.to_dtype(a.dtype())?], 2)?;
        Ok(PromptEmbeds { embeds, pooled })
    }
}
