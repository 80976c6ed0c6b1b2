//! The ingest result, identical for the CLI, HTTP and the library (design §7).

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
