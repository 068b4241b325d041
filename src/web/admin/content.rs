//! A study's content in the admin area: the prompts and images pages and their imports —
//! pasted prompts, a manifest folder already on the server (inside the import roots), and
//! uploads from the browser (a prompts file, TSV/CSV/text, or a .zip of a manifest folder
//! as `multipart/form-data`). All go through the same all-or-nothing imports as the command
//! line, with the same line-numbered errors; uploaded bytes live only in a temporary folder
//! that is gone when the request ends.

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::db::studies;
use crate::study::prompts::{import_prompts, parse_prompts, PromptFormat};
use crate::study::{Study, StudyError};

use super::auth::{check_csrf, csrf_token, Admin, AdminError};
use crate::web::errors::{html, html_with_status};
use crate::web::extract;
use crate::web::state::AppState;
use crate::web::uploads::{receive, resolve_in_roots, unpack_images_zip, Upload};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/admin/studies/{slug}/prompts",
        web::get().to(content_page::<PromptsPage>),
    )
    .route(
        "/admin/studies/{slug}/prompts",
        web::post().to(import_prompts_form),
    )
    .route(
        "/admin/studies/{slug}/images",
        web::get().to(content_page::<ImagesPage>),
    )
    .route(
        "/admin/studies/{slug}/images",
        web::post().to(import_images_form),
    )
    .route(
        "/admin/studies/{slug}/prompts/upload",
        web::post().to(upload_prompts),
    )
    .route(
        "/admin/studies/{slug}/images/upload",
        web::post().to(upload_images),
    );
}

/// The form, checked: CSRF first (the file is already in the temporary folder, which goes
/// away with the `Upload` if anything is wrong).
async fn received(
    admin: &Admin,
    state: &AppState,
    payload: Multipart,
) -> Result<Result<Upload, StudyError>, AdminError> {
    let upload = match receive(
        payload,
        &state.settings.data_dir,
        state.settings.upload_limit,
    )
    .await
    {
        Ok(upload) => upload,
        // Too large or malformed: say why on the form (the session is already checked).
        Err(refused) => return Ok(Err(StudyError::Import(refused.0))),
    };
    check_csrf(&admin.session, upload.field("csrf"))?;
    if upload.file.is_none() {
        return Ok(Err(StudyError::Import("choose a file to upload".into())));
    }
    Ok(Ok(upload))
}

async fn upload_prompts(
    admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
    payload: Multipart,
) -> Result<HttpResponse, AdminError> {
    let study = studies::by_slug(&state.db.pool, &slug).await?;
    let result = match received(&admin, &state, payload).await? {
        Ok(upload) => prompts_from(&state, &study, &upload).await,
        Err(e) => Err(e),
    };
    outcome_page::<PromptsPage>(&admin, study, result.map(|c| prompts_summary(&c)))
}

async fn prompts_from(
    state: &AppState,
    study: &crate::study::Study,
    upload: &Upload,
) -> Result<crate::study::prompts::ImportCount, StudyError> {
    let Some(file) = &upload.file else {
        return Err(StudyError::Import("choose a file to upload".into()));
    };
    let bytes = tokio::fs::read(&file.path).await?;
    let name = file.name.clone();
    let content = String::from_utf8(bytes)
        .map_err(|e| StudyError::Import(format!("{name}: not UTF-8 text ({e})")))?;
    let format = match upload.field("format") {
        "" | "auto" => PromptFormat::detect(&name, &content),
        other => PromptFormat::parse(other)?,
    };
    let prompts = parse_prompts(&name, &content, format)?;
    import_prompts(&state.db, study, &prompts).await
}

async fn upload_images(
    admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
    payload: Multipart,
) -> Result<HttpResponse, AdminError> {
    let study = studies::by_slug(&state.db.pool, &slug).await?;
    let result = match received(&admin, &state, payload).await? {
        Ok(upload) => images_from(&state, &study, upload).await,
        Err(e) => Err(e),
    };
    outcome_page::<ImagesPage>(&admin, study, result.map(|c| images_summary(&c)))
}

async fn images_from(
    state: &AppState,
    study: &crate::study::Study,
    upload: Upload,
) -> Result<crate::study::images::ImageImportCount, StudyError> {
    let Some(file) = &upload.file else {
        return Err(StudyError::Import("choose a file to upload".into()));
    };
    let archive = file.path.clone();
    let dest = upload.dir.path().join("unpacked");
    std::fs::create_dir_all(&dest)?;
    let limit = state.settings.unpacked_limit;
    let name = file.name.clone();
    let dir = tokio::task::spawn_blocking(move || unpack_images_zip(&archive, &dest, limit))
        .await
        .map_err(|e| StudyError::Import(format!("unpacking failed: {e}")))?
        .map_err(|refused| StudyError::Import(format!("{name}: {}", refused.0)))?;
    let result = crate::study::images::import_dir_limited(
        &state.db,
        study,
        &dir,
        &state.store,
        state.settings.max_image_pixels,
    )
    .await;
    // The temporary folder (archive and unpacked files) is removed here, whatever happened.
    drop(upload);
    result
}

/// The two content pages, prompts and images, show the same things: the study, the import
/// forms, and what the last import did or why it failed.
trait ContentPage: Template + Sized {
    fn new(csrf: String, study: Study, error: Option<String>, flash: Option<String>) -> Self;
}

#[derive(Template)]
#[template(path = "admin/prompts.html")]
struct PromptsPage {
    csrf: String,
    study: Study,
    error: Option<String>,
    flash: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/images.html")]
struct ImagesPage {
    csrf: String,
    study: Study,
    error: Option<String>,
    flash: Option<String>,
}

impl ContentPage for PromptsPage {
    fn new(csrf: String, study: Study, error: Option<String>, flash: Option<String>) -> Self {
        PromptsPage {
            csrf,
            study,
            error,
            flash,
        }
    }
}

impl ContentPage for ImagesPage {
    fn new(csrf: String, study: Study, error: Option<String>, flash: Option<String>) -> Self {
        ImagesPage {
            csrf,
            study,
            error,
            flash,
        }
    }
}

async fn content_page<P: ContentPage>(
    admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let study = studies::by_slug(&state.db.pool, &slug).await?;
    Ok(html(P::new(csrf_token(&admin.session), study, None, None))?)
}

/// The page again with what an import did (200), or what was wrong with the input (422,
/// the form again with the message). Faults that are not the input's become error pages.
fn outcome_page<P: ContentPage>(
    admin: &Admin,
    study: Study,
    result: Result<String, StudyError>,
) -> Result<HttpResponse, AdminError> {
    let (status, error, flash) = match result {
        Ok(summary) => (StatusCode::OK, None, Some(summary)),
        Err(e @ (StudyError::Import(_) | StudyError::Invalid { .. } | StudyError::Conflict(_))) => {
            (StatusCode::UNPROCESSABLE_ENTITY, Some(e.to_string()), None)
        }
        Err(e) => return Err(e.into()),
    };
    let page = P::new(csrf_token(&admin.session), study, error, flash);
    Ok(html_with_status(status, page)?)
}

fn prompts_summary(count: &crate::study::prompts::ImportCount) -> String {
    format!(
        "Imported {} new prompts ({} were already there).",
        count.added, count.existing
    )
}

fn images_summary(c: &crate::study::images::ImageImportCount) -> String {
    format!(
        "Imported {} new images ({} were already there); the study has {} candidate pairs.",
        c.images_added, c.images_existing, c.pairs_total
    )
}

#[derive(Deserialize)]
struct PromptsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    format: String,
    content: String,
}

async fn import_prompts_form(
    admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
    form: extract::Form<PromptsForm>,
) -> Result<HttpResponse, AdminError> {
    check_csrf(&admin.session, &form.csrf)?;
    let study = studies::by_slug(&state.db.pool, &slug).await?;
    let format = match form.format.as_str() {
        "" | "auto" => Ok(PromptFormat::detect("pasted", &form.content)),
        other => PromptFormat::parse(other),
    };
    let result = match format.and_then(|f| parse_prompts("pasted text", &form.content, f)) {
        Ok(prompts) => import_prompts(&state.db, &study, &prompts).await,
        Err(e) => Err(e),
    };
    outcome_page::<PromptsPage>(&admin, study, result.map(|c| prompts_summary(&c)))
}

#[derive(Deserialize)]
struct ImagesForm {
    #[serde(default)]
    csrf: String,
    dir: String,
}

/// Imports a manifest folder that is already on the server (where generation workers or a
/// researcher's copy put it), like `arenaxl images import` but only inside the roots.
async fn import_images_form(
    admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
    form: extract::Form<ImagesForm>,
) -> Result<HttpResponse, AdminError> {
    check_csrf(&admin.session, &form.csrf)?;
    let study = studies::by_slug(&state.db.pool, &slug).await?;
    let result = match resolve_in_roots(&state.settings, &form.dir, "image folder") {
        Ok(dir) => {
            crate::study::images::import_dir_limited(
                &state.db,
                &study,
                &dir,
                &state.store,
                state.settings.max_image_pixels,
            )
            .await
        }
        Err(refused) => Err(StudyError::Import(refused.0)),
    };
    outcome_page::<ImagesPage>(&admin, study, result.map(|c| images_summary(&c)))
}
