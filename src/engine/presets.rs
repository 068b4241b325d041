//! Built-in model shapes and `init_model_folder`, which writes a complete random-weight
//! diffusers SDXL pipeline folder for one of them.
//!
//! The full-size UNet configs are those of stabilityai/stable-diffusion-xl-base-1.0,
//! segmind/SSD-1B and segmind/Segmind-Vega; their parameter counts (checked in
//! tests/engine_presets.rs) equal the published ones. The tiny presets share their block
//! structure with tiny channels, and are the configs the diffusers fixtures were made with.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;

use super::clip::ClipTextModel;
use super::config::{ClipTextConfig, UNetConfig, VaeConfig};
use super::error::{EngineError, Result};
use super::nn::Kernels;
use super::params::{count, random_weights, record_shapes};
use super::unet::layout::UNetLayout;
use super::unet::UNet2DConditionModel;
use super::vae::candle_config;

pub const PRESETS: [&str; 6] = [
    "sdxl",
    "ssd-1b",
    "vega",
    "tiny-sdxl",
    "tiny-ssd-1b",
    "tiny-vega",
];

/// The config files of a preset, as JSON text exactly as written into a model folder.
pub struct PresetFiles {
    pub unet: &'static str,
    pub vae: &'static str,
    pub text_encoder: &'static str,
    pub text_encoder_2: &'static str,
    pub scheduler: &'static str,
    pub tiny: bool,
}

pub fn preset_files(name: &str) -> Result<PresetFiles> {
    let unet = match name {
        "sdxl" => include_str!("presets/unet_sdxl.json"),
        "ssd-1b" => include_str!("presets/unet_ssd-1b.json"),
        "vega" => include_str!("presets/unet_vega.json"),
        "tiny-sdxl" => include_str!("presets/unet_tiny-sdxl.json"),
        "tiny-ssd-1b" => include_str!("presets/unet_tiny-ssd-1b.json"),
        "tiny-vega" => include_str!("presets/unet_tiny-vega.json"),
        other => {
            return Err(EngineError::UnknownPreset(
                other.to_string(),
                PRESETS.join(", "),
            ))
        }
    };
    let tiny = name.starts_with("tiny-");
    let scheduler = include_str!("presets/scheduler.json");
    Ok(if tiny {
        PresetFiles {
            unet,
            vae: include_str!("presets/vae_tiny.json"),
            text_encoder: include_str!("presets/text_encoder_tiny.json"),
            text_encoder_2: include_str!("presets/text_encoder_2_tiny.json"),
            scheduler,
            tiny,
        }
    } else {
        PresetFiles {
            unet,
            vae: include_str!("presets/vae_sdxl.json"),
            text_encoder: include_str!("presets/text_encoder_sdxl.json"),
            text_encoder_2: include_str!("presets/text_encoder_2_sdxl.json"),
            scheduler,
            tiny,
        }
    })
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| EngineError::Json {
        file: format!("<preset {what}>").into(),
        message: e.to_string(),
    })
}

/// Parsed configs of a model, from a preset or a model folder.
pub struct ModelConfigs {
    pub unet: UNetConfig,
    pub vae: VaeConfig,
    pub text_encoder: ClipTextConfig,
    pub text_encoder_2: ClipTextConfig,
}

impl ModelConfigs {
    pub fn preset(name: &str) -> Result<Self> {
        let f = preset_files(name)?;
        Ok(Self {
            unet: parse(f.unet, "unet/config.json")?,
            vae: parse(f.vae, "vae/config.json")?,
            text_encoder: parse(f.text_encoder, "text_encoder/config.json")?,
            text_encoder_2: parse(f.text_encoder_2, "text_encoder_2/config.json")?,
        })
    }

    pub fn folder(dir: &Path) -> Result<Self> {
        use super::config::read_json;
        Ok(Self {
            unet: read_json(&dir.join("unet/config.json"))?,
            vae: read_json(&dir.join("vae/config.json"))?,
            text_encoder: read_json(&dir.join("text_encoder/config.json"))?,
            text_encoder_2: read_json(&dir.join("text_encoder_2/config.json"))?,
        })
    }
}

/// One component's name, class and parameter count.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentInfo {
    pub name: &'static str,
    pub class: &'static str,
    pub parameters: u64,
}

type Builder<'a> = Box<dyn Fn(candle_nn::VarBuilder) -> candle_core::Result<()> + 'a>;

fn builders(c: &ModelConfigs) -> Result<Vec<(&'static str, &'static str, Builder<'_>)>> {
    let unet_file = Path::new("unet/config.json");
    let layout = UNetLayout::resolve(&c.unet, unet_file)?;
    let vae = candle_config(&c.vae, Path::new("vae/config.json"))?;
    Ok(vec![
        (
            "unet",
            "UNet2DConditionModel",
            Box::new(move |vb| {
                UNet2DConditionModel::from_parts(
                    c.unet.clone(),
                    layout.clone(),
                    Kernels::default(),
                    vb,
                )
                .map(|_| ())
            }),
        ),
        (
            "vae",
            "AutoencoderKL",
            Box::new(move |vb| AutoEncoderKL::new(vb, 3, 3, vae.clone()).map(|_| ())),
        ),
        (
            "text_encoder",
            "CLIPTextModel",
            Box::new(|vb| ClipTextModel::new(&c.text_encoder, false, vb).map(|_| ())),
        ),
        (
            "text_encoder_2",
            "CLIPTextModelWithProjection",
            Box::new(|vb| ClipTextModel::new(&c.text_encoder_2, true, vb).map(|_| ())),
        ),
    ])
}

/// Parameter counts from the configs alone (no weights are allocated).
pub fn component_info(c: &ModelConfigs) -> Result<Vec<ComponentInfo>> {
    builders(c)?
        .into_iter()
        .map(|(name, class, build)| {
            let shapes = record_shapes(build)?;
            Ok(ComponentInfo {
                name,
                class,
                parameters: count(&shapes),
            })
        })
        .collect()
}

/// Creates the folder `path` goes in.
fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| EngineError::Io {
            file: parent.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    create_parent(path)?;
    std::fs::write(path, text).map_err(|source| EngineError::Io {
        file: path.to_path_buf(),
        source,
    })
}

/// CLIP-style tiny vocabulary: the 256 byte symbols, the same with `</w>`, merges that
/// spell a few common words, then the two special tokens (same scheme as the fixtures).
pub fn tiny_vocab() -> (Vec<String>, Vec<String>) {
    const WORDS: [&str; 20] = [
        "a",
        "photo",
        "of",
        "cat",
        "dog",
        "red",
        "blue",
        "astronaut",
        "riding",
        "horse",
        "on",
        "the",
        "moon",
        "blurry",
        "painting",
        "city",
        "at",
        "night",
        "in",
        "style",
    ];
    let table = super::tokenizer::byte_chars();
    let mut printable: Vec<usize> = (0..256).filter(|&b| (table[b] as u32) < 256).collect();
    printable.extend((0..256).filter(|&b| (table[b] as u32) >= 256));
    let mut vocab: Vec<String> = printable.iter().map(|&b| table[b].to_string()).collect();
    let with_end: Vec<String> = vocab.iter().map(|s| format!("{s}</w>")).collect();
    vocab.extend(with_end);
    let mut merges: Vec<String> = Vec::new();
    for w in WORDS {
        let chars: Vec<char> = w.chars().collect();
        let mut parts: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        if let Some(last) = parts.last_mut() {
            last.push_str("</w>");
        }
        while parts.len() > 1 {
            let merge = format!("{} {}", parts[0], parts[1]);
            let merged = format!("{}{}", parts[0], parts[1]);
            if !merges.contains(&merge) {
                merges.push(merge);
                if !vocab.contains(&merged) {
                    vocab.push(merged.clone());
                }
            }
            parts.splice(0..2, [merged]);
        }
    }
    vocab.push("<|startoftext|>".into());
    vocab.push("<|endoftext|>".into());
    (vocab, merges)
}

fn write_tokenizer(dir: &Path, pad: &str) -> Result<()> {
    let (vocab, merges) = tiny_vocab();
    let map: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i.into()))
        .collect();
    write(
        &dir.join("vocab.json"),
        &serde_json::Value::Object(map).to_string(),
    )?;
    write(
        &dir.join("merges.txt"),
        &format!("#version: 0.2\n{}\n", merges.join("\n")),
    )?;
    let specials = serde_json::json!({
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad,
    });
    write(&dir.join("special_tokens_map.json"), &specials.to_string())?;
    let mut cfg = specials;
    cfg["model_max_length"] = 77.into();
    cfg["tokenizer_class"] = "CLIPTokenizer".into();
    write(&dir.join("tokenizer_config.json"), &cfg.to_string())
}

fn save(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    create_parent(path)?;
    candle_core::safetensors::save(tensors, path).map_err(|e| EngineError::Weights {
        file: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Writes a complete random-weight SDXL pipeline folder (model_index.json, unet/, vae/,
/// text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/) for `preset`.
/// Tiny presets are stored in f32, full-size ones in f16 (as published checkpoints).
pub fn init_model_folder(preset: &str, out: &Path, seed: u64) -> Result<()> {
    let files = preset_files(preset)?;
    let configs = ModelConfigs::preset(preset)?;
    let mut text_encoder_cfg: serde_json::Value =
        parse(files.text_encoder, "text_encoder/config.json")?;
    let mut text_encoder_2_cfg: serde_json::Value =
        parse(files.text_encoder_2, "text_encoder_2/config.json")?;
    if files.tiny {
        // Tiny vocabularies end with <|endoftext|>; first-match pooling finds it.
        let eos = tiny_vocab().0.len() - 1;
        text_encoder_cfg["eos_token_id"] = eos.into();
        text_encoder_2_cfg["eos_token_id"] = eos.into();
    }
    let dtype = if files.tiny { DType::F32 } else { DType::F16 };
    // transformers loads text encoders in the dtype their config names.
    let dtype_name = if files.tiny { "float32" } else { "float16" };
    for cfg in [&mut text_encoder_cfg, &mut text_encoder_2_cfg] {
        if let Some(o) = cfg.as_object_mut() {
            o.remove("dtype");
            o.insert("torch_dtype".into(), dtype_name.into());
        }
    }
    let index = serde_json::json!({
        "_class_name": "StableDiffusionXLPipeline",
        "_diffusers_version": "0.42.1",
        "force_zeros_for_empty_prompt": true,
        "feature_extractor": [null, null],
        "image_encoder": [null, null],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    });
    let pretty =
        |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    write(&out.join("model_index.json"), &pretty(&index))?;
    write(&out.join("unet/config.json"), files.unet)?;
    write(&out.join("vae/config.json"), files.vae)?;
    write(
        &out.join("text_encoder/config.json"),
        &pretty(&text_encoder_cfg),
    )?;
    write(
        &out.join("text_encoder_2/config.json"),
        &pretty(&text_encoder_2_cfg),
    )?;
    write(
        &out.join("scheduler/scheduler_config.json"),
        files.scheduler,
    )?;
    write_tokenizer(&out.join("tokenizer"), "<|endoftext|>")?;
    write_tokenizer(&out.join("tokenizer_2"), "!")?;
    let targets = [
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "text_encoder_2/model.safetensors",
    ];
    for (i, ((_, _, build), target)) in builders(&configs)?.into_iter().zip(targets).enumerate() {
        let weights = random_weights(seed.wrapping_mul(31).wrapping_add(i as u64), dtype, build)?;
        save(&out.join(target), &weights)?;
    }
    Ok(())
}
