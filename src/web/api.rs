//! The JSON API: the same participant flow for custom front ends, crowd platforms and load
//! tests, described by `/api/openapi.json`. Every error is `{"error", "detail"}` with a 4xx.

use std::future::{ready, Ready};

use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::study::participation::{self, Next, ParticipantToken, VoteOutcome};
use crate::study::{Choice, ExternalIds};

use super::errors::ApiError;
use super::extract;
use super::participant::{client_key, image_url};
use super::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .app_data(
                web::JsonConfig::default()
                    .limit(16 * 1024)
                    .error_handler(|err, _| {
                        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", err.to_string())
                            .into()
                    }),
            )
            .app_data(web::PathConfig::default().error_handler(|err, _| {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", err.to_string()).into()
            }))
            .route("/openapi.json", web::get().to(openapi))
            .route(
                "/v1/studies/{slug}/participants",
                web::post().to(create_participant),
            )
            .route("/v1/next", web::get().to(next))
            .route("/v1/assignments/{assignment_id}/vote", web::post().to(vote))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such endpoint",
                ))
            })),
    );
}

/// `Authorization: Bearer <participant_token>`.
pub struct Bearer(pub ParticipantToken);

impl FromRequest for Bearer {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let token = req
            .headers()
            .get("Authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 128);
        ready(match token {
            Some(t) => Ok(Bearer(ParticipantToken(t.to_string()))),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "send the participant token as 'Authorization: Bearer <participant_token>'",
            )),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewParticipant {
    #[serde(default)]
    external: ExternalIds,
}

async fn create_participant(
    req: HttpRequest,
    state: web::Data<AppState>,
    slug: extract::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !state.participant_limiter.allow(&client_key(&req)) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many new participants from this client",
        ));
    }
    // The body is optional: empty means no external ids.
    let external = if body.iter().all(u8::is_ascii_whitespace) {
        ExternalIds::default()
    } else if body.len() > 16 * 1024 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_body",
            "the body is larger than 16 KiB",
        ));
    } else {
        serde_json::from_slice::<NewParticipant>(&body)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    format!("Json deserialize error: {e}"),
                )
            })?
            .external
    };
    let (_, token) = participation::join(&state.db, &slug, external, None).await?;
    Ok(HttpResponse::Created().json(json!({ "participant_token": token.0 })))
}

async fn next(state: web::Data<AppState>, bearer: Bearer) -> Result<HttpResponse, ApiError> {
    let (study, next) = crate::study::next::next(&state.db, &state.scheduler, &bearer.0).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(match next {
            Next::Compare(c) => json!({
                "assignment_id": c.assignment_id,
                "prompt": c.prompt,
                "question": study.question,
                "left_url": image_url(c.assignment_id, true),
                "right_url": image_url(c.assignment_id, false),
                "choices": offered(study.allow_tie, study.allow_both_bad),
                "progress": { "done": c.progress.done, "target": c.progress.target },
            }),
            Next::Done {
                completion_code,
                redirect_url,
                ended_early,
            } => json!({
                "done": true,
                "completion_code": completion_code,
                "redirect_url": redirect_url,
                "ended_early": ended_early,
            }),
        }))
}

fn offered(tie: bool, both_bad: bool) -> Vec<&'static str> {
    let mut c = vec!["left", "right"];
    if tie {
        c.push("tie");
    }
    if both_bad {
        c.push("both_bad");
    }
    c
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VoteBody {
    choice: Choice,
    #[serde(default)]
    response_ms: Option<i64>,
}

async fn vote(
    state: web::Data<AppState>,
    bearer: Bearer,
    assignment: extract::Path<String>,
    body: extract::Json<VoteBody>,
) -> Result<HttpResponse, ApiError> {
    let assignment = Uuid::parse_str(&assignment)
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such assignment"))?;
    if !state.vote_limiter.allow(&bearer.0.hash()) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "votes are coming too fast",
        ));
    }
    let response_ms = match body.response_ms {
        None => None,
        Some(ms) => Some(i32::try_from(ms).map_err(|_| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                "response_ms: must be between 0 and 86400000",
            )
        })?),
    };
    let outcome = participation::vote(
        &state.db,
        &state.scheduler,
        &bearer.0,
        assignment,
        body.choice,
        response_ms,
    )
    .await?;
    Ok(match outcome {
        VoteOutcome::Recorded => {
            state
                .metrics
                .votes_recorded
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            HttpResponse::Ok().json(json!({ "recorded": true }))
        }
        VoteOutcome::AlreadyRecorded => {
            HttpResponse::Ok().json(json!({ "recorded": false, "reason": "already_recorded" }))
        }
    })
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(openapi_document())
}

/// The OpenAPI 3.0 description of the participant API.
pub fn openapi_document() -> serde_json::Value {
    let error = json!({ "$ref": "#/components/schemas/Error" });
    let err = |d: &str| json!({ "description": d, "content": { "application/json": { "schema": error } } });
    json!({
        "openapi": "3.0.3",
        "info": { "title": "ArenaXL participant API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Blind pairwise comparisons of images: join a study, fetch the next pair, vote." },
        "components": {
            "securitySchemes": { "participant": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error", "detail"],
                           "properties": { "error": { "type": "string" }, "detail": { "type": "string" } } },
                "ExternalIds": { "type": "object", "properties": {
                    "PROLIFIC_PID": { "type": "string" }, "STUDY_ID": { "type": "string" }, "SESSION_ID": { "type": "string" },
                    "workerId": { "type": "string" }, "assignmentId": { "type": "string" }, "hitId": { "type": "string" } } },
                "Comparison": { "type": "object",
                    "required": ["assignment_id", "prompt", "question", "left_url", "right_url", "choices", "progress"],
                    "properties": {
                        "assignment_id": { "type": "string", "format": "uuid" },
                        "prompt": { "type": "string" }, "question": { "type": "string" },
                        "left_url": { "type": "string" }, "right_url": { "type": "string" },
                        "choices": { "type": "array", "items": { "type": "string", "enum": ["left", "right", "tie", "both_bad"] } },
                        "progress": { "type": "object", "required": ["done", "target"],
                                      "properties": { "done": { "type": "integer" }, "target": { "type": "integer" } } } } },
                "Done": { "type": "object", "required": ["done", "completion_code"], "properties": {
                    "done": { "type": "boolean", "enum": [true] }, "completion_code": { "type": "string" },
                    "ended_early": { "type": "boolean", "description": "the study closed before the target was reached" },
                    "redirect_url": { "type": "string", "nullable": true } } }
            }
        },
        "paths": {
            "/api/v1/studies/{slug}/participants": { "post": {
                "summary": "Join an open study; the same PROLIFIC_PID or workerId again resumes that participant (new token, same progress)",
                "parameters": [{ "name": "slug", "in": "path", "required": true, "schema": { "type": "string" } }],
                "requestBody": { "required": false, "content": { "application/json": { "schema": {
                    "type": "object", "properties": { "external": { "$ref": "#/components/schemas/ExternalIds" } } } } } },
                "responses": {
                    "201": { "description": "Joined", "content": { "application/json": { "schema": {
                        "type": "object", "required": ["participant_token"],
                        "properties": { "participant_token": { "type": "string" } } } } } },
                    "400": err("Malformed body"), "404": err("No such study"), "409": err("Study not open"),
                    "422": err("Invalid external ids"), "429": err("Rate limited") } } },
            "/api/v1/next": { "get": {
                "summary": "The current or next comparison, or the completion code",
                "security": [{ "participant": [] }],
                "responses": {
                    "200": { "description": "A comparison or the end", "content": { "application/json": { "schema": {
                        "oneOf": [{ "$ref": "#/components/schemas/Comparison" }, { "$ref": "#/components/schemas/Done" }] } } } },
                    "401": err("Missing or unknown token"), "409": err("Study closed") } } },
            "/api/v1/assignments/{assignment_id}/vote": { "post": {
                "summary": "Vote on an assignment (idempotent)",
                "security": [{ "participant": [] }],
                "parameters": [{ "name": "assignment_id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["choice"], "properties": {
                        "choice": { "type": "string", "enum": ["left", "right", "tie", "both_bad"] },
                        "response_ms": { "type": "integer", "minimum": 0, "maximum": 86400000 } } } } } },
                "responses": {
                    "200": { "description": "Recorded, or already recorded", "content": { "application/json": { "schema": {
                        "type": "object", "required": ["recorded"], "properties": {
                            "recorded": { "type": "boolean" }, "reason": { "type": "string", "enum": ["already_recorded"] } } } } } },
                    "400": err("Malformed body"), "401": err("Missing token"), "403": err("Another participant's assignment"),
                    "404": err("No such assignment"), "409": err("Study closed"), "422": err("Choice not offered"),
                    "429": err("Rate limited") } } }
        }
    })
}
