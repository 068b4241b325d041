//! The SDXL text-to-image pipeline over a diffusers model folder.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::config::{read_config, read_json, ModelIndex, SchedulerConfig};
use super::error::{EngineError, Result};
use super::nn::Kernels;
use super::noise::randn;
use super::scheduler::SchedulerKind;
use super::text::{PromptEmbeds, TextEncoders};
use super::unet::{AddedCond, UNet2DConditionModel};
use super::vae::Vae;

#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompts: Vec<String>,
    pub negative_prompt: Option<String>,
    pub steps: usize,
    pub guidance: f64,
    pub seed: u64,
    pub width: usize,
    pub height: usize,
    /// The folder's own scheduler when None.
    pub scheduler: Option<SchedulerKind>,
    /// Initial latents (batch, 4, height/8, width/8), scaled by the scheduler's
    /// `init_noise_sigma` exactly like diffusers' `latents=` argument.
    pub latents: Option<Tensor>,
}

impl Default for GenerateRequest {
    fn default() -> Self {
        Self {
            prompts: vec![String::new()],
            negative_prompt: None,
            steps: 30,
            guidance: 5.0,
            seed: 0,
            width: 1024,
            height: 1024,
            scheduler: None,
            latents: None,
        }
    }
}

pub struct Pipeline {
    pub dir: PathBuf,
    pub device: Device,
    pub dtype: DType,
    pub text: TextEncoders,
    pub unet: UNet2DConditionModel,
    pub vae: Vae,
    pub scheduler_config: SchedulerConfig,
    pub default_scheduler: SchedulerKind,
    pub force_zeros_for_empty_prompt: bool,
}

impl Pipeline {
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Pipeline> {
        super::device::check(device, dtype)?;
        let index_file = dir.join("model_index.json");
        let index: ModelIndex = read_json(&index_file)?;
        for c in [
            "unet",
            "vae",
            "text_encoder",
            "text_encoder_2",
            "tokenizer",
            "tokenizer_2",
            "scheduler",
        ] {
            if !index.has_component(c) {
                return Err(EngineError::field(
                    &index_file,
                    c,
                    "component missing (an SDXL pipeline needs it)",
                ));
            }
        }
        let sched_file = dir.join("scheduler").join("scheduler_config.json");
        let scheduler_config: SchedulerConfig = read_config(&sched_file)?;
        let class = scheduler_config.class_name.clone().unwrap_or_default();
        let default_scheduler = SchedulerKind::from_class(&class).unwrap_or(SchedulerKind::Euler);
        let text = TextEncoders::load(dir, dtype, device)?;
        let unet_file = dir.join("unet").join("config.json");
        let unet_config: super::config::UNetConfig = read_json(&unet_file)?;
        check_unet(&unet_config, &unet_file, &text)?;
        let unet =
            UNet2DConditionModel::load(&dir.join("unet"), dtype, device, Kernels { fused: true })?;
        let vae = Vae::load(&dir.join("vae"), dtype, device)?;
        if vae.config.latent_channels != unet.config.in_channels {
            return Err(EngineError::field(
                dir.join("vae").join("config.json"),
                "latent_channels",
                format!(
                    "{} but the UNet takes {} channels",
                    vae.config.latent_channels, unet.config.in_channels
                ),
            ));
        }
        Ok(Pipeline {
            dir: dir.to_path_buf(),
            device: device.clone(),
            dtype,
            text,
            unet,
            vae,
            scheduler_config,
            default_scheduler,
            force_zeros_for_empty_prompt: index.force_zeros_for_empty_prompt.unwrap_or(true),
        })
    }

    /// Latent downscale factor of the VAE (8 for SDXL).
    pub fn vae_scale(&self) -> usize {
        1 << self.vae.config.block_out_channels.len().saturating_sub(1)
    }

    fn validate(&self, req: &GenerateRequest) -> Result<()> {
        let f = self.vae_scale();
        if req.prompts.is_empty() {
            return Err(EngineError::Request("at least one prompt is needed".into()));
        }
        if req.width == 0
            || req.height == 0
            || !req.width.is_multiple_of(f)
            || !req.height.is_multiple_of(f)
        {
            return Err(EngineError::Request(format!(
                "width and height must be positive multiples of {f} (got {}x{})",
                req.width, req.height
            )));
        }
        if !req.guidance.is_finite() {
            return Err(EngineError::Request("guidance must be finite".into()));
        }
        Ok(())
    }

    /// Prompt embeddings for the UNet, negatives first when guidance is on.
    fn conditioning(&self, req: &GenerateRequest, cfg: bool) -> Result<PromptEmbeds> {
        let pos = self.text.encode(&req.prompts, None, &self.device)?;
        if !cfg {
            return Ok(pos);
        }
        let neg = if req.negative_prompt.is_none() && self.force_zeros_for_empty_prompt {
            PromptEmbeds {
                embeds: pos.embeds.zeros_like()?,
                pooled: pos.pooled.zeros_like()?,
            }
        } else {
            let n = req.negative_prompt.clone().unwrap_or_default();
            let negs = vec![n; req.prompts.len()];
            self.text
                .encode(&negs, Some(pos.embeds.dim(1)?), &self.device)?
        };
        Ok(PromptEmbeds {
            embeds: Tensor::cat(&[&neg.embeds, &pos.embeds], 0)?,
            pooled: Tensor::cat(&[&neg.pooled, &pos.pooled], 0)?,
        })
    }

    pub fn generate(
        &mut self,
        req: &GenerateRequest,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<image::RgbImage>> {
        self.validate(req)?;
        let kind = req.scheduler.unwrap_or(self.default_scheduler);
        let mut sched = kind.build(&self.scheduler_config, req.steps, req.seed)?;
        let cfg = req.guidance > 1.0;
        let batch = req.prompts.len();
        let f = self.vae_scale();
        let shape = (
            batch,
            self.unet.config.in_channels,
            req.height / f,
            req.width / f,
        );
        let latents = match &req.latents {
            Some(l) => {
                if l.dims() != [shape.0, shape.1, shape.2, shape.3] {
                    return Err(EngineError::Request(format!(
                        "latents have shape {:?}, expected {:?}",
                        l.dims(),
                        shape
                    )));
                }
                l.to_device(&self.device)?.to_dtype(DType::F32)?
            }
            None => {
                let mut rng = StdRng::seed_from_u64(req.seed);
                randn(&mut rng, &shape.into(), &self.device)?
            }
        };
        let mut latents = (latents * sched.init_noise_sigma())?;

        let cond = self.conditioning(req, cfg)?;
        let rows = if cfg { 2 * batch } else { batch };
        let (h, w) = (req.height as f32, req.width as f32);
        let ids: Vec<f32> = (0..rows).flat_map(|_| [h, w, 0.0, 0.0, h, w]).collect();
        let added = AddedCond {
            text_embeds: cond.pooled.to_dtype(self.dtype)?,
            time_ids: Tensor::from_vec(ids, (rows, 6), &self.device)?,
        };
        let context = cond.embeds.to_dtype(self.dtype)?;
        let timesteps = sched.timesteps().to_vec();
        let total = timesteps.len();
        for (i, &t) in timesteps.iter().enumerate() {
            let input = if cfg {
                Tensor::cat(&[&latents, &latents], 0)?
            } else {
                latents.clone()
            };
            let input = sched.scale_model_input(&input, i)?.to_dtype(self.dtype)?;
            let t_tensor = Tensor::new(&[t as f32], &self.device)?;
            let noise = self
                .unet
                .forward(&input, &t_tensor, &context, Some(&added))?
                .to_dtype(DType::F32)?;
            let noise = if cfg {
                let uncond = noise.narrow(0, 0, batch)?;
                let text = noise.narrow(0, batch, batch)?;
                (&uncond + ((text - &uncond)? * req.guidance)?)?
            } else {
                noise
            };
            latents = sched.step(&noise, i, &latents)?;
            progress(i + 1, total);
        }
        self.vae.decode_images(&latents)
    }
}

/// The UNet must consume exactly what the text encoders produce; checked before any
/// weights are read so that the error names the config field.
fn check_unet(c: &super::config::UNetConfig, file: &Path, text: &TextEncoders) -> Result<()> {
    let layout = super::unet::layout::UNetLayout::resolve(c, file)?;
    let cross = match &c.cross_attention_dim {
        super::config::PerBlock::All(v) => vec![*v],
        super::config::PerBlock::Each(v) => v.clone(),
    };
    if cross.iter().any(|&d| d != text.hidden_size()) {
        return Err(EngineError::field(
            file,
            "cross_attention_dim",
            format!(
                "{cross:?} does not match the text encoders' combined hidden size {}",
                text.hidden_size()
            ),
        ));
    }
    match &layout.add {
        Some(a) if a.in_dim != a.time_dim * 6 + text.pooled_size() => Err(EngineError::field(
            file,
            "projection_class_embeddings_input_dim",
            format!(
                "is {} but 6 time ids x {} + pooled {} = {}",
                a.in_dim,
                a.time_dim,
                text.pooled_size(),
                a.time_dim * 6 + text.pooled_size()
            ),
        )),
        Some(_) => Ok(()),
        None => Err(EngineError::field(
            file,
            "addition_embed_type",
            "an SDXL UNet needs \"text_time\"",
        )),
    }
}
