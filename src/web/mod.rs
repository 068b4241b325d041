//! actix-web: routes per audience (participant pages, JSON API, admin area), the shared
//! state they use, extractors, and the mapping of domain errors to responses.

pub mod admin;
pub mod api;
pub mod errors;
pub mod extract;
pub mod images;
pub mod metrics;
pub mod participant;
pub mod ratelimit;
pub mod state;
pub mod uploads;

/// The redirect after a POST that worked (303, so the browser GETs the next page).
pub fn see_other(location: &str) -> actix_web::HttpResponse {
    actix_web::HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, location))
        .finish()
}
