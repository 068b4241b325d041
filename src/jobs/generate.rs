//! The `generate` kind: images of one registered model for a batch of a study's prompts
//! and seeds. Each image is stored content-addressed and inserted, with its provenance, in
//! a transaction that first checks the lease is still ours; the pairs it completes become
//! available to participants at that commit. Items already in the study are skipped, so a
//! retried or taken-over job only does what is missing.
//!
//! `enqueue_generation` splits an admin's request into jobs per model and batch of prompts.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use candle_core::DType;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::content::PairScope;
use crate::db::generation::{self, GeneratedImage};
use crate::db::Db;
use crate::domain::rules::check_seeds_per_prompt;
use crate::engine::device::parse_dtype;
use crate::engine::{GenerateRequest, SchedulerKind};
use crate::queue::store as q;
use crate::study::images::prepare;

use super::models::ModelCache;
use super::{Job, JobContext, JobError, JobRunner, NewJob, Stop};

pub const KIND: &str = "generate";
pub const ENGINE_VERSION: &str = concat!("arenaxl-engine ", env!("CARGO_PKG_VERSION"));

/// Sampling settings shared by every image of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub steps: usize,
    pub guidance: f64,
    /// euler, ddim, dpmpp-2m or euler-a; None: the model folder's own scheduler.
    pub scheduler: Option<String>,
    pub width: usize,
    pub height: usize,
    /// f32, f16 or bf16.
    pub dtype: String,
}

impl Sampling {
    /// Checks what can be checked without a model.
    pub fn validate(&self) -> Result<(), JobError> {
        let bad = |m: String| Err(JobError::Invalid(m));
        if self.steps == 0 || self.steps > 500 {
            return bad(format!("steps must be 1-500 (got {})", self.steps));
        }
        if !self.guidance.is_finite() || self.guidance < 0.0 || self.guidance > 50.0 {
            return bad(format!("guidance must be 0-50 (got {})", self.guidance));
        }
        for (what, v) in [("width", self.width), ("height", self.height)] {
            if v == 0 || v % 8 != 0 || v > 4096 {
                return bad(format!(
                    "{what} must be a positive multiple of 8 up to 4096 (got {v})"
                ));
            }
        }
        if let Some(s) = &self.scheduler {
            s.parse::<SchedulerKind>()
                .map_err(|e| JobError::Invalid(format!("scheduler: {e}")))?;
        }
        parse_dtype(&self.dtype).map_err(|e| JobError::Invalid(format!("dtype: {e}")))?;
        Ok(())
    }
}

/// The payload of one `generate` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratePayload {
    pub study_id: Uuid,
    pub model: String,
    pub prompt_ids: Vec<Uuid>,
    pub seeds: Vec<i64>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// An admin's request: models × prompts × seeds.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    pub study_id: Uuid,
    pub models: Vec<String>,
    pub prompt_ids: Vec<Uuid>,
    pub seeds: Vec<i64>,
    pub sampling: Sampling,
    /// Prompts per job: small enough that a lost job costs little, large enough that the
    /// queue is not the bottleneck.
    pub batch: usize,
    pub priority: i32,
    pub max_attempts: i32,
}

/// Enqueues the jobs of a request inside `tx` (so they exist only if the request commits).
/// The idempotency key of each job is a hash of its payload: sending the same request
/// twice queues nothing new. Returns (job ids, how many were new).
pub async fn enqueue_generation(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    req: &GenerationRequest,
) -> Result<(Vec<Uuid>, usize), JobError> {
    req.sampling.validate()?;
    if req.models.is_empty() {
        return Err(JobError::Invalid("choose at least one model".into()));
    }
    if req.prompt_ids.is_empty() {
        return Err(JobError::Invalid(
            "the study has no prompts to generate (import prompts first)".into(),
        ));
    }
    check_seeds_per_prompt(req.seeds.len() as i64)?;
    let batch = req.batch.clamp(1, 1000);
    let mut ids = Vec::new();
    let mut new = 0;
    for model in &req.models {
        for chunk in req.prompt_ids.chunks(batch) {
            let payload = GeneratePayload {
                study_id: req.study_id,
                model: model.clone(),
                prompt_ids: chunk.to_vec(),
                seeds: req.seeds.clone(),
                sampling: req.sampling.clone(),
            };
            let value = serde_json::to_value(&payload)
                .map_err(|e| JobError::Invalid(format!("cannot encode payload: {e}")))?;
            let key = format!(
                "generate:{}",
                hex::encode(Sha256::digest(value.to_string().as_bytes()))
            );
            let job = NewJob {
                kind: KIND.into(),
                payload: value,
                priority: req.priority,
                max_attempts: req.max_attempts,
                idempotency_key: Some(key),
                study_id: Some(req.study_id),
            };
            let (id, created) = q::enqueue(tx, &job).await?;
            ids.push(id);
            new += usize::from(created);
        }
    }
    Ok((ids, new))
}

/// Where the time of generation goes, for `bench generate`.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct GenerateTimings {
    pub images: u64,
    /// Inside `Pipeline::generate` (text encoders, UNet, VAE).
    pub model_s: f64,
    /// PNG encoding, the broken version, hashing and writing files.
    pub encode_store_s: f64,
    /// Database: lookups, inserts, pair rebuilds, progress.
    pub db_s: f64,
}

pub struct GenerateRunner {
    pub cache: ModelCache,
    pub timings: GenerateTimings,
    models_dir: Option<PathBuf>,
}

impl GenerateRunner {
    pub fn new(memory_budget_bytes: u64, models_dir: Option<PathBuf>) -> GenerateRunner {
        GenerateRunner {
            cache: ModelCache::new(memory_budget_bytes),
            timings: GenerateTimings::default(),
            models_dir,
        }
    }
}

fn payload_error(message: String) -> JobError {
    JobError::Payload {
        kind: KIND.into(),
        message,
    }
}

impl JobRunner for GenerateRunner {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn stats(&self) -> serde_json::Value {
        let t = &self.timings;
        serde_json::json!({
            "images": t.images,
            "model_s": t.model_s,
            "encode_store_s": t.encode_store_s,
            "db_s": t.db_s,
            "load_s": self.cache.load_seconds,
        })
    }

    fn run(&mut self, job: &Job, ctx: &mut JobContext) -> Result<(), JobError> {
        let p: GeneratePayload = serde_json::from_value(job.payload.clone())
            .map_err(|e| payload_error(e.to_string()))?;
        p.sampling
            .validate()
            .map_err(|e| payload_error(e.to_string()))?;
        let dtype: DType = parse_dtype(&p.sampling.dtype)?;
        let scheduler = p
            .sampling
            .scheduler
            .as_deref()
            .map(str::parse::<SchedulerKind>)
            .transpose()?;

        let t = Instant::now();
        let model = ctx
            .block_on(generation::model_by_name(&ctx.db.pool, &p.model))?
            .ok_or_else(|| JobError::Permanent(format!("model '{}' is not registered", p.model)))?;
        let folder = super::models::model_folder(&model, self.models_dir.as_deref())?;
        let prompts = ctx.block_on(generation::prompts_by_id(
            &ctx.db.pool,
            p.study_id,
            &p.prompt_ids,
        ))?;
        let existing = ctx.block_on(generation::existing_items(
            &ctx.db.pool,
            p.study_id,
            model.id,
            &p.prompt_ids,
        ))?;
        let total = prompts.len() * p.seeds.len();
        let todo: Vec<(Uuid, &str, i64)> = prompts
            .iter()
            .flat_map(|(id, text)| p.seeds.iter().map(move |s| (*id, text.as_str(), *s)))
            .filter(|(id, _, s)| !existing.contains(&(*id, Some(*s))))
            .collect();
        let mut done = total - todo.len();
        ctx.progress(
            done,
            total,
            &format!("{} of {total} images already stored", done),
        )?;
        self.timings.db_s += t.elapsed().as_secs_f64();
        if todo.is_empty() {
            return Ok(());
        }
        ctx.log(&format!(
            "model '{}' ({}) on {}: {} images to generate",
            p.model,
            folder.display(),
            ctx.device_name,
            todo.len()
        ));
        let pipeline = self.cache.get(&folder, &ctx.device, dtype)?;
        let scheduler_name = scheduler
            .unwrap_or(pipeline.default_scheduler)
            .name()
            .to_string();
        for (prompt_id, text, seed) in todo {
            ctx.check()?;
            let req = GenerateRequest {
                prompts: vec![text.to_string()],
                negative_prompt: None,
                steps: p.sampling.steps,
                guidance: p.sampling.guidance,
                seed: seed as u64,
                width: p.sampling.width,
                height: p.sampling.height,
                scheduler,
                latents: None,
            };
            let started = Instant::now();
            // Step progress at most once a second: live progress for slow models, and an
            // extra lease extension and cancel check, at no measurable cost.
            let mut reported = Instant::now();
            let mut in_progress_calls = Duration::ZERO;
            let images = pipeline.generate(&req, &mut |step, steps| {
                if reported.elapsed() >= Duration::from_secs(1) {
                    reported = Instant::now();
                    let t = Instant::now();
                    let message = format!("image {} of {total}: step {step}/{steps}", done + 1);
                    // A stop request raises the context's flag; it is acted on after this image.
                    let _ = ctx.progress(done, total, &message);
                    in_progress_calls += t.elapsed();
                }
            })?;
            // Database time spent inside the callback is not the model's.
            let generation_s = (started.elapsed() - in_progress_calls).as_secs_f64();
            self.timings.model_s += generation_s;
            self.timings.db_s += in_progress_calls.as_secs_f64();
            let image = images
                .into_iter()
                .next()
                .ok_or_else(|| JobError::Failed("the pipeline returned no image".into()))?;

            let t = Instant::now();
            let (stored, broken) = prepare(&ctx.store, &image)?;
            self.timings.encode_store_s += t.elapsed().as_secs_f64();

            let t = Instant::now();
            let provenance = serde_json::json!({
                "model": p.model,
                "folder": folder.to_string_lossy(),
                "weights_sha256": model.weights_hash,
                "scheduler": scheduler_name,
                "steps": p.sampling.steps,
                "guidance": p.sampling.guidance,
                "seed": seed,
                "width": p.sampling.width,
                "height": p.sampling.height,
                "dtype": p.sampling.dtype,
                "device": ctx.device_name,
                "engine": ENGINE_VERSION,
                "generation_seconds": generation_s,
                "generated_at": chrono::Utc::now().to_rfc3339(),
                "job": job.id,
                "worker": ctx.lease.worker_id,
            });
            let row = GeneratedImage {
                study_id: p.study_id,
                prompt_id,
                model_id: model.id,
                seed,
                steps: p.sampling.steps as i32,
                guidance: p.sampling.guidance,
                scheduler: &scheduler_name,
                width: image.width() as i32,
                height: image.height() as i32,
                stored: &stored,
                broken: &broken,
                provenance: &provenance,
            };
            ctx.block_on(store_image(&ctx.db, &ctx.lease, &row))?;
            done += 1;
            ctx.progress(done, total, &format!("{done} of {total} images"))?;
            self.timings.db_s += t.elapsed().as_secs_f64();
            self.timings.images += 1;
        }
        Ok(())
    }
}

/// Inserts the image and the pairs it makes with the other models' images of its prompt
/// and seed, only while the lease is ours.
async fn store_image(
    db: &Db,
    lease: &super::Lease,
    img: &GeneratedImage<'_>,
) -> Result<(), JobError> {
    let mut tx = db.pool.begin().await?;
    if !q::lock_if_held(&mut tx, lease).await? {
        return Err(JobError::Stopped(Stop::LeaseLost));
    }
    if generation::insert_generated(&mut tx, img).await? {
        let item = PairScope::Item {
            prompt_id: img.prompt_id,
            seed: Some(img.seed),
        };
        crate::db::content::add_pairs(&mut tx, img.study_id, item).await?;
    }
    tx.commit().await?;
    Ok(())
}
