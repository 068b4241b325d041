//! Admin pages of image generation: the "Generate images" form of a study (which enqueues
//! jobs in the request's transaction), the jobs list with live progress, a job's log with
//! cancel and retry, and an unblinded gallery. Models and workers are `admin_models`.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use uuid::Uuid;

use crate::db::generation::{self, ModelRow};
use crate::db::studies;
use crate::domain::DEFAULT_SAMPLING;
use crate::jobs::generate::{enqueue_generation, GenerationRequest, Sampling};
use crate::jobs::{Job, JobError};
use crate::queue::store as q;
use crate::queue::QueueError;
use crate::study::Study;

use super::auth::{check_csrf, csrf_token, Admin, AdminError};
use super::distill_view::{distill_view_of, DistillView};
use super::forms::{list, number, parse_id, see_other, CsrfForm};
use crate::web::errors::{html, html_with_status, PageError};
use crate::web::extract;
use crate::web::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/jobs", web::get().to(jobs_page))
        .route("/admin/jobs/{id}", web::get().to(job_page))
        .route("/admin/jobs/{id}/cancel", web::post().to(cancel_job))
        .route("/admin/jobs/{id}/retry", web::post().to(retry_job))
        .route(
            "/admin/studies/{slug}/generate",
            web::get().to(generate_page),
        )
        .route("/admin/studies/{slug}/generate", web::post().to(generate))
        .route("/admin/studies/{slug}/gallery", web::get().to(gallery_page))
        .route("/admin/images/{id}", web::get().to(image_file));
}

impl From<QueueError> for AdminError {
    fn from(e: QueueError) -> Self {
        JobError::from(e).into()
    }
}

impl From<JobError> for AdminError {
    fn from(e: JobError) -> Self {
        let page = match e {
            JobError::Study(s) => return AdminError::from(s),
            JobError::Store(s) => return AdminError::from(s),
            JobError::Db(e) | JobError::Queue(QueueError::Db(e)) => {
                return AdminError::from(crate::study::StudyError::Db(e))
            }
            JobError::Queue(QueueError::NotFound(_)) => {
                PageError::new(StatusCode::NOT_FOUND, "Not found", e.to_string())
            }
            JobError::Invalid(_) => PageError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid request",
                e.to_string(),
            ),
            JobError::Engine(ref engine) if engine.is_model_folder() => PageError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid request",
                e.to_string(),
            ),
            other => {
                tracing::error!("admin jobs page: {other}");
                PageError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The request could not be completed; the error is in the server log.",
                )
            }
        };
        AdminError::Page(page)
    }
}

/// A job as the pages show it.
struct JobView {
    id: Uuid,
    kind: String,
    status: String,
    summary: String,
    done: i32,
    total: i32,
    percent: i32,
    message: String,
    attempts: String,
    worker: String,
    error: String,
    created: String,
    can_cancel: bool,
    can_retry: bool,
}

impl From<&Job> for JobView {
    fn from(j: &Job) -> Self {
        let summary = match j.kind.as_str() {
            "generate" => format!(
                "{} · {} prompts × {} seeds",
                j.payload["model"].as_str().unwrap_or("?"),
                j.payload["prompt_ids"].as_array().map_or(0, Vec::len),
                j.payload["seeds"].as_array().map_or(0, Vec::len)
            ),
            "distill" => format!(
                "{} → {} on {}",
                j.payload["teacher"].as_str().unwrap_or("?"),
                j.payload["student"].as_str().unwrap_or("?"),
                j.payload["data"].as_str().unwrap_or("?")
            ),
            _ => String::new(),
        };
        JobView {
            id: j.id,
            kind: j.kind.clone(),
            status: j.status.to_string(),
            summary,
            done: j.progress_done,
            total: j.progress_total,
            percent: if j.progress_total > 0 {
                (100 * j.progress_done / j.progress_total).clamp(0, 100)
            } else {
                0
            },
            message: j.progress_message.clone(),
            attempts: format!("{} / {}", j.attempts, j.max_attempts),
            worker: j.worker_id.clone().unwrap_or_default(),
            error: j.last_error.clone().unwrap_or_default(),
            created: j.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            can_cancel: matches!(
                j.status,
                crate::jobs::JobStatus::Queued | crate::jobs::JobStatus::Running
            ),
            can_retry: matches!(
                j.status,
                crate::jobs::JobStatus::Failed | crate::jobs::JobStatus::Cancelled
            ),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/jobs.html")]
struct JobsPage {
    csrf: String,
    jobs: Vec<JobView>,
    counts: Vec<(String, i64)>,
    active: bool,
}

async fn jobs_page(admin: Admin, state: web::Data<AppState>) -> Result<HttpResponse, AdminError> {
    let jobs = q::recent(&state.db.pool, 200).await?;
    let active = jobs.iter().any(|j| {
        matches!(
            j.status,
            crate::jobs::JobStatus::Queued | crate::jobs::JobStatus::Running
        )
    });
    Ok(html(JobsPage {
        csrf: csrf_token(&admin.session),
        jobs: jobs.iter().map(JobView::from).collect(),
        counts: q::counts(&state.db.pool).await?,
        active,
    })?)
}

#[derive(Template)]
#[template(path = "admin/job.html")]
struct JobPage {
    csrf: String,
    job: JobView,
    payload: String,
    log: String,
    active: bool,
    distill: Option<DistillView>,
}

async fn job_page(
    admin: Admin,
    state: web::Data<AppState>,
    id: extract::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let job = q::get(&state.db.pool, parse_id(&id)?).await?;
    let distill = if job.kind == crate::jobs::distill::KIND {
        Some(distill_view_of(&state, &job, None, None).await?)
    } else {
        None
    };
    job_page_with(&admin, &job, distill, StatusCode::OK)
}

/// A job's page; a distillation's also shows its curves and the comparison form.
pub(super) fn job_page_with(
    admin: &Admin,
    job: &Job,
    distill: Option<DistillView>,
    status: StatusCode,
) -> Result<HttpResponse, AdminError> {
    Ok(html_with_status(
        status,
        JobPage {
            csrf: csrf_token(&admin.session),
            payload: serde_json::to_string_pretty(&job.payload).unwrap_or_default(),
            log: job.log.clone(),
            active: matches!(
                job.status,
                crate::jobs::JobStatus::Queued | crate::jobs::JobStatus::Running
            ),
            job: JobView::from(job),
            distill,
        },
    )?)
}

async fn cancel_job(
    admin: Admin,
    state: web::Data<AppState>,
    id: extract::Path<String>,
    form: extract::Form<CsrfForm>,
) -> Result<HttpResponse, AdminError> {
    let id = checked_job(&admin, &state, &id, &form).await?;
    q::cancel(&state.db.pool, id).await?;
    Ok(see_other(&format!("/admin/jobs/{id}")))
}

async fn retry_job(
    admin: Admin,
    state: web::Data<AppState>,
    id: extract::Path<String>,
    form: extract::Form<CsrfForm>,
) -> Result<HttpResponse, AdminError> {
    let id = checked_job(&admin, &state, &id, &form).await?;
    q::retry(&state.db.pool, id).await?;
    Ok(see_other(&format!("/admin/jobs/{id}")))
}

/// A job button's checks: the CSRF token, then a job id that exists.
async fn checked_job(
    admin: &Admin,
    state: &AppState,
    raw: &str,
    form: &CsrfForm,
) -> Result<Uuid, AdminError> {
    check_csrf(&admin.session, &form.csrf)?;
    let id = parse_id(raw)?;
    q::get(&state.db.pool, id).await?;
    Ok(id)
}

#[derive(Template)]
#[template(path = "admin/generate.html")]
struct GeneratePage {
    csrf: String,
    study: Study,
    models: Vec<ModelRow>,
    categories: Vec<(String, i64)>,
    prompt_count: i64,
    form: GenerateForm,
    error: Option<String>,
}

/// The form's fields, kept as entered so that an error page shows them again.
#[derive(Clone)]
struct GenerateForm {
    csrf: String,
    models: String,
    categories: String,
    seeds: String,
    steps: String,
    guidance: String,
    scheduler: String,
    width: String,
    height: String,
    dtype: String,
    batch: String,
}

impl Default for GenerateForm {
    fn default() -> Self {
        GenerateForm {
            csrf: String::new(),
            models: String::new(),
            categories: String::new(),
            seeds: "2".into(),
            steps: DEFAULT_SAMPLING.steps.to_string(),
            guidance: DEFAULT_SAMPLING.guidance.to_string(),
            scheduler: String::new(),
            width: DEFAULT_SAMPLING.width.to_string(),
            height: DEFAULT_SAMPLING.height.to_string(),
            dtype: DEFAULT_SAMPLING.dtype.into(),
            batch: "8".into(),
        }
    }
}

impl GenerateForm {
    /// From the posted pairs: `model` repeats once per ticked checkbox.
    fn from_pairs(pairs: &[(String, String)]) -> GenerateForm {
        let mut f = GenerateForm {
            seeds: String::new(),
            steps: String::new(),
            guidance: String::new(),
            width: String::new(),
            height: String::new(),
            dtype: String::new(),
            batch: String::new(),
            ..GenerateForm::default()
        };
        let mut models = Vec::new();
        let mut categories = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "csrf" => f.csrf = v.clone(),
                "model" => models.push(v.clone()),
                "category" => categories.push(v.clone()),
                "seeds" => f.seeds = v.clone(),
                "steps" => f.steps = v.clone(),
                "guidance" => f.guidance = v.clone(),
                "scheduler" => f.scheduler = v.clone(),
                "width" => f.width = v.clone(),
                "height" => f.height = v.clone(),
                "dtype" => f.dtype = v.clone(),
                "batch" => f.batch = v.clone(),
                _ => {}
            }
        }
        f.models = models.join(",");
        f.categories = categories.join(",");
        f
    }

    fn has_model(&self, name: &str) -> bool {
        list(&self.models).iter().any(|m| m == name)
    }

    fn has_category(&self, name: &str) -> bool {
        list(&self.categories).iter().any(|c| c == name)
    }
}

async fn generate_view(
    admin: &Admin,
    state: &AppState,
    study: Study,
    form: GenerateForm,
    error: Option<String>,
) -> Result<GeneratePage, AdminError> {
    let categories = generation::categories(&state.db.pool, study.id).await?;
    let prompt_count = generation::study_prompt_ids(&state.db.pool, study.id, &[])
        .await?
        .len() as i64;
    Ok(GeneratePage {
        csrf: csrf_token(&admin.session),
        models: generation::registered(&state.db.pool).await?,
        categories,
        prompt_count,
        study,
        form,
        error,
    })
}

async fn generate_page(
    admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let study = studies::by_slug(&state.db.pool, &slug).await?;
    Ok(html(
        generate_view(&admin, &state, study, GenerateForm::default(), None).await?,
    )?)
}

/// Parses the form into a request, checking models and categories against the database.
async fn parse_request(
    state: &AppState,
    study: &Study,
    f: &GenerateForm,
) -> Result<GenerationRequest, JobError> {
    let models = list(&f.models);
    let registered: Vec<String> = generation::registered(&state.db.pool)
        .await?
        .into_iter()
        .map(|m| m.name)
        .collect();
    if let Some(unknown) = models.iter().find(|m| !registered.contains(m)) {
        return Err(JobError::Invalid(format!(
            "models: '{unknown}' is not a registered model"
        )));
    }
    let categories = list(&f.categories);
    let known: Vec<String> = generation::categories(&state.db.pool, study.id)
        .await?
        .into_iter()
        .map(|c| c.0)
        .collect();
    if let Some(unknown) = categories.iter().find(|c| !known.contains(c)) {
        return Err(JobError::Invalid(format!(
            "categories: the study has no prompts in '{unknown}'"
        )));
    }
    let seeds: i64 = number("seeds per prompt", &f.seeds)?;
    crate::domain::rules::check_seeds_per_prompt(seeds)?;
    let scheduler =
        Some(f.scheduler.trim().to_string()).filter(|s| !s.is_empty() && s != "default");
    Ok(GenerationRequest {
        study_id: study.id,
        models,
        prompt_ids: generation::study_prompt_ids(&state.db.pool, study.id, &categories).await?,
        seeds: (0..seeds).collect(),
        sampling: Sampling {
            steps: number("steps", &f.steps)?,
            guidance: number("guidance", &f.guidance)?,
            scheduler,
            width: number("width", &f.width)?,
            height: number("height", &f.height)?,
            dtype: f.dtype.trim().to_string(),
        },
        batch: number("prompts per job", &f.batch)?,
        priority: 0,
        max_attempts: 3,
    })
}

async fn generate(
    admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
    pairs: extract::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AdminError> {
    let form = GenerateForm::from_pairs(&pairs);
    check_csrf(&admin.session, &form.csrf)?;
    let study = studies::by_slug(&state.db.pool, &slug).await?;
    let result = async {
        let req = parse_request(&state, &study, &form).await?;
        let mut tx = state.db.pool.begin().await?;
        let enqueued = enqueue_generation(&mut tx, &req).await?;
        tx.commit().await?;
        Ok::<_, JobError>(enqueued)
    }
    .await;
    match result {
        Ok(_) => Ok(see_other("/admin/jobs")),
        Err(e @ JobError::Invalid(_)) => {
            let page = generate_view(&admin, &state, study, form, Some(e.to_string())).await?;
            Ok(html_with_status(StatusCode::UNPROCESSABLE_ENTITY, page)?)
        }
        Err(e) => Err(e.into()),
    }
}

struct GalleryRow {
    prompt: String,
    seed: String,
    images: Vec<(String, Uuid, String)>,
}

#[derive(Template)]
#[template(path = "admin/gallery.html")]
struct GalleryPage {
    csrf: String,
    study: Study,
    rows: Vec<GalleryRow>,
}

async fn gallery_page(
    admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let study = studies::by_slug(&state.db.pool, &slug).await?;
    let images = generation::gallery(&state.db.pool, study.id, 3000).await?;
    let mut grouped: BTreeMap<(usize, Option<i64>), GalleryRow> = BTreeMap::new();
    let mut order: Vec<Uuid> = Vec::new();
    for img in images {
        let n = match order.iter().position(|p| *p == img.prompt_id) {
            Some(n) => n,
            None => {
                order.push(img.prompt_id);
                order.len() - 1
            }
        };
        let detail = img
            .provenance
            .as_ref()
            .map(|p| {
                format!(
                    "{} steps · {} · guidance {} · {}",
                    p["steps"],
                    p["scheduler"].as_str().unwrap_or("?"),
                    p["guidance"],
                    p["device"].as_str().unwrap_or("?")
                )
            })
            .unwrap_or_else(|| "imported".into());
        grouped
            .entry((n, img.seed))
            .or_insert_with(|| GalleryRow {
                prompt: img.prompt.clone(),
                seed: img
                    .seed
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "–".into()),
                images: Vec::new(),
            })
            .images
            .push((img.model, img.image_id, detail));
    }
    Ok(html(GalleryPage {
        csrf: csrf_token(&admin.session),
        study,
        rows: grouped.into_values().collect(),
    })?)
}

async fn image_file(
    _admin: Admin,
    state: web::Data<AppState>,
    id: extract::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let not_found = || {
        AdminError::Page(PageError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "No such image.",
        ))
    };
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let file = generation::image_file(&state.db.pool, id, false)
        .await?
        .ok_or_else(not_found)?;
    match tokio::fs::read(state.store.path(&file)).await {
        Ok(bytes) => Ok(HttpResponse::Ok()
            .content_type("image/png")
            .insert_header(("Cache-Control", "private, max-age=3600"))
            .body(bytes)),
        Err(e) => {
            tracing::error!("stored image {file} missing: {e}");
            Err(not_found())
        }
    }
}
