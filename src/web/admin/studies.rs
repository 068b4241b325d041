//! Studies in the admin area: the list, create and edit forms, status changes, the
//! dashboard, and the prompt and image import pages.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::db::studies;
use crate::study::dashboard::{self, Dashboard};
use crate::study::{Study, StudyError, StudyForm, StudySettings, StudyStatus};

use crate::web::errors::{html, html_with_status};
use crate::web::extract;
use crate::web::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin", web::get().to(studies_page))
        .route("/admin/studies/new", web::get().to(new_study_page))
        .route("/admin/studies/new", web::post().to(create_study))
        .route("/admin/studies/{slug}", web::get().to(dashboard_page))
        .route("/admin/studies/{slug}/edit", web::get().to(edit_study_page))
        .route("/admin/studies/{slug}/edit", web::post().to(update_study))
        .route("/admin/studies/{slug}/status", web::post().to(set_status));
}

use super::auth::{check_csrf, csrf_token, see_other, Admin, AdminError};

#[derive(Template)]
#[template(path = "admin/studies.html")]
struct StudiesPage {
    csrf: String,
    studies: Vec<Study>,
}

async fn studies_page(
    admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AdminError> {
    Ok(html(StudiesPage {
        csrf: csrf_token(&admin.session),
        studies: studies::list(&state.db.pool).await?,
    })?)
}

/// The study form's fields as text, for re-display after an error.
#[derive(Deserialize, Default, Clone)]
struct StudyFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    question: String,
    #[serde(default)]
    instructions: String,
    #[serde(default)]
    consent_text: String,
    #[serde(default)]
    notice: String,
    #[serde(default)]
    votes_per_participant: String,
    #[serde(default)]
    gold_rate: String,
    #[serde(default)]
    fast_vote_ms: String,
    #[serde(default)]
    assignment_timeout_s: String,
    #[serde(default)]
    completion_code: String,
    #[serde(default)]
    completion_url: String,
    #[serde(default)]
    allow_tie: Option<String>,
    #[serde(default)]
    allow_both_bad: Option<String>,
    #[serde(default)]
    allocation: String,
    #[serde(default)]
    stop_when_decided: Option<String>,
    #[serde(default)]
    vote_budget: String,
}

struct FormView {
    slug: String,
    title: String,
    question: String,
    instructions: String,
    consent_text: String,
    notice: String,
    votes_per_participant: String,
    gold_rate: String,
    fast_vote_ms: String,
    assignment_timeout_s: String,
    completion_code: String,
    completion_url: String,
    allow_tie: bool,
    allow_both_bad: bool,
    adaptive: bool,
    stop_when_decided: bool,
    vote_budget: String,
}

impl From<&StudyFields> for FormView {
    fn from(f: &StudyFields) -> Self {
        FormView {
            slug: f.slug.clone(),
            title: f.title.clone(),
            question: f.question.clone(),
            instructions: f.instructions.clone(),
            consent_text: f.consent_text.clone(),
            notice: f.notice.clone(),
            votes_per_participant: f.votes_per_participant.clone(),
            gold_rate: f.gold_rate.clone(),
            fast_vote_ms: f.fast_vote_ms.clone(),
            assignment_timeout_s: f.assignment_timeout_s.clone(),
            completion_code: f.completion_code.clone(),
            completion_url: f.completion_url.clone(),
            allow_tie: f.allow_tie.is_some(),
            allow_both_bad: f.allow_both_bad.is_some(),
            adaptive: f.allocation.trim() == "adaptive",
            stop_when_decided: f.stop_when_decided.is_some(),
            vote_budget: f.vote_budget.clone(),
        }
    }
}

impl From<&Study> for FormView {
    fn from(s: &Study) -> Self {
        FormView {
            slug: s.slug.clone(),
            title: s.title.clone(),
            question: s.question.clone(),
            instructions: s.instructions.clone(),
            consent_text: s.consent_text.clone(),
            notice: s.notice.clone(),
            votes_per_participant: s.votes_per_participant.to_string(),
            gold_rate: s.gold_rate.to_string(),
            fast_vote_ms: s.fast_vote_ms.to_string(),
            assignment_timeout_s: s.assignment_timeout_s.to_string(),
            completion_code: s.completion_code.clone(),
            completion_url: s.completion_url.clone(),
            allow_tie: s.allow_tie,
            allow_both_bad: s.allow_both_bad,
            adaptive: s.allocation == crate::study::allocation::Allocation::Adaptive,
            stop_when_decided: s.stop_when_decided,
            vote_budget: s.vote_budget.map(|b| b.to_string()).unwrap_or_default(),
        }
    }
}

impl TryFrom<&StudyFields> for StudySettings {
    type Error = StudyError;
    fn try_from(f: &StudyFields) -> Result<Self, StudyError> {
        let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let votes = match opt(&f.votes_per_participant) {
            None => None,
            Some(v) => Some(v.parse::<i32>().map_err(|_| {
                StudyError::invalid(
                    "votes_per_participant",
                    format!("'{v}' is not a whole number"),
                )
            })?),
        };
        let gold =
            match opt(&f.gold_rate) {
                None => None,
                Some(v) => Some(v.parse::<f64>().map_err(|_| {
                    StudyError::invalid("gold_rate", format!("'{v}' is not a number"))
                })?),
            };
        let budget = match opt(&f.vote_budget) {
            None => None,
            Some(v) => Some(v.parse::<i32>().map_err(|_| {
                StudyError::invalid("vote_budget", format!("'{v}' is not a whole number"))
            })?),
        };
        StudySettings::try_from(StudyForm {
            slug: f.slug.clone(),
            title: f.title.clone(),
            question: opt(&f.question),
            instructions: opt(&f.instructions),
            consent_text: opt(&f.consent_text),
            notice: opt(&f.notice),
            votes_per_participant: votes,
            gold_rate: gold,
            completion_code: opt(&f.completion_code),
            completion_url: opt(&f.completion_url),
            allow_tie: f.allow_tie.is_some(),
            allow_both_bad: f.allow_both_bad.is_some(),
            fast_vote_ms: whole(&f.fast_vote_ms, "fast_vote_ms")?,
            assignment_timeout_s: whole(&f.assignment_timeout_s, "assignment_timeout_s")?,
            allocation: opt(&f.allocation),
            stop_when_decided: f.stop_when_decided.is_some(),
            vote_budget: budget,
        })
        .map_err(StudyError::from)
    }
}

/// An optional whole-number form field: blank means the default.
fn whole(v: &str, field: &str) -> Result<Option<i32>, StudyError> {
    match v.trim() {
        "" => Ok(None),
        v => v
            .parse::<i32>()
            .map(Some)
            .map_err(|_| StudyError::invalid(field, format!("'{v}' is not a whole number"))),
    }
}

#[derive(Template)]
#[template(path = "admin/study_form.html")]
struct StudyFormPage {
    csrf: String,
    heading: String,
    action: String,
    editing: bool,
    form: FormView,
    error: Option<String>,
}

async fn new_study_page(admin: Admin) -> Result<HttpResponse, AdminError> {
    let defaults = StudyFields {
        votes_per_participant: "20".into(),
        gold_rate: "0.1".into(),
        completion_url: crate::study::DEFAULT_COMPLETION_URL.into(),
        allow_tie: Some("on".into()),
        allow_both_bad: Some("on".into()),
        ..StudyFields::default()
    };
    Ok(html(StudyFormPage {
        csrf: csrf_token(&admin.session),
        heading: "New study".into(),
        action: "/admin/studies/new".into(),
        editing: false,
        form: FormView::from(&defaults),
        error: None,
    })?)
}

fn form_with_error(
    admin: &Admin,
    fields: &StudyFields,
    editing: bool,
    err: StudyError,
) -> Result<HttpResponse, AdminError> {
    let status = match &err {
        StudyError::Conflict(_) => StatusCode::CONFLICT,
        StudyError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        _ => return Err(err.into()),
    };
    let page = StudyFormPage {
        csrf: csrf_token(&admin.session),
        heading: if editing {
            "Edit study".into()
        } else {
            "New study".into()
        },
        action: if editing {
            format!("/admin/studies/{}/edit", fields.slug)
        } else {
            "/admin/studies/new".into()
        },
        editing,
        form: FormView::from(fields),
        error: Some(err.to_string()),
    };
    Ok(html_with_status(status, page)?)
}

async fn create_study(
    admin: Admin,
    state: web::Data<AppState>,
    form: extract::Form<StudyFields>,
) -> Result<HttpResponse, AdminError> {
    check_csrf(&admin.session, &form.csrf)?;
    let result = match StudySettings::try_from(&*form) {
        Ok(settings) => studies::insert(&state.db.pool, &settings)
            .await
            .map_err(StudyError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(study) => Ok(see_other(&format!("/admin/studies/{}", study.slug))),
        Err(e) => form_with_error(&admin, &form, false, e),
    }
}

async fn edit_study_page(
    admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let study = studies::by_slug(&state.db.pool, &slug).await?;
    Ok(html(StudyFormPage {
        csrf: csrf_token(&admin.session),
        heading: "Edit study".into(),
        action: format!("/admin/studies/{}/edit", study.slug),
        editing: true,
        form: FormView::from(&study),
        error: None,
    })?)
}

async fn update_study(
    admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
    form: extract::Form<StudyFields>,
) -> Result<HttpResponse, AdminError> {
    check_csrf(&admin.session, &form.csrf)?;
    let study = studies::by_slug(&state.db.pool, &slug).await?;
    let mut fields = form.into_inner();
    fields.slug = study.slug.clone();
    let result = match StudySettings::try_from(&fields) {
        Ok(settings) => studies::update(&state.db.pool, study.id, &settings)
            .await
            .map_err(StudyError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(study) => Ok(see_other(&format!("/admin/studies/{}", study.slug))),
        Err(e) => form_with_error(&admin, &fields, true, e),
    }
}

#[derive(Deserialize)]
struct StatusForm {
    #[serde(default)]
    csrf: String,
    status: String,
}

async fn set_status(
    admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
    form: extract::Form<StatusForm>,
) -> Result<HttpResponse, AdminError> {
    check_csrf(&admin.session, &form.csrf)?;
    let status = StudyStatus::parse(&form.status).map_err(StudyError::from)?;
    studies::set_status(&state.db.pool, &slug, status).await?;
    Ok(see_other(&format!("/admin/studies/{slug}")))
}

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage {
    csrf: String,
    study: Study,
    d: Dashboard,
    gold_failure: String,
    median_response: String,
    participant_link: String,
    flash: Option<String>,
}

async fn dashboard_page(
    admin: Admin,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let study = studies::by_slug(&state.db.pool, &slug).await?;
    let d = dashboard::load(&state.db, &study).await?;
    let gold_failure = d
        .gold_failure_rate()
        .map(|r| format!("{:.1}%", r * 100.0))
        .unwrap_or_else(|| "–".into());
    let median_response = d
        .totals
        .median_response_ms
        .map(|ms| format!("{:.1} s", ms / 1000.0))
        .unwrap_or_else(|| "–".into());
    let participant_link = format!(
        "/s/{}?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}&STUDY_ID={{{{%STUDY_ID%}}}}&SESSION_ID={{{{%SESSION_ID%}}}}",
        study.slug
    );
    Ok(html(DashboardPage {
        csrf: csrf_token(&admin.session),
        study,
        d,
        gold_failure,
        median_response,
        participant_link,
        flash: None,
    })?)
}
