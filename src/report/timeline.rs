//! Votes over time from `created_at`: hourly buckets when the votes span under two days,
//! daily ones otherwise (UTC).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use super::model::{TimeBucket, Timeline};

/// Buckets the given RFC 3339 timestamps; unparsable ones are skipped (the CSV reader
/// already rejects them). `None` when there are no timestamps.
pub(crate) fn compute<'a>(stamps: impl Iterator<Item = &'a str>) -> Option<Timeline> {
    let times: Vec<DateTime<Utc>> = stamps
        .filter_map(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .collect();
    let first = *times.iter().min()?;
    let last = *times.iter().max()?;
    let (bucket, width) = if last - first < TimeDelta::days(2) {
        ("hour", TimeDelta::hours(1))
    } else {
        ("day", TimeDelta::days(1))
    };
    let start = first.duration_trunc(width).ok()?;
    let n = ((last - start).num_seconds() / width.num_seconds()) as usize + 1;
    let mut counts = vec![0u64; n];
    for t in &times {
        let k = ((*t - start).num_seconds() / width.num_seconds()) as usize;
        counts[k.min(n - 1)] += 1;
    }
    Some(Timeline {
        bucket,
        counts: counts
            .into_iter()
            .enumerate()
            .map(|(k, n_votes)| TimeBucket {
                start: (start + width * k as i32)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                n_votes,
            })
            .collect(),
    })
}
