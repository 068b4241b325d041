//! `build_report`: votes and settings in, the full report out.

use super::dataset::{self, CompactVote, Outcome};
use super::model::{CategoryStats, PositionBias, Report};
use super::settings::ReportSettings;
use super::votes::{Choice, VoteRecord};
use super::{agreement, pairs, participants, ratings, timeline, ReportError};
use crate::stats::binomial::binom_test_two_sided;

/// Computes every statistic of the report. Pure: no I/O. Errors only on invalid settings
/// (alpha outside (0, 1), an anchor model that is not rated) or a rating fit that fails.
pub fn build_report(
    votes: &[VoteRecord],
    settings: &ReportSettings,
) -> Result<Report, ReportError> {
    if !(settings.alpha > 0.0 && settings.alpha < 1.0) {
        return Err(ReportError::InvalidSetting(format!(
            "alpha must be between 0 and 1 (exclusive), got {}",
            settings.alpha
        )));
    }
    let gold = participants::summarise(votes);
    let mut summary = gold.summary;
    let exclude = settings.exclude_failed_gold;
    let keep_person =
        |v: &VoteRecord| !(exclude && gold.failed.contains(v.participant_id.as_str()));
    if exclude {
        summary.excluded = gold.failed.len() as u64;
        summary.excluded_votes = votes.iter().filter(|v| !v.gold && !keep_person(v)).count() as u64;
    }
    if settings.exclude_fast {
        summary.excluded_fast_votes = votes
            .iter()
            .filter(|v| !v.gold && v.fast && keep_person(v))
            .count() as u64;
    }
    let keep = |v: &VoteRecord| keep_person(v) && !(settings.exclude_fast && v.fast);
    let ds = dataset::build(votes, keep);

    let counts = pairs::count(ds.pairs.len(), ds.votes.iter());
    let in_time_order = time_order(&ds.votes, votes);
    let seq = pairs::sequential(
        ds.pairs.len(),
        in_time_order.iter().map(|&i| &ds.votes[i]),
        settings.alpha,
    );
    let pair_stats = pairs::stats(&ds.models, &ds.pairs, &counts, &seq, settings.alpha);
    let ratings = ratings::compute(&ds, &counts, settings)?;

    let left_wins = ds.votes.iter().filter(|v| v.choice == Choice::Left).count() as u64;
    let right_wins = ds
        .votes
        .iter()
        .filter(|v| v.choice == Choice::Right)
        .count() as u64;
    let position_bias = PositionBias {
        left_wins,
        right_wins,
        p_value: binom_test_two_sided(left_wins, left_wins + right_wins, 0.5),
    };

    let mut categories: Vec<CategoryStats> = (0..ds.categories.len())
        .map(|c| {
            let in_cat = || {
                ds.votes
                    .iter()
                    .filter(move |v| v.category == Some(c as u32))
            };
            let counts = pairs::count(ds.pairs.len(), in_cat());
            let seq = pairs::sequential(
                ds.pairs.len(),
                in_time_order
                    .iter()
                    .map(|&i| &ds.votes[i])
                    .filter(|v| v.category == Some(c as u32)),
                settings.alpha,
            );
            CategoryStats {
                category: ds.categories[c].to_string(),
                n_votes: in_cat().count() as u64,
                pairs: pairs::stats(&ds.models, &ds.pairs, &counts, &seq, settings.alpha),
            }
        })
        .collect();
    categories.sort_by(|a, b| a.category.cmp(&b.category));

    let mut warnings = ratings.warnings;
    if ds.votes.is_empty() {
        warnings.push("no comparison votes: nothing to test or rate".to_string());
    } else if ds
        .votes
        .iter()
        .all(|v| matches!(v.outcome, Outcome::Tie | Outcome::BothBad))
    {
        warnings.push(
            "no decisive votes (only ties and both-bad): no win rates or p-values".to_string(),
        );
    }
    if ds.n_participants == 1
        && settings.cluster == super::settings::Cluster::Participant
        && settings.bootstrap > 0
    {
        warnings.push(
            "only one participant: resampling participants cannot show between-person variation, so the rating intervals have zero width"
                .to_string(),
        );
    }
    let votes_over_time = timeline::compute(
        ds.votes
            .iter()
            .filter_map(|v| votes[v.row as usize].created_at.as_deref()),
    );

    Ok(Report {
        n_votes: ds.votes.len() as u64,
        n_participants: ds.n_participants as u64,
        n_prompts: ds.n_prompts as u64,
        settings: settings.clone(),
        pairs: pair_stats,
        models: ratings.models,
        components: ratings.components,
        position_bias,
        agreement: agreement::compute(&ds.votes),
        categories,
        participants: summary,
        votes_over_time,
        warnings,
    })
}

/// Indices of `compact` in `created_at` order; file order breaks ties, and rows without a
/// time keep their file order ahead of the timed ones.
fn time_order(compact: &[CompactVote], rows: &[VoteRecord]) -> Vec<usize> {
    let at = |v: &CompactVote| {
        rows[v.row as usize]
            .created_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t.trim()).ok())
            .map(|t| (t.timestamp(), t.timestamp_subsec_nanos()))
    };
    let keys: Vec<_> = compact.iter().map(at).collect();
    let mut order: Vec<usize> = (0..compact.len()).collect();
    // A stable sort keeps file order among equal times.
    order.sort_by_key(|&i| keys[i]);
    order
}
