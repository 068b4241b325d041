//! The report's data, serialised as the JSON contract in `schemas/report.schema.json`.

use serde::Serialize;

use super::settings::ReportSettings;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Comparison votes used (gold rows and excluded participants' votes not counted).
    pub n_votes: u64,
    /// Participants with at least one comparison vote used.
    pub n_participants: u64,
    /// Prompts with at least one comparison vote used.
    pub n_prompts: u64,
    pub settings: ReportSettings,
    pub pairs: Vec<PairStats>,
    pub models: Vec<ModelRating>,
    pub components: Vec<Component>,
    pub position_bias: PositionBias,
    pub agreement: Option<Agreement>,
    pub categories: Vec<CategoryStats>,
    pub participants: Participants,
    pub votes_over_time: Option<Timeline>,
    pub warnings: Vec<String>,
}

/// Head-to-head statistics of two models; `model_a < model_b` in byte order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairStats {
    pub model_a: String,
    pub model_b: String,
    pub wins_a: u64,
    pub wins_b: u64,
    pub ties: u64,
    pub both_bad: u64,
    pub n_decisive: u64,
    pub win_rate_a: Option<f64>,
    pub p_value: Option<f64>,
    pub ci_wilson: Option<[f64; 2]>,
    pub ci_clopper_pearson: Option<[f64; 2]>,
    pub p_holm: Option<f64>,
    pub significant: bool,
    pub n_needed: Option<u64>,
    /// Anytime-valid results over the decisive votes in time order; null without one.
    pub sequential: Option<SequentialStats>,
}

/// The anytime-valid test of a pair: valid however often the report is looked at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SequentialStats {
    /// min(1, min over k <= n of 1/Λₖ) for the Beta(1, 1) mixture likelihood ratio.
    pub p_value: f64,
    /// Holm-adjusted over the pairs of this table that have a sequential p-value.
    pub p_holm: f64,
    /// Confidence sequence for model A's win rate at level alpha (intersected over time).
    pub cs: [f64; 2],
    /// p_holm < alpha: the study may stop for this pair.
    pub decided: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRating {
    pub name: String,
    pub rating: f64,
    pub ci: Option<[f64; 2]>,
    pub rank_ub: Option<u64>,
    pub n_votes: u64,
    /// Index into `components`; ratings compare only within one component.
    pub component: usize,
}

/// A connected part of the comparison graph and how its ratings were estimated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Component {
    pub models: Vec<String>,
    /// `mle`, or `prior_fallback` when the maximum-likelihood estimate does not exist.
    pub estimator: &'static str,
    /// Bootstrap rounds of this component that needed the prior fallback.
    pub bootstrap_fallback_rounds: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionBias {
    pub left_wins: u64,
    pub right_wins: u64,
    pub p_value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    /// Items (a prompt and an unordered model pair) judged by two or more participants.
    pub n_items: u64,
    pub krippendorff_alpha: Option<f64>,
    pub fleiss_kappa: Option<f64>,
    /// Fleiss' kappa uses the items with the most common number of ratings.
    pub fleiss_n_items: u64,
    pub fleiss_raters_per_item: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryStats {
    pub category: String,
    pub n_votes: u64,
    /// Holm adjustment is applied within the category.
    pub pairs: Vec<PairStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Participants {
    /// Distinct participants in the file (gold rows included).
    pub count: u64,
    pub with_gold: u64,
    pub gold_rows: u64,
    pub gold_passed: u64,
    /// gold_passed / gold_rows; null without gold rows.
    pub gold_pass_rate: Option<f64>,
    /// Participants with a gold pass rate below 1 (at least one failed check).
    pub failed_gold: u64,
    /// Their crowd IDs (the internal ID where there is none), to reject submissions by.
    pub failed_gold_ids: Vec<String>,
    /// Votes answered faster than the study's threshold, and who gave them (crowd IDs).
    pub fast_votes: u64,
    pub fast_participant_ids: Vec<String>,
    /// Participants grouped by their gold results: how many had `gold_passed` of
    /// `gold_rows` checks right (participants without gold rows are not listed).
    pub gold_results: Vec<GoldResult>,
    /// Participants whose votes `--exclude-failed-gold` removed (0 when not set).
    pub excluded: u64,
    pub excluded_votes: u64,
    /// Fast votes that `--exclude-fast` removed (0 when not set).
    pub excluded_fast_votes: u64,
    /// Median response time over every row with one; null when none has.
    pub median_response_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GoldResult {
    pub gold_rows: u64,
    pub gold_passed: u64,
    pub participants: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    /// `hour` when the votes span less than two days, else `day` (UTC).
    pub bucket: &'static str,
    pub counts: Vec<TimeBucket>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeBucket {
    /// Bucket start, RFC 3339 UTC.
    pub start: String,
    pub n_votes: u64,
}
