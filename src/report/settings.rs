//! What a report is computed with; echoed in the report as `settings`.

use serde::Serialize;

/// The unit the bootstrap resamples: votes of one participant (or on one prompt) are not
/// independent, so they are drawn together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cluster {
    Participant,
    Prompt,
    None,
}

impl std::str::FromStr for Cluster {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "participant" => Ok(Cluster::Participant),
            "prompt" => Ok(Cluster::Prompt),
            "none" => Ok(Cluster::None),
            other => Err(format!(
                "unknown cluster '{other}' (expected participant, prompt or none)"
            )),
        }
    }
}

/// Fixes one model's rating instead of centring the ratings on 1000.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anchor {
    pub model: String,
    pub rating: f64,
}

impl std::str::FromStr for Anchor {
    type Err = String;
    /// Parses `MODEL=RATING`; the model name may itself contain '=' (the last one splits).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (model, rating) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("anchor '{s}' is not MODEL=RATING"))?;
        let rating: f64 = rating
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite())
            .ok_or_else(|| format!("anchor rating '{rating}' is not a number"))?;
        if model.is_empty() {
            return Err(format!("anchor '{s}' has no model name"));
        }
        Ok(Anchor {
            model: model.to_string(),
            rating,
        })
    }
}

/// Report parameters. `Default`: 1000 bootstrap rounds, seed 0, participant clusters,
/// alpha 0.05, keep every participant, ratings centred on 1000.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportSettings {
    /// Bootstrap rounds for the rating intervals; 0 skips them (intervals become null).
    pub bootstrap: usize,
    pub seed: u64,
    pub cluster: Cluster,
    /// Level of the tests; intervals have coverage 1 - alpha.
    pub alpha: f64,
    /// Drop every vote of participants who failed a gold (attention check) row.
    pub exclude_failed_gold: bool,
    /// Drop votes flagged as faster than the study's threshold.
    pub exclude_fast: bool,
    pub anchor: Option<Anchor>,
}

impl Default for ReportSettings {
    fn default() -> Self {
        Self {
            bootstrap: 1000,
            seed: 0,
            cluster: Cluster::Participant,
            alpha: 0.05,
            exclude_failed_gold: false,
            exclude_fast: false,
            anchor: None,
        }
    }
}

/// Power that `n_needed` is computed for.
pub const TARGET_POWER: f64 = 0.8;
