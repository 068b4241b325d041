//! Admin pages of distillation: the form that starts a `distill` job (teacher, plan or
//! stages, dataset folder, hyper-parameters), the loss curves and held-out figures shown on
//! a distillation's job page, and "compare with teacher", which turns a finished job into
//! an open study of the student against its teacher with its images queued.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use uuid::Uuid;

use crate::db::generation::{self, ModelRow};
use crate::distill::run::{Stage, StageTeacher, Stages};
use crate::distill::train::TrainConfig;
use crate::distill::{FeatureLevel, Keep};
use crate::jobs::compare::{choose_prompts, compare_with_teacher, CompareRequest};
use crate::jobs::distill::{enqueue_distillation, DistillPayload};
use crate::jobs::generate::Sampling;
use crate::jobs::{Job, JobError};
use crate::queue::store as q;
use crate::study::prompts::{parse_prompts, PromptFormat};
use crate::study::{StudyForm, StudySettings};

use super::auth::{check_csrf, csrf_token, Admin, AdminError};
use super::distill_view::distill_view_of;
use super::forms::{self, field, list, parse_id, see_other, Fields};
use super::jobs::job_page_with;
use super::models::checked_folder;
use crate::web::errors::{html, html_with_status};
use crate::web::extract;
use crate::web::state::AppState;
use crate::web::uploads::resolve_in_roots;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/distill", web::get().to(distill_page))
        .route("/admin/distill", web::post().to(start))
        .route("/admin/jobs/{id}/compare", web::post().to(compare));
}

/// A number in the field `name` of `f`, named `label` in the error.
fn number<T: std::str::FromStr>(f: &Fields, name: &str, label: &str) -> Result<T, JobError> {
    forms::number(label, field(f, name))
}

/// The start form's defaults: Segmind's loss weights, a small run a CPU worker finishes.
fn start_defaults() -> Fields {
    let t = TrainConfig::default();
    [
        ("plan", "vega"),
        ("stage_teacher", "original"),
        ("steps", "1000"),
        ("batch_size", "1"),
        ("grad_accum", "1"),
        ("warmup", "0"),
        ("resolution", "1024"),
        ("held_out", "4"),
        ("eval_every", "100"),
        ("checkpoint_every", "100"),
        ("features", "layer"),
        ("keep", "first"),
        ("dtype", ""),
        ("ema_decay", ""),
        ("seed", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([
        ("lr".to_string(), t.adamw.lr.to_string()),
        ("weight_decay".to_string(), t.adamw.weight_decay.to_string()),
        ("max_grad_norm".to_string(), t.max_grad_norm.to_string()),
        ("lambda_task".to_string(), t.loss.lambda_task.to_string()),
        ("lambda_out".to_string(), t.loss.lambda_out.to_string()),
        ("lambda_feat".to_string(), t.loss.lambda_feat.to_string()),
    ])
    .collect()
}

/// "vega", "ssd-1b > vega" (progressive stages) or a plan's JSON.
fn parse_stages(raw: &str, teacher: StageTeacher) -> Result<Stages, JobError> {
    let raw = raw.trim();
    let plans: Vec<String> = if raw.starts_with('{') {
        vec![raw.to_string()]
    } else {
        raw.split(['>', ','])
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    if plans.is_empty() {
        return Err(JobError::Invalid(
            "plan: give a built-in plan (ssd-1b, vega), stages like 'ssd-1b > vega', or a plan's JSON"
                .into(),
        ));
    }
    Ok(Stages {
        teacher,
        stages: plans
            .into_iter()
            .map(|plan| Stage { plan, steps: None })
            .collect(),
    })
}

fn parse_start(f: &Fields) -> Result<DistillPayload, JobError> {
    let stage_teacher = match field(f, "stage_teacher") {
        "" | "original" => StageTeacher::Original,
        "previous" => StageTeacher::Previous,
        other => {
            return Err(JobError::Invalid(format!(
                "teacher of later stages: '{other}' is not original or previous"
            )))
        }
    };
    let features = match field(f, "features") {
        "" | "layer" => FeatureLevel::Layer,
        "block" => FeatureLevel::Block,
        other => {
            return Err(JobError::Invalid(format!(
                "features: '{other}' is not layer or block"
            )))
        }
    };
    let keep = match field(f, "keep") {
        "" | "first" => Keep::First,
        "even" => Keep::Even,
        other => {
            return Err(JobError::Invalid(format!(
                "kept blocks: '{other}' is not first or even"
            )))
        }
    };
    let mut train = TrainConfig {
        steps: number(f, "steps", "steps")?,
        batch_size: number(f, "batch_size", "batch size")?,
        grad_accum: number(f, "grad_accum", "gradient accumulation")?,
        warmup_steps: number(f, "warmup", "warm-up steps")?,
        max_grad_norm: number(f, "max_grad_norm", "gradient-norm clip")?,
        seed: number(f, "seed", "seed")?,
        checkpoint_every: number(f, "checkpoint_every", "checkpoint every")?,
        eval_every: number(f, "eval_every", "evaluate every")?,
        ema_decay: match field(f, "ema_decay") {
            "" => None,
            _ => Some(number(f, "ema_decay", "EMA decay")?),
        },
        ..TrainConfig::default()
    };
    train.adamw.lr = number(f, "lr", "learning rate")?;
    train.adamw.weight_decay = number(f, "weight_decay", "weight decay")?;
    train.loss.lambda_task = number(f, "lambda_task", "λ task")?;
    train.loss.lambda_out = number(f, "lambda_out", "λ output")?;
    train.loss.lambda_feat = number(f, "lambda_feat", "λ features")?;
    train.loss.level = features;
    if field(f, "teacher").is_empty() {
        return Err(JobError::Invalid(
            "teacher: choose a registered model".into(),
        ));
    }
    if field(f, "data").is_empty() {
        return Err(JobError::Invalid(
            "dataset folder: give an imagefolder (images + metadata.jsonl)".into(),
        ));
    }
    Ok(DistillPayload {
        teacher: field(f, "teacher").to_string(),
        stages: parse_stages(field(f, "plan"), stage_teacher)?,
        data: field(f, "data").to_string(),
        student: crate::domain::ModelName::parse("student", field(f, "student"))?.into_string(),
        train,
        resolution: number(f, "resolution", "resolution")?,
        held_out: number(f, "held_out", "held-out samples")?,
        keep,
        dtype: Some(field(f, "dtype").to_string()).filter(|d| !d.is_empty()),
    })
}

struct DistillJobRow {
    id: Uuid,
    status: String,
    teacher: String,
    student: String,
    plan: String,
    done: i32,
    total: i32,
    message: String,
}

impl From<&Job> for DistillJobRow {
    fn from(j: &Job) -> Self {
        let plan = j.payload["stages"]["stages"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|x| {
                        let p = x["plan"].as_str().unwrap_or("?");
                        if p.starts_with('{') { "custom" } else { p }.to_string()
                    })
                    .collect::<Vec<_>>()
                    .join(" > ")
            })
            .unwrap_or_default();
        DistillJobRow {
            id: j.id,
            status: j.status.to_string(),
            teacher: j.payload["teacher"].as_str().unwrap_or("?").to_string(),
            student: j.payload["student"].as_str().unwrap_or("?").to_string(),
            plan,
            done: j.progress_done,
            total: j.progress_total,
            message: j.progress_message.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/distill.html")]
struct DistillPage {
    csrf: String,
    models: Vec<ModelRow>,
    jobs: Vec<DistillJobRow>,
    form: Fields,
    error: Option<String>,
}

impl DistillPage {
    fn value(&self, name: &str) -> &str {
        field(&self.form, name)
    }
}

async fn distill_view(
    admin: &Admin,
    state: &AppState,
    form: Fields,
    error: Option<String>,
) -> Result<DistillPage, AdminError> {
    let jobs = q::recent_of_kind(&state.db.pool, crate::jobs::distill::KIND, 200)
        .await?
        .iter()
        .map(DistillJobRow::from)
        .collect();
    Ok(DistillPage {
        csrf: csrf_token(&admin.session),
        models: generation::registered(&state.db.pool).await?,
        jobs,
        form,
        error,
    })
}

async fn distill_page(
    admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AdminError> {
    Ok(html(
        distill_view(&admin, &state, start_defaults(), None).await?,
    )?)
}

async fn start(
    admin: Admin,
    state: web::Data<AppState>,
    form: extract::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AdminError> {
    let fields: Fields = form.into_inner().into_iter().collect();
    check_csrf(&admin.session, field(&fields, "csrf"))?;
    let models_dir = state.settings.models_dir.clone();
    let result = async {
        let mut payload = parse_start(&fields)?;
        let data = checked_folder(&state.settings, &payload.data, "dataset folder")?;
        payload.data = data.to_string_lossy().into_owned();
        let mut tx = state.db.pool.begin().await?;
        let (id, _) =
            enqueue_distillation(&mut tx, &state.db, &payload, models_dir.as_deref()).await?;
        tx.commit().await?;
        Ok::<_, JobError>(id)
    }
    .await;
    match result {
        Ok(id) => Ok(see_other(&format!("/admin/jobs/{id}"))),
        Err(e) if is_bad_input(&e) => {
            let page = distill_view(&admin, &state, fields, Some(e.to_string())).await?;
            Ok(html_with_status(StatusCode::UNPROCESSABLE_ENTITY, page)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// A request the form can be shown again for (422): invalid fields or a model folder at
/// fault; anything else is the server's.
fn is_bad_input(e: &JobError) -> bool {
    match e {
        JobError::Invalid(_) => true,
        JobError::Engine(engine) => engine.is_model_folder(),
        _ => false,
    }
}

/// The prompts of the compare form: pasted lines, or a prompts file on the server inside
/// the import roots (PartiPrompts TSV, CSV or text), then filtered by category and sampled.
async fn compare_prompts(
    settings: &crate::config::Settings,
    f: &Fields,
) -> Result<Vec<crate::study::prompts::NewPrompt>, JobError> {
    let text = f.get("prompts_text").map(String::as_str).unwrap_or("");
    let file = field(f, "prompts_file");
    let prompts = match (text.trim().is_empty(), file.is_empty()) {
        (false, true) => parse_prompts("pasted prompts", text, PromptFormat::Text)?,
        (true, false) => {
            let path = resolve_in_roots(settings, file, "prompts file")
                .map_err(|refused| JobError::Invalid(refused.0))?;
            let content = tokio::fs::read_to_string(&path)
                .await
                .map_err(|e| JobError::Invalid(format!("prompts file {file}: {e}")))?;
            parse_prompts(file, &content, PromptFormat::detect(file, &content))?
        }
        (false, false) => {
            return Err(JobError::Invalid(
                "prompts: give either a prompts file or pasted prompts, not both".into(),
            ))
        }
        (true, true) => return Err(JobError::Invalid(
            "prompts: give a prompts file on the server (e.g. PartiPrompts.tsv) or paste prompts"
                .into(),
        )),
    };
    choose_prompts(
        prompts,
        &list(field(f, "categories")),
        number(f, "max_prompts", "at most prompts")?,
        0,
    )
}

async fn parse_compare(
    settings: &crate::config::Settings,
    f: &Fields,
) -> Result<CompareRequest, JobError> {
    let study = StudySettings::try_from(StudyForm {
        slug: field(f, "slug").to_string(),
        title: field(f, "title").to_string(),
        allow_tie: true,
        allow_both_bad: true,
        ..StudyForm::default()
    })
    .map_err(crate::study::StudyError::from)?;
    Ok(CompareRequest {
        study,
        prompts: compare_prompts(settings, f).await?,
        seeds: number(f, "seeds", "seeds per prompt")?,
        sampling: Sampling {
            steps: number(f, "steps", "steps")?,
            guidance: number(f, "guidance", "guidance")?,
            scheduler: Some(field(f, "scheduler").to_string())
                .filter(|s| !s.is_empty() && s != "default"),
            width: number(f, "width", "width")?,
            height: number(f, "height", "height")?,
            dtype: field(f, "dtype").to_string(),
        },
        batch: number(f, "batch", "prompts per job")?,
    })
}

async fn compare(
    admin: Admin,
    state: web::Data<AppState>,
    id: extract::Path<String>,
    form: extract::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AdminError> {
    let fields: Fields = form.into_inner().into_iter().collect();
    check_csrf(&admin.session, field(&fields, "csrf"))?;
    let id = parse_id(&id)?;
    let job = q::get(&state.db.pool, id).await?;
    let result = async {
        let req = parse_compare(&state.settings, &fields).await?;
        compare_with_teacher(&state.db, id, &req).await
    }
    .await;
    let error = match result {
        Ok((study, _)) => return Ok(see_other(&format!("/admin/studies/{}", study.slug))),
        Err(JobError::Study(e)) => match e {
            crate::study::StudyError::Invalid { .. }
            | crate::study::StudyError::Conflict(_)
            | crate::study::StudyError::Import(_) => e.to_string(),
            other => return Err(other.into()),
        },
        Err(e @ (JobError::Invalid(_) | JobError::Store(crate::db::DbError::Conflict(_)))) => {
            e.to_string()
        }
        Err(e) => return Err(e.into()),
    };
    let view = distill_view_of(&state, &job, Some(fields), Some(error)).await?;
    job_page_with(&admin, &job, Some(view), StatusCode::UNPROCESSABLE_ENTITY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::admin::distill_view::slugify;

    #[test]
    fn plans_stages_and_json_from_one_field() {
        let s = parse_stages("ssd-1b > vega", StageTeacher::Previous).expect("stages");
        assert_eq!(s.stages.len(), 2);
        assert_eq!(s.stages[1].plan, "vega");
        assert_eq!(s.teacher, StageTeacher::Previous);
        let json = r#"{"down": [null, [1, 1]], "up": [[1, 1, 1], null], "mid": "none"}"#;
        let s = parse_stages(json, StageTeacher::Original).expect("json plan");
        assert_eq!(s.stages.len(), 1, "commas inside JSON do not split it");
        assert!(parse_stages("  ", StageTeacher::Original).is_err());
    }

    #[test]
    fn default_study_slugs_are_valid_slugs() {
        let slug = slugify("SDXL Vega (v2) vs SDXL-base 1.0");
        assert_eq!(slug, "sdxl-vega-v2-vs-sdxl-base-1-0");
        assert!(crate::study::Slug::try_from(slug).is_ok());
    }
}
