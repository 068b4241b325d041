//! What the study dashboard shows: totals, votes per model pair and per prompt.

use serde::Serialize;

use crate::db::dashboard::{self as q, ModelPairCount, PromptCount, Totals};
use crate::db::Db;

use super::{Study, StudyError};

#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    pub totals: Totals,
    pub model_pairs: Vec<ModelPairCount>,
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
    Ok(Dashboard {
        totals: q::totals(&db.pool, study.id).await?,
        model_pairs: q::model_pairs(&db.pool, study.id).await?,
        prompts: q::prompts(&db.pool, study.id).await?,
    })
}
