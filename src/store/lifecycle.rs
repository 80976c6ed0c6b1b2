//! Instance status history (design §4.1): FREEZE / UNFREEZE changes forwarded from the cloud
//! store, kept as a history in time order so late events are judged by the state at their own
//! time. Changes are appended: each must be later than the last one and must alternate.
//!
//! A FREEZE reported late — at a time the seal cursor has already passed — is recorded all the
//! same (the store's state is the truth): events inside the interval are refused from then on,
//! and the answer names the records already sealed inside it and the events already stored
//! after it, which stay as they are ([`Change::warning`], and `status` lists the records).

use super::instances::{self, InstanceRow};
use super::sql::{params, Tx};
use super::{Result, StoreError};
use crate::model::Timestamp;

/// A status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Freeze,
    Unfreeze,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Freeze => "FREEZE",
            Status::Unfreeze => "UNFREEZE",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "FREEZE" => Some(Status::Freeze),
            "UNFREEZE" => Some(Status::Unfreeze),
            _ => None,
        }
    }
}

/// An instance's history, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History(pub Vec<(Timestamp, Status)>);

impl History {
    /// The start of the frozen interval holding `t`, if `t` is frozen. Intervals are
    /// `[freeze, unfreeze)`.
    pub fn frozen_since(&self, t: Timestamp) -> Option<Timestamp> {
        match self.0.iter().rev().find(|(at, _)| *at <= t) {
            Some((at, Status::Freeze)) => Some(*at),
            _ => None,
        }
    }

    /// The end of the frozen interval that starts at `since`, if it has ended.
    pub fn unfrozen_after(&self, since: Timestamp) -> Option<Timestamp> {
        self.0.iter().find(|(at, s)| *at > since && *s == Status::Unfreeze).map(|(at, _)| *at)
    }

    /// Every frozen interval `[freeze, unfreeze)`, in time order; `None`: still frozen.
    pub fn frozen_intervals(&self) -> Vec<(Timestamp, Option<Timestamp>)> {
        let freezes = self.0.iter().filter(|(_, s)| *s == Status::Freeze);
        freezes.map(|(at, _)| (*at, self.unfrozen_after(*at))).collect()
    }

    /// "active" or "frozen" at `t`.
    pub fn state_at(&self, t: Timestamp) -> &'static str {
        if self.frozen_since(t).is_some() {
            "frozen"
        } else {
            "active"
        }
    }
}

/// The history of one instance.
pub fn history(tx: &Tx<'_>, instance_key: i64) -> Result<History> {
    let rows =
        tx.query_map("SELECT at_ns, status FROM instance_status WHERE instance_ref = ?1 ORDER BY at_ns", params![instance_key], |r| {
            let s: String = r.get(1)?;
            Ok((Timestamp(r.get(0)?), Status::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("instance status {s:?}")))?))
        })?;
    Ok(History(rows))
}

/// What recording a change found.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub instance: InstanceRow,
    /// Events already stored at or after a FREEZE time: they stay billed (they may be sealed
    /// or sent already); reported so the seller can look at them.
    pub events_after: u64,
    /// For a FREEZE reported after windows were sealed: the records (value > 0) lying inside
    /// the new frozen interval ([`lifecycle_flags`](super::lifecycle_flags)). They stay as
    /// they are; `status` lists them.
    pub sealed_inside: Vec<super::lifecycle_flags::Flagged>,
}

impl Change {
    /// The warning to show with the change, if anything stored before it contradicts it.
    pub fn warning(&self, status: Status, at: Timestamp) -> Option<String> {
        let mut parts = Vec::new();
        // Recorded (the cloud store's order of notifications is its own), but it bills nothing:
        // no usage at or after a release is billed. Said, so a seller who expected it to matter
        // looks at why the instance was released (session-27 trial).
        if let Some(released) = self.instance.release.filter(|r| at >= *r) {
            parts.push(format!(
                "instance {} was released at {released}; this {} at {at} is recorded but changes nothing billed (no usage at or after a release is billed)",
                self.instance.instance_id,
                status.as_str()
            ));
        }
        if self.events_after > 0 {
            parts.push(format!("{} events at or after {at} were stored before this freeze was known; they stay billed", self.events_after));
        }
        if !self.sealed_inside.is_empty() {
            parts.push(format!(
                "{} record(s) sealed before this {} was known lie inside the frozen interval: {}. A sealed record never changes; `meterd status` lists them",
                self.sealed_inside.len(),
                status.as_str(),
                super::lifecycle_flags::describe(&self.sealed_inside, 10)
            ));
        }
        (!parts.is_empty()).then(|| parts.join(". "))
    }
}

/// Appends a status change.
pub fn set_status(tx: &Tx<'_>, instance_id: &str, status: Status, at: Timestamp, now: Timestamp) -> Result<Change> {
    let inst = instances::get(tx, instance_id)?.ok_or_else(|| instances::unknown(instance_id))?;
    let h = history(tx, inst.key)?;
    let last = h.0.last().copied();
    if let Some((t, s)) = last {
        if t == at && s == status {
            return Ok(Change { instance: inst, events_after: 0, sealed_inside: Vec::new() });
            // a repeated notification
        }
        if at <= t {
            return Err(StoreError::Invalid(format!(
                "instance {instance_id:?} already has a status change at {t} ({}); changes must come in time order",
                s.as_str()
            )));
        }
    }
    let expected = match last {
        Some((_, Status::Freeze)) => Status::Unfreeze,
        _ => Status::Freeze,
    };
    if status != expected {
        let now_state = if expected == Status::Unfreeze { "frozen" } else { "not frozen" };
        return Err(StoreError::Invalid(format!("instance {instance_id:?} is {now_state}; {} does not apply", status.as_str())));
    }
    if at < inst.start {
        return Err(StoreError::Invalid(format!("{} at {at} is before the instance's start {}", status.as_str(), inst.start)));
    }
    tx.execute(
        "INSERT INTO instance_status (instance_ref, at_ns, status, recorded_ns) VALUES (?1, ?2, ?3, ?4)",
        params![inst.key, at.0, status.as_str(), now.0],
    )?;
    if status == Status::Unfreeze {
        return Ok(Change { instance: inst, events_after: 0, sealed_inside: Vec::new() });
    }
    let events_after =
        tx.one::<i64>("SELECT count(*) FROM events WHERE instance_ref = ?1 AND time_ns >= ?2", params![inst.key, at.0])? as u64;
    // Only the new interval: records inside earlier ones were named when those were reported.
    let only_new = History(vec![(at, Status::Freeze)]);
    let sealed_inside = if inst.sealed_until > at.secs() {
        super::lifecycle_flags::of_instance(tx, &InstanceRow { release: None, ..inst.clone() }, &only_new)?
    } else {
        Vec::new()
    };
    Ok(Change { instance: inst, events_after, sealed_inside })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_rfc3339;

    fn t(s: &str) -> Timestamp {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn frozen_intervals_are_half_open() {
        let h = History(vec![(t("2026-11-23T10:20:00Z"), Status::Freeze), (t("2026-11-23T12:40:00Z"), Status::Unfreeze)]);
        assert_eq!(h.frozen_since(t("2026-11-23T10:10:00Z")), None);
        assert_eq!(h.frozen_since(t("2026-11-23T10:20:00Z")), Some(t("2026-11-23T10:20:00Z")));
        assert_eq!(h.frozen_since(t("2026-11-23T12:39:59Z")), Some(t("2026-11-23T10:20:00Z")));
        assert_eq!(h.frozen_since(t("2026-11-23T12:40:00Z")), None);
        assert_eq!(h.unfrozen_after(t("2026-11-23T10:20:00Z")), Some(t("2026-11-23T12:40:00Z")));
    }

    /// A FREEZE or UNFREEZE at or after the instance's release is recorded, with a warning
    /// that it bills nothing; one before the release gets none. Without the check there is no
    /// warning after the release, and the test fails at "a warning".
    #[test]
    fn a_status_change_after_the_release_is_recorded_with_a_warning() {
        use crate::store::lifecycle_release::Billing;
        use crate::store::Store;
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("t.db")).unwrap();
        let now = t("2026-11-30T00:00:00Z");
        s.write(|tx| {
            instances::add(tx, "i-1", "p", t("2026-11-01T00:00:00Z"), now)?;
            instances::release(tx, "i-1", t("2026-11-20T00:00:00Z"), &|_| Billing::Additive).map(|_| ())
        })
        .unwrap();
        let before = s.write(|tx| set_status(tx, "i-1", Status::Freeze, t("2026-11-10T00:00:00Z"), now)).unwrap();
        assert_eq!(before.warning(Status::Freeze, t("2026-11-10T00:00:00Z")), None, "before the release: nothing to say");
        let at = t("2026-11-25T00:00:00Z");
        let after = s.write(|tx| set_status(tx, "i-1", Status::Unfreeze, at, now)).unwrap();
        let w = after.warning(Status::Unfreeze, at).expect("a warning");
        assert!(w.contains("released at 2026-11-20T00:00:00Z") && w.contains("changes nothing billed"), "{w}");
        assert_eq!(s.read(|tx| history(tx, after.instance.key)).unwrap().0.len(), 2, "recorded all the same");
    }
}
