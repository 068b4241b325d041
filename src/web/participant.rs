//! Server-rendered participant pages: instructions and consent, comparisons, completion.
//! They work without JavaScript; `static/vote.js` adds keyboard shortcuts and timing.
//! Nothing model-specific reaches the browser: images are addressed by assignment and side.

use std::collections::HashMap;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use crate::study::participation::{self, Comparison, Next, ParticipantToken, Progress};
use crate::study::{Choice, ExternalIds, Study, StudyError};

use super::errors::{html, PageError};
use super::extract;
use super::see_other;
use super::state::AppState;

pub const PARTICIPANT_COOKIE: &str = "axl_participant";
const EXTERNAL_KEYS: [&str; 6] = [
    "PROLIFIC_PID",
    "STUDY_ID",
    "SESSION_ID",
    "workerId",
    "assignmentId",
    "hitId",
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/s/{slug}", web::get().to(intro))
        .route("/s/{slug}/start", web::post().to(start))
        .route("/s/{slug}/vote", web::get().to(compare))
        .route("/s/{slug}/vote", web::post().to(submit_vote))
        .route("/s/{slug}/done", web::get().to(done));
}

fn external_ids(params: &HashMap<String, String>) -> ExternalIds {
    let get = |k: &str| params.get(k).cloned();
    ExternalIds {
        prolific_pid: get("PROLIFIC_PID"),
        prolific_study_id: get("STUDY_ID"),
        prolific_session_id: get("SESSION_ID"),
        mturk_worker_id: get("workerId"),
        mturk_assignment_id: get("assignmentId"),
        mturk_hit_id: get("hitId"),
    }
}

#[derive(Template)]
#[template(path = "participant/intro.html")]
struct IntroPage {
    study: Study,
    external: Vec<(String, String)>,
}

async fn intro(
    state: web::Data<AppState>,
    slug: extract::Path<String>,
    query: extract::Query<HashMap<String, String>>,
) -> Result<HttpResponse, PageError> {
    let study = crate::db::studies::by_slug(&state.db.pool, &slug).await?;
    let ext = external_ids(&query).validated().map_err(StudyError::from)?;
    if !participation::may_enter(&state.db, &study, &ext).await? {
        return Err(StudyError::NotOpen.into());
    }
    let external = EXTERNAL_KEYS
        .iter()
        .zip([
            ext.prolific_pid,
            ext.prolific_study_id,
            ext.prolific_session_id,
            ext.mturk_worker_id,
            ext.mturk_assignment_id,
            ext.mturk_hit_id,
        ])
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect();
    html(IntroPage { study, external })
}

pub fn client_key(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

fn too_many() -> PageError {
    PageError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "Slow down",
        "Too many requests. Wait a moment and try again.",
    )
}

async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
    form: extract::Form<HashMap<String, String>>,
) -> Result<HttpResponse, PageError> {
    if !state.participant_limiter.allow(&client_key(&req)) {
        return Err(too_many());
    }
    // A browser that already holds a session of this study keeps it (and its progress).
    let current = token_from(&req).ok();
    let (study, token) =
        participation::join(&state.db, &slug, external_ids(&form), current.as_ref()).await?;
    let cookie = Cookie::build(PARTICIPANT_COOKIE, token.0)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.settings.cookie_secure)
        .finish();
    Ok(HttpResponse::SeeOther()
        .cookie(cookie)
        .insert_header((header::LOCATION, format!("/s/{}/vote", study.slug)))
        .finish())
}

fn token_from(req: &HttpRequest) -> Result<ParticipantToken, PageError> {
    req.cookie(PARTICIPANT_COOKIE)
        .map(|c| ParticipantToken(c.value().to_string()))
        .ok_or_else(|| StudyError::Unauthenticated.into())
}

#[derive(Template)]
#[template(path = "participant/compare.html")]
struct ComparePage {
    title: String,
    notice: String,
    slug: String,
    question: String,
    prompt: String,
    progress: Progress,
    assignment_id: Uuid,
    left_url: String,
    right_url: String,
    allow_tie: bool,
    allow_both_bad: bool,
}

pub fn image_url(assignment: Uuid, left: bool) -> String {
    format!("/img/{assignment}/{}", if left { "left" } else { "right" })
}

async fn compare(
    req: HttpRequest,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
) -> Result<HttpResponse, PageError> {
    let token = token_from(&req)?;
    let (study, next) = crate::study::next::next(&state.db, &state.scheduler, &token).await?;
    match next {
        Next::Done { .. } => Ok(see_other(&format!("/s/{slug}/done"))),
        Next::Compare(Comparison {
            assignment_id,
            prompt,
            progress,
        }) => html(ComparePage {
            title: study.title,
            notice: study.notice,
            slug: study.slug,
            question: study.question,
            prompt,
            progress,
            assignment_id,
            left_url: image_url(assignment_id, true),
            right_url: image_url(assignment_id, false),
            allow_tie: study.allow_tie,
            allow_both_bad: study.allow_both_bad,
        }),
    }
}

#[derive(Deserialize)]
struct VoteForm {
    assignment_id: String,
    choice: String,
    #[serde(default)]
    response_ms: Option<String>,
}

async fn submit_vote(
    req: HttpRequest,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
    form: extract::Form<VoteForm>,
) -> Result<HttpResponse, PageError> {
    let token = token_from(&req)?;
    if !state.vote_limiter.allow(&token.hash()) {
        return Err(too_many());
    }
    let assignment = Uuid::parse_str(&form.assignment_id)
        .map_err(|_| StudyError::invalid("assignment_id", "is not a valid id"))?;
    let choice: Choice = form
        .choice
        .parse()
        .map_err(|e: String| StudyError::invalid("choice", e))?;
    // The script's timing is preferred; without it (or if garbled) the server times it.
    let response_ms = form
        .response_ms
        .as_deref()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|ms| (0..=86_400_000).contains(ms));
    let outcome = match participation::vote(
        &state.db,
        &state.scheduler,
        &token,
        assignment,
        choice,
        response_ms,
    )
    .await
    {
        Ok(outcome) => outcome,
        // The assignment is gone (lost in a database crash before it was flushed, or a
        // stale page): move on to the current comparison instead of a dead end.
        Err(StudyError::NotFound(_)) => return Ok(see_other(&format!("/s/{slug}/vote"))),
        Err(e) => return Err(e.into()),
    };
    if outcome == participation::VoteOutcome::Recorded {
        state
            .metrics
            .votes_recorded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(see_other(&format!("/s/{slug}/vote")))
}

#[derive(Template)]
#[template(path = "participant/done.html")]
struct DonePage {
    completion_code: String,
    redirect_url: Option<String>,
    ended_early: bool,
}

async fn done(
    req: HttpRequest,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
) -> Result<HttpResponse, PageError> {
    let token = token_from(&req)?;
    let (_, next) = crate::study::next::next(&state.db, &state.scheduler, &token).await?;
    match next {
        Next::Done {
            completion_code,
            redirect_url,
            ended_early,
        } => html(DonePage {
            completion_code,
            redirect_url,
            ended_early,
        }),
        Next::Compare(_) => Ok(see_other(&format!("/s/{slug}/vote"))),
    }
}
