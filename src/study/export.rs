//! A study's data leaving the platform: the votes CSV that `arenaxl report` reads, the live
//! report, and a dataset in the shape of the public Pick-a-Pic preference data.

use std::path::Path;

use serde_json::json;

use crate::db::{dashboard, Db};
use crate::report::votes::write_votes_csv;
use crate::report::{build_report, Report, ReportSettings};

use super::images::ImageStore;
use super::{Study, StudyError};

/// Column order of the participants export.
pub const PARTICIPANTS_HEADER: [&str; 11] = [
    "platform",
    "external_id",
    "participant_id",
    "started",
    "finished",
    "votes",
    "gold_passed",
    "gold_failed",
    "median_response_ms",
    "fast_votes",
    "status",
];

/// One line per participant: crowd ID, progress, attention checks, timing and status —
/// `completed` (reached the target), `in progress` (active within the study's assignment
/// timeout while it takes votes) or `returned` (left, or the study closed first).
pub async fn participants_csv(db: &Db, study: &Study) -> Result<String, StudyError> {
    let rows = dashboard::participant_rows(&db.pool, study.id).await?;
    let now = chrono::Utc::now();
    let timeout = chrono::Duration::seconds(i64::from(study.assignment_timeout_s));
    let time =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(PARTICIPANTS_HEADER)
        .map_err(|e| StudyError::Io(std::io::Error::other(e)))?;
    for r in rows {
        let completed = r.votes >= study.votes_per_participant;
        let last_active = r.last_vote.max(r.last_issued).unwrap_or(r.started);
        let status = if completed {
            "completed"
        } else if study.status.takes_votes() && now - last_active < timeout {
            "in progress"
        } else {
            "returned"
        };
        w.write_record([
            r.platform.unwrap_or_default(),
            r.external_id.unwrap_or_default(),
            r.participant_id.to_string(),
            time(r.started),
            if completed {
                r.last_vote.map(time).unwrap_or_default()
            } else {
                String::new()
            },
            r.votes.to_string(),
            r.gold_passed.to_string(),
            r.gold_failed.to_string(),
            r.median_response_ms
                .map(|m| format!("{m:.0}"))
                .unwrap_or_default(),
            r.fast_votes.to_string(),
            status.to_string(),
        ])
        .map_err(|e| StudyError::Io(std::io::Error::other(e)))?;
    }
    let out = w
        .into_inner()
        .map_err(|e| StudyError::Io(std::io::Error::other(e.to_string())))?;
    String::from_utf8(out).map_err(|e| StudyError::Io(std::io::Error::other(e.to_string())))
}

pub async fn votes_csv(db: &Db, study: &Study) -> Result<String, StudyError> {
    let votes = dashboard::vote_records(&db.pool, study.id).await?;
    let mut out = Vec::new();
    write_votes_csv(&mut out, &votes)?;
    String::from_utf8(out).map_err(|e| StudyError::Io(std::io::Error::other(e.to_string())))
}

/// The full report over a study's votes as they are now. The bootstrap is CPU work: it
/// runs off the async threads.
pub async fn live_report(
    db: &Db,
    study: &Study,
    settings: ReportSettings,
) -> Result<Report, StudyError> {
    let votes = dashboard::vote_records(&db.pool, study.id).await?;
    tokio::task::spawn_blocking(move || build_report(&votes, &settings))
        .await
        .map_err(|e| StudyError::Internal(format!("report task failed: {e}")))?
        .map_err(|e| StudyError::Internal(format!("cannot build the report: {e}")))
}

/// Pick-a-Pic-shaped JSON lines: `caption, image_0_uid, image_1_uid, model_0, model_1,
/// label_0, label_1, user_id, ranking_id, created_at`. Image 0 is the left one; a preferred
/// image gets 1 and the other 0; a tie is 0.5/0.5; "both bad" is 0/0 and is also marked in
/// `both_bad`, which Pick-a-Pic lacks. Gold checks are left out. Image uids are the
/// images' random ids: a hash would let anyone holding an image a participant was shown
/// look up its model. `user_id` is the participant's crowd ID where there is one.
pub async fn pickapic_jsonl(
    db: &Db,
    study: &Study,
) -> Result<(String, Vec<dashboard::DatasetRow>), StudyError> {
    let rows = dashboard::dataset_rows(&db.pool, study.id).await?;
    let mut out = String::new();
    for r in &rows {
        let (l0, l1) = match r.choice.as_str() {
            "left" => (1.0, 0.0),
            "right" => (0.0, 1.0),
            "tie" => (0.5, 0.5),
            _ => (0.0, 0.0),
        };
        let line = json!({
            "caption": r.prompt,
            "image_0_uid": r.left_image,
            "image_1_uid": r.right_image,
            "model_0": r.model_left,
            "model_1": r.model_right,
            "label_0": l0,
            "label_1": l1,
            "both_bad": r.choice == "both_bad",
            "user_id": r.external_id.clone().unwrap_or_else(|| r.participant_id.to_string()),
            "platform": r.platform,
            "ranking_id": r.ranking_id,
            "created_at": r.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    Ok((out, rows))
}

/// Writes `dir/data.jsonl` and `dir/images/<image uid>.png` for every image the votes refer to.
pub async fn write_pickapic_dir(
    db: &Db,
    study: &Study,
    store: &ImageStore,
    dir: &Path,
) -> Result<usize, StudyError> {
    let (jsonl, rows) = pickapic_jsonl(db, study).await?;
    let images = dir.join("images");
    std::fs::create_dir_all(&images)?;
    for r in &rows {
        for (id, file) in [(r.left_image, &r.left_file), (r.right_image, &r.right_file)] {
            let target = images.join(format!("{id}.png"));
            if !target.exists() {
                std::fs::copy(store.path(file), &target)?;
            }
        }
    }
    std::fs::write(dir.join("data.jsonl"), jsonl)?;
    Ok(rows.len())
}
