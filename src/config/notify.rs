//! `[[notify]]`: where usage notifications go, which events each receiver wants and at which
//! thresholds (issue 17). Validated once at load, like plans: the rest of the crate only sees
//! a [`NotifyTarget`], whose secret is a [`Secret`] (never shown by `Debug` or `Display`).
//!
//! Shapes and choices (the issue leaves them open; the README's "Notifications" section says
//! the same to users):
//! - `name` identifies the receiver in the outbox, in `meterd notifications` and in logs; it
//!   must be unique. Renaming a receiver starts a new announcement state for it.
//! - `quota_fractions` are fractions of a package's quota *used* in its reset period, exact
//!   decimals in `(0, 1]` (`"1"`: the package is used up); default `["0.8", "1"]`.
//! - `usage_amounts` are amounts of an instance's billing quantity (its plan's `unit`) used in
//!   the current window of its plan (the record period: the hour or the day), exact decimals
//!   `> 0`; default none. One list for every plan: a receiver that needs different amounts per
//!   plan declares a second `[[notify]]` with `plans = [...]`.
//! - `deadline_margin`: a record still not accepted this long before its reporting deadline is
//!   announced as near it (default `1h`).
//! - `secret` or `secret_file` (exactly one): the HMAC key, its UTF-8 bytes (a file's trailing
//!   newline is dropped).

use super::{Secret, Span};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::str::FromStr;

/// The kinds of event a receiver can ask for, as named in `events` and in the body's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// A package's used fraction of its quota reached a configured fraction.
    QuotaCrossed,
    /// An instance's usage in its current window reached a configured amount.
    UsageCrossed,
    /// A record not yet accepted by the store is within `deadline_margin` of its deadline.
    DeadlineNear,
    /// A record was not accepted by its reporting deadline.
    DeadlineMissed,
    /// The store rejected a record (a dead letter, see `meterd rejected`).
    RecordRejected,
    /// The daemon's readiness (`/readyz`) turned false.
    ReadinessLost,
    /// The daemon's readiness turned true again.
    ReadinessRegained,
}

impl EventKind {
    /// Every kind, in documentation order.
    pub const ALL: [EventKind; 7] = [
        EventKind::QuotaCrossed,
        EventKind::UsageCrossed,
        EventKind::DeadlineNear,
        EventKind::DeadlineMissed,
        EventKind::RecordRejected,
        EventKind::ReadinessLost,
        EventKind::ReadinessRegained,
    ];

    /// The `type` of the notification body and the name in `events`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::QuotaCrossed => "quota.crossed",
            EventKind::UsageCrossed => "usage.crossed",
            EventKind::DeadlineNear => "record.deadline_near",
            EventKind::DeadlineMissed => "record.deadline_missed",
            EventKind::RecordRejected => "record.rejected",
            EventKind::ReadinessLost => "readiness.lost",
            EventKind::ReadinessRegained => "readiness.regained",
        }
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("unknown event {s:?}; the events are {}", names.join(", "))
        })
    }
}

/// One `[[notify]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyToml {
    name: String,
    url: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_file: Option<PathBuf>,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::exact::texts_option")]
    quota_fractions: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::exact::texts")]
    usage_amounts: Vec<String>,
    #[serde(default)]
    plans: Option<Vec<String>>,
    #[serde(default)]
    deadline_margin: Option<Span>,
    #[serde(default)]
    timeout: Option<Span>,
}

/// A validated receiver of notifications.
#[derive(Debug, Clone)]
pub struct NotifyTarget {
    /// Unique name: the outbox's `target` column and what `meterd notifications` shows.
    pub name: String,
    /// Where bodies are POSTed: `https://`, or `http://` to a loopback address only.
    pub url: reqwest::Url,
    /// HMAC-SHA256 key (its UTF-8 bytes); never logged.
    pub secret: Secret,
    /// The kinds wanted (all when `events` is absent).
    pub events: BTreeSet<EventKind>,
    /// Fractions of a package's quota used, ascending, each in (0, 1].
    pub quota_fractions: Vec<Decimal>,
    /// Amounts of an instance's usage in its current window, ascending, each > 0.
    pub usage_amounts: Vec<Decimal>,
    /// Plans whose instances this receiver hears about (all when absent).
    pub plans: Option<BTreeSet<String>>,
    /// How long before a record's reporting deadline it is announced as near it.
    pub deadline_margin: Span,
    /// Connect + response timeout of one delivery attempt (default 10s).
    pub timeout: Span,
}

impl NotifyTarget {
    /// Whether this receiver wants `kind`.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }

    /// Whether this receiver hears about instances of `plan`.
    pub fn covers_plan(&self, plan: &str) -> bool {
        self.plans.as_ref().is_none_or(|p| p.contains(plan))
    }
}

impl NotifyToml {
    /// Validates one entry; the error names the entry and the key.
    pub fn validate(self, plans: &std::collections::BTreeMap<String, super::Plan>) -> Result<NotifyTarget, String> {
        let at = format!("[[notify]] {:?}", self.name);
        let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if self.name.is_empty() || self.name.len() > 64 || !self.name.chars().all(name_ok) {
            return Err(format!(
                "[[notify]] `name` {:?} must be 1 to 64 of A-Z a-z 0-9 . _ -; it identifies the receiver in `meterd notifications` and metrics",
                self.name
            ));
        }
        // The URL's query and user info may hold a receiver's token: errors never show them.
        let url = reqwest::Url::parse(self.url.trim()).map_err(|e| format!("{at}: `url` is not a URL: {e}"))?;
        match url.scheme() {
            "https" if url.host().is_some() => {}
            "http" if super::is_loopback_url(&url) => {}
            _ => {
                return Err(format!("{at}: `url` {:?} must use https:// (plain http:// only to a loopback address)", without_secrets(&url)))
            }
        }
        let secret = match (self.secret, self.secret_file) {
            (Some(s), None) if !s.is_empty() => Secret::new(s.into_bytes()),
            (None, Some(path)) => read_secret(&path).map_err(|e| format!("{at}: {e}"))?,
            (Some(_), Some(_)) => return Err(format!("{at}: set `secret` or `secret_file`, not both")),
            _ => {
                return Err(format!(
                    "{at}: `secret` (or `secret_file`) is required and must not be empty: receivers verify the signature with it"
                ))
            }
        };
        let events = match self.events {
            None => EventKind::ALL.into_iter().collect(),
            Some(list) if list.is_empty() => {
                return Err(format!("{at}: `events` is empty; list the events wanted or remove the key for all"))
            }
            Some(list) => list.iter().map(|s| s.parse()).collect::<Result<_, _>>().map_err(|e| format!("{at}: `events`: {e}"))?,
        };
        let quota_fractions = match self.quota_fractions {
            None => vec![Decimal::new(8, 1), Decimal::ONE],
            Some(l) => decimals(&l, "quota_fractions", |d| d > Decimal::ZERO && d <= Decimal::ONE, "in (0, 1], e.g. \"0.8\"")
                .map_err(|e| format!("{at}: {e}"))?,
        };
        let usage_amounts = decimals(&self.usage_amounts, "usage_amounts", |d| d > Decimal::ZERO, "greater than 0, e.g. \"1000\"")
            .map_err(|e| format!("{at}: {e}"))?;
        if let Some(ps) = &self.plans {
            if let Some(p) = ps.iter().find(|p| !plans.contains_key(p.as_str())) {
                return Err(format!("{at}: `plans` names {p:?}, which is no [[plan]]"));
            }
        }
        let timeout = self.timeout.unwrap_or(Span::secs(10));
        if timeout.0.is_zero() || timeout > Span::secs(300) {
            return Err(format!("{at}: `timeout` = {timeout} must be between 1ms and 5m"));
        }
        Ok(NotifyTarget {
            name: self.name,
            url,
            secret,
            events,
            quota_fractions,
            usage_amounts,
            plans: self.plans.map(|p| p.into_iter().collect()),
            deadline_margin: self.deadline_margin.unwrap_or(Span::secs(3600)),
            timeout,
        })
    }
}

/// Exact decimals from strings, each passing `ok`, sorted and deduplicated.
fn decimals(list: &[String], key: &str, ok: impl Fn(Decimal) -> bool, want: &str) -> Result<Vec<Decimal>, String> {
    let mut out = Vec::with_capacity(list.len());
    for s in list {
        let d = Decimal::from_str(s.trim())
            .map_err(|_| format!("`{key}` value {s:?} is not a decimal number (write it as a string, e.g. \"0.8\")"))?;
        if !ok(d) {
            return Err(format!("`{key}` value {s:?} must be {want}"));
        }
        out.push(d.normalize());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `url` as errors may show it: scheme, host, port and path; the user info and the query
/// (where a receiver's token may be) replaced by `…`.
fn without_secrets(url: &reqwest::Url) -> String {
    let mut shown = format!("{}://", url.scheme());
    if !url.username().is_empty() || url.password().is_some() {
        shown.push_str("…@");
    }
    shown.push_str(url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    if url.query().is_some() {
        shown.push_str("?…");
    }
    shown
}

fn read_secret(path: &std::path::Path) -> Result<Secret, String> {
    let mut bytes = std::fs::read(path).map_err(|e| format!("cannot read `secret_file` {}: {e}", path.display()))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(format!("`secret_file` {} is empty", path.display()));
    }
    Ok(Secret::new(bytes))
}

/// Checks that receiver names are unique.
pub fn check_unique(targets: &[NotifyTarget]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for t in targets {
        if !seen.insert(t.name.as_str()) {
            return Err(format!("[[notify]] name {:?} is used twice; names must be unique", t.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn a_receiver_parses_with_defaults() {
        let c = Config::from_toml_str("[[notify]]\nname = \"app\"\nurl = \"https://app.example.com/hook\"\nsecret = \"s\"\n").unwrap();
        let t = &c.notify[0];
        assert_eq!(t.quota_fractions, vec!["0.8".parse().unwrap(), rust_decimal::Decimal::ONE]);
        assert_eq!(t.events.len(), 7);
        assert!(!format!("{t:?}").contains("\"s\""), "the secret must not show in Debug");
    }

    #[test]
    fn the_example_config_s_commented_receiver_parses() {
        let block: String = crate::config::EXAMPLE_CONFIG
            .lines()
            .skip_while(|l| *l != "# [[notify]]")
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .map(|l| if l.starts_with("secret_file") { "secret = \"x\"".to_string() } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(block.starts_with("[[notify]]"), "fixtures/meterd.example.toml shows a [[notify]] example");
        let c = Config::from_toml_str(&block).unwrap();
        assert_eq!(c.notify[0].name, "billing-app");
    }

    #[test]
    fn bad_receivers_are_refused_with_the_key_named() {
        for (text, want) in [
            ("url = \"http://example.com/\"\nsecret = \"s\"", "https://"),
            ("url = \"https://a.example\"", "`secret`"),
            ("url = \"https://a.example\"\nsecret = \"s\"\nevents = [\"quota.crosed\"]", "unknown event"),
            ("url = \"https://a.example\"\nsecret = \"s\"\nquota_fractions = [\"1.5\"]", "in (0, 1]"),
            ("url = \"https://a.example\"\nsecret = \"s\"\nquota_fractions = [\"x\"]", "not a decimal"),
            ("url = \"https://a.example\"\nsecret = \"s\"\nusage_amounts = [\"0\"]", "greater than 0"),
            ("url = \"https://a.example\"\nsecret = \"s\"\nplans = [\"nope\"]", "no [[plan]]"),
            ("url = \"https://a.example\"\nsecret = \"s\"\nsecrt = \"t\"", "secrt"),
        ] {
            let err = Config::from_toml_str(&format!("[[notify]]\nname = \"app\"\n{text}\n")).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        for url in ["http://u:PASSWD@example.com/hook?token=TOPSECRET", "ftp://example.com/x?token=TOPSECRET"] {
            let err = Config::from_toml_str(&format!("[[notify]]\nname = \"app\"\nurl = \"{url}\"\nsecret = \"s\"\n")).unwrap_err();
            assert!(err.contains("must use https://") && err.contains("example.com/"), "{err}");
            assert!(!err.contains("TOPSECRET") && !err.contains("PASSWD"), "a receiver's token is never shown: {err}");
        }
        let twice = "[[notify]]\nname = \"a\"\nurl = \"https://a.example\"\nsecret = \"s\"\n".repeat(2);
        assert!(Config::from_toml_str(&twice).unwrap_err().contains("used twice"));
    }
}
