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

pub mod decide;
pub mod deliver;
pub mod sign;
pub mod watch;

use crate::config::EventKind;
use crate::model::Timestamp;
use crate::store::notify::NewNotice;
use serde::Serialize;
use sha2::{Digest, Sha256};

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
