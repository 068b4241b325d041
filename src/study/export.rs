//! A study's data leaving the platform: the votes CSV that `arenaxl report` reads, the live
//! report, and a dataset in the shape of the public Pick-a-Pic preference data.

use std::path::Path;

use serde_json::json;

use crate::db::{dashboard, Db};
use crate::report::votes::write_votes_csv;
use crate::report::{build_report, Report, ReportSettings};

use super::images::ImageStore;
use super::{Study, StudyError};

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
        .map_err(|e| StudyError::Conflict(format!("report task failed: {e}")))?
        .map_err(|e| StudyError::Conflict(format!("cannot build the report: {e}")))
}

/// Pick-a-Pic-shaped JSON lines: `caption, image_0_uid, image_1_uid, model_0, model_1,
/// label_0, label_1, user_id, ranking_id, created_at`. Image 0 is the left one; a preferred
/// image gets 1 and the other 0; a tie is 0.5/0.5; "both bad" is 0/0 and is also marked in
/// `both_bad`, which Pick-a-Pic lacks. Gold checks are left out. Image uids are sha256 hashes.
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
            "image_0_uid": r.left_sha256,
            "image_1_uid": r.right_sha256,
            "model_0": r.model_left,
            "model_1": r.model_right,
            "label_0": l0,
            "label_1": l1,
            "both_bad": r.choice == "both_bad",
            "user_id": r.participant_id,
            "ranking_id": r.assignment_id,
            "created_at": r.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    Ok((out, rows))
}

/// Writes `dir/data.jsonl` and `dir/images/<sha256>.png` for every image the votes refer to.
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
        for (sha, file) in [
            (&r.left_sha256, &r.left_file),
            (&r.right_sha256, &r.right_file),
        ] {
            let target = images.join(format!("{sha}.png"));
            if !target.exists() {
                std::fs::copy(store.path(file), &target)?;
            }
        }
    }
    std::fs::write(dir.join("data.jsonl"), jsonl)?;
    Ok(rows.len())
}
