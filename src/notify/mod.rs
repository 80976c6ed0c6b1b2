//! Usage notifications (issue 17): signed JSON POSTs to the `[[notify]]` receivers, from a
//! persisted outbox, so a receiver hears about quota and usage crossings, records near or past
//! their reporting deadline, records the store rejected, and readiness changes.
//!
//! The pipeline, one file per stage:
//! - [`decide`]: which announcements a fact calls for (pure, table-tested): a package's used
//!   fraction, an instance's window usage, a record's deadline or rejection;
//! - [`build`] (here): the notice — its id, its state key and its exact body bytes;
//! - `store::notify`: the outbox, where [`build`]'s notices are enqueued once per
//!   `(receiver, state)` in the transaction that established the fact (the ingest transaction
//!   for quota crossings, on SQLite and PostgreSQL alike, whatever door took the events);
//! - [`sign`]: the `Meterd-Signature` header (pure; checked against
//!   `fixtures/notify/signature-vector.json`);
//! - [`deliver`]: the daemon's loop that POSTs due rows, retries with backoff until a 2xx, and
//!   records each outcome; [`watch`]: the daemon's periodic scan for the facts not seen at ingest
//!   (usage amounts, deadlines, rejections) and its readiness changes.
//!
//! Guarantees: at-least-once (a row is marked delivered only after a 2xx; a crash before that
//! resends it with the same id and bytes), so receivers dedupe by `id`; no order between
//! notices (each is retried on its own). A state is announced once per receiver: the outbox's
//! unique `(target, state)` is the persisted flag.
//!
//! **Orphaned notices** ([`Standing`], [`Outbox`]): a notice whose receiver was removed from
//! the config (or renamed) is never attempted — nothing says where it should go — but it is
//! kept, not deleted: configuring a `[[notify]]` of that name again delivers it. Such a notice
//! is shown as `orphaned` by `meterd notifications` (never as `failing` with a next attempt
//! that will not come) and counted by `/metrics` apart, in
//! `meterd_notifications_orphaned{receiver}`; `meterd_notifications_pending` counts only the
//! notices a configured receiver will get, so the listing and the metrics say the same thing.

pub mod decide;
pub mod deliver;
pub mod sign;
pub mod watch;

use crate::config::{EventKind, NotifyTarget};
use crate::model::Timestamp;
use crate::store::notify::NewNotice;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Where one outbox notice stands (`meterd notifications`' STATUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A 2xx was recorded; never sent again.
    Delivered,
    /// Not attempted yet; its receiver is configured.
    Pending,
    /// Attempted and not acknowledged; retried by its configured receiver.
    Failing,
    /// Not delivered, and no `[[notify]]` of its receiver's name is configured: never
    /// attempted until one is again.
    Orphaned,
}

impl Standing {
    /// The standing of a notice that is `delivered` or not, after `attempts`, whose receiver
    /// is `configured` (a `[[notify]]` of its name exists) or not. Delivered wins: a notice
    /// acknowledged before its receiver was removed is history, not a problem.
    pub fn of(delivered: bool, attempts: i64, configured: bool) -> Standing {
        match (delivered, configured, attempts) {
            (true, _, _) => Standing::Delivered,
            (false, false, _) => Standing::Orphaned,
            (false, true, 0) => Standing::Pending,
            (false, true, _) => Standing::Failing,
        }
    }

    /// `delivered`, `pending`, `failing` or `orphaned`.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Delivered => "delivered",
            Standing::Pending => "pending",
            Standing::Failing => "failing",
            Standing::Orphaned => "orphaned",
        }
    }
}

/// What an orphaned notice's listing says: why it waits and what to do.
pub fn orphaned_detail(receiver: &str) -> String {
    format!(
        "orphaned: receiver {receiver} is no longer configured, so this notice is never sent; add a [[notify]] named {receiver:?} again to deliver it, or ignore it"
    )
}

/// The outbox's undelivered notices: how many configured receivers will get, and per
/// receiver name that is no longer configured, how many are orphaned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbox {
    pub pending: u64,
    pub orphaned: BTreeMap<String, u64>,
}

impl Outbox {
    /// Splits undelivered counts per receiver name (`store::notify::undelivered_by_target`)
    /// by the configured receivers.
    pub fn split(undelivered: &[(String, u64)], configured: &[NotifyTarget]) -> Outbox {
        let mut out = Outbox::default();
        for (target, n) in undelivered {
            if configured.iter().any(|t| &t.name == target) {
                out.pending += n;
            } else {
                *out.orphaned.entry(target.clone()).or_default() += n;
            }
        }
        out
    }
}

/// The body of every notification, in this field order: `id`, `type`, `time` (RFC 3339 UTC,
/// when meterd established the fact), `instance_id` (`null` for readiness events) and the
/// kind's figures in `data` (decimals as strings, exact).
#[derive(Serialize)]
struct Body<'a, D: Serialize> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    time: String,
    instance_id: Option<&'a str>,
    data: D,
}

/// The notice announcing `state` to `target`: a stable id derived from both (so two nodes
/// that find the same crossing build the same row), and the body's exact bytes.
pub fn build<D: Serialize>(target: &str, kind: EventKind, state: String, instance_id: Option<&str>, at: Timestamp, data: D) -> NewNotice {
    let id = notice_id(target, &state);
    let body = Body { id: &id, kind: kind.as_str(), time: at.to_rfc3339(), instance_id, data };
    // Serializing plain structs of strings, numbers and options cannot fail.
    let body = serde_json::to_string(&body).unwrap_or_default();
    NewNotice {
        id,
        target: target.to_string(),
        state,
        kind: kind.as_str().to_string(),
        instance_id: instance_id.map(str::to_string),
        body,
        created_ns: at.0,
    }
}

/// `ntf_` + the first 32 hex digits of SHA-256(target NUL state).
pub fn notice_id(target: &str, state: &str) -> String {
    let mut h = Sha256::new();
    h.update(target.as_bytes());
    h.update([0u8]);
    h.update(state.as_bytes());
    format!("ntf_{}", &hex::encode(h.finalize())[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_of_a_receiver_no_longer_configured_is_orphaned_not_failing() {
        assert_eq!(Standing::of(false, 3, false), Standing::Orphaned);
        assert_eq!(Standing::of(false, 0, false), Standing::Orphaned);
        assert_eq!(Standing::of(true, 3, false), Standing::Delivered);
        assert_eq!(Standing::of(false, 0, true), Standing::Pending);
        assert_eq!(Standing::of(false, 2, true), Standing::Failing);
        let cfg =
            crate::config::Config::from_toml_str("[[notify]]\nname = \"kept\"\nurl = \"http://127.0.0.1:9/h\"\nsecret = \"s\"\n").unwrap();
        let o = Outbox::split(&[("gone".into(), 2), ("kept".into(), 5)], &cfg.notify);
        assert_eq!(o.pending, 5);
        assert_eq!(o.orphaned, BTreeMap::from([("gone".to_string(), 2)]));
    }

    #[test]
    fn the_body_has_the_documented_fields_in_order() {
        let n = build(
            "app",
            EventKind::QuotaCrossed,
            "quota:p:0:0.8".into(),
            Some("i-1"),
            Timestamp::from_secs(1764460800),
            serde_json::json!({"x": "1"}),
        );
        assert!(
            n.body.starts_with(&format!(
                "{{\"id\":\"{}\",\"type\":\"quota.crossed\",\"time\":\"2025-11-30T00:00:00Z\",\"instance_id\":\"i-1\",\"data\":",
                n.id
            )),
            "{}",
            n.body
        );
        assert_eq!(n.id, notice_id("app", "quota:p:0:0.8"));
        assert_ne!(n.id, notice_id("other", "quota:p:0:0.8"));
        assert_eq!(n.id.len(), 36);
    }
}
