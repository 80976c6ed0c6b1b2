//! Point windows (`max`, `latest`, `unique_count`; issue 14, see
//! [`crate::model::Aggregation`]): the events of one window read back through the
//! `window_events` index, for the seal and the audit; and the per-instance count of late events
//! billed nowhere (`instances.late_unbilled`), for the ingest writer, `status` and `/metrics`.

use super::{dec, Result, StoreError};
use crate::model::{PointEvent, Properties};
use rusqlite::{params, Connection};

/// The stored events of the point window of `instance_key` starting at `start` (UTC s), each
/// with the value of its `unique_by` property when one is named. Order: unspecified.
pub fn window_events(conn: &Connection, instance_key: i64, start: i64, unique_by: Option<&str>) -> Result<Vec<PointEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.time_ns, e.event_id, e.qty, p.props FROM window_events w JOIN events e ON e.seq = w.seq
         LEFT JOIN event_props p ON p.seq = w.seq WHERE w.instance_ref = ?1 AND w.window_start = ?2",
    )?;
    let mut rows = stmt.query(params![instance_key, start])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let unique = match (unique_by, r.get::<_, Option<String>>(3)?) {
            (Some(key), Some(text)) => {
                let props = Properties::from_canonical(&text).ok_or_else(|| StoreError::Corrupt(format!("event properties {text:?}")))?;
                props.get(key).map(str::to_string)
            }
            _ => None,
        };
        out.push(PointEvent {
            time_ns: r.get(0)?,
            id: r.get(1)?,
            quantity: dec(r.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?)?,
            unique,
        });
    }
    Ok(out)
}

/// Counts `n` more late events of a point plan billed nowhere (inside the writer's transaction).
pub fn add_late_unbilled(conn: &Connection, instance_key: i64, n: u64) -> Result<()> {
    conn.prepare_cached("UPDATE instances SET late_unbilled = late_unbilled + ?2 WHERE ref = ?1")?
        .execute(params![instance_key, n as i64])?;
    Ok(())
}

/// (instance id, late events billed nowhere) of every instance that has any, by id.
pub fn late_unbilled(conn: &Connection) -> Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached("SELECT instance_id, late_unbilled FROM instances WHERE late_unbilled > 0 ORDER BY instance_id")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// What the 4-decimal floor dropped from the records of a point plan's instance: Σ of their
/// `carry_out`, which for these plans is never carried on (see `seal`).
pub fn dropped(conn: &Connection, instance_key: i64) -> Result<rust_decimal::Decimal> {
    let mut stmt = conn.prepare_cached("SELECT carry_out FROM records WHERE instance_ref = ?1 AND carry_out != '0'")?;
    let mut rows = stmt.query([instance_key])?;
    let mut total = rust_decimal::Decimal::ZERO;
    while let Some(r) = rows.next()? {
        total += dec(r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?)?;
    }
    Ok(total)
}

/// Late events billed nowhere of one instance.
pub fn late_unbilled_of(conn: &Connection, instance_key: i64) -> Result<u64> {
    Ok(conn.prepare_cached("SELECT late_unbilled FROM instances WHERE ref = ?1")?.query_row([instance_key], |r| r.get::<_, i64>(0))? as u64)
}
