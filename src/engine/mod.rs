//! The diffusion engine (candle): diffusers model folders, tokenizers, text encoders,
//! a config-driven SDXL-family UNet, VAE, schedulers and the text-to-image pipeline.
//! Knows nothing of HTTP or SQL.

pub mod clip;
pub mod config;
pub mod conv;
pub mod device;
pub mod error;
pub mod kernels;
pub mod nn;
pub mod noise;
pub mod params;
pub mod pipeline;
pub mod presets;
pub mod scheduler;
pub mod text;
pub mod tokenizer;
pub mod unet;
pub mod vae;
pub mod vae_decoder;
pub mod vecmath;
pub mod weights;

pub use error::EngineError;
pub use pipeline::{GenerateRequest, Pipeline};
pub use scheduler::SchedulerKind;
