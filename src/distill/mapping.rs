//! Which teacher layer every student layer comes from: used to initialise the student's
//! parameters by name and to pair the student's features with the teacher's.

use serde::{Deserialize, Serialize};

/// What the student's mid block becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MidPlan {
    /// `UNetMidBlock2DCrossAttn` kept. diffusers gives the mid transformer the depth of
    /// the last down block's first attention, so that is the depth the student gets.
    CrossAttn,
    /// A single-resnet `UNetMidBlock2D`, as SSD-1B and Vega.
    Resnet,
    /// No mid block.
    None,
}

/// Student index → teacher index, per block and layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerMap {
    /// Per down block: for each student resnet (and its attention) the teacher's.
    pub down_resnets: Vec<Vec<usize>>,
    /// Per down block, per student attention: the kept teacher transformer blocks.
    pub down_blocks: Vec<Vec<Vec<usize>>>,
    pub up_resnets: Vec<Vec<usize>>,
    pub up_blocks: Vec<Vec<Vec<usize>>>,
    /// Kept teacher transformer blocks of a kept cross-attention mid block.
    pub mid_blocks: Vec<usize>,
    pub mid: MidPlan,
    pub teacher_mid: bool,
}

impl Default for LayerMap {
    fn default() -> Self {
        Self {
            down_resnets: Vec::new(),
            down_blocks: Vec::new(),
            up_resnets: Vec::new(),
            up_blocks: Vec::new(),
            mid_blocks: Vec::new(),
            mid: MidPlan::CrossAttn,
            teacher_mid: true,
        }
    }
}

/// Which features the feature loss compares.
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
pub enum FeatureLevel {
    /// Every kept resnet and transformer output (the SSD-1B layer-level loss).
    #[default]
    Layer,
    /// One output per down/up block and the mid block (as BK-SDM).
    Block,
}

fn parse_index(s: Option<&str>) -> Option<usize> {
    s.and_then(|v| v.parse().ok())
}

impl LayerMap {
    fn resnets(&self, up: bool) -> &[Vec<usize>] {
        if up {
            &self.up_resnets
        } else {
            &self.down_resnets
        }
    }
    fn blocks(&self, up: bool) -> &[Vec<Vec<usize>>] {
        if up {
            &self.up_blocks
        } else {
            &self.down_blocks
        }
    }

    /// The teacher parameter a student parameter is initialised from, or `None` when the
    /// student's name has no teacher counterpart (a mapping bug or mismatched configs).
    pub fn teacher_param(&self, name: &str) -> Option<String> {
        let parts: Vec<&str> = name.split('.').collect();
        match parts.first().copied() {
            Some(kind @ ("down_blocks" | "up_blocks")) => {
                let up = kind == "up_blocks";
                let i = parse_index(parts.get(1).copied())?;
                let sub = *parts.get(2)?;
                if sub != "resnets" && sub != "attentions" {
                    return Some(name.to_string());
                }
                let j = parse_index(parts.get(3).copied())?;
                let tj = *self.resnets(up).get(i)?.get(j)?;
                let mut out: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
                out[3] = tj.to_string();
                if sub == "attentions" && parts.get(4) == Some(&"transformer_blocks") {
                    let k = parse_index(parts.get(5).copied())?;
                    out[5] = self.blocks(up).get(i)?.get(j)?.get(k)?.to_string();
                }
                Some(out.join("."))
            }
            Some("mid_block") => {
                if parts.get(1) == Some(&"attentions")
                    && parts.get(3) == Some(&"transformer_blocks")
                {
                    let k = parse_index(parts.get(4).copied())?;
                    let mut out: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
                    out[4] = self.mid_blocks.get(k)?.to_string();
                    Some(out.join("."))
                } else {
                    // A single-resnet mid starts from the teacher's first mid resnet.
                    Some(name.to_string())
                }
            }
            _ => Some(name.to_string()),
        }
    }

    /// The teacher feature a student feature is matched with (names as produced by
    /// `forward_with_features`). A mid block the plan reduced is matched with the
    /// teacher's whole mid block output.
    pub fn teacher_feature(&self, name: &str) -> Option<String> {
        let parts: Vec<&str> = name.split('.').collect();
        match parts.as_slice() {
            ["mid"] => self.teacher_mid.then(|| "mid".to_string()),
            [kind @ ("down" | "up"), i, sub, j] => {
                let up = *kind == "up";
                let i: usize = i.parse().ok()?;
                let j: usize = j.parse().ok()?;
                let tj = self.resnets(up).get(i)?.get(j)?;
                Some(format!("{kind}.{i}.{sub}.{tj}"))
            }
            _ => None,
        }
    }

    /// (student, teacher) feature pairs for one level, given the student's feature names
    /// in forward order and the teacher's.
    pub fn feature_pairs(
        &self,
        student: &[String],
        teacher: &[String],
        level: FeatureLevel,
    ) -> Vec<(String, String)> {
        match level {
            FeatureLevel::Layer => student
                .iter()
                .filter_map(|s| {
                    let t = self.teacher_feature(s)?;
                    teacher.contains(&t).then(|| (s.clone(), t))
                })
                .collect(),
            FeatureLevel::Block => {
                // The last feature each block records is its output before resampling.
                let block =
                    |n: &String| -> String { n.split('.').take(2).collect::<Vec<_>>().join(".") };
                let last = |names: &[String], b: &str| -> Option<String> {
                    names.iter().rev().find(|n| block(n) == b).cloned()
                };
                let mut blocks: Vec<String> = Vec::new();
                for n in student {
                    let b = block(n);
                    if !blocks.contains(&b) {
                        blocks.push(b);
                    }
                }
                blocks
                    .iter()
                    .filter_map(|b| Some((last(student, b)?, last(teacher, b)?)))
                    .collect()
            }
        }
    }
}

impl LayerMap {
    /// The map of a student of a student, straight to the first teacher: `self` maps the
    /// newer student onto `earlier`'s student, `earlier` maps that onto the teacher. Only
    /// the parts feature matching reads (resnet positions, the teacher's mid) are composed.
    pub fn through(&self, earlier: &LayerMap) -> LayerMap {
        let compose = |late: &[Vec<usize>], early: &[Vec<usize>]| -> Vec<Vec<usize>> {
            late.iter()
                .zip(early)
                .map(|(l, e)| l.iter().map(|&j| e.get(j).copied().unwrap_or(j)).collect())
                .collect()
        };
        LayerMap {
            down_resnets: compose(&self.down_resnets, &earlier.down_resnets),
            up_resnets: compose(&self.up_resnets, &earlier.up_resnets),
            teacher_mid: earlier.teacher_mid,
            ..self.clone()
        }
    }
}
