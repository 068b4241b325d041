//! A vote's choice and one vote as the votes CSV holds it: shared by the database layer,
//! which reads votes, and the report, which analyses them.

use serde::{Deserialize, Serialize};

/// The choice a participant made on one assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    Left,
    Right,
    Tie,
    BothBad,
}

impl Choice {
    pub fn as_str(self) -> &'static str {
        match self {
            Choice::Left => "left",
            Choice::Right => "right",
            Choice::Tie => "tie",
            Choice::BothBad => "both_bad",
        }
    }
}

impl std::str::FromStr for Choice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "left" => Ok(Choice::Left),
            "right" => Ok(Choice::Right),
            "tie" => Ok(Choice::Tie),
            "both_bad" => Ok(Choice::BothBad),
            other => Err(format!(
                "unknown choice '{other}' (expected left, right, tie or both_bad)"
            )),
        }
    }
}

/// One row of the votes CSV: `participant_id,prompt_id,model_left,model_right,choice,category,gold,response_ms,created_at,platform,external_id,fast`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoteRecord {
    pub participant_id: String,
    pub prompt_id: String,
    pub model_left: String,
    pub model_right: String,
    pub choice: Choice,
    pub category: Option<String>,
    pub gold: bool,
    pub response_ms: Option<i64>,
    /// RFC 3339 timestamp.
    pub created_at: Option<String>,
    /// The crowd platform (`prolific`, `mturk`) and the participant's ID there, so a
    /// researcher can approve or reject submissions; absent for anonymous participants.
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    /// Answered faster than the study's threshold.
    #[serde(default)]
    pub fast: bool,
}

/// Suffix that marks the deliberately broken image's model name in a gold (attention
/// check) row. Exactly one side of a gold row carries it; picking the other side passes.
pub const BROKEN_MARKER: &str = "#broken";
