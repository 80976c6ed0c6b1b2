//! Point windows (`max`, `latest`, `unique_count`; issue 14, see
//! [`crate::model::Aggregation`]): the events of one window read back through the
//! `window_events` index, for the seal and the audit; and the per-instance count of late events
//! billed nowhere (`instances.late_unbilled`), for the ingest writer, `status` and `/metrics`.

use super::records::dec_at;
use super::sql::{params, Tx};
use super::{Result, StoreError};
use crate::model::{PointEvent, Properties};

/// The stored events of the point window of `instance_key` starting at `start` (UTC s), each
/// with the value of its `unique_by` property when one is named. Order: unspecified.
pub fn window_events(tx: &Tx<'_>, instance_key: i64, start: i64, unique_by: Option<&str>) -> Result<Vec<PointEvent>> {
    let mut out = Vec::new();
    tx.for_each(
        "SELECT e.time_ns, e.event_id, e.qty, p.props FROM window_events w JOIN events e ON e.seq = w.seq
         LEFT JOIN event_props p ON p.seq = w.seq WHERE w.instance_ref = ?1 AND w.window_start = ?2",
        params![instance_key, start],
        |r| {
            let unique = match (unique_by, r.get::<Option<String>>(3)?) {
                (Some(key), Some(text)) => {
                    let props =
                        Properties::from_canonical(&text).ok_or_else(|| StoreError::Corrupt(format!("event properties {text:?}")))?;
                    props.get(key).map(str::to_string)
                }
                _ => None,
            };
            out.push(PointEvent { time_ns: r.get(0)?, id: r.get(1)?, quantity: dec_at(r, 2)?, unique });
            Ok(())
        },
    )?;
    Ok(out)
}

/// Counts `n` more late events of a point plan billed nowhere (inside the writer's transaction).
pub fn add_late_unbilled(tx: &Tx<'_>, instance_key: i64, n: u64) -> Result<()> {
    tx.execute("UPDATE instances SET late_unbilled = late_unbilled + ?2 WHERE ref = ?1", params![instance_key, n as i64])?;
    Ok(())
}

/// (instance id, late events billed nowhere) of every instance that has any, by id.
pub fn late_unbilled(tx: &Tx<'_>) -> Result<Vec<(String, u64)>> {
    let sql = format!("SELECT instance_id, late_unbilled FROM instances WHERE late_unbilled > 0 ORDER BY {}", tx.by_bytes("instance_id"));
    tx.query_map(&sql, params![], |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)? as u64)))
}

/// What the 4-decimal floor dropped from the records of a point plan's instance: Σ of their
/// `carry_out`, which for these plans is never carried on (see `seal`).
///
/// `carry_out` is decimal text on SQLite and `numeric` on PostgreSQL; the literal `'0'` is the
/// stored text of a zero carry (written normalized) on the one and, taking the column's type,
/// the number zero on the other, so the filter skips the same rows on both.
pub fn dropped(tx: &Tx<'_>, instance_key: i64) -> Result<rust_decimal::Decimal> {
    let mut total = rust_decimal::Decimal::ZERO;
    tx.for_each("SELECT carry_out FROM records WHERE instance_ref = ?1 AND carry_out != '0'", params![instance_key], |r| {
        total += dec_at(r, 0)?;
        Ok(())
    })?;
    Ok(total)
}

/// Late events billed nowhere of one instance.
pub fn late_unbilled_of(tx: &Tx<'_>, instance_key: i64) -> Result<u64> {
    Ok(tx.one::<i64>("SELECT late_unbilled FROM instances WHERE ref = ?1", params![instance_key])? as u64)
}
