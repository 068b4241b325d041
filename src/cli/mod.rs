//! The command line: one file per subcommand group. Each file parses its arguments and
//! calls into the library; `main.rs` only hands over the parsed `Cli`.

pub mod admin;
pub mod bench;
pub mod bench_jobs;
pub mod database;
pub mod demo;
pub mod distill;
pub mod export;
pub mod generate;
pub mod images;
pub mod jobs;
pub mod model;
pub mod prompts;
pub mod report;
pub mod serve;
pub mod simulate;
pub mod study;
pub mod worker;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "arenaxl",
    version,
    about = "Blind A/B human-preference studies of text-to-image models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web platform (participant pages, JSON API, admin area).
    Serve(serve::ServeArgs),
    /// Apply database migrations and exit.
    Migrate(database::DbArgs),
    /// Create, open and close studies.
    #[command(subcommand)]
    Study(study::StudyCommand),
    /// Manage researcher/admin accounts.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Import prompts into a study.
    #[command(subcommand)]
    Prompts(prompts::PromptsCommand),
    /// Import generated images into a study.
    #[command(subcommand)]
    Images(images::ImagesCommand),
    /// Preference statistics and significance report from a votes file.
    Report(report::ReportArgs),
    /// Export a study's votes, a Pick-a-Pic style dataset, or its report.
    Export(export::ExportArgs),
    /// Generate an image from a diffusers model folder.
    Generate(generate::GenerateArgs),
    /// Model folders: random-weight presets and information.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Start a running platform with an open demo study.
    Demo(demo::DemoArgs),
    /// Queue generation, register models, list/cancel/retry jobs.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Run queued jobs (image generation) on one device.
    Worker(worker::WorkerArgs),
    /// Knowledge distillation: plans, training.
    #[command(subcommand)]
    Distill(distill::DistillCommand),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Simulated studies through the real scheduler and statistics: votes until every
    /// pair is decided, wrong decisions, type-I error under repeated looks.
    Simulate(simulate::SimulateArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => block_on(serve::serve(args)),
        Command::Migrate(args) => block_on(database::migrate(args)),
        Command::Study(cmd) => block_on(study::run(cmd)),
        Command::Admin(cmd) => block_on(admin::run(cmd)),
        Command::Prompts(cmd) => block_on(prompts::run(cmd)),
        Command::Images(cmd) => block_on(images::run(cmd)),
        Command::Report(args) => report::run(args),
        Command::Export(args) => block_on(export::run(args)),
        Command::Generate(args) => generate::run(args),
        Command::Model(cmd) => model::run(cmd),
        Command::Demo(args) => block_on(demo::run(args)),
        Command::Jobs(cmd) => block_on(jobs::run(cmd)),
        Command::Worker(args) => block_on(worker::run(args)),
        Command::Distill(cmd) => distill::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Simulate(args) => simulate::run(args),
    }
}

/// Runs an async command on a fresh multi-threaded runtime.
pub fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(fut: F) -> anyhow::Result<()> {
    crate::telemetry::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(fut)
}

/// 2567463684 -> "2,567,463,684".
pub fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
