//! What leaves the admin area: the votes and participants CSVs, the Pick-a-Pic JSONL and
//! the live significance report (HTML page or JSON download).

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::db::studies;
use crate::study::Study;

use super::auth::{Admin, AdminError};
use crate::web::extract;
use crate::web::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/studies/{slug}/votes.csv", web::get().to(votes_csv))
        .route(
            "/admin/studies/{slug}/participants.csv",
            web::get().to(participants_csv),
        )
        .route(
            "/admin/studies/{slug}/pickapic.jsonl",
            web::get().to(pickapic_jsonl),
        )
        .route("/admin/studies/{slug}/report", web::get().to(report_page))
        .route(
            "/admin/studies/{slug}/report.json",
            web::get().to(report_json),
        );
}

async fn votes_csv(
    _admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let study = studies::by_slug(&state.db.pool, &slug).await?;
    let body = crate::study::export::votes_csv(&state.db, &study).await?;
    Ok(attachment(
        body,
        "text/csv; charset=utf-8",
        format!("{}-votes.csv", study.slug),
    ))
}

async fn participants_csv(
    _admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let study = studies::by_slug(&state.db.pool, &slug).await?;
    let body = crate::study::export::participants_csv(&state.db, &study).await?;
    Ok(attachment(
        body,
        "text/csv; charset=utf-8",
        format!("{}-participants.csv", study.slug),
    ))
}

fn attachment(body: String, content_type: &str, file_name: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file_name}\""),
        ))
        .body(body)
}

async fn pickapic_jsonl(
    _admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let study = studies::by_slug(&state.db.pool, &slug).await?;
    let (body, _) = crate::study::export::pickapic_jsonl(&state.db, &study).await?;
    Ok(attachment(
        body,
        "application/x-ndjson",
        format!("{}-pickapic.jsonl", study.slug),
    ))
}

/// Which votes the live report leaves out: `?exclude_fast=1&exclude_failed_gold=1`, as
/// `arenaxl report --exclude-fast --exclude-failed-gold`.
#[derive(Deserialize, Default)]
struct ReportQuery {
    #[serde(default)]
    exclude_fast: Option<String>,
    #[serde(default)]
    exclude_failed_gold: Option<String>,
}

impl ReportQuery {
    fn settings(&self) -> crate::report::ReportSettings {
        let on = |v: &Option<String>| matches!(v.as_deref(), Some("1" | "true" | "on"));
        crate::report::ReportSettings {
            exclude_fast: on(&self.exclude_fast),
            exclude_failed_gold: on(&self.exclude_failed_gold),
            ..crate::report::ReportSettings::default()
        }
    }
}

/// The study and its live significance report (1,000 participant-clustered bootstrap
/// rounds, alpha 0.05), built by the same code as `arenaxl report`.
async fn live_report(
    state: &AppState,
    slug: &str,
    query: &ReportQuery,
) -> Result<(Study, crate::report::Report), AdminError> {
    let study = studies::by_slug(&state.db.pool, slug).await?;
    let report = crate::study::export::live_report(&state.db, &study, query.settings()).await?;
    Ok((study, report))
}

async fn report_page(
    _admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
    query: extract::Query<ReportQuery>,
) -> Result<HttpResponse, AdminError> {
    let (study, report) = live_report(&state, &slug, &query).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(crate::report::render::to_html(&report, &study.title)))
}

async fn report_json(
    _admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
    query: extract::Query<ReportQuery>,
) -> Result<HttpResponse, AdminError> {
    let (study, report) = live_report(&state, &slug, &query).await?;
    Ok(attachment(
        crate::report::render::to_json(&report),
        "application/json",
        format!("{}-report.json", study.slug),
    ))
}
