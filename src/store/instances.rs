//! Instances: one customer's pay-per-use subscription (design §4), with the sealing cursor and
//! the carried remainder that sealing keeps per instance. Statements run through [`Tx`], in
//! SQL that means the same on SQLite and PostgreSQL; amounts are bound as their exact decimal
//! text (`numeric` on PostgreSQL).

use super::lifecycle_release::Billing;
use super::sql::{params, Row, Tx};
use super::{dec, Result, StoreError};
use crate::model::Timestamp;
use rust_decimal::Decimal;

/// An instance as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    /// The instance key: the internal number events, windows and records refer to (the
    /// `instance_ref` column; `instance_key` in parameters).
    pub key: i64,
    pub instance_id: String,
    pub plan: String,
    pub start: Timestamp,
    pub release: Option<Timestamp>,
    /// Every window ending at or before this (UTC seconds) is sealed.
    pub sealed_until: i64,
    pub carry: Decimal,
    pub unbillable: Decimal,
}

/// The columns [`from_row`] reads, in its order.
pub(crate) const COLUMNS: &str = "ref, instance_id, plan, start_ns, release_ns, sealed_until, carry, unbillable";

/// An instance row read from the columns [`COLUMNS`] names.
pub(crate) fn from_row(r: &Row<'_>) -> Result<InstanceRow> {
    Ok(InstanceRow {
        key: r.get(0)?,
        instance_id: r.get(1)?,
        plan: r.get(2)?,
        start: Timestamp(r.get(3)?),
        release: r.get::<Option<i64>>(4)?.map(Timestamp),
        sealed_until: r.get(5)?,
        carry: dec(&r.get::<String>(6)?)?,
        unbillable: dec(&r.get::<String>(7)?)?,
    })
}

/// Looks an instance up by its cloud store id.
pub fn get(tx: &Tx<'_>, instance_id: &str) -> Result<Option<InstanceRow>> {
    tx.query_opt(&format!("SELECT {COLUMNS} FROM instances WHERE instance_id = ?1"), params![instance_id], from_row)
}

/// Every instance, ordered by id (byte order on both backends).
pub fn list(tx: &Tx<'_>) -> Result<Vec<InstanceRow>> {
    tx.query_map(&format!("SELECT {COLUMNS} FROM instances ORDER BY {}", tx.by_bytes("instance_id")), params![], from_row)
}

/// Registers an instance. Registering the same id again with the same plan and start is a
/// no-op; with different values it is an error naming both. [`register`] also tells which.
pub fn add(tx: &Tx<'_>, instance_id: &str, plan: &str, start: Timestamp, now: Timestamp) -> Result<InstanceRow> {
    register(tx, instance_id, plan, start, now).map(|r| r.row)
}

/// What [`register`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The instance as stored.
    pub row: InstanceRow,
    /// `false` when it was registered already with the same plan and start: nothing changed
    /// (so `meterd instance add` says so instead of "registered" again).
    pub new: bool,
}

/// [`add`], saying whether the instance is new.
pub fn register(tx: &Tx<'_>, instance_id: &str, plan: &str, start: Timestamp, now: Timestamp) -> Result<Registered> {
    if let Some(existing) = get(tx, instance_id)? {
        if existing.plan == plan && existing.start == start {
            return Ok(Registered { row: existing, new: false });
        }
        return Err(StoreError::Invalid(format!(
            "instance {instance_id:?} is already registered with plan {:?} and start {}; it cannot be re-registered with plan {plan:?} and start {start} \
             (to change its plan from a time on: `meterd instance move {instance_id} --plan {plan} --at TIME`; a start never changes)",
            existing.plan, existing.start
        )));
    }
    if super::packages::get(tx, instance_id)?.is_some() {
        return Err(StoreError::Invalid(format!(
            "{instance_id:?} is registered as a package instance; it cannot be a pay-per-use instance too"
        )));
    }
    tx.execute(
        "INSERT INTO instances (instance_id, plan, start_ns, created_ns) VALUES (?1, ?2, ?3, ?4)",
        params![instance_id, plan, start.0, now.0],
    )?;
    let row = get(tx, instance_id)?.ok_or_else(|| StoreError::Corrupt("instance vanished after insert".into()))?;
    Ok(Registered { row, new: true })
}

/// What recording a release found: the instance, and what was stored before the release was
/// known that it contradicts. Both stay as they are (acknowledged events are kept; a sealed
/// record never changes); they are reported so the seller can settle them with the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Released {
    pub instance: InstanceRow,
    /// Events stored at or after the release time (acknowledged before it was known).
    pub events_after: u64,
    /// What of them this release moved out of windows not sealed yet: their usage is
    /// `unbillable` now (`store::lifecycle_release`).
    pub moved: super::lifecycle_release::Moved,
    /// Sealed records (value > 0) ending after the release; `status` lists them too.
    pub sealed_past: Vec<super::lifecycle_flags::Flagged>,
}

impl Released {
    /// The warning to show with the release, if anything stored before it contradicts it.
    pub fn warning(&self) -> Option<String> {
        let (id, mut parts) = (&self.instance.instance_id, Vec::new());
        let at = self.instance.release?;
        if !self.sealed_past.is_empty() {
            parts.push(format!(
                "{} record(s) of {id} sealed before this release was known end after it: {}. A sealed record never changes; `meterd status` lists them",
                self.sealed_past.len(),
                super::lifecycle_flags::describe(&self.sealed_past, 10)
            ));
        }
        if self.events_after > 0 {
            let moved = match (self.moved.events, self.moved.usage.is_zero()) {
                (0, _) => String::new(),
                (n, true) => format!("; {n} of them, not sealed yet, are billed nowhere now"),
                (n, false) => format!("; {n} of them, not sealed yet, are unbillable now ({} units)", self.moved.usage.normalize()),
            };
            parts.push(format!(
                "{} event(s) of {id} at or after {at} were stored before this release was known; they stay stored{moved}",
                self.events_after
            ));
        }
        (!parts.is_empty()).then(|| parts.join(". "))
    }
}

/// Records the release time (design §4): events at or after it are refused from then on.
///
/// The cloud store's release is the truth, so it is recorded also when it reaches meterd late:
/// after windows past it were sealed, or after events past it were stored. Records sealed past
/// it stay as they are; the usage of events at or after it that no sealed record holds moves
/// to `unbillable` in this transaction (`billing_of` names how the instance's plan bills; rules
/// in `store::lifecycle_release`). Both are reported in [`Released`]. A release is final: the
/// same time again is a no-op (with the same report); another time is refused, since records
/// were already cut at the first one and events after it refused. Errors: unknown instance, a
/// time not after the instance's start, or a second release at another time
/// (`StoreError::Invalid`).
pub fn release(tx: &Tx<'_>, instance_id: &str, at: Timestamp, billing_of: &dyn Fn(&str) -> Billing) -> Result<Released> {
    let inst = get(tx, instance_id)?.ok_or_else(|| unknown(instance_id))?;
    if let Some(r) = inst.release {
        if r != at {
            return Err(StoreError::Invalid(format!(
                "instance {instance_id:?} was already released at {r}; a release is final and cannot move to {at}"
            )));
        }
    } else {
        if at <= inst.start {
            return Err(StoreError::Invalid(format!("release time {at} is not after the instance's start {}", inst.start)));
        }
        tx.execute("UPDATE instances SET release_ns = ?2 WHERE ref = ?1", params![inst.key, at.0])?;
    }
    let released = InstanceRow { release: Some(at), ..inst.clone() };
    let moved = super::lifecycle_release::move_after_release(tx, &released, at, billing_of(&inst.plan))?;
    settle_released(tx, instance_id)?;
    let instance = get(tx, instance_id)?.ok_or_else(|| unknown(instance_id))?;
    let sealed_past = if instance.sealed_until > at.secs() {
        super::lifecycle_flags::of_instance(tx, &instance, &super::lifecycle::History::default())?
    } else {
        Vec::new()
    };
    Ok(Released { instance, events_after: moved.events_after, moved, sealed_past })
}

/// Once an instance is released and its windows are sealed through the release, no record can
/// bill what it still carries: moves its carry, and its packages' carries, to `unbillable`
/// (issue 12: nothing sits in a carry forever). Returns the amount moved (0 when the instance
/// is not released, or not sealed through its release yet). [`release`] calls it, for a release
/// at or before the seal cursor; sealing settles the same way when its cursor passes a release.
pub fn settle_released(tx: &Tx<'_>, instance_id: &str) -> Result<Decimal> {
    let inst = get(tx, instance_id)?.ok_or_else(|| unknown(instance_id))?;
    if inst.release.is_none_or(|r| r > Timestamp::from_secs(inst.sealed_until)) {
        return Ok(Decimal::ZERO);
    }
    let mut moved = inst.carry;
    for p in super::packages::of_instance(tx, inst.key)?.into_iter().filter(|p| !p.carry.is_zero()) {
        moved += p.carry;
        super::packages::set_carry(tx, &p.package_id, Decimal::ZERO)?;
    }
    if !moved.is_zero() {
        tx.execute("UPDATE instances SET carry = '0' WHERE ref = ?1", params![inst.key])?;
        add_unbillable(tx, inst.key, moved)?;
    }
    Ok(moved)
}

pub(crate) fn unknown(instance_id: &str) -> StoreError {
    StoreError::NotFound(format!(
        "instance {instance_id:?} is not registered; add it with `meterd instance add {instance_id} --plan NAME --start TIME`"
    ))
}

/// Adds unbillable usage (late usage of a released instance with no window left).
pub fn add_unbillable(tx: &Tx<'_>, instance_key: i64, amount: Decimal) -> Result<()> {
    let cur: String = tx.one("SELECT unbillable FROM instances WHERE ref = ?1", params![instance_key])?;
    let next = dec(&cur)?.checked_add(amount).ok_or_else(|| StoreError::Overflow("unbillable usage overflows".into()))?;
    tx.execute("UPDATE instances SET unbillable = ?2 WHERE ref = ?1", params![instance_key, next.normalize().to_string()])?;
    Ok(())
}

/// Moves the sealing cursor forward (never back) and stores the carried remainder.
pub fn set_sealed(tx: &Tx<'_>, instance_key: i64, sealed_until: i64, carry: Decimal) -> Result<()> {
    // CASE, not SQLite's two-argument max() (PostgreSQL has none; GREATEST is not SQLite's).
    tx.execute(
        "UPDATE instances SET sealed_until = CASE WHEN sealed_until > ?2 THEN sealed_until ELSE ?2 END, carry = ?3 WHERE ref = ?1",
        params![instance_key, sealed_until, carry.normalize().to_string()],
    )?;
    Ok(())
}

/// Bumped (by triggers) whenever instances, their status history, packages or package usage
/// change: a cache of those may be kept while this stays the same.
pub fn generation(tx: &Tx<'_>) -> Result<i64> {
    tx.one("SELECT instances_gen FROM ingest_state WHERE id = 1", params![])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::params;
    use crate::store::Store;

    #[test]
    fn the_seal_cursor_never_moves_back_and_the_carry_is_stored_as_normalized_text() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("t.db")).unwrap();
        s.write(|tx| {
            let key = add(tx, "i-1", "p", Timestamp::from_secs(0), Timestamp(1))?.key;
            set_sealed(tx, key, 7200, "0.00005000".parse().unwrap())?;
            set_sealed(tx, key, 3600, "0.00002".parse().unwrap())?;
            let row = get(tx, "i-1")?.unwrap();
            assert_eq!((row.sealed_until, row.carry), (7200, "0.00002".parse().unwrap()));
            assert_eq!(tx.one::<String>("SELECT carry FROM instances WHERE ref = ?1", params![key])?, "0.00002");
            set_sealed(tx, key, 10800, Decimal::ZERO)?;
            assert_eq!(get(tx, "i-1")?.unwrap().sealed_until, 10800);
            Ok(())
        })
        .unwrap();
    }
}
