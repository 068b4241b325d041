//! Settings shared by `serve`, `demo`, the benchmarks and the tests: where the data lives,
//! which database to use, the secret that signs cookies, and the operational limits.
//!
//! They are resolved once, at start, from four layers (later wins): built-in defaults < an
//! optional TOML file (`--config`) < `ARENAXL_*` environment variables < command-line flags.
//! Nothing else in the program reads the environment for a setting; handlers get them from
//! the app state. The README's settings table lists every key.

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use rand::RngCore;
use serde::Deserialize;

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

#[derive(Clone)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port (tests).
    pub bind: String,
    /// Where images (and the embedded database, when used) are kept.
    pub data_dir: PathBuf,
    /// `postgres://` URL; `None` starts (or joins) the embedded cluster in the data dir.
    pub database_url: Option<String>,
    /// At least 64 bytes that sign session cookies.
    pub secret: Vec<u8>,
    /// Mark cookies `Secure` (behind HTTPS).
    pub cookie_secure: bool,
    /// Send `Strict-Transport-Security` (only meaningful when served over HTTPS).
    pub hsts: bool,
    pub rate_limits: RateLimits,
    /// Largest JSON or form body accepted, in bytes.
    pub body_limit: usize,
    /// Largest uploaded file (prompts file or image archive), in bytes.
    pub upload_limit: u64,
    /// Most bytes an uploaded image archive may unpack to (zip bombs stop here).
    pub unpacked_limit: u64,
    /// Stop gracefully on SIGINT/SIGTERM (off in tests, which own the process).
    pub handle_signals: bool,
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers name the real client.
    pub trusted_proxies: Vec<IpNet>,
    /// Server folders the admin area may read (model folders, datasets, prompt files).
    pub import_roots: Vec<PathBuf>,
    /// Where relative model folders live; also an import root.
    pub models_dir: Option<PathBuf>,
    /// An admin session ends after this long without a request.
    pub session_idle_secs: u64,
    /// An admin session ends this long after login, however active.
    pub session_max_secs: u64,
    /// Largest image (width × height) an import accepts.
    pub max_image_pixels: u64,
    /// `/metrics` answers only requests with `Authorization: Bearer <token>`.
    pub metrics_token: Option<String>,
    /// A second listener that serves only `/metrics`, without a token (a private address).
    pub metrics_bind: Option<String>,
    /// Where `/static` is served from.
    pub static_dir: PathBuf,
}

/// Secrets never reach logs: the cookie key, the metrics token and the database URL (it may
/// hold a password) are shown as `<redacted>`.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("Settings")
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact(&self.database_url))
            .field("secret", &"<redacted>")
            .field("cookie_secure", &self.cookie_secure)
            .field("hsts", &self.hsts)
            .field("rate_limits", &self.rate_limits)
            .field("body_limit", &self.body_limit)
            .field("upload_limit", &self.upload_limit)
            .field("unpacked_limit", &self.unpacked_limit)
            .field("handle_signals", &self.handle_signals)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("import_roots", &self.import_roots)
            .field("models_dir", &self.models_dir)
            .field("session_idle_secs", &self.session_idle_secs)
            .field("session_max_secs", &self.session_max_secs)
            .field("max_image_pixels", &self.max_image_pixels)
            .field("metrics_token", &redact(&self.metrics_token))
            .field("metrics_bind", &self.metrics_bind)
            .field("static_dir", &self.static_dir)
            .finish()
    }
}

/// One layer of settings: every key optional. The TOML file deserialises into it directly;
/// environment variables and flags are turned into one.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub bind: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub secret: Option<String>,
    pub cookie_secure: Option<bool>,
    pub hsts: Option<bool>,
    pub body_limit: Option<u64>,
    pub upload_limit: Option<u64>,
    pub unpacked_limit: Option<u64>,
    pub trusted_proxies: Option<Vec<String>>,
    pub import_roots: Option<Vec<PathBuf>>,
    pub models_dir: Option<PathBuf>,
    pub session_idle_secs: Option<u64>,
    pub session_max_secs: Option<u64>,
    pub max_image_pixels: Option<u64>,
    pub metrics_token: Option<String>,
    pub metrics_bind: Option<String>,
    pub static_dir: Option<PathBuf>,
    pub join_per_sec: Option<f64>,
    pub join_burst: Option<f64>,
    pub vote_per_sec: Option<f64>,
    pub vote_burst: Option<f64>,
    pub login_per_sec: Option<f64>,
    pub login_burst: Option<f64>,
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Bool,
    Int,
    Float,
    List,
}

/// Every key, its type, and so its environment variable `ARENAXL_<KEY>` (upper case).
const KEYS: &[(&str, Kind)] = &[
    ("bind", Kind::Text),
    ("data_dir", Kind::Text),
    ("database_url", Kind::Text),
    ("secret", Kind::Text),
    ("cookie_secure", Kind::Bool),
    ("hsts", Kind::Bool),
    ("body_limit", Kind::Int),
    ("upload_limit", Kind::Int),
    ("unpacked_limit", Kind::Int),
    ("trusted_proxies", Kind::List),
    ("import_roots", Kind::List),
    ("models_dir", Kind::Text),
    ("session_idle_secs", Kind::Int),
    ("session_max_secs", Kind::Int),
    ("max_image_pixels", Kind::Int),
    ("metrics_token", Kind::Text),
    ("metrics_bind", Kind::Text),
    ("static_dir", Kind::Text),
    ("join_per_sec", Kind::Float),
    ("join_burst", Kind::Float),
    ("vote_per_sec", Kind::Float),
    ("vote_burst", Kind::Float),
    ("login_per_sec", Kind::Float),
    ("login_burst", Kind::Float),
];

impl Layer {
    /// The TOML file at `path`; unknown keys and wrong types are errors naming the file.
    pub fn from_file(path: &Path) -> anyhow::Result<Layer> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
    }

    /// The `ARENAXL_*` variables among `vars` (plus `DATABASE_URL`, the name every Postgres
    /// tool knows). Lists are comma-separated; an unparsable value names its variable.
    pub fn from_env(vars: &HashMap<String, String>) -> anyhow::Result<Layer> {
        let mut table = toml::Table::new();
        if let Some(url) = vars.get("DATABASE_URL").filter(|v| !v.trim().is_empty()) {
            table.insert(
                "database_url".into(),
                toml::Value::String(url.trim().into()),
            );
        }
        for (key, kind) in KEYS {
            let var = format!("ARENAXL_{}", key.to_uppercase());
            let Some(raw) = vars.get(&var) else { continue };
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            let bad = |what: &str| anyhow::anyhow!("{var}={raw:?} is not {what}");
            let value = match kind {
                Kind::Text => toml::Value::String(raw.into()),
                Kind::Bool => toml::Value::Boolean(match raw.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => true,
                    "0" | "false" | "no" | "off" => false,
                    _ => return Err(bad("a boolean (1/0, true/false)")),
                }),
                Kind::Int => toml::Value::Integer(
                    raw.replace('_', "")
                        .parse::<i64>()
                        .ok()
                        .filter(|v| *v >= 0)
                        .ok_or_else(|| bad("a whole number"))?,
                ),
                Kind::Float => toml::Value::Float(raw.parse::<f64>().map_err(|_| bad("a number"))?),
                Kind::List => toml::Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.into()))
                        .collect(),
                ),
            };
            table.insert((*key).into(), value);
        }
        Layer::deserialize(toml::Value::Table(table))
            .map_err(|e| anyhow::anyhow!("ARENAXL_* environment: {e}"))
    }

    /// `other`'s keys override this layer's.
    pub fn merge(self, other: Layer) -> Layer {
        macro_rules! pick {
            ($($f:ident),*) => { Layer { $($f: other.$f.or(self.$f)),* } };
        }
        pick!(
            bind,
            data_dir,
            database_url,
            secret,
            cookie_secure,
            hsts,
            body_limit,
            upload_limit,
            unpacked_limit,
            trusted_proxies,
            import_roots,
            models_dir,
            session_idle_secs,
            session_max_secs,
            max_image_pixels,
            metrics_token,
            metrics_bind,
            static_dir,
            join_per_sec,
            join_burst,
            vote_per_sec,
            vote_burst,
            login_per_sec,
            login_burst
        )
    }
}

/// A CIDR (`10.0.0.0/8`) or a single address (`127.0.0.1`, `::1`).
pub fn parse_cidr(raw: &str) -> anyhow::Result<IpNet> {
    let raw = raw.trim();
    raw.parse::<IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| anyhow::anyhow!("trusted_proxies: '{raw}' is not an address or CIDR"))
}

impl Settings {
    /// Built-in defaults for `bind` and `data_dir` (creating the data dir and its secret).
    pub fn new(bind: impl Into<String>, data_dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        Settings::resolve(Layer {
            bind: Some(bind.into()),
            data_dir: Some(data_dir.into()),
            ..Layer::default()
        })
    }

    /// The settings of `serve`: `config` file (if any) < `env` < `flags`.
    pub fn load(
        config: Option<&Path>,
        env: &HashMap<String, String>,
        flags: Layer,
    ) -> anyhow::Result<Self> {
        let file = match config {
            Some(path) => Layer::from_file(path)?,
            None => Layer::default(),
        };
        Settings::resolve(file.merge(Layer::from_env(env)?).merge(flags))
    }

    /// Fills what `layer` leaves out with defaults, checks every value, and prepares the
    /// data directory (created; the cookie secret generated there when none is given).
    pub fn resolve(layer: Layer) -> anyhow::Result<Self> {
        let d = RateLimits::default();
        let data_dir = layer.data_dir.unwrap_or_else(|| PathBuf::from("data"));
        std::fs::create_dir_all(&data_dir).map_err(|e| {
            anyhow::anyhow!("cannot create data directory {}: {e}", data_dir.display())
        })?;
        let secret = match layer.secret {
            Some(hex_secret) => parse_secret(&hex_secret)?,
            None => load_or_create_secret(&data_dir)?,
        };
        let trusted_proxies = layer
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|s| parse_cidr(s))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let cookie_secure = layer.cookie_secure.unwrap_or(false);
        let rate = |v: Option<f64>, default: f64, key: &str| -> anyhow::Result<f64> {
            let v = v.unwrap_or(default);
            anyhow::ensure!(v > 0.0 && v.is_finite(), "{key} must be a positive number");
            Ok(v)
        };
        let rate_limits = RateLimits {
            participants_per_sec: rate(layer.join_per_sec, d.participants_per_sec, "join_per_sec")?,
            participants_burst: rate(layer.join_burst, d.participants_burst, "join_burst")?,
            votes_per_sec: rate(layer.vote_per_sec, d.votes_per_sec, "vote_per_sec")?,
            votes_burst: rate(layer.vote_burst, d.votes_burst, "vote_burst")?,
            logins_per_sec: rate(layer.login_per_sec, d.logins_per_sec, "login_per_sec")?,
            logins_burst: rate(layer.login_burst, d.logins_burst, "login_burst")?,
        };
        let session_idle_secs = layer.session_idle_secs.unwrap_or(12 * 3600);
        let session_max_secs = layer.session_max_secs.unwrap_or(7 * 24 * 3600);
        anyhow::ensure!(
            session_idle_secs > 0 && session_max_secs > 0,
            "session_idle_secs and session_max_secs must be positive"
        );
        let metrics_token = layer.metrics_token.filter(|t| !t.is_empty());
        if let Some(token) = &metrics_token {
            anyhow::ensure!(
                token.len() >= 16,
                "metrics_token must be at least 16 characters"
            );
        }
        Ok(Settings {
            bind: layer.bind.unwrap_or_else(|| "127.0.0.1:8080".into()),
            data_dir,
            database_url: layer.database_url.filter(|u| !u.trim().is_empty()),
            secret,
            cookie_secure,
            // HTTPS is what makes cookies secure; HSTS follows unless said otherwise.
            hsts: layer.hsts.unwrap_or(cookie_secure),
            rate_limits,
            body_limit: layer.body_limit.unwrap_or(2 * 1024 * 1024) as usize,
            upload_limit: layer.upload_limit.unwrap_or(512 * 1024 * 1024),
            unpacked_limit: layer.unpacked_limit.unwrap_or(2 * 1024 * 1024 * 1024),
            handle_signals: true,
            trusted_proxies,
            import_roots: layer.import_roots.unwrap_or_default(),
            models_dir: layer.models_dir,
            session_idle_secs,
            session_max_secs,
            max_image_pixels: layer.max_image_pixels.unwrap_or(4096 * 4096),
            metrics_token,
            metrics_bind: layer.metrics_bind.filter(|b| !b.is_empty()),
            static_dir: layer.static_dir.unwrap_or_else(|| {
                // Static files ship in the repository next to Cargo.toml.
                Path::new(env!("CARGO_MANIFEST_DIR")).join("static")
            }),
        })
    }

    pub fn image_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }

    /// The file that holds the generated cookie secret (never readable through a root).
    pub fn secret_path(&self) -> PathBuf {
        self.data_dir.join("secret.key")
    }
}

fn parse_secret(hex_secret: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = hex::decode(hex_secret.trim())
        .map_err(|e| anyhow::anyhow!("the secret (ARENAXL_SECRET) is not hex: {e}"))?;
    anyhow::ensure!(
        bytes.len() >= 64,
        "the secret (ARENAXL_SECRET) must hold at least 64 bytes (128 hex digits)"
    );
    Ok(bytes)
}

/// A random secret kept in the data directory (mode 0600) so sessions survive restarts.
fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    let path = data_dir.join("secret.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(bytes) = hex::decode(text.trim()) {
            if bytes.len() >= 64 {
                // Older versions wrote it with the default mode: tighten it.
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
                return Ok(bytes);
            }
        }
    }
    let mut bytes = vec![0u8; 64];
    rand::thread_rng().fill_bytes(&mut bytes);
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, hex::encode(&bytes).as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn layers_override_in_order_and_secrets_are_redacted() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("arenaxl.toml");
        std::fs::write(
            &file,
            format!(
                "data_dir = {:?}\nbind = \"0.0.0.0:1\"\njoin_burst = 7.0\nmetrics_token = \"file-token-0123456789\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
                dir.path().join("d")
            ),
        )
        .expect("write");
        let s = Settings::load(
            Some(&file),
            &env(&[
                ("ARENAXL_BIND", "0.0.0.0:2"),
                ("ARENAXL_JOIN_BURST", "9"),
                ("ARENAXL_TRUSTED_PROXIES", "127.0.0.1, 192.168.0.0/16"),
            ]),
            Layer {
                bind: Some("0.0.0.0:3".into()),
                ..Layer::default()
            },
        )
        .expect("settings");
        assert_eq!(s.bind, "0.0.0.0:3");
        assert_eq!(s.rate_limits.participants_burst, 9.0);
        assert_eq!(s.trusted_proxies.len(), 2);
        let shown = format!("{s:?}");
        assert!(!shown.contains("file-token"), "{shown}");
        assert!(!shown.contains(&hex::encode(&s.secret)), "{shown}");
        let mode = std::fs::metadata(dir.path().join("d/secret.key"))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
        assert_eq!(mode.expect("secret written"), 0o600);
    }

    #[test]
    fn bad_values_name_their_source() {
        let err = Layer::from_env(&env(&[("ARENAXL_JOIN_BURST", "lots")])).unwrap_err();
        assert!(err.to_string().contains("ARENAXL_JOIN_BURST"), "{err}");
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "no_such_key = 1\n").expect("write");
        let err = Layer::from_file(&file).unwrap_err();
        assert!(err.to_string().contains("no_such_key"), "{err}");
        assert!(parse_cidr("10.0.0.0/33").is_err());
    }
}
