//! The diffusion engine (candle): diffusers model folders, tokenizers, text encoders,
//! a config-driven SDXL-family UNet, VAE, schedulers and the text-to-image pipeline.
//! Knows nothing of HTTP or SQL.

pub mod config;
pub mod error;
pub mod nn;
pub mod unet;
pub mod weights;

pub use error::EngineError;
