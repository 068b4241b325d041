//! The diffusion engine (candle): diffusers model folders, tokenizers, text encoders,
//! a config-driven SDXL-family UNet, VAE, schedulers and the text-to-image pipeline.
//! Knows nothing of HTTP or SQL.
