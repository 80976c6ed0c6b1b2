//! Configuration: built-in defaults, then `meterd.toml`, then environment, then flags.
//!
//! Parsing is strict (`deny_unknown_fields`) so a typo is an error, not a silently ignored
//! setting. Every setting has a default, so meterd runs with no file at all. Plans are
//! validated here once; the rest of the crate only sees valid [`Plan`]s. The upload key is held
//! in a [`Secret`] whose `Debug` and `Display` never show it.

mod check;
mod duration;
mod exact;
mod notify;
mod plan;
pub(crate) mod secret;

pub use check::{endpoint_url, is_loopback_url, listen_addr};
pub use duration::Span;
pub use notify::{EventKind, NotifyTarget};
pub use plan::{Accumulation, PackageMode, Plan, PlanToml, Pricing, Tier};
pub use secret::Secret;

use crate::model::FixedTz;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What to do with an event whose window is already sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LatePolicy {
    /// Keep it (default): `sum`/`count` bill it in the instance's next unsealed window;
    /// `max`/`latest`/`unique_count` store it billed nowhere and report it; `weighted_sum`
    /// stores it — its level holds in the windows not yet sealed — and reports what it would
    /// have changed in the sealed ones (issue 14).
    Carry,
    /// Refuse it at ingest, whatever the aggregation (a refused `weighted_sum` event sets no
    /// level).
    Reject,
}

/// `[collector]`: what ingest accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// How far ahead of now an event time may be (clock skew allowance).
    pub max_future: Span,
    /// How old an event may be; the store refuses records that begin more than 21 days ago.
    pub max_age: Span,
    pub late: LatePolicy,
    /// Register unknown instances with this plan at their first event.
    pub auto_register: Option<String>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig { max_future: Span::secs(300), max_age: Span::secs(20 * 86_400), late: LatePolicy::Carry, auto_register: None }
    }
}

/// `[seal]`: when a closed window is turned into a record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SealConfig {
    /// Wait this long after a window ends before sealing it, for stragglers. Must be < 15m.
    pub grace: Span,
}

impl Default for SealConfig {
    fn default() -> Self {
        SealConfig { grace: Span::secs(300) }
    }
}

/// `[store]`: settings of a shared PostgreSQL store (issue 13); a SQLite store ignores them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// How long the sealer lease lasts without renewal: when its holder dies, another node
    /// takes over sealing and uploading after at most this long. Between 3s and 10m.
    pub lease: Span,
    /// A file holding the PostgreSQL password, used when the `--db` URL has none and
    /// `PGPASSWORD` is unset (one line; surrounding whitespace ignored).
    pub password_file: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { lease: Span::secs(15), password_file: None }
    }
}

/// `[upload]`: the cloud store's usage API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Base URL of the store's API (China site by default; the international site is
    /// [`INTL_ENDPOINT`]).
    pub endpoint: String,
    /// Host tried after `fallback_after` consecutive transient failures on `endpoint`. When the
    /// file does not set it, it follows `endpoint` ([`default_fallback`]): the China site's
    /// documented fallback [`CHINA_FALLBACK`] for the China endpoint, none for any other
    /// (the international site documents no fallback, and records must never be sent to the
    /// other site); `""` turns it off.
    pub fallback: Option<String>,
    pub path: String,
    /// Records per request, at most 1000 (the store's limit).
    pub batch_size: usize,
    pub timeout: Span,
    /// File holding the key; `METERD_ISV_KEY` wins when set.
    pub key_file: Option<PathBuf>,
    /// Attempts of one batch within one upload run before it is left for the next run.
    pub max_attempts: u32,
    /// First backoff delay; doubles each attempt up to `backoff_cap`, with full jitter.
    pub backoff_base: Span,
    pub backoff_cap: Span,
    /// Consecutive transient failures on `endpoint` before switching to `fallback`.
    pub fallback_after: u32,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            endpoint: CHINA_ENDPOINT.into(),
            // Unset: resolved from `endpoint` when the config loads (`default_fallback`).
            fallback: None,
            path: "/api/mkp-openapi-public/global/v1/isv/usage-data".into(),
            batch_size: 1000,
            timeout: Span::secs(30),
            key_file: None,
            max_attempts: 8,
            backoff_base: Span(std::time::Duration::from_millis(200)),
            backoff_cap: Span::secs(30),
            fallback_after: 3,
        }
    }
}

/// The China site's API host, the default `upload.endpoint`
/// (`docs/koogallery-usage-api.md`: hosts).
pub const CHINA_ENDPOINT: &str = "https://mkt.myhuaweicloud.com";
/// The host to retry on when the China site's host is unreachable (same source).
pub const CHINA_FALLBACK: &str = "https://mkt.myhuaweicloud.cn";
/// The international site's API host.
pub const INTL_ENDPOINT: &str = "https://mkt-intl.myhuaweicloud.com";

/// The fallback host when the config sets none: [`CHINA_FALLBACK`] when `endpoint` is the China
/// site's host, else none — the international site documents no fallback, and a mock or proxy
/// endpoint must not fail over to the real store. Pure; compares the URL's host only.
pub fn default_fallback(endpoint: &str) -> Option<&'static str> {
    let host = url::Url::parse(endpoint.trim()).ok()?.host_str()?.to_ascii_lowercase();
    let china = url::Url::parse(CHINA_ENDPOINT).ok()?;
    (Some(host.as_str()) == china.host_str()).then_some(CHINA_FALLBACK)
}

/// `[server]`: the HTTP collector and its limits. The limits bound what slow or hostile
/// clients can hold: memory by `max_inflight_bytes` (plus a small per-connection buffer), file
/// descriptors by `max_connections`, and time by the three timeouts (see `server::listen`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `IP:PORT` (or `localhost:PORT`) to listen on; loopback by default.
    pub listen: String,
    /// Name of an environment variable holding a bearer token required on every route but
    /// `/healthz`. `run` refuses to start when it is unset or empty.
    pub token_env: Option<String>,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body: usize,
    /// Time to receive a request's header, from its first byte; the connection is closed after.
    pub header_timeout: Span,
    /// Time to receive a whole request body, from the end of its header; 408 after.
    pub body_timeout: Span,
    /// A connection with no request in progress (before its first, or between keep-alive
    /// requests) is closed after this long.
    pub idle_timeout: Span,
    /// Connections served at once; one more is answered 503 with `Retry-After` and closed.
    /// `run` lowers it (with a warning) to what the process's file limit leaves room for.
    pub max_connections: usize,
    /// Request body bytes held in memory at once, over all requests (≥ `max_body`); a request
    /// that would pass it gets 503 with `Retry-After`.
    pub max_inflight_bytes: usize,
    /// Allows a non-loopback `listen` without `token_env`: anyone who can reach the port can
    /// then post usage. Off by default: `run` refuses such a config (exit 2).
    pub allow_public_without_token: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:9464".into(),
            token_env: None,
            max_body: 16 * 1024 * 1024,
            header_timeout: Span::secs(10),
            body_timeout: Span::secs(60),
            idle_timeout: Span::secs(60),
            max_connections: 1024,
            max_inflight_bytes: 64 * 1024 * 1024,
            allow_public_without_token: false,
        }
    }
}

/// `[schedule]`: cron expressions (with seconds) for the daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    pub seal: String,
    pub upload: String,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig { seal: "0 */5 * * * *".into(), upload: "30 */5 * * * *".into() }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigToml {
    #[serde(default)]
    timezone: Option<FixedTz>,
    #[serde(default)]
    collector: CollectorConfig,
    #[serde(default)]
    seal: SealConfig,
    #[serde(default)]
    upload: UploadConfig,
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    schedule: ScheduleConfig,
    #[serde(default)]
    store: StoreConfig,
    #[serde(default)]
    plan: Vec<PlanToml>,
    #[serde(default)]
    notify: Vec<notify::NotifyToml>,
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Zone of day windows and day/month accumulation boundaries.
    pub timezone: FixedTz,
    pub collector: CollectorConfig,
    pub seal: SealConfig,
    pub upload: UploadConfig,
    pub server: ServerConfig,
    pub schedule: ScheduleConfig,
    pub store: StoreConfig,
    pub plans: BTreeMap<String, Plan>,
    /// `[[notify]]`: receivers of usage notifications (`crate::notify`), in file order.
    pub notify: Vec<NotifyTarget>,
    /// Where the file was read from, if any; the database defaults to `meterd.db` beside it.
    pub source: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_toml_str("").expect("defaults are valid")
    }
}

impl Config {
    /// Parses and validates config text. The error says which key is wrong and how.
    pub fn from_toml_str(text: &str) -> Result<Config, String> {
        let raw: ConfigToml = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut plans = BTreeMap::new();
        for p in raw.plan {
            let plan = p.validate()?;
            if plans.contains_key(&plan.name) {
                return Err(format!("plan {:?} is defined twice; plan names must be unique", plan.name));
            }
            plans.insert(plan.name.clone(), plan);
        }
        let notify = raw.notify.into_iter().map(|n| n.validate(&plans)).collect::<Result<Vec<_>, _>>()?;
        notify::check_unique(&notify)?;
        let mut upload = raw.upload;
        upload.fallback = match upload.fallback.take() {
            None => default_fallback(&upload.endpoint).map(str::to_string),
            Some(f) if f.trim().is_empty() => None, // `fallback = ""` turns the fallback host off
            Some(f) => Some(f),
        };
        let cfg = Config {
            timezone: raw.timezone.unwrap_or_default(),
            collector: raw.collector,
            seal: raw.seal,
            upload,
            server: raw.server,
            schedule: raw.schedule,
            store: raw.store,
            plans,
            notify,
            source: None,
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        let mut cfg = Config::from_toml_str(&text).map_err(|e| format!("config {}: {e}", path.display()))?;
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        if self.store.lease < Span::secs(3) || self.store.lease > Span::secs(600) {
            return Err(format!(
                "`store.lease` = {} must be between 3s and 10m: shorter leases expire under ordinary pauses, longer ones leave records unsent for long after a node dies",
                self.store.lease
            ));
        }
        if self.seal.grace >= Span::secs(900) {
            return Err(format!("`seal.grace` = {} must be shorter than 15m so hourly records reach the store in time", self.seal.grace));
        }
        if self.upload.batch_size == 0 || self.upload.batch_size > 1000 {
            return Err(format!("`upload.batch_size` = {} must be between 1 and 1000 (the store's limit)", self.upload.batch_size));
        }
        if self.collector.max_age > Span::secs(21 * 86_400) {
            return Err(format!("`collector.max_age` = {} must be at most 21d: the store refuses older records", self.collector.max_age));
        }
        if let Some(p) = &self.collector.auto_register {
            if !self.plans.contains_key(p) {
                return Err(format!("`collector.auto_register` = {p:?} names no [[plan]]; define it or remove the setting"));
            }
        }
        if self.upload.backoff_base.0.is_zero() || self.upload.backoff_base > self.upload.backoff_cap {
            return Err("`upload.backoff_base` must be > 0 and ≤ `upload.backoff_cap`".into());
        }
        for (key, expr) in [("schedule.seal", &self.schedule.seal), ("schedule.upload", &self.schedule.upload)] {
            expr.parse::<cron::Schedule>()
                .map_err(|e| format!("`{key}` = {expr:?} is not a cron expression (sec min hour day month weekday): {e}"))?;
        }
        check::values(self)
    }

    pub fn plan(&self, name: &str) -> Option<&Plan> {
        self.plans.get(name)
    }

    /// The database path: flag/env value if given, else `meterd.db` beside the config file,
    /// else `./meterd.db`.
    pub fn default_db_path(&self) -> PathBuf {
        match &self.source {
            Some(p) => p.parent().unwrap_or(Path::new(".")).join("meterd.db"),
            None => PathBuf::from("meterd.db"),
        }
    }
}

/// The example configuration `meterd init` writes; a test checks that it parses.
pub const EXAMPLE_CONFIG: &str = include_str!("../../fixtures/meterd.example.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_all_defaults() {
        let c = Config::from_toml_str("").unwrap();
        assert_eq!(c.seal.grace, Span::secs(300));
        assert_eq!(c.server.listen, "127.0.0.1:9464");
        assert!(c.plans.is_empty());
    }

    #[test]
    fn example_config_parses() {
        let c = Config::from_toml_str(EXAMPLE_CONFIG).unwrap();
        assert!(c.plans.contains_key("calls"));
    }

    #[test]
    fn default_fallback_follows_the_endpoint() {
        assert_eq!(Config::default().upload.fallback.as_deref(), Some(CHINA_FALLBACK));
        let intl = Config::from_toml_str(&format!("[upload]\nendpoint = {INTL_ENDPOINT:?}")).unwrap();
        assert_eq!(intl.upload.fallback, None, "the international site must not fail over to the China site");
        let china = Config::from_toml_str("[upload]\nendpoint = \"https://MKT.myhuaweicloud.com/\"").unwrap();
        assert_eq!(china.upload.fallback.as_deref(), Some(CHINA_FALLBACK));
        let mock = Config::from_toml_str("[upload]\nendpoint = \"http://127.0.0.1:9\"").unwrap();
        assert_eq!(mock.upload.fallback, None);
        let explicit = format!("[upload]\nendpoint = {INTL_ENDPOINT:?}\nfallback = \"https://proxy.example.com\"");
        assert_eq!(Config::from_toml_str(&explicit).unwrap().upload.fallback.as_deref(), Some("https://proxy.example.com"));
        let off = Config::from_toml_str("[upload]\nfallback = \"\"").unwrap();
        assert_eq!(off.upload.fallback, None);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::from_toml_str("[seal]\ngrase = \"5m\"").unwrap_err();
        assert!(err.contains("grase"), "{err}");
        assert_eq!(Config::from_toml_str("[upload]\nfallback = \"\"").unwrap().upload.fallback, None);
        let err = Config::from_toml_str("[seal]\ngrace = \"20m\"").unwrap_err();
        assert!(err.contains("seal.grace"), "{err}");
        let err = Config::from_toml_str("[schedule]\nseal = \"every hour\"").unwrap_err();
        assert!(err.contains("schedule.seal"), "{err}");
    }
}
