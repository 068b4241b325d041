//! `AutoencoderKL` decoding (proved against diffusers in tests/engine_components.rs),
//! with the scaling/upcast rules of the SDXL pipeline and conversion to 8-bit images.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKLConfig;

use super::config::{read_config, VaeConfig};
use super::error::{EngineError, Result};
use super::vae_decoder::VaeDecoder;
use super::weights::{in_file, var_builder, weights_files};

pub struct Vae {
    model: VaeDecoder,
    pub config: VaeConfig,
    /// The dtype decoding runs in (f32 when `force_upcast` applies).
    pub dtype: DType,
}

/// The candle config for a diffusers VAE config, rejecting what candle cannot build.
pub fn candle_config(c: &VaeConfig, file: &Path) -> Result<AutoEncoderKLConfig> {
    let bad = |field: &str, msg: &str| Err(EngineError::field(file, field, msg));
    if c.block_out_channels.is_empty() {
        return bad("block_out_channels", "must not be empty");
    }
    if c.up_block_types.iter().any(|t| t != "UpDecoderBlock2D") {
        return bad("up_block_types", "only UpDecoderBlock2D is supported");
    }
    if c.act_fn != "silu" {
        return bad("act_fn", "only silu is supported");
    }
    if c.in_channels != 3 || c.out_channels != 3 {
        return bad("out_channels", "only 3-channel images are supported");
    }
    let groups = c
        .norm_num_groups
        .ok_or_else(|| EngineError::field(file, "norm_num_groups", "must be set"))?;
    Ok(AutoEncoderKLConfig {
        block_out_channels: c.block_out_channels.clone(),
        layers_per_block: c.layers_per_block,
        latent_channels: c.latent_channels,
        norm_num_groups: groups,
        use_quant_conv: c.use_quant_conv,
        use_post_quant_conv: c.use_post_quant_conv,
    })
}

impl Vae {
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let cfg_file = dir.join("config.json");
        let config: VaeConfig = read_config(&cfg_file)?;
        let cc = candle_config(&config, &cfg_file)?;
        // diffusers decodes in f32 when the VAE is f16 and `force_upcast` is set.
        let dtype = if dtype == DType::F16 && config.force_upcast {
            DType::F32
        } else {
            dtype
        };
        let wfiles = weights_files(dir)?;
        let vb = var_builder(&wfiles, dtype, device)?;
        let model =
            VaeDecoder::new(&config, cc.norm_num_groups, vb).map_err(in_file(&wfiles.name))?;
        Ok(Self {
            model,
            config,
            dtype,
        })
    }

    /// Raw decoder output in [-1, 1] from *unscaled* latents.
    pub fn decode_raw(&self, latents: &Tensor) -> Result<Tensor> {
        Ok(self.model.forward(&latents.to_dtype(self.dtype)?)?)
    }

    /// Decodes denoised latents (scaled as the UNet sees them) into images.
    pub fn decode_images(&self, latents: &Tensor) -> Result<Vec<image::RgbImage>> {
        let mut z = (latents.to_dtype(DType::F32)? / self.config.scaling_factor)?;
        if let Some(shift) = self.config.shift_factor {
            z = (z + shift)?;
        }
        let x = self.decode_raw(&z)?.to_dtype(DType::F32)?;
        to_images(&x)
    }
}

/// (B, 3, H, W) in [-1, 1] → 8-bit images, rounding like diffusers' `numpy_to_pil`.
pub fn to_images(x: &Tensor) -> Result<Vec<image::RgbImage>> {
    let (b, c, h, w) = x.dims4()?;
    if c != 3 {
        return Err(EngineError::Image(format!("expected 3 channels, got {c}")));
    }
    let x = ((x / 2.0)? + 0.5)?.clamp(0f32, 1f32)?;
    let x = (x * 255.0)?.permute((0, 2, 3, 1))?.contiguous()?;
    let data = x.flatten_all()?.to_vec1::<f32>()?;
    let per = h * w * 3;
    (0..b)
        .map(|i| {
            let bytes: Vec<u8> = data[i * per..(i + 1) * per]
                .iter()
                .map(|v| v.round_ties_even() as u8)
                .collect();
            image::RgbImage::from_raw(w as u32, h as u32, bytes)
                .ok_or_else(|| EngineError::Image("buffer size mismatch".into()))
        })
        .collect()
}
