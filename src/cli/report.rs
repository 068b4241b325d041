//! `arenaxl report` and `arenaxl bench report`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::report::votes::{read_votes_csv, Choice, VoteRecord};
use crate::report::{build_report, render, Anchor, Cluster, ReportSettings};
use crate::stats::rng::SplitMix64;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Json,
    Html,
    Csv,
    Md,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Votes CSV (header row; participant_id,prompt_id,model_left,model_right,choice required).
    #[arg(long)]
    pub votes: PathBuf,
    /// Output format: json (the full report), html (printable page), csv or md (pairs table).
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Bootstrap rounds for the rating intervals (0 skips them).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// What the bootstrap resamples: participant, prompt or none (single votes).
    #[arg(long, default_value = "participant", value_parser = parse_cluster)]
    pub cluster: Cluster,
    /// Significance level; intervals have coverage 1 - alpha.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Drop every vote of participants who failed any gold (attention check) row.
    #[arg(long)]
    pub exclude_failed_gold: bool,
    /// Drop votes flagged as faster than the study's threshold (the `fast` column).
    #[arg(long)]
    pub exclude_fast: bool,
    /// Fix one model's rating, e.g. --anchor sdxl=1000 (default: mean rating 1000).
    #[arg(long, value_parser = parse_anchor)]
    pub anchor: Option<Anchor>,
    /// Title of the HTML page.
    #[arg(long, default_value = "ArenaXL preference report")]
    pub title: String,
}

fn parse_cluster(s: &str) -> Result<Cluster, String> {
    s.parse()
}

fn parse_anchor(s: &str) -> Result<Anchor, String> {
    s.parse()
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.votes)
        .with_context(|| format!("cannot open votes file {}", args.votes.display()))?;
    let source = args.votes.display().to_string();
    let votes = read_votes_csv(std::io::BufReader::new(file), &source)?;
    let settings = ReportSettings {
        bootstrap: args.bootstrap,
        seed: args.seed,
        cluster: args.cluster,
        alpha: args.alpha,
        exclude_failed_gold: args.exclude_failed_gold,
        exclude_fast: args.exclude_fast,
        anchor: args.anchor,
    };
    let report = build_report(&votes, &settings).context("cannot build the report")?;
    let text = match args.format {
        Format::Json => render::to_json(&report),
        Format::Html => render::to_html(&report, &args.title),
        Format::Csv => render::to_csv(&report),
        Format::Md => render::to_markdown(&report),
    };
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .context("cannot write to standard output")?;
            if !text.ends_with('\n') {
                out.write_all(b"\n")
                    .context("cannot write to standard output")?;
            }
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct BenchReportArgs {
    /// Votes to generate (2% of them are gold rows).
    #[arg(long, default_value_t = 1_000_000)]
    pub votes: usize,
    /// Models.
    #[arg(long, default_value_t = 20)]
    pub models: usize,
    /// Participants.
    #[arg(long, default_value_t = 20_000)]
    pub participants: usize,
    /// Prompts.
    #[arg(long, default_value_t = 2_000)]
    pub prompts: usize,
    /// Bootstrap rounds (participant clusters).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the generator and the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// A synthetic study: true ratings spread over 400 Elo points, 10% ties, 3% both-bad,
/// a slight left-side bias, four prompt categories, two weeks of timestamps.
pub fn synthetic_votes(args: &BenchReportArgs) -> Vec<VoteRecord> {
    let mut rng = SplitMix64::new(args.seed);
    let m = args.models.max(2);
    let strength: Vec<f64> = (0..m)
        .map(|i| -200.0 + 400.0 * i as f64 / (m - 1) as f64)
        .collect();
    let names: Vec<String> = (0..m).map(|i| format!("model-{i:02}")).collect();
    let categories = ["people", "animals", "objects", "scenes"];
    let participants = args.participants.max(1);
    let prompts = args.prompts.max(1);
    let mut uniform = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .map(|t| t.timestamp())
        .unwrap_or(0);
    (0..args.votes)
        .map(|k| {
            let participant = k % participants;
            let prompt = (uniform() * prompts as f64) as usize;
            let i = (uniform() * m as f64) as usize;
            let j = (i + 1 + (uniform() * (m - 1) as f64) as usize) % m;
            let created = start + (k as f64 / args.votes as f64 * 14.0 * 86400.0) as i64;
            let created_at = chrono::DateTime::from_timestamp(created, 0).map(|t| t.to_rfc3339());
            let gold = uniform() < 0.02;
            let (left, right, choice) = if gold {
                let broken = format!("{}#broken", names[i]);
                let pass = uniform() < 0.97;
                let choice = if pass { Choice::Left } else { Choice::Right };
                (names[i].clone(), broken, choice)
            } else {
                let p_left = 1.0 / (1.0 + 10f64.powf((strength[j] - strength[i]) / 400.0)) + 0.02;
                let u = uniform();
                let choice = if u < 0.10 {
                    Choice::Tie
                } else if u < 0.13 {
                    Choice::BothBad
                } else if uniform() < p_left {
                    Choice::Left
                } else {
                    Choice::Right
                };
                (names[i].clone(), names[j].clone(), choice)
            };
            VoteRecord {
                participant_id: format!("p{participant}"),
                prompt_id: format!("prompt{prompt}"),
                model_left: left,
                model_right: right,
                choice,
                category: Some(categories[prompt % categories.len()].to_string()),
                gold,
                response_ms: Some(800 + (uniform() * 6000.0) as i64),
                created_at,
                platform: None,
                external_id: None,
                fast: false,
            }
        })
        .collect()
}

/// Peak resident memory (VmHWM) in KiB, on Linux.
fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn bench(args: BenchReportArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let votes = synthetic_votes(&args);
    let generated = t0.elapsed().as_secs_f64();
    let settings = ReportSettings {
        bootstrap: args.bootstrap,
        seed: args.seed,
        ..ReportSettings::default()
    };
    let t1 = Instant::now();
    let report = build_report(&votes, &settings).context("report failed")?;
    let built = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let json = render::to_json(&report);
    let html = render::to_html(&report, "bench");
    let rendered = t2.elapsed().as_secs_f64();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "votes {} ({} comparisons), models {}, participants {}, prompts {}, bootstrap {} (participant clusters), threads {threads}",
        votes.len(),
        report.n_votes,
        args.models,
        args.participants,
        args.prompts,
        args.bootstrap
    );
    println!("generate votes:      {generated:.3} s");
    println!("build_report:        {built:.3} s");
    println!(
        "render json + html:  {rendered:.3} s ({} + {} bytes)",
        json.len(),
        html.len()
    );
    match peak_memory_kib() {
        Some(kib) => println!("peak memory (VmHWM): {:.1} MiB", kib as f64 / 1024.0),
        None => println!("peak memory (VmHWM): n/a (no /proc/self/status)"),
    }
    Ok(())
}
