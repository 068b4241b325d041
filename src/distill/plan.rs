//! Distillation plans: for a teacher UNet config, the transformer depth the student keeps
//! at every attention of every down and up block, what becomes of the mid block, and
//! optionally fewer resnets per block. A plan is checked against the teacher (naming the
//! block and layer that does not fit) and turns into the student's diffusers config plus
//! the map from every student layer to the teacher layer it is initialised from and
//! matched against.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{DistillError, Result};
use super::mapping::LayerMap;
pub use super::mapping::MidPlan;
use crate::engine::config::{Depth, DepthSpec, PerBlock, UNetConfig};
use crate::engine::unet::layout::{MidSpec, UNetLayout};

/// Which teacher transformer blocks a shallower attention keeps.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The first k blocks (the SSD-1B choice: later blocks refine, earlier ones carry
    /// the residual stream the rest of the network was trained on).
    #[default]
    First,
    /// k blocks evenly spaced over the teacher's, first and last included.
    Even,
}

/// A plan in its JSON form, e.g. SSD-1B from SDXL:
/// `{"down": [null, [2, 2], [4, 4]], "up": [[4, 4, 10], [2, 1, 1], null], "mid": "resnet"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Per down block: `null` for a block without attentions, else one depth per layer.
    pub down: Vec<Option<Vec<usize>>>,
    /// Per up block (up path order): `null` or one depth per layer (resnets + 1).
    pub up: Vec<Option<Vec<usize>>>,
    pub mid: MidPlan,
    /// Resnets per down block (up blocks get one more), at most the teacher's.
    #[serde(default)]
    pub layers_per_block: Option<Vec<usize>>,
}

pub const BUILTIN: [&str; 2] = ["ssd-1b", "vega"];

impl Plan {
    /// The built-in plans for SDXL-shaped teachers (three blocks, depths 1/2/10).
    pub fn builtin(name: &str) -> Option<Plan> {
        let v = |d: &[usize]| Some(d.to_vec());
        match name {
            "ssd-1b" => Some(Plan {
                down: vec![None, v(&[2, 2]), v(&[4, 4])],
                up: vec![v(&[4, 4, 10]), v(&[2, 1, 1]), None],
                mid: MidPlan::Resnet,
                layers_per_block: None,
            }),
            "vega" => Some(Plan {
                down: vec![None, v(&[1, 1]), v(&[2, 2])],
                up: vec![v(&[2, 2, 2]), v(&[1, 1, 1]), None],
                mid: MidPlan::Resnet,
                layers_per_block: None,
            }),
            _ => None,
        }
    }

    /// A built-in name, a JSON file or JSON text; returns a label for messages and the plan.
    pub fn from_arg(arg: &str) -> Result<(String, Plan)> {
        if let Some(p) = Plan::builtin(arg) {
            return Ok((arg.to_string(), p));
        }
        // A plan written out in place (a job payload, a shell one-liner).
        if arg.trim_start().starts_with('{') {
            let plan = serde_json::from_str(arg).map_err(|e| DistillError::Plan {
                plan: "inline JSON".into(),
                message: e.to_string(),
            })?;
            return Ok(("custom".to_string(), plan));
        }
        let path = Path::new(arg);
        if !path.is_file() {
            return Err(DistillError::Plan {
                plan: arg.to_string(),
                message: format!(
                    "neither a built-in plan ({}) nor a plan file",
                    BUILTIN.join(", ")
                ),
            });
        }
        let text = std::fs::read_to_string(path).map_err(DistillError::io(path))?;
        let plan = serde_json::from_str(&text).map_err(|e| DistillError::Json {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok((arg.to_string(), plan))
    }

    /// Checks the plan against the teacher and builds the student.
    pub fn student(
        &self,
        label: &str,
        teacher: &UNetConfig,
        teacher_file: &Path,
        keep: Keep,
    ) -> Result<Student> {
        let t = UNetLayout::resolve(teacher, teacher_file)?;
        let err = |message: String| DistillError::Plan {
            plan: label.to_string(),
            message,
        };
        let n = t.down.len();
        if self.down.len() != n || self.up.len() != n {
            return Err(err(format!(
                "has {} down and {} up blocks but the teacher has {n} of each",
                self.down.len(),
                self.up.len()
            )));
        }
        let layers: Vec<usize> = match &self.layers_per_block {
            None => t.down.iter().map(|d| d.layers).collect(),
            Some(v) if v.len() != n => {
                return Err(err(format!(
                    "layers_per_block has {} entries but the teacher has {n} blocks",
                    v.len()
                )))
            }
            Some(v) => v.clone(),
        };
        for (i, (&l, d)) in layers.iter().zip(&t.down).enumerate() {
            if l == 0 || l > d.layers {
                return Err(err(format!(
                    "layers_per_block[{i}] = {l}: must be between 1 and the teacher's {}",
                    d.layers
                )));
            }
        }
        let mut map = LayerMap::default();
        for (i, d) in t.down.iter().enumerate() {
            let resnets = keep_down(layers[i]);
            let teacher_depths = d.attn.as_ref().map(|a| a.depths.as_slice());
            let blocks = check_block(
                &format!("down block {i}"),
                self.down[i].as_deref(),
                teacher_depths,
                &resnets,
                keep,
            )
            .map_err(err)?;
            map.down_resnets.push(resnets);
            map.down_blocks.push(blocks);
        }
        for (i, u) in t.up.iter().enumerate() {
            let resnets = keep_up(u.layers, layers[n - 1 - i] + 1);
            let teacher_depths = u.attn.as_ref().map(|a| a.depths.as_slice());
            let blocks = check_block(
                &format!("up block {i}"),
                self.up[i].as_deref(),
                teacher_depths,
                &resnets,
                keep,
            )
            .map_err(err)?;
            map.up_resnets.push(resnets);
            map.up_blocks.push(blocks);
        }
        let mid_type = match (&t.mid, self.mid) {
            (MidSpec::CrossAttn { attn, .. }, MidPlan::CrossAttn) => {
                let Some(first) = self.down[n - 1].as_ref().and_then(|d| d.first()) else {
                    return Err(err(format!(
                        "mid cross_attn needs attentions in down block {}",
                        n - 1
                    )));
                };
                let have = attn.depths.first().copied().unwrap_or(0);
                if *first > have {
                    return Err(err(format!(
                        "mid block: depth {first} (diffusers takes it from down block {} \
                         layer 0) is larger than the teacher's {have}",
                        n - 1
                    )));
                }
                map.mid_blocks = pick(have, *first, keep);
                Some("UNetMidBlock2DCrossAttn")
            }
            (MidSpec::None, MidPlan::CrossAttn | MidPlan::Resnet) => {
                return Err(err("mid: the teacher has no mid block".into()))
            }
            (MidSpec::Resnet { .. }, MidPlan::CrossAttn) => {
                return Err(err("mid: the teacher's mid block has no attention".into()))
            }
            (_, MidPlan::Resnet) => Some("UNetMidBlock2D"),
            (_, MidPlan::None) => None,
        };
        map.mid = self.mid;
        map.teacher_mid = !matches!(t.mid, MidSpec::None);

        let mut config = teacher.clone();
        if layers != t.down.iter().map(|d| d.layers).collect::<Vec<_>>() {
            config.layers_per_block = PerBlock::Each(layers);
        }
        let teacher_down: Vec<Depth> = match &teacher.transformer_layers_per_block {
            DepthSpec::All(v) => vec![Depth::All(*v); n],
            DepthSpec::Each(v) => v.clone(),
        };
        let teacher_up: Vec<Depth> = match &teacher.reverse_transformer_layers_per_block {
            Some(v) => v.clone(),
            None => teacher_down.iter().rev().cloned().collect(),
        };
        // Always the per-layer form: diffusers then reads both lists as written.
        config.transformer_layers_per_block = DepthSpec::Each(
            self.down
                .iter()
                .zip(teacher_down)
                .map(|(p, t)| p.clone().map(Depth::Each).unwrap_or(t))
                .collect(),
        );
        config.reverse_transformer_layers_per_block = Some(
            self.up
                .iter()
                .zip(teacher_up)
                .map(|(p, t)| p.clone().map(Depth::Each).unwrap_or(t))
                .collect(),
        );
        config.mid_block_type = mid_type.map(str::to_string);
        let layout = UNetLayout::resolve(&config, Path::new("<student unet/config.json>"))?;
        Ok(Student {
            config,
            layout,
            map,
        })
    }
}

/// A checked plan applied to a teacher.
#[derive(Debug, Clone)]
pub struct Student {
    pub config: UNetConfig,
    pub layout: UNetLayout,
    pub map: LayerMap,
}

impl Student {
    /// The student's `unet/config.json`: the teacher's own JSON (keeping keys the engine
    /// does not model) with the fields the plan changes replaced.
    pub fn config_json(&self, teacher_json: &serde_json::Value) -> Result<serde_json::Value> {
        let mut v = teacher_json.clone();
        let ours = serde_json::to_value(&self.config).map_err(|e| DistillError::Json {
            file: "<student unet/config.json>".into(),
            message: e.to_string(),
        })?;
        if let (Some(obj), Some(src)) = (v.as_object_mut(), ours.as_object()) {
            for key in [
                "layers_per_block",
                "transformer_layers_per_block",
                "reverse_transformer_layers_per_block",
                "mid_block_type",
            ] {
                if let Some(val) = src.get(key) {
                    obj.insert(key.to_string(), val.clone());
                }
            }
        }
        Ok(v)
    }

    /// UNet parameter count, from shapes alone.
    pub fn parameters(&self) -> Result<u64> {
        unet_parameters(&self.config, &self.layout)
    }
}

pub fn unet_parameters(config: &UNetConfig, layout: &UNetLayout) -> Result<u64> {
    use crate::engine::unet::UNet2DConditionModel;
    let shapes = crate::engine::params::record_shapes(|vb| {
        UNet2DConditionModel::from_parts(config.clone(), layout.clone(), Default::default(), vb)
            .map(|_| ())
    })?;
    Ok(crate::engine::params::count(&shapes))
}

/// Down blocks keep their first resnets (the first changes channels; the others match).
fn keep_down(student: usize) -> Vec<usize> {
    (0..student).collect()
}

/// Up blocks keep their first resnets and always the last: the last one takes the skip
/// from the block below, whose channel count differs, so only it has the right shape.
fn keep_up(teacher: usize, student: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..student.saturating_sub(1)).collect();
    v.push(teacher - 1);
    v
}

/// Indices of the k teacher transformer blocks kept out of n.
pub fn pick(n: usize, k: usize, keep: Keep) -> Vec<usize> {
    match keep {
        Keep::First => (0..k).collect(),
        Keep::Even if k <= 1 => (0..k).collect(),
        Keep::Even => (0..k)
            .map(|i| ((i * (n - 1)) as f64 / (k - 1) as f64).round() as usize)
            .collect(),
    }
}

/// Checks one block's depths; returns, per kept layer, the teacher blocks it keeps.
fn check_block(
    what: &str,
    plan: Option<&[usize]>,
    teacher: Option<&[usize]>,
    resnets: &[usize],
    keep: Keep,
) -> std::result::Result<Vec<Vec<usize>>, String> {
    match (plan, teacher) {
        (None, None) => Ok(Vec::new()),
        (Some(_), None) => Err(format!(
            "{what}: the teacher's block has no attentions (write null)"
        )),
        (None, Some(_)) => Err(format!(
            "{what}: the teacher's block has attentions; give a depth per layer"
        )),
        (Some(p), Some(t)) => {
            if p.len() != resnets.len() {
                return Err(format!(
                    "{what}: {} depths given but the student block has {} layers",
                    p.len(),
                    resnets.len()
                ));
            }
            p.iter()
                .zip(resnets)
                .enumerate()
                .map(|(j, (&d, &tj))| {
                    let have = t[tj];
                    if d == 0 {
                        Err(format!(
                            "{what}, layer {j}: depth 0 (keep at least one transformer block)"
                        ))
                    } else if d > have {
                        Err(format!(
                            "{what}, layer {j}: depth {d} is larger than the teacher's {have}"
                        ))
                    } else {
                        Ok(pick(have, d, keep))
                    }
                })
                .collect()
        }
    }
}
