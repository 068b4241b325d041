//! Admin pages of the generation fleet: registered models (a folder on the server, only
//! inside the import roots) and the workers with their heartbeats.

use std::path::PathBuf;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::db::generation::{self, ModelRow};
use crate::jobs::JobError;
use crate::queue::store as q;

use super::auth::{check_csrf, csrf_token, Admin, AdminError};
use crate::web::errors::{html, html_with_status};
use crate::web::extract;
use crate::web::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/models", web::get().to(models_page))
        .route("/admin/models", web::post().to(register_model))
        .route("/admin/workers", web::get().to(workers_page));
}

struct WorkerView {
    id: String,
    host: String,
    device: String,
    kinds: String,
    status: String,
    current_job: String,
    last_heartbeat: String,
    seconds_ago: i64,
}

#[derive(Template)]
#[template(path = "admin/workers.html")]
struct WorkersPage {
    csrf: String,
    workers: Vec<WorkerView>,
}

async fn workers_page(
    admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AdminError> {
    let now = chrono::Utc::now();
    let workers = q::workers(&state.db.pool)
        .await?
        .into_iter()
        .map(|w| {
            let seconds_ago = (now - w.last_heartbeat).num_seconds().max(0);
            // A worker that stopped without saying so (killed, machine gone) goes quiet.
            let status = if w.status != "stopped" && seconds_ago > 90 {
                format!("not responding (was {})", w.status)
            } else {
                w.status
            };
            WorkerView {
                seconds_ago,
                id: w.id,
                host: w.host,
                device: w.device,
                kinds: w.kinds.join(", "),
                status,
                current_job: w.current_job.map(|j| j.to_string()).unwrap_or_default(),
                last_heartbeat: w.last_heartbeat.format("%Y-%m-%d %H:%M:%S").to_string(),
            }
        })
        .collect();
    Ok(html(WorkersPage {
        csrf: csrf_token(&admin.session),
        workers,
    })?)
}

#[derive(Template)]
#[template(path = "admin/models.html")]
struct ModelsPage {
    csrf: String,
    models: Vec<ModelRow>,
    error: Option<String>,
    flash: Option<String>,
    name: String,
    folder: String,
}

async fn models_page(admin: Admin, state: web::Data<AppState>) -> Result<HttpResponse, AdminError> {
    Ok(html(ModelsPage {
        csrf: csrf_token(&admin.session),
        models: generation::registered(&state.db.pool).await?,
        error: None,
        flash: None,
        name: String::new(),
        folder: String::new(),
    })?)
}

#[derive(Deserialize)]
struct RegisterForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    folder: String,
}

async fn register_model(
    admin: Admin,
    state: web::Data<AppState>,
    form: extract::Form<RegisterForm>,
) -> Result<HttpResponse, AdminError> {
    check_csrf(&admin.session, &form.csrf)?;
    let result = match checked_folder(&state.settings, &form.folder, "model folder") {
        Ok(folder) => {
            let models_dir = state.settings.models_dir.as_deref();
            crate::jobs::models::register(&state.db, &form.name, &folder, models_dir).await
        }
        Err(e) => Err(e),
    };
    let (status, error, flash) = match result {
        Ok(m) => (
            StatusCode::OK,
            None,
            Some(format!(
                "Registered '{}' ({}).",
                m.name,
                m.folder.unwrap_or_default()
            )),
        ),
        Err(e @ (JobError::Invalid(_) | JobError::Io(_))) => {
            (StatusCode::UNPROCESSABLE_ENTITY, Some(e.to_string()), None)
        }
        Err(JobError::Engine(e)) if e.is_model_folder() => {
            (StatusCode::UNPROCESSABLE_ENTITY, Some(e.describe()), None)
        }
        Err(e) => return Err(e.into()),
    };
    let page = ModelsPage {
        csrf: csrf_token(&admin.session),
        models: generation::registered(&state.db.pool).await?,
        error,
        flash,
        name: form.name.clone(),
        folder: form.folder.clone(),
    };
    Ok(html_with_status(status, page)?)
}

/// A server folder from a form, only inside the roots. A relative one stays relative (each
/// worker finds it under its own models directory); an absolute one becomes canonical.
pub(super) fn checked_folder(
    settings: &crate::config::Settings,
    raw: &str,
    what: &str,
) -> Result<PathBuf, JobError> {
    let canonical = crate::web::uploads::resolve_in_roots(settings, raw, what)
        .map_err(|refused| JobError::Invalid(refused.0))?;
    let raw = std::path::Path::new(raw.trim());
    Ok(if raw.is_relative() {
        raw.to_path_buf()
    } else {
        canonical
    })
}
