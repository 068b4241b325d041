//! The engine against diffusers and transformers fixtures, its CLI and the GPU check.
//! One test binary per area: each links the whole crate once.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod components;
mod formats;
mod gpu_check;
mod pipeline;
mod presets;
mod unet;
