//! Report behaviour beyond the reference numbers: bootstrap, anchor, settings errors and
//! the renderings.

use arenaxl::report::render::{to_csv, to_html, to_json, to_markdown};
use arenaxl::report::votes::{Choice, VoteRecord};
use arenaxl::report::{build_report, Anchor, Cluster, ReportError, ReportSettings};

fn vote(p: &str, prompt: &str, left: &str, right: &str, choice: Choice) -> VoteRecord {
    VoteRecord {
        participant_id: p.into(),
        prompt_id: prompt.into(),
        model_left: left.into(),
        model_right: right.into(),
        choice,
        category: Some("cat <x>".into()),
        gold: false,
        response_ms: Some(1000),
        created_at: Some(format!("2026-11-{:02}T10:00:00Z", 1 + p.len() % 5)),
        platform: None,
        external_id: None,
        fast: false,
    }
}

/// Three models of clearly different strength, 30 participants.
fn study() -> Vec<VoteRecord> {
    let mut votes = Vec::new();
    for p in 0..30 {
        let pid = format!("p{p}");
        for k in 0..12 {
            let (l, r, c) = match k % 4 {
                0 => (
                    "strong",
                    "mid",
                    if k % 3 == 0 {
                        Choice::Right
                    } else {
                        Choice::Left
                    },
                ),
                1 => (
                    "mid",
                    "weak <script>",
                    if (p + k) % 4 == 0 {
                        Choice::Right
                    } else {
                        Choice::Left
                    },
                ),
                2 => (
                    "weak <script>",
                    "strong",
                    if p % 5 == 0 {
                        Choice::Left
                    } else {
                        Choice::Right
                    },
                ),
                _ => ("strong", "weak <script>", Choice::Tie),
            };
            votes.push(vote(&pid, &format!("q{}", k % 3), l, r, c));
        }
    }
    votes
}

fn settings(bootstrap: usize) -> ReportSettings {
    ReportSettings {
        bootstrap,
        ..ReportSettings::default()
    }
}

#[test]
fn bootstrap_is_reproducible_and_brackets_the_estimate() {
    let votes = study();
    let a = build_report(&votes, &settings(300)).unwrap_or_else(|e| panic!("{e}"));
    let b = build_report(&votes, &settings(300)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a, b, "same seed, same report");
    let c = build_report(
        &votes,
        &ReportSettings {
            seed: 7,
            ..settings(300)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(
        a.models[0].ci, c.models[0].ci,
        "another seed moves the intervals"
    );
    for m in &a.models {
        let [lo, hi] = m.ci.unwrap_or_else(|| panic!("no interval for {}", m.name));
        assert!(
            lo < m.rating && m.rating < hi,
            "{}: {lo} {} {hi}",
            m.name,
            m.rating
        );
    }
    assert_eq!(a.models[0].name, "strong");
    assert_eq!(a.models[0].rank_ub, Some(1));
    // The weakest model's interval lies wholly below the strongest one's.
    assert!(a.models[2].rank_ub.unwrap_or(0) >= 2);
    let mean: f64 = a.models.iter().map(|m| m.rating).sum::<f64>() / 3.0;
    assert!((mean - 1000.0).abs() < 1e-9);
}

#[test]
fn cluster_choice_changes_the_intervals() {
    let votes = study();
    let by_person = build_report(&votes, &settings(200)).unwrap_or_else(|e| panic!("{e}"));
    let by_vote = build_report(
        &votes,
        &ReportSettings {
            cluster: Cluster::None,
            ..settings(200)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        by_person.models[0].rating, by_vote.models[0].rating,
        "point estimate is the full-data fit"
    );
    assert_ne!(by_person.models[0].ci, by_vote.models[0].ci);
    let by_prompt = build_report(
        &votes,
        &ReportSettings {
            cluster: Cluster::Prompt,
            ..settings(200)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(by_prompt.models[0].rating, by_person.models[0].rating);
    assert_ne!(by_prompt.models[0].ci, by_person.models[0].ci);
    assert_eq!(by_prompt.settings.cluster, Cluster::Prompt);
}

#[test]
fn anchor_fixes_one_rating_and_keeps_differences() {
    let votes = study();
    let free = build_report(&votes, &settings(0)).unwrap_or_else(|e| panic!("{e}"));
    let anchored = build_report(
        &votes,
        &ReportSettings {
            anchor: Some(Anchor {
                model: "mid".into(),
                rating: 1500.0,
            }),
            ..settings(0)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let get = |r: &arenaxl::report::Report, n: &str| {
        r.models
            .iter()
            .find(|m| m.name == n)
            .map(|m| m.rating)
            .unwrap_or(f64::NAN)
    };
    assert!((get(&anchored, "mid") - 1500.0).abs() < 1e-9);
    let d_free = get(&free, "strong") - get(&free, "mid");
    let d_anch = get(&anchored, "strong") - get(&anchored, "mid");
    assert!((d_free - d_anch).abs() < 1e-9);
    let unknown = build_report(
        &votes,
        &ReportSettings {
            anchor: Some(Anchor {
                model: "nope".into(),
                rating: 1.0,
            }),
            ..settings(0)
        },
    );
    assert!(matches!(unknown, Err(ReportError::UnknownAnchor(m)) if m == "nope"));
}

#[test]
fn invalid_alpha_is_an_error() {
    for alpha in [0.0, 1.0, -0.1, f64::NAN] {
        let r = build_report(
            &study(),
            &ReportSettings {
                alpha,
                ..settings(0)
            },
        );
        assert!(
            matches!(r, Err(ReportError::InvalidSetting(_))),
            "alpha {alpha}"
        );
    }
}

#[test]
fn anchor_argument_parses() {
    let a: Anchor = "sd=xl=1200.5".parse().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((a.model.as_str(), a.rating), ("sd=xl", 1200.5));
    assert!("sdxl".parse::<Anchor>().is_err());
    assert!("sdxl=abc".parse::<Anchor>().is_err());
}

#[test]
fn empty_votes_give_an_empty_report() {
    let r = build_report(&[], &settings(100)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.n_votes, r.pairs.len(), r.models.len()), (0, 0, 0));
    assert!(r.agreement.is_none() && r.votes_over_time.is_none());
    assert!(!r.warnings.is_empty());
}

#[test]
fn json_has_the_contract_fields() {
    let r = build_report(&study(), &settings(50)).unwrap_or_else(|e| panic!("{e}"));
    let v: serde_json::Value = serde_json::from_str(&to_json(&r)).unwrap_or_else(|e| panic!("{e}"));
    for key in [
        "n_votes",
        "n_participants",
        "n_prompts",
        "settings",
        "pairs",
        "models",
        "position_bias",
        "agreement",
        "categories",
        "participants",
        "warnings",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    for key in [
        "model_a",
        "model_b",
        "wins_a",
        "wins_b",
        "ties",
        "both_bad",
        "n_decisive",
        "win_rate_a",
        "p_value",
        "ci_wilson",
        "ci_clopper_pearson",
        "p_holm",
        "significant",
        "n_needed",
    ] {
        assert!(v["pairs"][0].get(key).is_some(), "pairs missing {key}");
    }
    for key in ["name", "rating", "ci", "rank_ub", "n_votes"] {
        assert!(v["models"][0].get(key).is_some(), "models missing {key}");
    }
    assert_eq!(v["settings"]["cluster"], "participant");
    assert_eq!(v["settings"]["bootstrap"], 50);
}

#[test]
fn html_is_standalone_and_escapes_names() {
    let r = build_report(&study(), &settings(50)).unwrap_or_else(|e| panic!("{e}"));
    let html = to_html(&r, "Distilled <vs> teacher");
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(!html.contains("<script>"), "model name not escaped");
    assert!(html.contains("weak &lt;script&gt;"));
    assert!(html.contains("cat &lt;x&gt;"));
    assert!(html.contains("Distilled &lt;vs&gt; teacher"));
    assert!(html.contains("<svg"), "charts are inline SVG");
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "no external assets"
    );
    assert!(
        html.contains("decisive votes (95% CI"),
        "plain-language summary"
    );
    // The anytime-valid test sits next to the fixed-n one, with when to use which.
    assert!(
        html.contains("<th>anytime p (Holm)</th><th>95% confidence sequence</th><th>decided</th>")
    );
    assert!(html.contains("use the anytime-valid test"));
}

#[test]
fn csv_and_markdown_list_every_pair() {
    let r = build_report(&study(), &settings(0)).unwrap_or_else(|e| panic!("{e}"));
    let csv = to_csv(&r);
    assert_eq!(csv.lines().count(), 1 + r.pairs.len());
    assert!(csv.starts_with("model_a,model_b,wins_a"));
    let md = to_markdown(&r);
    assert!(md.contains("| mid | strong |"), "{md}");
    assert!(
        md.contains("| anytime p (Holm) | 95% confidence sequence | decided |"),
        "{md}"
    );
    assert!(md.contains("use the anytime-valid test"), "{md}");
    assert!(csv
        .lines()
        .next()
        .is_some_and(|h| h.ends_with(",seq_cs_low,seq_cs_high,seq_decided")));
    // Every pair row has the anytime-valid columns filled.
    for row in csv.lines().skip(1) {
        let cells: Vec<&str> = row.split(',').collect();
        assert!(
            cells.len() == 21 && matches!(cells[20], "true" | "false"),
            "{row}"
        );
    }
}

/// The JSON keys of `value` equal the `required` list of `schema` (which also forbids
/// additional properties), so the schema file and the serialised report cannot drift.
fn assert_keys_match(what: &str, value: &serde_json::Value, schema: &serde_json::Value) {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object"))
        .keys()
        .map(String::as_str)
        .collect();
    let mut required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    keys.sort();
    required.sort();
    assert_eq!(keys, required, "{what}: report keys vs schema");
    assert_eq!(
        schema["additionalProperties"],
        serde_json::Value::Bool(false),
        "{what}"
    );
}

#[test]
fn schema_file_matches_the_serialised_report() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/report.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let mut votes = study();
    votes[0].gold = true;
    votes[0].model_left = "mid#broken".into();
    votes[0].model_right = "mid".into();
    let r = build_report(
        &votes,
        &ReportSettings {
            anchor: Some(Anchor {
                model: "mid".into(),
                rating: 1000.0,
            }),
            ..settings(20)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let v: serde_json::Value = serde_json::from_str(&to_json(&r)).unwrap_or_else(|e| panic!("{e}"));
    let props = &schema["properties"];
    assert_keys_match("report", &v, &schema);
    assert_keys_match("settings", &v["settings"], &props["settings"]);
    assert_keys_match(
        "anchor",
        &v["settings"]["anchor"],
        &props["settings"]["properties"]["anchor"]["oneOf"][1],
    );
    assert_keys_match("pair", &v["pairs"][0], &schema["$defs"]["pair"]);
    assert_keys_match(
        "sequential",
        &v["pairs"][0]["sequential"],
        &schema["$defs"]["sequential"],
    );
    assert_keys_match("model", &v["models"][0], &props["models"]["items"]);
    assert_keys_match(
        "component",
        &v["components"][0],
        &props["components"]["items"],
    );
    assert_keys_match(
        "position_bias",
        &v["position_bias"],
        &props["position_bias"],
    );
    assert_keys_match(
        "agreement",
        &v["agreement"],
        &props["agreement"]["oneOf"][1],
    );
    assert_keys_match(
        "category",
        &v["categories"][0],
        &props["categories"]["items"],
    );
    assert_keys_match("participants", &v["participants"], &props["participants"]);
    assert_keys_match(
        "gold result",
        &v["participants"]["gold_results"][0],
        &props["participants"]["properties"]["gold_results"]["items"],
    );
    assert_keys_match(
        "votes_over_time",
        &v["votes_over_time"],
        &props["votes_over_time"]["oneOf"][1],
    );
    assert_keys_match(
        "time bucket",
        &v["votes_over_time"]["counts"][0],
        &props["votes_over_time"]["oneOf"][1]["properties"]["counts"]["items"],
    );
}
