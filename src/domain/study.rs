//! A study's settings, slug, status and allocation, and the ids a crowd platform passes:
//! parsed at the boundary (`TryFrom`), so an invalid study cannot be built.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::votes::Choice;
use super::Invalid;

pub const DEFAULT_COMPLETION_URL: &str = "https://app.prolific.com/submissions/complete?cc={code}";

/// A study's URL name: 1–64 lowercase letters, digits and hyphens, not starting with a hyphen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Slug(String);

impl TryFrom<String> for Slug {
    type Error = Invalid;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && !value.starts_with('-')
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Slug(value))
        } else {
            Err(Invalid::new(
                "slug",
                format!("'{value}' must be 1-64 lowercase letters, digits or hyphens, not starting with a hyphen"),
            ))
        }
    }
}

impl Slug {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Slug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StudyStatus {
    Draft,
    Open,
    /// No new participants; those in progress may finish.
    Closing,
    Closed,
}

impl StudyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StudyStatus::Draft => "draft",
            StudyStatus::Open => "open",
            StudyStatus::Closing => "closing",
            StudyStatus::Closed => "closed",
        }
    }
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s {
            "draft" => Ok(StudyStatus::Draft),
            "open" => Ok(StudyStatus::Open),
            "closing" => Ok(StudyStatus::Closing),
            "closed" => Ok(StudyStatus::Closed),
            other => Err(Invalid::new("status", format!("unknown status '{other}'"))),
        }
    }

    /// Whether participants already in the study may still vote.
    pub fn takes_votes(self) -> bool {
        matches!(self, StudyStatus::Open | StudyStatus::Closing)
    }
}

/// Settings of a study as a researcher enters them (CLI flags or the admin form), unchecked.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct StudyForm {
    pub slug: String,
    pub title: String,
    pub question: Option<String>,
    pub instructions: Option<String>,
    pub consent_text: Option<String>,
    pub notice: Option<String>,
    pub votes_per_participant: Option<i32>,
    pub gold_rate: Option<f64>,
    pub completion_code: Option<String>,
    pub completion_url: Option<String>,
    pub allow_tie: bool,
    pub allow_both_bad: bool,
    /// Votes faster than this many milliseconds are flagged (default 700).
    pub fast_vote_ms: Option<i32>,
    /// Seconds after which an unanswered assignment stops counting in the balance (default 1800).
    pub assignment_timeout_s: Option<i32>,
    /// `uniform` (the default) or `adaptive`.
    pub allocation: Option<String>,
    /// Close the study once every model pair is decided or `vote_budget` votes are in.
    pub stop_when_decided: bool,
    pub vote_budget: Option<i32>,
}

/// A study's settings that passed every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct StudySettings {
    pub slug: Slug,
    pub title: String,
    pub question: String,
    pub instructions: String,
    pub consent_text: String,
    pub notice: String,
    pub votes_per_participant: i32,
    pub gold_rate: f64,
    pub completion_code: String,
    pub completion_url: String,
    pub allow_tie: bool,
    pub allow_both_bad: bool,
    pub fast_vote_ms: i32,
    pub assignment_timeout_s: i32,
    pub allocation: Allocation,
    pub stop_when_decided: bool,
    pub vote_budget: Option<i32>,
}

pub const DEFAULT_FAST_VOTE_MS: i32 = 700;
pub const DEFAULT_ASSIGNMENT_TIMEOUT_S: i32 = 1800;

pub const DEFAULT_QUESTION: &str = "Which image matches the prompt better and looks better?";
pub const DEFAULT_INSTRUCTIONS: &str = "You will see pairs of images made from the same text prompt. \
Pick the one you prefer, or say that they are equally good or both bad. There are no right answers; \
go with your first impression. Some pairs check your attention.";
pub const DEFAULT_CONSENT: &str =
    "Your answers are recorded anonymously for research on image generation. \
Only the IDs passed by the recruiting platform are stored with them. You may stop at any time.";

impl TryFrom<StudyForm> for StudySettings {
    type Error = Invalid;
    fn try_from(form: StudyForm) -> Result<Self, Self::Error> {
        let slug = Slug::try_from(form.slug.trim().to_string())?;
        let title = form.title.trim().to_string();
        if title.is_empty() || title.len() > 200 {
            return Err(Invalid::new("title", "must be 1-200 characters"));
        }
        let non_empty = |v: Option<String>, default: &str| {
            v.map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        let question = non_empty(form.question, DEFAULT_QUESTION);
        if question.len() > 500 {
            return Err(Invalid::new("question", "must be at most 500 characters"));
        }
        let votes = form.votes_per_participant.unwrap_or(20);
        if !(1..=1000).contains(&votes) {
            return Err(Invalid::new(
                "votes_per_participant",
                format!("{votes} is not between 1 and 1000"),
            ));
        }
        let gold_rate = form.gold_rate.unwrap_or(0.1);
        if !(0.0..=1.0).contains(&gold_rate) || gold_rate.is_nan() {
            return Err(Invalid::new(
                "gold_rate",
                format!("{gold_rate} is not between 0 and 1"),
            ));
        }
        let completion_code = match form.completion_code.map(|c| c.trim().to_string()) {
            Some(code) if !code.is_empty() => code,
            _ => random_code(),
        };
        if completion_code.len() > 64
            || !completion_code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Invalid::new(
                "completion_code",
                "must be at most 64 letters, digits, '-' or '_'",
            ));
        }
        let fast_vote_ms = form.fast_vote_ms.unwrap_or(DEFAULT_FAST_VOTE_MS);
        if !(0..=600_000).contains(&fast_vote_ms) {
            return Err(Invalid::new(
                "fast_vote_ms",
                format!("{fast_vote_ms} is not between 0 and 600000"),
            ));
        }
        let assignment_timeout_s = form
            .assignment_timeout_s
            .unwrap_or(DEFAULT_ASSIGNMENT_TIMEOUT_S);
        if !(1..=604_800).contains(&assignment_timeout_s) {
            return Err(Invalid::new(
                "assignment_timeout_s",
                format!("{assignment_timeout_s} is not between 1 and 604800 (a week)"),
            ));
        }
        let allocation = match form.allocation.as_deref().map(str::trim) {
            None | Some("") => Allocation::Uniform,
            Some(a) => Allocation::parse(a)?,
        };
        if let Some(b) = form.vote_budget.filter(|b| *b < 1) {
            return Err(Invalid::new(
                "vote_budget",
                format!("{b} is not a positive number of votes"),
            ));
        }
        let completion_url = non_empty(form.completion_url, DEFAULT_COMPLETION_URL);
        if !(completion_url.starts_with("https://") || completion_url.starts_with("http://")) {
            return Err(Invalid::new(
                "completion_url",
                "must start with http:// or https://",
            ));
        }
        Ok(StudySettings {
            slug,
            title,
            question,
            instructions: non_empty(form.instructions, DEFAULT_INSTRUCTIONS),
            consent_text: non_empty(form.consent_text, DEFAULT_CONSENT),
            notice: form
                .notice
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            votes_per_participant: votes,
            gold_rate,
            completion_code,
            completion_url,
            allow_tie: form.allow_tie,
            allow_both_bad: form.allow_both_bad,
            fast_vote_ms,
            assignment_timeout_s,
            allocation,
            stop_when_decided: form.stop_when_decided,
            vote_budget: form.vote_budget,
        })
    }
}

fn random_code() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..8)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A stored study.
#[derive(Debug, Clone, Serialize)]
pub struct Study {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub question: String,
    pub instructions: String,
    pub consent_text: String,
    pub notice: String,
    pub votes_per_participant: i32,
    pub allow_tie: bool,
    pub allow_both_bad: bool,
    pub gold_rate: f64,
    pub completion_code: String,
    pub completion_url: String,
    pub status: StudyStatus,
    pub pairs_version: i64,
    pub fast_vote_ms: i32,
    pub assignment_timeout_s: i32,
    pub allocation: Allocation,
    pub stop_when_decided: bool,
    pub vote_budget: Option<i32>,
}

impl Study {
    /// The completion URL with the completion code filled in.
    pub fn redirect_url(&self) -> String {
        self.completion_url.replace("{code}", &self.completion_code)
    }

    pub fn allows(&self, choice: Choice) -> bool {
        match choice {
            Choice::Left | Choice::Right => true,
            Choice::Tie => self.allow_tie,
            Choice::BothBad => self.allow_both_bad,
        }
    }
}

/// The ids a crowd-working platform passes in the study link.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct ExternalIds {
    #[serde(rename = "PROLIFIC_PID", default)]
    pub prolific_pid: Option<String>,
    #[serde(rename = "STUDY_ID", default)]
    pub prolific_study_id: Option<String>,
    #[serde(rename = "SESSION_ID", default)]
    pub prolific_session_id: Option<String>,
    #[serde(rename = "workerId", default)]
    pub mturk_worker_id: Option<String>,
    #[serde(rename = "assignmentId", default)]
    pub mturk_assignment_id: Option<String>,
    #[serde(rename = "hitId", default)]
    pub mturk_hit_id: Option<String>,
}

impl ExternalIds {
    /// Drops empty values and rejects absurd ones (they end up in exports).
    pub fn validated(self) -> Result<ExternalIds, Invalid> {
        fn clean(field: &str, v: Option<String>) -> Result<Option<String>, Invalid> {
            match v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
                Some(s) if s.len() > 128 || s.chars().any(|c| c.is_control()) => Err(Invalid::new(
                    field,
                    "must be at most 128 printable characters",
                )),
                other => Ok(other),
            }
        }
        Ok(ExternalIds {
            prolific_pid: clean("PROLIFIC_PID", self.prolific_pid)?,
            prolific_study_id: clean("STUDY_ID", self.prolific_study_id)?,
            prolific_session_id: clean("SESSION_ID", self.prolific_session_id)?,
            mturk_worker_id: clean("workerId", self.mturk_worker_id)?,
            mturk_assignment_id: clean("assignmentId", self.mturk_assignment_id)?,
            mturk_hit_id: clean("hitId", self.mturk_hit_id)?,
        })
    }

    pub fn is_prolific(&self) -> bool {
        self.prolific_pid.is_some()
    }

    /// The identity one person has on their crowd platform: Prolific's participant ID, else
    /// MTurk's worker ID. `None` for anonymous participants.
    pub fn identity(&self) -> Option<(&'static str, &str)> {
        match (&self.prolific_pid, &self.mturk_worker_id) {
            (Some(pid), _) => Some(("prolific", pid.as_str())),
            (None, Some(worker)) => Some(("mturk", worker.as_str())),
            (None, None) => None,
        }
    }
}

/// How a study spreads its comparisons over the model pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Allocation {
    /// The model pair with the fewest assignments first.
    #[default]
    Uniform,
    /// The undecided model pair whose confidence sequence is expected to shrink the most
    /// with one more vote, except for the exploration share.
    Adaptive,
}

impl Allocation {
    pub fn as_str(self) -> &'static str {
        match self {
            Allocation::Uniform => "uniform",
            Allocation::Adaptive => "adaptive",
        }
    }
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s.trim() {
            "uniform" => Ok(Allocation::Uniform),
            "adaptive" => Ok(Allocation::Adaptive),
            other => Err(Invalid::new(
                "allocation",
                format!("'{other}' is not 'uniform' or 'adaptive'"),
            )),
        }
    }
}
