//! `arenaxl demo`: a running platform with an open demo study, on a fresh machine with no
//! GPU and no downloads. Until the generation jobs land, its images are placeholders drawn
//! here, and every participant page says so.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use image::{Rgb, RgbImage};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::db::studies;
use crate::startup::Application;
use crate::study::images::{insert_images, prepare, ImageStore, PreparedImage};
use crate::study::prompts::{import_prompts, parse_prompts, NewPrompt, PromptFormat};
use crate::study::{admins, StudyError, StudyForm, StudySettings, StudyStatus};

use super::serve::{open_database, DbArgs};

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Data directory of the demo (kept between runs).
    #[arg(long, env = "ARENAXL_DATA_DIR", default_value = "data/demo")]
    pub data_dir: PathBuf,
    /// Prompt file; by default 12 PartiPrompts from ../shared/data/PartiPrompts.tsv when present.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Number of prompts to use.
    #[arg(long, default_value_t = 12)]
    pub prompt_count: usize,
}

pub const DEMO_SLUG: &str = "demo";
pub const DEMO_ADMIN: &str = "admin@arenaxl.local";
const DEMO_NOTICE: &str = "Demo study: these images are placeholders drawn by ArenaXL itself, not the output of any model.";
const MODELS: [&str; 3] = ["sdxl-placeholder", "ssd-1b-placeholder", "vega-placeholder"];

const FALLBACK_PROMPTS: [&str; 12] = [
    "a red apple on a wooden table",
    "a lighthouse on a cliff at sunset",
    "an astronaut riding a horse",
    "a bowl of ramen with chopsticks",
    "a watercolor painting of a fox in the snow",
    "a city skyline at night reflected in a river",
    "a cat wearing a tiny wizard hat",
    "a vintage bicycle leaning against a brick wall",
    "a mountain lake with pine trees",
    "a robot reading a book in a library",
    "a teapot shaped like an elephant",
    "a field of sunflowers under a stormy sky",
];

/// 12 (or `count`) prompts, one per category where the file has categories.
fn demo_prompts(args: &DemoArgs) -> anyhow::Result<Vec<NewPrompt>> {
    let candidates: Vec<PathBuf> = match &args.prompts {
        Some(p) => vec![p.clone()],
        None => vec![
            PathBuf::from("../shared/data/PartiPrompts.tsv"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/PartiPrompts.tsv"),
        ],
    };
    for path in candidates {
        if !path.is_file() {
            if args.prompts.is_some() {
                anyhow::bail!("prompt file {} does not exist", path.display());
            }
            continue;
        }
        let content = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let name = path.display().to_string();
        let all = parse_prompts(&name, &content, PromptFormat::detect(&name, &content))?;
        let mut chosen: Vec<NewPrompt> = Vec::new();
        for p in &all {
            if chosen.len() < args.prompt_count && !chosen.iter().any(|c| c.category == p.category)
            {
                chosen.push(p.clone());
            }
        }
        for p in &all {
            if chosen.len() < args.prompt_count && !chosen.contains(p) {
                chosen.push(p.clone());
            }
        }
        return Ok(chosen);
    }
    Ok(FALLBACK_PROMPTS
        .iter()
        .take(args.prompt_count)
        .map(|t| NewPrompt {
            text: t.to_string(),
            category: None,
            challenge: None,
            external_id: None,
        })
        .collect())
}

/// A placeholder picture: soft gradient and a few discs, different for every prompt and model.
pub fn placeholder_image(prompt: &str, model: &str, size: u32) -> RgbImage {
    let digest = Sha256::digest(format!("{prompt}\u{0}{model}").as_bytes());
    let b = |i: usize| digest[i % digest.len()] as f32;
    let mut img = RgbImage::from_fn(size, size, |x, y| {
        let (fx, fy) = (x as f32 / size as f32, y as f32 / size as f32);
        Rgb([
            (b(0) * (1.0 - fy) + b(1) * fy) as u8,
            (b(2) * (1.0 - fx) + b(3) * fx) as u8,
            ((b(4) + b(5)) / 2.0) as u8,
        ])
    });
    for k in 0..4 {
        let cx = b(6 + k * 4) / 255.0 * size as f32;
        let cy = b(7 + k * 4) / 255.0 * size as f32;
        let r = (0.08 + b(8 + k * 4) / 255.0 * 0.2) * size as f32;
        let color = Rgb([b(9 + k * 4) as u8, b(10 + k * 3) as u8, b(11 + k * 2) as u8]);
        for y in 0..size {
            for x in 0..size {
                let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                if dx * dx + dy * dy <= r * r {
                    img.put_pixel(x, y, color);
                }
            }
        }
    }
    img
}

/// Creates (or reuses) the demo study with prompts and placeholder images, and opens it.
pub async fn prepare_demo(
    db: &crate::db::Db,
    store: &ImageStore,
    args: &DemoArgs,
) -> anyhow::Result<()> {
    let study = match studies::by_slug(&db.pool, DEMO_SLUG).await {
        Ok(s) => s,
        Err(StudyError::NotFound(_)) => {
            let settings = StudySettings::try_from(StudyForm {
                slug: DEMO_SLUG.into(),
                title: "Which image is better? (ArenaXL demo)".into(),
                notice: Some(DEMO_NOTICE.into()),
                votes_per_participant: Some(10),
                gold_rate: Some(0.1),
                completion_code: Some("DEMO-DONE".into()),
                allow_tie: true,
                allow_both_bad: true,
                ..StudyForm::default()
            })?;
            studies::insert(&db.pool, &settings).await?
        }
        Err(e) => return Err(e.into()),
    };
    let prompts = demo_prompts(args)?;
    import_prompts(db, &study, &prompts).await?;
    let mut images = Vec::new();
    for p in &prompts {
        for model in MODELS {
            let picture = placeholder_image(&p.text, model, 256);
            let (stored, broken) = prepare(store, &picture)?;
            images.push(PreparedImage {
                model: model.to_string(),
                prompt: p.clone(),
                seed: Some(0),
                steps: None,
                guidance: None,
                scheduler: None,
                width: 256,
                height: 256,
                stored,
                broken,
            });
        }
    }
    insert_images(db, &study, &images).await?;
    studies::set_status(&db.pool, DEMO_SLUG, StudyStatus::Open).await?;
    Ok(())
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let db_args = DbArgs {
        data_dir: args.data_dir.clone(),
    };
    let database = open_database(&db_args).await?;
    let settings = Settings::new(args.bind.clone(), args.data_dir.clone())?;
    let store = ImageStore::new(settings.image_dir());
    prepare_demo(&database.db, &store, &args).await?;
    let mut bytes = [0u8; 9];
    rand::thread_rng().fill_bytes(&mut bytes);
    let password = hex::encode(bytes);
    admins::create_or_update(&database.db, DEMO_ADMIN, &password).await?;
    let app = Application::build(settings, database.db.clone())?;
    let base = format!("http://127.0.0.1:{}", app.port());
    println!();
    println!("ArenaXL demo is running (images are placeholders, not model output).");
    println!("  Participant: {base}/s/{DEMO_SLUG}?PROLIFIC_PID=demo-participant&STUDY_ID=demo&SESSION_ID=demo-session");
    println!("  Admin:       {base}/admin");
    println!("  Login:       {DEMO_ADMIN} / {password}");
    println!("Press Ctrl-C to stop.");
    app.run_until_stopped().await?;
    drop(database);
    Ok(())
}
