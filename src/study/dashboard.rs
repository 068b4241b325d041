//! What the study dashboard shows: totals, votes per model pair (with whether the pair is
//! decided by the anytime-valid test) and per prompt.

use serde::Serialize;

use crate::db::dashboard::{self as q, ModelPairCount, PromptCount, Totals};
use crate::db::Db;

use super::{Study, StudyError};
use crate::report::model::PairStats;
use crate::report::render::format::p_value;
use crate::report::{build_report, ReportSettings};

#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    pub totals: Totals,
    pub model_pairs: Vec<ModelPairCount>,
    /// Per model pair (same order): the anytime-valid decision, in words.
    pub decisions: Vec<String>,
    pub prompts: Vec<PromptCount>,
}

impl Dashboard {
    /// Share of gold checks answered wrongly, if any were answered.
    pub fn gold_failure_rate(&self) -> Option<f64> {
        (self.totals.gold_votes > 0)
            .then(|| self.totals.gold_failed as f64 / self.totals.gold_votes as f64)
    }
}

pub async fn load(db: &Db, study: &Study) -> Result<Dashboard, StudyError> {
    let model_pairs = q::model_pairs(&db.pool, study.id).await?;
    let votes = q::vote_records(&db.pool, study.id).await?;
    // Only the pair statistics are needed: no bootstrap.
    let settings = ReportSettings {
        bootstrap: 0,
        ..ReportSettings::default()
    };
    // The decisions need only the pair statistics; a rating fit that fails must not take
    // the dashboard down with it.
    let decisions = match build_report(&votes, &settings) {
        Ok(report) => model_pairs
            .iter()
            .map(|m| decision(&report.pairs, &m.model_a, &m.model_b))
            .collect(),
        Err(e) => vec![format!("not available: {e}"); model_pairs.len()],
    };
    Ok(Dashboard {
        totals: q::totals(&db.pool, study.id).await?,
        model_pairs,
        decisions,
        prompts: q::prompts(&db.pool, study.id).await?,
    })
}

/// "A preferred (decided)", "open (anytime p 0.23)" or "no decisive vote" for one model pair.
fn decision(pairs: &[PairStats], a: &str, b: &str) -> String {
    let Some(seq) = pairs
        .iter()
        .find(|p| p.model_a == a && p.model_b == b)
        .and_then(|p| p.sequential.as_ref().map(|s| (p, s)))
    else {
        return "no decisive vote".into();
    };
    let (p, s) = seq;
    if s.decided {
        let winner = if p.wins_a > p.wins_b { a } else { b };
        format!("decided: {winner} preferred")
    } else {
        format!("open (anytime p, Holm: {})", p_value(Some(s.p_holm)))
    }
}
