//! What every handler can reach: the database, the scheduler, the image store, settings,
//! metrics and rate limiters.

use std::sync::Arc;

use crate::config::Settings;
use crate::db::Db;
use crate::study::images::ImageStore;
use crate::study::plans::Scheduler;

use super::metrics::Metrics;
use super::ratelimit::RateLimiter;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub scheduler: Scheduler,
    pub store: ImageStore,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub participant_limiter: Arc<RateLimiter>,
    pub vote_limiter: Arc<RateLimiter>,
    pub login_limiter: Arc<RateLimiter>,
}

impl AppState {
    pub fn new(db: Db, settings: Settings) -> AppState {
        let limits = settings.rate_limits;
        AppState {
            db,
            scheduler: Scheduler::default(),
            store: ImageStore::new(settings.image_dir()),
            metrics: Arc::new(Metrics::default()),
            participant_limiter: Arc::new(RateLimiter::new(
                limits.participants_per_sec,
                limits.participants_burst,
            )),
            vote_limiter: Arc::new(RateLimiter::new(limits.votes_per_sec, limits.votes_burst)),
            login_limiter: Arc::new(RateLimiter::new(limits.logins_per_sec, limits.logins_burst)),
            settings,
        }
    }
}
