//! Imports from the browser: a prompts file (TSV, CSV or text) and an images archive (.zip
//! of a manifest folder), uploaded as `multipart/form-data`. Both go through the same
//! all-or-nothing imports as the command line, with the same line-numbered errors; the
//! uploaded bytes live only in a temporary folder that is gone when the request ends.

use actix_multipart::Multipart;
use actix_web::{web, HttpResponse};

use crate::db::studies;
use crate::study::prompts::{import_prompts, parse_prompts, PromptFormat};
use crate::study::StudyError;

use super::admin::{check_csrf, csrf_token, import_outcome, Admin, AdminError};
use super::admin::{prompts_outcome_page, ImagesPage};
use super::errors::html_with_status;
use super::extract;
use super::state::AppState;
use super::uploads::{receive, unpack_images_zip, Upload};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
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
    prompts_outcome_page(&admin, study, result)
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
    let (status, error, flash) = import_outcome(result.map(|c| {
        format!(
            "Imported {} new images ({} were already there); the study has {} candidate pairs.",
            c.images_added, c.images_existing, c.pairs_total
        )
    }))?;
    let page = ImagesPage {
        csrf: csrf_token(&admin.session),
        study,
        error,
        flash,
    };
    Ok(html_with_status(status, page)?)
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
