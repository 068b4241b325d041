//! Prometheus metrics: votes recorded, requests by route and status, and a latency
//! histogram, rendered in the text exposition format at `/metrics`.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
pub struct Metrics {
    pub votes_recorded: AtomicU64,
    requests: Mutex<HashMap<(String, u16), u64>>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    pub fn observe(&self, route: &str, status: u16, seconds: f64) {
        {
            let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            *requests.entry((route.to_string(), status)).or_default() += 1;
        }
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP arenaxl_votes_recorded_total Votes stored (repeats not counted)."
        );
        let _ = writeln!(out, "# TYPE arenaxl_votes_recorded_total counter");
        let _ = writeln!(
            out,
            "arenaxl_votes_recorded_total {}",
            self.votes_recorded.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP arenaxl_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE arenaxl_http_requests_total counter");
        let mut rows: Vec<((String, u16), u64)> = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        rows.sort();
        for ((route, status), n) in rows {
            let route = route.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "arenaxl_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP arenaxl_http_request_duration_seconds Request latency."
        );
        let _ = writeln!(
            out,
            "# TYPE arenaxl_http_request_duration_seconds histogram"
        );
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "arenaxl_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                self.latency_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "arenaxl_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "arenaxl_http_request_duration_seconds_sum {}",
            self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "arenaxl_http_request_duration_seconds_count {count}");
        out
    }
}

/// The scheduler's re-reads of the counts (see `study::scheduler`): zero while this process
/// is alone on its studies, growing when it balances with other processes through the database.
pub fn render_scheduler(out: &mut String, rereads: u64) {
    let _ = writeln!(
        out,
        "# HELP arenaxl_scheduler_rereads_total Re-reads of a study's counts because another process issues comparisons too."
    );
    let _ = writeln!(out, "# TYPE arenaxl_scheduler_rereads_total counter");
    let _ = writeln!(out, "arenaxl_scheduler_rereads_total {rereads}");
}

/// Compares a presented token with the configured one without an early exit, so response
/// timing does not reveal how much of a guess was right.
pub fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    // Hashing first makes the comparison length-independent too.
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}
