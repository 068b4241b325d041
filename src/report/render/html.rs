//! The standalone HTML report: one printable page, inline CSS and SVG, no external assets.

use super::format::{escape, level, p_clause, p_value, pct, thousands};
use super::svg::{bar_chart, interval_plot, IntervalRow};
use crate::report::model::{PairStats, Report};

const STYLE: &str = "body{font-family:Georgia,'Times New Roman',serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#111;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.2rem;border-bottom:1px solid #ccc;margin-top:2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.2rem .45rem;text-align:right}
th:first-child,td:first-child,th:nth-child(2),td.name{text-align:left}.warn{background:#fff4e0;border-left:4px solid #e69500;padding:.4rem .8rem}
.sig{font-weight:bold}.muted{color:#555;font-size:.85rem}svg{max-width:100%;height:auto}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}svg,table{break-inside:avoid}}";

/// The preferred model first: ("X was preferred to Y", rate, interval) from the pair.
fn preferred_view(p: &PairStats) -> Option<(&str, &str, f64, Option<[f64; 2]>)> {
    let w = p.win_rate_a?;
    if w >= 0.5 {
        Some((&p.model_a, &p.model_b, w, p.ci_wilson))
    } else {
        Some((
            &p.model_b,
            &p.model_a,
            1.0 - w,
            p.ci_wilson.map(|[lo, hi]| [1.0 - hi, 1.0 - lo]),
        ))
    }
}

/// One plain-language sentence about a pair (already escaped).
fn sentence(p: &PairStats, level: &str) -> String {
    match preferred_view(p) {
        None => format!(
            "{} and {} met {} times with no decisive vote ({} ties, {} both bad): no preference can be tested.",
            escape(&p.model_a),
            escape(&p.model_b),
            thousands(p.ties + p.both_bad),
            thousands(p.ties),
            thousands(p.both_bad)
        ),
        Some((x, y, rate, ci)) => {
            let ci = ci
                .map(|[lo, hi]| format!(" ({level}% CI {}–{}%)", pct(lo), pct(hi)))
                .unwrap_or_default();
            let verdict = if p.significant {
                "<span class=\"sig\">a significant difference</span>"
            } else {
                "no significant difference"
            };
            format!(
                "{} was preferred to {} in {}% of {} decisive votes{ci}, p {} after Holm correction: {verdict}.",
                escape(x),
                escape(y),
                pct(rate),
                thousands(p.n_decisive),
                p_clause(p.p_holm)
            )
        }
    }
}

fn pairs_table(pairs: &[PairStats], level: &str) -> String {
    let mut s = format!(
        "<table><tr><th>model A</th><th>model B</th><th>wins A</th><th>wins B</th><th>ties</th><th>both bad</th><th>win rate A</th><th>{level}% CI (Wilson)</th><th>{level}% CI (Clopper-Pearson)</th><th>p</th><th>p (Holm)</th><th>n needed</th><th>anytime p (Holm)</th><th>{level}% confidence sequence</th><th>decided</th></tr>"
    );
    let ci = |c: Option<[f64; 2]>| {
        c.map(|[a, b]| format!("{}–{}%", pct(a), pct(b)))
            .unwrap_or_else(|| "n/a".into())
    };
    for p in pairs {
        s.push_str(&format!(
            "<tr{}><td>{}</td><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if p.significant { " class=\"sig\"" } else { "" },
            escape(&p.model_a),
            escape(&p.model_b),
            thousands(p.wins_a),
            thousands(p.wins_b),
            thousands(p.ties),
            thousands(p.both_bad),
            p.win_rate_a.map(|w| format!("{}%", pct(w))).unwrap_or_else(|| "n/a".into()),
            ci(p.ci_wilson),
            ci(p.ci_clopper_pearson),
            p_value(p.p_value),
            p_value(p.p_holm),
            p.n_needed.map(thousands).unwrap_or_else(|| "n/a".into()),
            p_value(p.sequential.as_ref().map(|q| q.p_holm)),
            ci(p.sequential.as_ref().map(|q| q.cs)),
            match &p.sequential {
                Some(q) if q.decided => "yes",
                Some(_) => "no",
                None => "n/a",
            },
        ));
    }
    s.push_str("</table>");
    s
}

/// The full report page. `title` and every model, category and participant string are
/// HTML-escaped.
pub fn to_html(report: &Report, title: &str) -> String {
    let level = level(report.settings.alpha);
    let mut b = String::new();
    b.push_str(&format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title><style>{STYLE}</style></head><body><h1>{0}</h1>",
        escape(title)
    ));
    let s = &report.settings;
    b.push_str(&format!(
        "<p>{} comparison votes from {} participants on {} prompts. Intervals are {level}% intervals; tests are two-sided at α = {}. Rating intervals: {} percentile-bootstrap rounds resampling {} (seed {}).</p>",
        thousands(report.n_votes),
        thousands(report.n_participants),
        thousands(report.n_prompts),
        s.alpha,
        thousands(s.bootstrap as u64),
        match s.cluster {
            crate::report::Cluster::Participant => "participants",
            crate::report::Cluster::Prompt => "prompts",
            crate::report::Cluster::None => "single votes",
        },
        s.seed
    ));
    for w in &report.warnings {
        b.push_str(&format!("<p class=\"warn\">Warning: {}</p>", escape(w)));
    }

    b.push_str("<h2>Summary</h2><ul>");
    for p in &report.pairs {
        b.push_str(&format!("<li>{}</li>", sentence(p, &level)));
    }
    if report.pairs.is_empty() {
        b.push_str("<li>No comparisons.</li>");
    }
    b.push_str("</ul>");

    let forest: Vec<IntervalRow> = report
        .pairs
        .iter()
        .filter_map(|p| {
            Some(IntervalRow {
                label: format!("{} vs {}", p.model_a, p.model_b),
                value: p.win_rate_a?,
                ci: p.ci_wilson,
            })
        })
        .collect();
    if !forest.is_empty() {
        b.push_str(&format!(
            "<h2>Win rates</h2><p class=\"muted\">Share of decisive votes won by the first model, with {level}% Wilson intervals; the dashed line is no preference (50%).</p>"
        ));
        b.push_str(&interval_plot(
            &forest,
            0.0,
            1.0,
            Some(0.5),
            &[0.0, 0.25, 0.5, 0.75, 1.0],
            &|t| format!("{}%", (t * 100.0).round()),
            "Win rates with confidence intervals",
        ));
    }
    b.push_str(&format!(
        "<h2>Pairs</h2>{}",
        pairs_table(&report.pairs, &level)
    ));
    b.push_str("<p class=\"muted\">p: exact two-sided binomial test of the decisive votes against 50%. p (Holm): adjusted over all pairs; bold rows are significant. n needed: decisive votes for 80% power to detect the observed win rate. Anytime p: the Beta(1, 1) mixture likelihood-ratio test over the decisive votes in time order, Holm-adjusted over all pairs; the confidence sequence is its interval for the win rate of model A; decided: anytime p (Holm) below α.</p>");
    b.push_str(&format!("<p>{}</p>", super::tables::WHICH_TEST));

    if !report.models.is_empty() {
        b.push_str(&format!(
            "<h2>Ratings</h2><p class=\"muted\">Bradley-Terry maximum-likelihood ratings on the Elo scale (ties and both-bad count half a win each side), centred on 1000 unless anchored, with {level}% bootstrap intervals. Rank is an upper bound: 1 + the number of models whose interval lies entirely above.</p>"
        ));
        let rows: Vec<IntervalRow> = report
            .models
            .iter()
            .map(|m| IntervalRow {
                label: if report.components.len() > 1 {
                    format!("{} (part {})", m.name, m.component + 1)
                } else {
                    m.name.clone()
                },
                value: m.rating,
                ci: m.ci,
            })
            .collect();
        let lo = rows
            .iter()
            .map(|r| r.ci.map_or(r.value, |c| c[0].min(r.value)))
            .fold(f64::INFINITY, f64::min);
        let hi = rows
            .iter()
            .map(|r| r.ci.map_or(r.value, |c| c[1].max(r.value)))
            .fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.05).max(5.0);
        let (lo, hi) = (lo - pad, hi + pad);
        let ticks: Vec<f64> = (0..=4).map(|k| lo + (hi - lo) * k as f64 / 4.0).collect();
        b.push_str(&interval_plot(
            &rows,
            lo,
            hi,
            None,
            &ticks,
            &|t| format!("{t:.0}"),
            "Ratings with bootstrap intervals",
        ));
        b.push_str(&format!("<table><tr><th>model</th><th>rating</th><th>{level}% CI</th><th>rank (upper bound)</th><th>votes</th></tr>"));
        for m in &report.models {
            b.push_str(&format!(
                "<tr><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&m.name),
                m.rating,
                m.ci.map(|[a, c]| format!("{a:.1}–{c:.1}"))
                    .unwrap_or_else(|| "n/a".into()),
                m.rank_ub
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "n/a".into()),
                thousands(m.n_votes)
            ));
        }
        b.push_str("</table>");
    }

    if let Some(t) = &report.votes_over_time {
        // "2026-11-27" for days, "2026-11-27 13:00" for hours (UTC).
        let cut = if t.bucket == "day" { 10 } else { 16 };
        let labels: Vec<String> = t
            .counts
            .iter()
            .map(|c| c.start.get(..cut).unwrap_or(&c.start).replace('T', " "))
            .collect();
        let values: Vec<u64> = t.counts.iter().map(|c| c.n_votes).collect();
        b.push_str(&format!(
            "<h2>Votes over time</h2><p class=\"muted\">Comparison votes per {} (UTC).</p>",
            t.bucket
        ));
        b.push_str(&bar_chart(&labels, &values, "Votes over time"));
    }

    let pb = &report.position_bias;
    let decisive = pb.left_wins + pb.right_wins;
    b.push_str("<h2>Position bias</h2>");
    if decisive > 0 {
        b.push_str(&format!(
            "<p>The left image was chosen in {} of {} decisive votes ({}%), p {} (exact two-sided binomial test against 50%).</p>",
            thousands(pb.left_wins),
            thousands(decisive),
            pct(pb.left_wins as f64 / decisive as f64),
            p_clause(pb.p_value)
        ));
    } else {
        b.push_str("<p>No decisive votes.</p>");
    }

    b.push_str("<h2>Agreement between participants</h2>");
    match &report.agreement {
        None => b.push_str("<p>No item (prompt and model pair) was judged by two or more participants.</p>"),
        Some(a) => b.push_str(&format!(
            "<p>{} items (a prompt and a model pair) were judged by two or more participants. Krippendorff's α (nominal) = {}; Fleiss' κ = {} over the {} items with {} ratings each. Categories: first model preferred, second preferred, tie, both bad.</p>",
            thousands(a.n_items),
            a.krippendorff_alpha.map(|x| format!("{x:.3}")).unwrap_or_else(|| "undefined".into()),
            a.fleiss_kappa.map(|x| format!("{x:.3}")).unwrap_or_else(|| "undefined".into()),
            thousands(a.fleiss_n_items),
            a.fleiss_raters_per_item
        )),
    }

    if !report.categories.is_empty() {
        b.push_str(
            "<h2>By category</h2><p class=\"muted\">Holm adjustment within each category.</p>",
        );
        for c in &report.categories {
            b.push_str(&format!(
                "<h3>{} ({} votes)</h3>",
                escape(&c.category),
                thousands(c.n_votes)
            ));
            b.push_str(&pairs_table(&c.pairs, &level));
        }
    }

    let pa = &report.participants;
    b.push_str(&format!(
        "<h2>Participants</h2><p>{} participants; {} answered gold (attention check) rows, passing {} of {}{}. {} failed at least one check{}. Median response time: {}.</p>",
        thousands(pa.count),
        thousands(pa.with_gold),
        thousands(pa.gold_passed),
        thousands(pa.gold_rows),
        pa.gold_pass_rate.map(|r| format!(" ({}%)", pct(r))).unwrap_or_default(),
        thousands(pa.failed_gold),
        if report.settings.exclude_failed_gold {
            format!("; their {} votes were excluded", thousands(pa.excluded_votes))
        } else {
            "; their votes are included".to_string()
        },
        pa.median_response_ms.map(|m| format!("{:.0} ms", m)).unwrap_or_else(|| "n/a".into())
    ));
    if !pa.gold_results.is_empty() {
        b.push_str("<table><tr><th>gold checks</th><th>passed</th><th>participants</th></tr>");
        for g in &pa.gold_results {
            b.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                g.gold_rows,
                g.gold_passed,
                thousands(g.participants)
            ));
        }
        b.push_str("</table>");
    }
    let ids = |ids: &[String]| {
        ids.iter()
            .map(|id| format!("<code>{}</code>", escape(id)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !pa.failed_gold_ids.is_empty() {
        b.push_str(&format!(
            "<p id=\"failed-gold\">Failed an attention check (crowd IDs): {}</p>",
            ids(&pa.failed_gold_ids)
        ));
    }
    b.push_str(&format!(
        "<p id=\"fast-votes\">{} votes were faster than the study's threshold{}{}</p>",
        thousands(pa.fast_votes),
        if report.settings.exclude_fast {
            format!(" ({} excluded)", thousands(pa.excluded_fast_votes))
        } else {
            " (included)".to_string()
        },
        if pa.fast_participant_ids.is_empty() {
            ".".to_string()
        } else {
            format!("; given by (crowd IDs): {}.", ids(&pa.fast_participant_ids))
        }
    ));
    b.push_str("</body></html>\n");
    b
}
