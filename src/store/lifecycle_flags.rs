//! Sealed records that a lifecycle change reported late puts in question (issue 12, kind 4).
//!
//! The cloud store's release and freeze are the truth, also when they reach meterd after the
//! windows around them were sealed. A sealed record never changes, so such a change is
//! recorded and the records it contradicts are *flagged*: named in the answer to the release
//! or freeze, and listed by `meterd status` / `GET /v1/status` for as long as they exist.
//!
//! - **Past the release**: a record whose `end_time` is after the instance's release (this
//!   includes records that begin after it). The store refuses a record ending after the
//!   release.
//! - **Inside a frozen interval**: a record whose whole period lies in `[freeze, unfreeze)`
//!   (an open interval while still frozen): a frozen instance produces no billable usage, and
//!   the store rejects records of instances in an abnormal state. A record that only overlaps
//!   a freeze (the hour in which it began) is normal and is not flagged.
//!
//! Records of value 0 are never uploaded and are not flagged. The rule is [`judge`] (pure);
//! [`of_instance`] reads the candidate records and applies it. Nothing is stored: the flags
//! are derived from the records, the release time and the status history each time.

use super::instances::InstanceRow;
use super::lifecycle::History;
use super::sql::{params, Tx};
use super::{dec, Result};
use crate::model::Timestamp;
use serde::Serialize;

/// More than the longest window (a day): bounds the records read per instance.
const WINDOW_BOUND_SECS: i64 = 2 * 86_400;

/// Why a sealed record is flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The record ends after the instance's release at this time.
    PastRelease(Timestamp),
    /// The record lies inside the frozen interval `[since, until)` (`until` open while frozen).
    InsideFrozen { since: Timestamp, until: Option<Timestamp> },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::PastRelease(r) => write!(f, "ends after the release at {r}; the store refuses it"),
            Reason::InsideFrozen { since, until: Some(u) } => write!(f, "lies inside the frozen interval [{since}, {u})"),
            Reason::InsideFrozen { since, until: None } => write!(f, "lies inside the frozen interval since {since}"),
        }
    }
}

/// A flagged record, as `status` and the release/freeze answers show it. Times are UTC;
/// `usage_value` is the record's exact decimal value; `state` its delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flagged {
    pub instance_id: String,
    pub metering_sn: String,
    pub begin_time: Timestamp,
    pub end_time: Timestamp,
    pub usage_value: String,
    pub state: String,
    /// Why it is flagged, in words ([`Reason`]).
    pub reason: String,
}

impl std::fmt::Display for Flagged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} [{}, {}) value {} ({}) {}",
            self.metering_sn, self.begin_time, self.end_time, self.usage_value, self.state, self.reason
        )
    }
}

/// Whether a record over `[begin, end)` contradicts the release or the status history. Pure.
pub fn judge(release: Option<Timestamp>, history: &History, begin: Timestamp, end: Timestamp) -> Option<Reason> {
    if let Some(r) = release.filter(|r| end > *r) {
        return Some(Reason::PastRelease(r));
    }
    history
        .frozen_intervals()
        .into_iter()
        .find(|(since, until)| begin >= *since && until.is_none_or(|u| end <= u))
        .map(|(since, until)| Reason::InsideFrozen { since, until })
}

/// The earliest instant a flagged record of this instance can end after, if any can exist.
fn earliest(inst: &InstanceRow, history: &History) -> Option<Timestamp> {
    let first_freeze = history.frozen_intervals().first().map(|(since, _)| *since);
    [inst.release, first_freeze].into_iter().flatten().min()
}

/// The instance's sealed records (value > 0) that its release or status history contradicts,
/// in time order.
pub fn of_instance(tx: &Tx<'_>, inst: &InstanceRow, history: &History) -> Result<Vec<Flagged>> {
    let Some(after) = earliest(inst, history) else { return Ok(Vec::new()) };
    // A window is at most a day long, so a record ending after `after` begins less than a day
    // before it: the bound on `window_start` lets the index skip the instance's older records.
    let mut out = Vec::new();
    tx.for_each(
        "SELECT metering_sn, begin_s, end_s, usage_value, state FROM records
         WHERE instance_ref = ?1 AND window_start > ?3 AND end_s * 1000000000 > ?2 AND state != 'zero'
         ORDER BY begin_s, end_s",
        params![inst.key, after.0, after.secs() - WINDOW_BOUND_SECS],
        |r| {
            let (begin, end) = (Timestamp::from_secs(r.get(1)?), Timestamp::from_secs(r.get(2)?));
            let Some(reason) = judge(inst.release, history, begin, end) else { return Ok(()) };
            out.push(Flagged {
                instance_id: inst.instance_id.clone(),
                metering_sn: r.get(0)?,
                begin_time: begin,
                end_time: end,
                usage_value: dec(&r.get::<String>(3)?)?.normalize().to_string(),
                state: r.get(4)?,
                reason: reason.to_string(),
            });
            Ok(())
        },
    )?;
    Ok(out)
}

/// One line naming flagged records for a warning: at most `max` of them, then how many more.
pub fn describe(flagged: &[Flagged], max: usize) -> String {
    let mut text = flagged.iter().take(max).map(|f| f.to_string()).collect::<Vec<_>>().join("; ");
    if flagged.len() > max {
        text.push_str(&format!("; and {} more", flagged.len() - max));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_rfc3339;
    use crate::store::lifecycle::Status;

    fn t(s: &str) -> Timestamp {
        parse_rfc3339(&format!("2026-11-23T{s}:00Z")).unwrap()
    }

    #[test]
    fn records_past_the_release_or_wholly_inside_a_frozen_interval_are_flagged() {
        let h = History(vec![(t("10:00"), Status::Freeze), (t("12:00"), Status::Unfreeze), (t("14:30"), Status::Freeze)]);
        let none = History::default();
        let rel = Some(t("09:30"));
        for (release, history, begin, end, want) in [
            (rel, &none, "09:00", "09:30", None),
            (rel, &none, "09:00", "10:00", Some(Reason::PastRelease(t("09:30")))),
            (rel, &none, "10:00", "11:00", Some(Reason::PastRelease(t("09:30")))),
            (None, &h, "09:00", "10:00", None),
            (None, &h, "10:00", "11:00", Some(Reason::InsideFrozen { since: t("10:00"), until: Some(t("12:00")) })),
            (None, &h, "11:00", "12:00", Some(Reason::InsideFrozen { since: t("10:00"), until: Some(t("12:00")) })),
            (None, &h, "11:30", "12:30", None),
            (None, &h, "14:00", "15:00", None),
            (None, &h, "15:00", "16:00", Some(Reason::InsideFrozen { since: t("14:30"), until: None })),
        ] {
            assert_eq!(judge(release, history, t(begin), t(end)), want, "[{begin}, {end})");
        }
    }
}
