//! The ingest result, identical for the CLI, HTTP and the library (design §7), and why an
//! event was refused: a [`RejectReason`] set where the collector decides (parsing in
//! `parse`, the rules in `decide`), carried in [`Rejected::reason`] to the metrics label
//! `meterd_events_rejected_total{reason}`. The labels are a contract with the dashboards and
//! alert rules under `contrib/`: never rename one.

use serde::{Deserialize, Serialize};

/// `{"accepted": N, "duplicates": N, "rejected": [{"index", "id", "error"}]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestResult {
    /// Events newly stored by this request.
    pub accepted: u64,
    /// Events already stored with the same quantity and time (not counted again).
    pub duplicates: u64,
    /// Every refused event, in input order.
    pub rejected: Vec<Rejected>,
    /// Stop-before-excess instances named in the request with no quota left at `now`: the app
    /// must stop their service (design §4.2). Omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quota_exhausted: Vec<String>,
    /// Accepted events of `max`, `latest`, `unique_count` and `weighted_sum` plans whose window
    /// was already sealed: stored, counted in `accepted`; a sealed record never changes (issue
    /// 14). Point plans bill them nowhere; a `weighted_sum` event still sets the level of the
    /// windows not yet sealed, and `unbilled_change` says what it would have changed in the
    /// sealed ones. Omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub late_unbilled: Vec<LateUnbilled>,
}

/// An accepted event whose window was already sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateUnbilled {
    /// 0-based position of the event in the request or file.
    pub index: usize,
    pub id: String,
    pub instance_id: String,
    /// `weighted_sum` plans only: what the event would have changed in the sealed windows, in
    /// the plan's unit·hours (signed; rounded to 4 decimals for display).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unbilled_change: Option<String>,
}

/// One refused event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// 0-based position of the event in the request or file.
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id: Option<String>,
    pub error: String,
    /// Why, for metrics; not part of the JSON result (its message says it to people). A
    /// result read back from JSON has [`RejectReason::Invalid`].
    #[serde(skip)]
    pub reason: RejectReason,
}

/// Why an event was refused at ingest: the `reason` label of
/// `meterd_events_rejected_total` ([`RejectReason::label`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum RejectReason {
    /// `id` is not a string of 1–128 printable ASCII characters.
    Id,
    /// `instance_id` is malformed, not registered, or a package instance.
    InstanceId,
    /// `quantity` is not an exact decimal in range.
    Quantity,
    /// `time` is unreadable, or outside the clock window, the instance's life, a freeze, or
    /// (with `collector.late = "reject"`) in a sealed window.
    Time,
    /// `metric` is not a string or not the plan's billing factor.
    Metric,
    /// The id is already stored with another quantity, time or properties.
    Conflict,
    /// The object has a field events do not have.
    UnknownField,
    /// A required field (`id`, `instance_id`, `time`, or `quantity` for its plan) is missing.
    MissingField,
    /// Anything else: not an event object, bad `properties`, a missing property the plan
    /// counts, an instance whose plan left the config.
    #[default]
    Invalid,
}

impl RejectReason {
    /// Every reason, in label order of declaration.
    pub const ALL: [RejectReason; 9] = [
        RejectReason::Id,
        RejectReason::InstanceId,
        RejectReason::Quantity,
        RejectReason::Time,
        RejectReason::Metric,
        RejectReason::Conflict,
        RejectReason::UnknownField,
        RejectReason::MissingField,
        RejectReason::Invalid,
    ];

    /// The metrics label (`id`, `instance_id`, `quantity`, `time`, `metric`, `conflict`,
    /// `unknown_field`, `missing_field`, `invalid`).
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::Id => "id",
            RejectReason::InstanceId => "instance_id",
            RejectReason::Quantity => "quantity",
            RejectReason::Time => "time",
            RejectReason::Metric => "metric",
            RejectReason::Conflict => "conflict",
            RejectReason::UnknownField => "unknown_field",
            RejectReason::MissingField => "missing_field",
            RejectReason::Invalid => "invalid",
        }
    }

    /// A refusal for this reason with the message the sender sees.
    pub fn with(self, message: impl Into<String>) -> Refused {
        Refused { reason: self, message: message.into() }
    }
}

/// A rule's refusal of one event: the reason (for metrics) and the message (for the sender,
/// saying what is wrong and what to do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub reason: RejectReason,
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IngestResult {
    /// Folds another chunk's result in, shifting its indexes by `offset`.
    pub fn merge(&mut self, other: IngestResult, offset: usize) {
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.add_exhausted(other.quota_exhausted);
        self.late_unbilled.extend(other.late_unbilled.into_iter().map(|mut l| {
            l.index += offset;
            l
        }));
        self.rejected.extend(other.rejected.into_iter().map(|mut r| {
            r.index += offset;
            r
        }));
    }

    /// Adds exhausted instances, keeping the list sorted and without repeats.
    pub fn add_exhausted(&mut self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        self.quota_exhausted.extend(ids);
        self.quota_exhausted.sort();
        self.quota_exhausted.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::Collector;
    use crate::config::Config;
    use crate::model::parse_rfc3339;
    use std::sync::Arc;

    /// The labels are the dashboards' and alert rules' (`contrib/`): pinned here.
    #[test]
    fn labels_are_the_contract() {
        let labels: Vec<_> = RejectReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels, ["id", "instance_id", "quantity", "time", "metric", "conflict", "unknown_field", "missing_field", "invalid"]);
        assert_eq!(RejectReason::default(), RejectReason::Invalid);
    }

    /// Each rule that refuses an event sets its reason, from parsing (the field rules) through
    /// the writer's decision (registration, clock, plan, conflict): one real SQLite store.
    #[test]
    fn every_refusal_carries_the_reason_its_rule_set() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("m.db");
        let cfg = Config::from_toml_str(
            r#"
[[plan]]
name = "calls"
factor = "api_calls"
unit = "call"
period = "hour"
pricing = "fixed"
price = "0.1"
[[plan]]
name = "users"
factor = "users"
unit = "user"
period = "day"
pricing = "fixed"
price = "0.1"
aggregation = "unique_count"
unique_by = "user"
"#,
        )
        .unwrap();
        let now = parse_rfc3339("2026-11-23T08:30:00Z").unwrap();
        let mut store = crate::store::Store::create(&db).unwrap();
        let start = parse_rfc3339("2026-11-23T00:00:00Z").unwrap();
        store
            .write(|tx| {
                crate::store::instances::add(tx, "i1", "calls", start, now)?;
                crate::store::instances::add(tx, "u1", "users", start, now)
            })
            .unwrap();
        drop(store);
        let collector = Collector::start(&db, Arc::new(cfg), Box::new(|_, _| {})).unwrap();
        let ev =
            |id: &str, extra: &str| format!(r#"{{"id":"{id}","instance_id":"i1","quantity":"1","time":"2026-11-23T08:00:00Z"{extra}}}"#);
        let first = collector.ingest_body(ev("a", "").as_bytes(), now).unwrap();
        assert_eq!(first.accepted, 1);
        let cases: Vec<(String, &str)> = vec![
            (r#"{"id":"","instance_id":"i1","quantity":"1","time":"2026-11-23T08:00:00Z"}"#.into(), "id"),
            (r#"{"id":"b","instance_id":"i 1","quantity":"1","time":"2026-11-23T08:00:00Z"}"#.into(), "instance_id"),
            (r#"{"id":"b","instance_id":"nope","quantity":"1","time":"2026-11-23T08:00:00Z"}"#.into(), "instance_id"),
            (r#"{"id":"b","instance_id":"i1","quantity":"x","time":"2026-11-23T08:00:00Z"}"#.into(), "quantity"),
            (r#"{"id":"b","instance_id":"i1","quantity":"1","time":"yesterday"}"#.into(), "time"),
            (r#"{"id":"b","instance_id":"i1","quantity":"1","time":"2026-11-24T08:00:00Z"}"#.into(), "time"),
            (r#"{"id":"b","instance_id":"i1","quantity":"1","time":"2026-11-22T08:00:00Z"}"#.into(), "time"),
            (ev("b", r#","metric":"other""#), "metric"),
            (ev("a", "").replace(r#""quantity":"1""#, r#""quantity":"2""#), "conflict"),
            (ev("b", r#","colour":"red""#), "unknown_field"),
            (r#"{"id":"b","instance_id":"i1","quantity":"1"}"#.into(), "missing_field"),
            (r#"{"id":"b","instance_id":"i1","time":"2026-11-23T08:00:00Z"}"#.into(), "missing_field"),
            (r#"{"id":"b","instance_id":"u1","time":"2026-11-23T08:00:00Z"}"#.into(), "invalid"),
            (r#"{"id":"b","instance_id":"i1","quantity":"1","time":"2026-11-23T08:00:00Z","properties":5}"#.into(), "invalid"),
            ("[1]".into(), "invalid"),
        ];
        let body: String = cases.iter().map(|(e, _)| format!("{e}\n")).collect();
        let result = collector.ingest_body(body.as_bytes(), now).unwrap();
        assert_eq!(result.rejected.len(), cases.len(), "{result:?}");
        for (r, (event, want)) in result.rejected.iter().zip(&cases) {
            assert_eq!(r.reason.label(), *want, "{event} → {}", r.error);
        }
    }
}
