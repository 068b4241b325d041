//! Settings shared by `serve`, `demo`, the benchmarks and the tests: where the data lives,
//! which database to use, the secret that signs cookies, and the operational limits.

use std::path::{Path, PathBuf};

use rand::RngCore;

/// Per-client rate limits (token buckets): sustained rate per second and burst size.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    pub participants_per_sec: f64,
    pub participants_burst: f64,
    pub votes_per_sec: f64,
    pub votes_burst: f64,
    pub logins_per_sec: f64,
    pub logins_burst: f64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            // A lab or a crowd-working office can sit behind one address: be generous.
            participants_per_sec: 5.0,
            participants_burst: 60.0,
            // Nobody judges two images meaningfully in under 100 ms.
            votes_per_sec: 10.0,
            votes_burst: 20.0,
            logins_per_sec: 0.5,
            logins_burst: 10.0,
        }
    }
}

impl RateLimits {
    /// Limits high enough never to trigger: for load benchmarks driven from one address.
    pub fn unlimited() -> Self {
        RateLimits {
            participants_per_sec: 1e9,
            participants_burst: 1e9,
            votes_per_sec: 1e9,
            votes_burst: 1e9,
            logins_per_sec: 1e9,
            logins_burst: 1e9,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port (tests).
    pub bind: String,
    /// Where images (and the embedded database, when used) are kept.
    pub data_dir: PathBuf,
    /// 64 bytes that sign session cookies.
    pub secret: Vec<u8>,
    /// Mark cookies `Secure` (behind HTTPS).
    pub cookie_secure: bool,
    pub rate_limits: RateLimits,
    /// Largest JSON or form body accepted, in bytes.
    pub body_limit: usize,
    /// Stop gracefully on SIGINT/SIGTERM (off in tests, which own the process).
    pub handle_signals: bool,
}

impl Settings {
    pub fn new(bind: impl Into<String>, data_dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let data_dir = data_dir.into();
        std::fs::create_dir_all(&data_dir).map_err(|e| {
            anyhow::anyhow!("cannot create data directory {}: {e}", data_dir.display())
        })?;
        let secret = load_or_create_secret(&data_dir)?;
        Ok(Settings {
            bind: bind.into(),
            data_dir,
            secret,
            cookie_secure: std::env::var("ARENAXL_COOKIE_SECURE")
                .is_ok_and(|v| v == "1" || v == "true"),
            rate_limits: RateLimits::default(),
            body_limit: 2 * 1024 * 1024,
            handle_signals: true,
        })
    }

    pub fn image_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }
}

/// The cookie-signing secret: `ARENAXL_SECRET` (hex, 64 bytes) when set, else a random one
/// kept in the data directory so sessions survive restarts.
fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(hex_secret) = std::env::var("ARENAXL_SECRET") {
        let bytes = hex::decode(hex_secret.trim())
            .map_err(|e| anyhow::anyhow!("ARENAXL_SECRET is not hex: {e}"))?;
        anyhow::ensure!(
            bytes.len() >= 64,
            "ARENAXL_SECRET must hold at least 64 bytes (128 hex digits)"
        );
        return Ok(bytes);
    }
    let path = data_dir.join("secret.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(bytes) = hex::decode(text.trim()) {
            if bytes.len() >= 64 {
                return Ok(bytes);
            }
        }
    }
    let mut bytes = vec![0u8; 64];
    rand::thread_rng().fill_bytes(&mut bytes);
    std::fs::write(&path, hex::encode(&bytes))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(bytes)
}
