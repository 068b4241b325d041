//! diffusers / transformers `config.json` files, parsed with serde. Defaults follow the
//! Python classes so that a config written by `save_pretrained` with omitted keys means
//! the same thing here as there.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::{EngineError, Result};

/// Reads and parses a JSON file; errors name the file and (via serde) the line and column.
///
/// Python's `json` writes `NaN`, `Infinity` and `-Infinity` for non-finite floats (diffusers'
/// DPM-Solver++ config holds `"lambda_min_clipped": -Infinity`). Strict JSON has no such
/// tokens, so they are turned into the strings `"NaN"`, `"Infinity"`, `"-Infinity"` before
/// parsing; float fields that may hold them read those strings back with [`lenient_f64`].
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_text(path)?;
    serde_json::from_str(&python_json(&text)).map_err(|e| EngineError::Json {
        file: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// [`read_json`] for a config struct, logging (at debug level) the keys it does not know.
/// Unknown keys are ignored, as diffusers ignores them, but a debug log makes a key that
/// was expected to matter visible.
pub fn read_config<T: DeserializeOwned + Serialize>(path: &Path) -> Result<T> {
    let value: T = read_json(path)?;
    let raw: serde_json::Value = read_json(path)?;
    if let (Some(raw), Ok(serde_json::Value::Object(known))) =
        (raw.as_object(), serde_json::to_value(&value))
    {
        let unknown: Vec<&str> = raw
            .keys()
            .filter(|k| !k.starts_with('_') && !known.contains_key(k.as_str()))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            tracing::debug!(file = %path.display(), keys = ?unknown, "config keys ignored");
        }
    }
    Ok(value)
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            EngineError::Missing {
                file: path.to_path_buf(),
            }
        } else {
            EngineError::Io {
                file: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Python's JSON dialect to strict JSON: bare `NaN`, `Infinity` and `-Infinity` outside
/// strings become the strings of the same spelling. Everything else is left as it is.
pub fn python_json(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("NaN") && !text.contains("Infinity") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(token) = ["NaN", "Infinity", "-Infinity"]
            .into_iter()
            .find(|t| rest.starts_with(t))
        {
            out.push('"');
            out.push_str(token);
            out.push('"');
            rest = &rest[token.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    std::borrow::Cow::Owned(out)
}

/// A float written as a number, or (after [`python_json`]) as `"NaN"`, `"Infinity"` or
/// `"-Infinity"`; `null` is `None`.
pub fn lenient_f64<'de, D>(d: D) -> std::result::Result<Option<f64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum F {
        Num(f64),
        Text(String),
    }
    match Option::<F>::deserialize(d)? {
        None => Ok(None),
        Some(F::Num(x)) => Ok(Some(x)),
        Some(F::Text(s)) => match s.as_str() {
            "NaN" => Ok(Some(f64::NAN)),
            "Infinity" => Ok(Some(f64::INFINITY)),
            "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            other => Err(serde::de::Error::custom(format!(
                "expected a number, got the string `{other}`"
            ))),
        },
    }
}

/// diffusers writes `null` for some false-by-default flags (e.g. SDXL's `upcast_attention`).
fn null_is_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A value diffusers accepts either once for all blocks or once per block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    All(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    pub fn resolve(&self, n: usize, file: &Path, field: &str) -> Result<Vec<usize>> {
        match self {
            PerBlock::All(v) => Ok(vec![*v; n]),
            PerBlock::Each(v) if v.len() == n => Ok(v.clone()),
            PerBlock::Each(v) => Err(EngineError::field(
                file,
                field,
                format!("has {} entries but there are {n} blocks", v.len()),
            )),
        }
    }
}

/// Transformer depth of one block: one depth for every layer, or one per layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Depth {
    All(usize),
    Each(Vec<usize>),
}

impl Depth {
    pub fn resolve(&self, layers: usize, file: &Path, field: &str) -> Result<Vec<usize>> {
        match self {
            Depth::All(v) => Ok(vec![*v; layers]),
            Depth::Each(v) if v.len() == layers => Ok(v.clone()),
            Depth::Each(v) => Err(EngineError::field(
                file,
                field,
                format!(
                    "has {} per-layer depths but the block has {layers} layers",
                    v.len()
                ),
            )),
        }
    }
}

/// `transformer_layers_per_block`: an int, or one entry (int or per-layer list) per block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DepthSpec {
    All(usize),
    Each(Vec<Depth>),
}

fn d_mid() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}
fn d_4() -> usize {
    4
}
fn d_true() -> bool {
    true
}
fn d_one_f() -> f64 {
    1.0
}
fn d_one() -> usize {
    1
}
fn d_3() -> usize {
    3
}
fn d_silu() -> String {
    "silu".into()
}
fn d_groups() -> Option<usize> {
    Some(32)
}
fn d_eps5() -> f64 {
    1e-5
}
fn d_cross() -> PerBlock {
    PerBlock::All(1280)
}
fn d_lpb() -> PerBlock {
    PerBlock::All(2)
}
fn d_head() -> PerBlock {
    PerBlock::All(8)
}
fn d_depth() -> DepthSpec {
    DepthSpec::All(1)
}
fn d_default() -> String {
    "default".into()
}
fn d_positional() -> String {
    "positional".into()
}
fn d_sample() -> usize {
    64
}

/// `unet/config.json` of a `UNet2DConditionModel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    #[serde(rename = "_class_name", default)]
    pub class_name: Option<String>,
    #[serde(default = "d_sample")]
    pub sample_size: usize,
    #[serde(default = "d_4")]
    pub in_channels: usize,
    #[serde(default = "d_4")]
    pub out_channels: usize,
    #[serde(default, deserialize_with = "null_is_default")]
    pub center_input_sample: bool,
    #[serde(default = "d_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    pub down_block_types: Vec<String>,
    #[serde(default = "d_mid")]
    pub mid_block_type: Option<String>,
    pub up_block_types: Vec<String>,
    #[serde(default, deserialize_with = "null_is_default")]
    pub only_cross_attention: bool,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "d_lpb")]
    pub layers_per_block: PerBlock,
    #[serde(default = "d_one")]
    pub downsample_padding: usize,
    #[serde(default = "d_one_f")]
    pub mid_block_scale_factor: f64,
    #[serde(default = "d_silu")]
    pub act_fn: String,
    #[serde(default = "d_groups")]
    pub norm_num_groups: Option<usize>,
    #[serde(default = "d_eps5")]
    pub norm_eps: f64,
    #[serde(default = "d_cross")]
    pub cross_attention_dim: PerBlock,
    #[serde(default = "d_depth")]
    pub transformer_layers_per_block: DepthSpec,
    #[serde(default)]
    pub reverse_transformer_layers_per_block: Option<Vec<Depth>>,
    #[serde(default = "d_head")]
    pub attention_head_dim: PerBlock,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    #[serde(default, deserialize_with = "null_is_default")]
    pub dual_cross_attention: bool,
    #[serde(default, deserialize_with = "null_is_default")]
    pub use_linear_projection: bool,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    #[serde(default)]
    pub encoder_hid_dim: Option<usize>,
    #[serde(default)]
    pub num_class_embeds: Option<usize>,
    #[serde(default, deserialize_with = "null_is_default")]
    pub upcast_attention: bool,
    #[serde(default = "d_default")]
    pub resnet_time_scale_shift: String,
    #[serde(default = "d_one_f")]
    pub resnet_out_scale_factor: f64,
    #[serde(default = "d_positional")]
    pub time_embedding_type: String,
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    #[serde(default = "d_3")]
    pub conv_in_kernel: usize,
    #[serde(default = "d_3")]
    pub conv_out_kernel: usize,
    #[serde(default = "d_default")]
    pub attention_type: String,
}

fn d_vae_blocks() -> Vec<usize> {
    vec![64]
}
fn d_vae_scale() -> f64 {
    0.18215
}
fn d_in3() -> usize {
    3
}

/// `vae/config.json` of an `AutoencoderKL`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    #[serde(rename = "_class_name", default)]
    pub class_name: Option<String>,
    #[serde(default = "d_in3")]
    pub in_channels: usize,
    #[serde(default = "d_in3")]
    pub out_channels: usize,
    #[serde(default)]
    pub down_block_types: Vec<String>,
    #[serde(default)]
    pub up_block_types: Vec<String>,
    #[serde(default = "d_vae_blocks")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "d_one")]
    pub layers_per_block: usize,
    #[serde(default = "d_silu")]
    pub act_fn: String,
    #[serde(default = "d_4")]
    pub latent_channels: usize,
    #[serde(default = "d_groups")]
    pub norm_num_groups: Option<usize>,
    #[serde(default = "d_sample")]
    pub sample_size: usize,
    #[serde(default = "d_vae_scale")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "d_true")]
    pub force_upcast: bool,
    #[serde(default = "d_true")]
    pub use_quant_conv: bool,
    #[serde(default = "d_true")]
    pub use_post_quant_conv: bool,
    #[serde(default = "d_true")]
    pub mid_block_add_attention: bool,
    #[serde(default)]
    pub latents_mean: Option<Vec<f64>>,
    #[serde(default)]
    pub latents_std: Option<Vec<f64>>,
}

fn d_quick_gelu() -> String {
    "quick_gelu".into()
}
fn d_pos() -> usize {
    77
}
fn d_eos() -> u32 {
    2
}

/// `text_encoder*/config.json` of a transformers `CLIPTextModel[WithProjection]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipTextConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default = "d_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_quick_gelu")]
    pub hidden_act: String,
    #[serde(default = "d_eps5")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub projection_dim: Option<usize>,
    #[serde(default = "d_eos")]
    pub eos_token_id: u32,
    #[serde(default)]
    pub model_type: Option<String>,
}

/// `scheduler/scheduler_config.json`. Options left `None` take the chosen scheduler
/// class's own default, as diffusers' `from_config` does when switching schedulers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name", default)]
    pub class_name: Option<String>,
    #[serde(default)]
    pub num_train_timesteps: Option<usize>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub beta_start: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub beta_end: Option<f64>,
    #[serde(default)]
    pub beta_schedule: Option<String>,
    #[serde(default)]
    pub prediction_type: Option<String>,
    #[serde(default)]
    pub steps_offset: Option<usize>,
    #[serde(default)]
    pub timestep_spacing: Option<String>,
    #[serde(default)]
    pub set_alpha_to_one: Option<bool>,
    #[serde(default)]
    pub clip_sample: Option<bool>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub clip_sample_range: Option<f64>,
    #[serde(default)]
    pub interpolation_type: Option<String>,
    #[serde(default)]
    pub use_karras_sigmas: Option<bool>,
    #[serde(default)]
    pub trained_betas: Option<Vec<f64>>,
    #[serde(default)]
    pub rescale_betas_zero_snr: Option<bool>,
    #[serde(default)]
    pub thresholding: Option<bool>,
    #[serde(default)]
    pub final_sigmas_type: Option<String>,
    #[serde(default)]
    pub timestep_type: Option<String>,
    #[serde(default)]
    pub use_exponential_sigmas: Option<bool>,
    #[serde(default)]
    pub use_beta_sigmas: Option<bool>,
    #[serde(default)]
    pub use_lu_lambdas: Option<bool>,
    #[serde(default)]
    pub use_flow_sigmas: Option<bool>,
    #[serde(default)]
    pub algorithm_type: Option<String>,
    #[serde(default)]
    pub solver_order: Option<usize>,
    #[serde(default)]
    pub solver_type: Option<String>,
    /// DPM-Solver: lambda(t) floor that trims the noisiest timesteps; diffusers writes
    /// `-Infinity` (no trimming) by default.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub lambda_min_clipped: Option<f64>,
    #[serde(default)]
    pub lower_order_final: Option<bool>,
    #[serde(default)]
    pub euler_at_final: Option<bool>,
    /// Karras sigma range overrides (Euler); `None` takes the schedule's own range.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub sigma_min: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub sigma_max: Option<f64>,
}

/// The parts of `model_index.json` the engine reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelIndex {
    #[serde(rename = "_class_name", default)]
    pub class_name: Option<String>,
    #[serde(default)]
    pub force_zeros_for_empty_prompt: Option<bool>,
    #[serde(flatten)]
    pub components: serde_json::Map<String, serde_json::Value>,
}

impl ModelIndex {
    /// Whether `model_index.json` lists a component (a `[library, class]` pair, not null).
    pub fn has_component(&self, name: &str) -> bool {
        matches!(self.components.get(name), Some(serde_json::Value::Array(v)) if v.len() == 2 && !v[0].is_null())
    }
}
