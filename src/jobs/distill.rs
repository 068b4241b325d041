//! The `distill` kind: trains a student from a registered teacher on a worker (one plan or
//! progressive stages), records its loss curves, and registers the student as a model when
//! it is done. Everything a run writes lives in a folder named after the job, with
//! checkpoints, so a job taken over by another worker (or retried) resumes where it
//! stopped instead of starting again.
//!
//! `enqueue_distillation` checks a request completely before it is queued (teacher, plans
//! against the teacher, dataset, hyper-parameters); `super::compare` turns a finished job
//! into a study of the student against its teacher.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::DType;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::distill::{self as dq, Point};
use crate::db::generation;
use crate::db::Db;
use crate::distill::run::{Control, Event, RunOptions, Stages};
use crate::distill::train::TrainConfig;
use crate::distill::{DistillError, Keep};
use crate::domain::rules::ModelName;
use crate::engine::config::{read_json, UNetConfig};
use crate::engine::device::parse_dtype;
use crate::queue::store as q;

use super::models::{inspect_folder, model_folder};
use super::{Job, JobContext, JobError, JobRunner, NewJob, Stop};

pub const KIND: &str = "distill";

fn default_resolution() -> usize {
    1024
}

fn default_held_out() -> usize {
    4
}

/// The payload of a `distill` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillPayload {
    /// Registered model name of the teacher.
    pub teacher: String,
    /// One stage per plan (built-in name or plan JSON text).
    pub stages: Stages,
    /// Hugging Face imagefolder; a relative path is under the models directory.
    pub data: String,
    /// The name the student is registered under.
    pub student: String,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default = "default_resolution")]
    pub resolution: usize,
    #[serde(default = "default_held_out")]
    pub held_out: usize,
    #[serde(default)]
    pub keep: Keep,
    /// f32, f16 or bf16; default bf16 on a GPU, f32 on the CPU.
    #[serde(default)]
    pub dtype: Option<String>,
}

impl DistillPayload {
    /// Checks what needs no files.
    pub fn validate(&self) -> Result<(), JobError> {
        let student = ModelName::parse("student", &self.student)?;
        if student.as_str() == self.teacher.trim() {
            return Err(JobError::Invalid(
                "student: must be a new name, not the teacher's".into(),
            ));
        }
        if self.resolution < 8 || !self.resolution.is_multiple_of(8) || self.resolution > 4096 {
            return Err(JobError::Invalid(format!(
                "resolution must be a multiple of 8 from 8 to 4096 (got {})",
                self.resolution
            )));
        }
        if self.held_out > 10_000 {
            return Err(JobError::Invalid(format!(
                "held_out must be at most 10000 (got {})",
                self.held_out
            )));
        }
        if let Some(d) = &self.dtype {
            parse_dtype(d).map_err(|e| JobError::Invalid(format!("dtype: {e}")))?;
        }
        self.train
            .validate()
            .map_err(|e| JobError::Invalid(e.to_string()))
    }
}

/// A dataset folder: absolute, or relative to the models directory (which workers share).
pub fn data_folder(raw: &str, models_dir: Option<&Path>) -> PathBuf {
    let p = PathBuf::from(raw.trim());
    match models_dir {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p,
    }
}

/// Checks a request against the database and the files, then queues it in `tx`. Returns
/// the job id and whether it is new (the same request twice queues one job).
pub async fn enqueue_distillation(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    db: &Db,
    payload: &DistillPayload,
    models_dir: Option<&Path>,
) -> Result<(Uuid, bool), JobError> {
    payload.validate()?;
    let mut payload = payload.clone();
    payload
        .stages
        .inline_plans()
        .map_err(|e| JobError::Invalid(e.to_string()))?;
    let payload = &payload;
    let teacher = generation::model_by_name(&db.pool, &payload.teacher)
        .await?
        .ok_or_else(|| {
            JobError::Invalid(format!(
                "teacher: '{}' is not a registered model",
                payload.teacher
            ))
        })?;
    if generation::model_by_name(&db.pool, &payload.student)
        .await?
        .is_some()
    {
        return Err(JobError::Invalid(format!(
            "student: a model named '{}' already exists",
            payload.student
        )));
    }
    let folder = model_folder(&teacher, models_dir)
        .map_err(|e| JobError::Invalid(format!("teacher: {e}")))?;
    let data = data_folder(&payload.data, models_dir);
    let (stages, keep, held_out) = (payload.stages.clone(), payload.keep, payload.held_out);
    // Reading configs and the dataset's metadata is file work: off the async threads.
    tokio::task::spawn_blocking(move || -> Result<(), JobError> {
        let file = folder.join("unet/config.json");
        let cfg: UNetConfig = read_json(&file)?;
        stages
            .check(&cfg, &file, keep)
            .map_err(|e| JobError::Invalid(e.to_string()))?;
        let records = crate::distill::data::read_imagefolder(&data)
            .map_err(|e| JobError::Invalid(e.to_string()))?;
        if records.len() <= held_out {
            return Err(JobError::Invalid(format!(
                "data: {} has {} samples, which leaves none for training after {held_out} held out",
                data.display(),
                records.len()
            )));
        }
        Ok(())
    })
    .await
    .map_err(|e| JobError::Failed(format!("checking the request failed: {e}")))??;
    let value = serde_json::to_value(payload)
        .map_err(|e| JobError::Invalid(format!("cannot encode payload: {e}")))?;
    let key = format!(
        "distill:{}",
        hex::encode(Sha256::digest(value.to_string().as_bytes()))
    );
    if let Some(other) = dq::pending_student(&db.pool, KIND, &payload.student, &key).await? {
        return Err(JobError::Invalid(format!(
            "student: distillation {other} is already going to register '{}'",
            payload.student
        )));
    }
    let job = NewJob {
        kind: KIND.into(),
        payload: value,
        priority: 0,
        // Each attempt resumes from the last checkpoint, so retries cost little.
        max_attempts: 5,
        idempotency_key: Some(key),
        study_id: None,
    };
    Ok(q::enqueue(tx, &job).await?)
}

pub struct DistillRunner {
    models_dir: Option<PathBuf>,
    /// Where runs write (`<models dir or data dir>/distilled/<job id>`).
    work_dir: PathBuf,
}

impl DistillRunner {
    pub fn new(models_dir: Option<PathBuf>, data_dir: &Path) -> DistillRunner {
        let base = models_dir.clone().unwrap_or_else(|| data_dir.to_path_buf());
        DistillRunner {
            models_dir,
            work_dir: base.join("distilled"),
        }
    }

    /// The run folder of a job, and the same relative to the models directory when the
    /// folder lives there (registered relative, each worker finds it under its own mount).
    fn out_dir(&self, job: Uuid) -> (PathBuf, Option<PathBuf>) {
        let out = self.work_dir.join(job.to_string());
        let rel = self
            .models_dir
            .as_ref()
            .and_then(|m| out.strip_prefix(m).ok().map(Path::to_path_buf));
        (out, rel)
    }
}

/// Collects the run's points and progress and writes them at most once a second.
struct Recorder<'a> {
    ctx: &'a JobContext,
    points: Vec<Point>,
    last: Instant,
    offsets: Vec<u64>,
    total: u64,
    stop: Option<Stop>,
}

impl Recorder<'_> {
    fn push<T: Serialize>(&mut self, stage: usize, kind: &str, step: u64, log: &T) {
        self.points.push(Point {
            stage: stage as i32,
            kind: kind.into(),
            step: step as i64,
            data: serde_json::to_value(log).unwrap_or_default(),
        });
    }

    fn flush(&mut self, message: &str, done: u64) {
        let points = std::mem::take(&mut self.points);
        match self.ctx.block_on(dq::insert_points(
            &self.ctx.db.pool,
            &self.ctx.lease,
            &points,
        )) {
            Ok(true) => {}
            Ok(false) => self.stop = Some(Stop::LeaseLost),
            // Curves are worth keeping but not worth failing a long run for: keep the
            // points for the next flush (bounded, in case the database stays away).
            Err(e) => {
                tracing::warn!(job = %self.ctx.lease.job_id, "cannot store loss points: {e}");
                if points.len() < 100_000 {
                    self.points.splice(0..0, points);
                }
            }
        }
        if self.stop.is_none() {
            if let Err(JobError::Stopped(s)) =
                self.ctx
                    .progress(done as usize, self.total as usize, message)
            {
                self.stop = Some(s);
            }
        }
        self.last = Instant::now();
    }

    fn on(&mut self, e: Event<'_>) -> Control {
        // The heartbeat task raises the flag when the lease is lost or the job cancelled;
        // reading it is free, so every step looks (the database only once a second).
        if let Err(JobError::Stopped(s)) = self.ctx.check() {
            self.stop.get_or_insert(s);
        }
        match e {
            Event::Step {
                stage,
                stages,
                steps,
                log,
            } => {
                self.push(stage, "train", log.step, log);
                // Stopping to be resumed (or cancelled): store what the checkpoint covers.
                let stopping = self.stop.is_some_and(|s| s != Stop::LeaseLost);
                if stopping || self.last.elapsed() >= Duration::from_secs(1) || log.step == steps {
                    let done = self.offsets.get(stage).copied().unwrap_or(0) + log.step;
                    let message = format!(
                        "stage {}/{stages}: step {}/{steps}, loss {:.4}",
                        stage + 1,
                        log.step,
                        log.loss
                    );
                    self.flush(&message, done);
                }
            }
            Event::Eval { stage, log } => {
                self.push(stage, "eval", log.step, log);
                let done = self.offsets.get(stage).copied().unwrap_or(0) + log.step;
                let message = format!(
                    "stage {}: held-out output MSE {:.5} at step {}",
                    stage + 1,
                    log.output_mse,
                    log.step
                );
                self.flush(&message, done);
            }
        }
        match self.stop {
            None => Control::Continue,
            // Shutting down: save the state so the next worker resumes here. After a lost
            // lease the folder is another worker's; write nothing.
            Some(Stop::Shutdown) => Control::Stop { checkpoint: true },
            Some(_) => Control::Stop { checkpoint: false },
        }
    }
}

impl JobRunner for DistillRunner {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run(&mut self, job: &Job, ctx: &mut JobContext) -> Result<(), JobError> {
        let payload_error = |message: String| JobError::Payload {
            kind: KIND.into(),
            message,
        };
        let p: DistillPayload = serde_json::from_value(job.payload.clone())
            .map_err(|e| payload_error(e.to_string()))?;
        p.validate().map_err(|e| payload_error(e.to_string()))?;
        let teacher = ctx
            .block_on(generation::model_by_name(&ctx.db.pool, &p.teacher))?
            .ok_or_else(|| {
                JobError::Permanent(format!("teacher '{}' is not registered", p.teacher))
            })?;
        let teacher_dir = model_folder(&teacher, self.models_dir.as_deref())?;
        let data_dir = data_folder(&p.data, self.models_dir.as_deref());
        let (out, out_rel) = self.out_dir(job.id);
        std::fs::create_dir_all(&out)?;
        let dtype = match &p.dtype {
            Some(d) => parse_dtype(d)?,
            None if ctx.device.is_cpu() => DType::F32,
            None => DType::BF16,
        };
        let total = p.stages.total_steps(&p.train);
        ctx.progress(0, total as usize, "encoding the dataset")?;
        ctx.log(&format!(
            "distilling '{}' ({}) into '{}' on {} ({} stages, {total} steps) in {}",
            p.teacher,
            teacher_dir.display(),
            p.student,
            ctx.device_name,
            p.stages.stages.len(),
            out.display()
        ));
        let mut reported = Instant::now();
        let data = crate::distill::data::cached(
            &teacher_dir,
            &data_dir,
            p.resolution,
            &out.join("cache"),
            &ctx.device,
            |i| {
                if reported.elapsed() >= Duration::from_secs(1) {
                    reported = Instant::now();
                    let message = format!("encoding the dataset: {i} images");
                    return ctx.progress(0, total as usize, &message).is_ok();
                }
                ctx.check().is_ok()
            },
        );
        let data = match data {
            Ok(d) => d,
            // Nothing to keep: the cache is written only once complete.
            Err(DistillError::Stopped { .. }) => {
                ctx.check()?;
                return Err(JobError::Stopped(Stop::Shutdown));
            }
            Err(e) => return Err(JobError::Distill(e)),
        };
        ctx.check()?;
        let offsets = p.stages.offsets(&p.train);
        let opts = RunOptions {
            keep: p.keep,
            held_out: p.held_out,
            // The folder is this job's: whatever is in it came from an earlier attempt.
            resume: true,
            device: ctx.device.clone(),
            dtype,
        };
        let ctx_ref: &JobContext = ctx;
        let mut rec = Recorder {
            ctx: ctx_ref,
            points: Vec::new(),
            last: Instant::now(),
            offsets,
            total,
            stop: None,
        };
        let result = crate::distill::run::run(
            &teacher_dir,
            &p.stages,
            &data,
            &p.train,
            &out,
            &opts,
            &mut |e| rec.on(e),
        );
        if rec.stop.is_none() && !rec.points.is_empty() {
            rec.flush("training finished", total);
        }
        let (model, eval) = match result {
            Ok(done) => done,
            Err(DistillError::Stopped { .. }) => {
                return Err(JobError::Stopped(rec.stop.unwrap_or(Stop::Shutdown)))
            }
            Err(e) => return Err(JobError::Distill(e)),
        };
        ctx.check()?;

        // Register the student: hashed first (slow for real weights), then inserted in one
        // statement under the lease that refuses a name someone else registered meanwhile.
        let (hash, mut info) = inspect_folder(&model)?;
        if let Some(o) = info.as_object_mut() {
            o.insert("distilled_from".into(), p.teacher.clone().into());
            o.insert("distill_job".into(), job.id.to_string().into());
            o.insert(
                "stages".into(),
                serde_json::to_value(&p.stages).unwrap_or_default(),
            );
            o.insert(
                "held_out".into(),
                serde_json::to_value(eval).unwrap_or_default(),
            );
        }
        // Inside the models directory the folder is stored relative to it, so each worker
        // finds it under its own mount.
        let stored = match out_rel {
            Some(r) => r.join(model.strip_prefix(&out).unwrap_or(&model)),
            None => std::fs::canonicalize(&model)?,
        };
        let row = ctx
            .block_on(dq::register_student(
                &ctx.db.pool,
                &ctx.lease,
                &p.student,
                &stored.to_string_lossy(),
                &hash,
                &info,
            ))?
            .ok_or_else(|| {
                JobError::Permanent(format!(
                    "a model named '{}' was registered while this job ran; the student is in {}",
                    p.student,
                    model.display()
                ))
            })?;
        ctx.log(&format!(
            "registered the student as '{}' ({}){}",
            row.name,
            row.folder.unwrap_or_default(),
            eval.map(|e| format!(
                "; held-out output MSE {:.6}, feature MSE {:.6}",
                e.output_mse, e.feature_mse
            ))
            .unwrap_or_default()
        ));
        ctx.progress(total as usize, total as usize, "student registered")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_checked_field_by_field() {
        let good: DistillPayload = serde_json::from_value(serde_json::json!({
            "teacher": "sdxl",
            "stages": {"stages": [{"plan": "ssd-1b"}, {"plan": "vega", "steps": 10}]},
            "data": "laion",
            "student": "vega-1",
            "train": {"steps": 5, "adamw": {"lr": 1e-4}},
        }))
        .expect("defaults fill the rest");
        good.validate().expect("valid");
        assert_eq!(good.resolution, 1024);
        assert_eq!(good.train.batch_size, 1);
        assert_eq!(good.train.loss.lambda_out, 0.5);
        for (change, expected) in [
            (serde_json::json!({"student": "a#b"}), "student"),
            (serde_json::json!({"student": "sdxl"}), "not the teacher"),
            (serde_json::json!({"resolution": 100}), "resolution"),
            (serde_json::json!({"dtype": "f8"}), "dtype"),
            (serde_json::json!({"train": {"steps": 0}}), "steps must be"),
            (
                serde_json::json!({"train": {"adamw": {"beta2": 1.0}}}),
                "beta2",
            ),
            (
                serde_json::json!({"train": {"ema_decay": 1.5}}),
                "ema_decay",
            ),
            (
                serde_json::json!({"train": {"loss": {"lambda_task": 0, "lambda_out": 0, "lambda_feat": 0}}}),
                "positive",
            ),
        ] {
            let mut v = serde_json::to_value(&good).expect("json");
            for (k, x) in change.as_object().expect("object") {
                v[k] = x.clone();
            }
            let p: DistillPayload = serde_json::from_value(v).expect("parses");
            let e = p.validate().expect_err("invalid");
            assert!(e.to_string().contains(expected), "{change}: {e}");
        }
        let typo = serde_json::json!({
            "teacher": "sdxl", "stages": {"stages": [{"plan": "vega"}]}, "data": "d",
            "student": "s", "train": {"stepz": 5},
        });
        let e = serde_json::from_value::<DistillPayload>(typo).expect_err("unknown field");
        assert!(e.to_string().contains("stepz"), "{e}");
    }
}
