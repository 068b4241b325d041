//! Exports of a study's votes in the votes-CSV shape that `arenaxl report` reads.

use crate::db::{dashboard, Db};
use crate::report::votes::VoteRecord;

use super::{Study, StudyError};

pub const VOTES_CSV_HEADER: [&str; 9] = [
    "participant_id",
    "prompt_id",
    "model_left",
    "model_right",
    "choice",
    "category",
    "gold",
    "response_ms",
    "created_at",
];

/// Writes vote records as CSV with the standard header.
pub fn write_csv(votes: &[VoteRecord]) -> Result<String, StudyError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| StudyError::Io(std::io::Error::other(e.to_string()));
    w.write_record(VOTES_CSV_HEADER).map_err(io)?;
    for v in votes {
        w.write_record([
            v.participant_id.as_str(),
            v.prompt_id.as_str(),
            v.model_left.as_str(),
            v.model_right.as_str(),
            v.choice.as_str(),
            v.category.as_deref().unwrap_or(""),
            if v.gold { "true" } else { "false" },
            &v.response_ms.map(|ms| ms.to_string()).unwrap_or_default(),
            v.created_at.as_deref().unwrap_or(""),
        ])
        .map_err(io)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| StudyError::Io(std::io::Error::other(e.to_string())))?;
    String::from_utf8(bytes).map_err(|e| StudyError::Io(std::io::Error::other(e.to_string())))
}

pub async fn votes_csv(db: &Db, study: &Study) -> Result<String, StudyError> {
    write_csv(&dashboard::vote_records(&db.pool, study.id).await?)
}
