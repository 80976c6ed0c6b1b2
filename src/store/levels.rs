//! Level windows (`weighted_sum`; issue 14, see [`crate::model::weighted`]): the events that set
//! an instance's level, read back through the `window_events` index (every event of such a
//! plan is indexed by its own window, late ones included), for the seal, the audit and the
//! ingest writer's report of late changes; what each weighted record's seal saw
//! (`records.seen_seq`, `seen_changes`); and the per-instance sum of what late events would
//! have changed in sealed windows (`instances.late_change`, unit·seconds, signed).
//!
//! Every read takes `seen_seq`, the highest event seq to consider: the seal passes the highest
//! stored, the audit the one a record's seal saw, so both integrate the same events. Written
//! through [`Tx`] in SQL PostgreSQL accepts too.

use super::sql::{params, Tx};
use super::{dec, Result};
use crate::model::LevelEvent;
use rust_decimal::Decimal;

const EVENT_COLUMNS: &str = "SELECT w.window_start, e.time_ns, e.event_id, e.qty FROM window_events w JOIN events e ON e.seq = w.seq";

fn event_of(r: &super::sql::Row<'_>) -> Result<(i64, LevelEvent)> {
    let qty: String = r.get(3)?;
    Ok((r.get(0)?, LevelEvent { time_ns: r.get(1)?, id: r.get(2)?, quantity: dec(&qty)? }))
}

/// The frozen intervals of `history` in whole UTC seconds, as [`crate::model::weighted`]
/// integrates them.
pub fn frozen_secs(history: &super::lifecycle::History) -> Vec<(i64, Option<i64>)> {
    history.frozen_intervals().into_iter().map(|(f, u)| (f.secs(), u.map(crate::model::Timestamp::secs))).collect()
}

/// The highest event seq stored (0 for none): what a seal sees.
pub fn max_seq(tx: &Tx<'_>) -> Result<i64> {
    tx.one("SELECT COALESCE(MAX(seq), 0) FROM events", params![])
}

/// The level of `instance_key` at the start of the window starting at `start` (UTC s): the
/// quantity of [`last_before`]; 0 before the first event.
pub fn level_before(tx: &Tx<'_>, instance_key: i64, start: i64, seen_seq: i64) -> Result<Decimal> {
    Ok(last_before(tx, instance_key, start, seen_seq)?.map_or(Decimal::ZERO, |e| e.quantity))
}

/// The event that sets the level of `instance_key` at the start of the window starting at
/// `start` (UTC s): the last in level order among the events of the latest earlier window that
/// has any (events with seq ≤ `seen_seq`); `None` before the first event.
pub fn last_before(tx: &Tx<'_>, instance_key: i64, start: i64, seen_seq: i64) -> Result<Option<LevelEvent>> {
    let sql = format!(
        "{EVENT_COLUMNS} WHERE w.instance_ref = ?1 AND w.seq <= ?3 AND w.window_start = (SELECT MAX(x.window_start) FROM window_events x
         WHERE x.instance_ref = ?1 AND x.window_start < ?2 AND x.seq <= ?3)"
    );
    let events: Vec<LevelEvent> = tx.query_map(&sql, params![instance_key, start, seen_seq], |r| Ok(event_of(r)?.1))?;
    Ok(events.into_iter().max_by(crate::model::weighted::level_order))
}

/// The events of `instance_key` whose own window starts in `[from, to)` (UTC s), with seq ≤
/// `seen_seq`, each with its window start; ordered by window, then in level order.
pub fn events_between(tx: &Tx<'_>, instance_key: i64, from: i64, to: i64, seen_seq: i64) -> Result<Vec<(i64, LevelEvent)>> {
    let sql = format!("{EVENT_COLUMNS} WHERE w.instance_ref = ?1 AND w.window_start >= ?2 AND w.window_start < ?3 AND w.seq <= ?4");
    let mut out = tx.query_map(&sql, params![instance_key, from, to, seen_seq], event_of)?;
    out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| crate::model::weighted::level_order(&a.1, &b.1)));
    Ok(out)
}

/// The events of the first window after `start` (UTC s) that has any, in level order (empty
/// when none): where the level set in `start`'s window ends.
pub fn next_window_events(tx: &Tx<'_>, instance_key: i64, start: i64) -> Result<Vec<LevelEvent>> {
    let sql = format!(
        "{EVENT_COLUMNS} WHERE w.instance_ref = ?1 AND w.window_start = (SELECT MIN(x.window_start) FROM window_events x
         WHERE x.instance_ref = ?1 AND x.window_start > ?2)"
    );
    let mut out: Vec<LevelEvent> = tx.query_map(&sql, params![instance_key, start], |r| Ok(event_of(r)?.1))?;
    out.sort_by(crate::model::weighted::level_order);
    Ok(out)
}

/// Records what the seal of a weighted record saw: the highest event seq and the number of
/// status changes (FREEZE/UNFREEZE, which only ever append) of the instance.
pub fn set_seen(tx: &Tx<'_>, window_start: i64, metering_sn: &str, seen_seq: i64, seen_changes: i64) -> Result<()> {
    tx.execute(
        "UPDATE records SET seen_seq = ?3, seen_changes = ?4 WHERE window_start = ?1 AND metering_sn = ?2",
        params![window_start, metering_sn, seen_seq, seen_changes],
    )?;
    Ok(())
}

/// A sealed record of a weighted plan as the audit needs it. Decimals in unit·seconds except
/// `value` (unit·hours).
#[derive(Debug, Clone, PartialEq)]
pub struct SealedLevel {
    pub window_start: i64,
    pub begin: i64,
    pub end: i64,
    pub value: Decimal,
    pub integral: Decimal,
    pub carry_in: Decimal,
    pub carry_out: Decimal,
    /// `None` for a record sealed before its plan was `weighted_sum` (or tampered with).
    pub seen: Option<(i64, i64)>,
}

/// Every record of `instance_key`, in time order, as [`SealedLevel`]s.
pub fn sealed_of_instance(tx: &Tx<'_>, instance_key: i64) -> Result<Vec<SealedLevel>> {
    tx.query_map(
        "SELECT window_start, begin_s, end_s, usage_value, window_usage, carry_in, carry_out, seen_seq, seen_changes FROM records
         WHERE instance_ref = ?1 ORDER BY window_start, begin_s",
        params![instance_key],
        |r| {
            let d = |i: usize| -> Result<Decimal> { dec(&r.get::<String>(i)?) };
            let seen = match (r.get::<Option<i64>>(7)?, r.get::<Option<i64>>(8)?) {
                (Some(s), Some(c)) => Some((s, c)),
                _ => None,
            };
            Ok(SealedLevel {
                window_start: r.get(0)?,
                begin: r.get(1)?,
                end: r.get(2)?,
                value: d(3)?,
                integral: d(4)?,
                carry_in: d(5)?,
                carry_out: d(6)?,
                seen,
            })
        },
    )
}

/// Adds `change` (unit·seconds, signed) to what late events of `instance_key` would have
/// changed in sealed windows.
pub fn add_late_change(tx: &Tx<'_>, instance_key: i64, change: Decimal) -> Result<()> {
    tx.execute(
        "UPDATE instances SET late_change = meterd_decimal_add(late_change, ?2) WHERE ref = ?1",
        params![instance_key, change.normalize()],
    )?;
    Ok(())
}

/// (instance id, late change in unit·seconds) of every instance whose late change is not 0,
/// by id.
pub fn late_changes(tx: &Tx<'_>) -> Result<Vec<(String, Decimal)>> {
    let sql = format!("SELECT instance_id, late_change FROM instances WHERE late_change <> '0' ORDER BY {}", tx.by_bytes("instance_id"));
    tx.query_map(&sql, params![], |r| Ok((r.get(0)?, dec(&r.get::<String>(1)?)?)))
}

/// The late change of one instance, unit·seconds.
pub fn late_change_of(tx: &Tx<'_>, instance_key: i64) -> Result<Decimal> {
    dec(&tx.one::<String>("SELECT late_change FROM instances WHERE ref = ?1", params![instance_key])?)
}

/// An integral that overflows exact arithmetic cannot come from valid events (quantities ≤
/// 1e12, hour or day windows; see [`crate::model::weighted`]): the stored data is inconsistent.
impl From<crate::model::WeightedError> for super::StoreError {
    fn from(e: crate::model::WeightedError) -> Self {
        super::StoreError::Corrupt(e.to_string())
    }
}
