//! The pairs table as CSV and the report's tables as Markdown.

use super::format::{level, p_value, pct};
use crate::report::model::{PairStats, Report};

const CSV_COLUMNS: [&str; 21] = [
    "model_a",
    "model_b",
    "wins_a",
    "wins_b",
    "ties",
    "both_bad",
    "n_decisive",
    "win_rate_a",
    "p_value",
    "ci_wilson_low",
    "ci_wilson_high",
    "ci_clopper_pearson_low",
    "ci_clopper_pearson_high",
    "p_holm",
    "significant",
    "n_needed",
    "seq_p_value",
    "seq_p_holm",
    "seq_cs_low",
    "seq_cs_high",
    "seq_decided",
];

fn csv_row(p: &PairStats) -> Vec<String> {
    let full = |x: Option<f64>| x.map(|v| format!("{v}")).unwrap_or_default();
    vec![
        p.model_a.clone(),
        p.model_b.clone(),
        p.wins_a.to_string(),
        p.wins_b.to_string(),
        p.ties.to_string(),
        p.both_bad.to_string(),
        p.n_decisive.to_string(),
        full(p.win_rate_a),
        full(p.p_value),
        full(p.ci_wilson.map(|c| c[0])),
        full(p.ci_wilson.map(|c| c[1])),
        full(p.ci_clopper_pearson.map(|c| c[0])),
        full(p.ci_clopper_pearson.map(|c| c[1])),
        full(p.p_holm),
        p.significant.to_string(),
        p.n_needed.map(|n| n.to_string()).unwrap_or_default(),
        full(p.sequential.as_ref().map(|q| q.p_value)),
        full(p.sequential.as_ref().map(|q| q.p_holm)),
        full(p.sequential.as_ref().map(|q| q.cs[0])),
        full(p.sequential.as_ref().map(|q| q.cs[1])),
        p.sequential
            .as_ref()
            .map(|q| q.decided.to_string())
            .unwrap_or_default(),
    ]
}

/// The pairs table as CSV, one row per pair, values at full precision (empty when null).
pub fn to_csv(report: &Report) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing to a Vec cannot fail; ignore the impossible error rather than panic.
    let _ = w.write_record(CSV_COLUMNS);
    for p in &report.pairs {
        let _ = w.write_record(csv_row(p));
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Markdown cells cannot contain raw pipes or newlines.
/// When to read which test; shown under the pairs table in HTML and Markdown.
pub(crate) const WHICH_TEST: &str = "Use the fixed-n test (p, p (Holm)) when the number of votes was fixed before the study and the data are analysed once; use the anytime-valid test (anytime p, confidence sequence, decided) when the results were watched while votes came in or the study may stop early: it stays valid at every look, at the price of needing more votes.";

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn interval(ci: Option<[f64; 2]>) -> String {
    ci.map(|[lo, hi]| format!("{}–{}%", pct(lo), pct(hi)))
        .unwrap_or_else(|| "n/a".into())
}

/// The pairs table (and the ratings) as Markdown.
pub fn to_markdown(report: &Report) -> String {
    let level = level(report.settings.alpha);
    let mut s = format!(
        "| model A | model B | wins A | wins B | ties | both bad | decisive | win rate A | {level}% CI (Wilson) | {level}% CI (Clopper-Pearson) | p | p (Holm) | significant | n needed | anytime p (Holm) | {level}% confidence sequence | decided |\n|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|---:|---:|---|---|\n"
    );
    for p in &report.pairs {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            md(&p.model_a),
            md(&p.model_b),
            p.wins_a,
            p.wins_b,
            p.ties,
            p.both_bad,
            p.n_decisive,
            p.win_rate_a
                .map(|w| format!("{}%", pct(w)))
                .unwrap_or_else(|| "n/a".into()),
            interval(p.ci_wilson),
            interval(p.ci_clopper_pearson),
            p_value(p.p_value),
            p_value(p.p_holm),
            if p.significant { "yes" } else { "no" },
            p.n_needed
                .map(|n| n.to_string())
                .unwrap_or_else(|| "n/a".into()),
            p_value(p.sequential.as_ref().map(|q| q.p_holm)),
            interval(p.sequential.as_ref().map(|q| q.cs)),
            match &p.sequential {
                Some(q) if q.decided => "yes",
                Some(_) => "no",
                None => "n/a",
            },
        ));
    }
    s.push_str(&format!("\n{WHICH_TEST}\n"));
    if !report.models.is_empty() {
        s.push_str(&format!(
            "\n| model | rating | {level}% CI | rank (upper bound) | votes |\n|---|---:|---|---:|---:|\n"
        ));
        for m in &report.models {
            s.push_str(&format!(
                "| {} | {:.1} | {} | {} | {} |\n",
                md(&m.name),
                m.rating,
                m.ci.map(|[lo, hi]| format!("{lo:.1}–{hi:.1}"))
                    .unwrap_or_else(|| "n/a".into()),
                m.rank_ub
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "n/a".into()),
                m.n_votes
            ));
        }
    }
    for w in &report.warnings {
        s.push_str(&format!("\n> Warning: {}\n", md(w)));
    }
    s
}
