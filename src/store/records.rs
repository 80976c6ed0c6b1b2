//! Sealed usage records, upload batches and the rejected log.
//!
//! A record row is written once, by sealing, with the canonical JSON of the record (`body`);
//! afterwards only its delivery `state` (and batch/attempt bookkeeping) changes. Its bytes,
//! and so every batch body that contains it, never change.
//!
//! Delivery state: a record that waits for upload has a row in `upload_queue` (keyed in the
//! order batches are cut) and `state = 'pending'` in `records`. While it is queued, its state
//! is read through the queue: in an open batch it is `sending`, in a delivered batch
//! `delivered`. Upload later writes `delivered` (and the batch) into the `records` row and
//! drops the queue row ([`super::batches::settle`]). So the `records` row changes once per
//! delivery, in bulk, while the per-batch steps touch only the queue, whose rows of one batch
//! are adjacent. Every reader here returns the effective state; `zero`, `rejected` and settled
//! `delivered` are stored as they are.

use super::{dec, Result, StoreError};
use crate::model::UsageRecord;
use rusqlite::{params, Connection, Row};
use rust_decimal::Decimal;

/// Delivery state of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordState {
    /// Value 0: kept for preview, never uploaded (the store refuses 0).
    Zero,
    Pending,
    Sending,
    Delivered,
    Rejected,
}

impl RecordState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Zero => "zero",
            RecordState::Pending => "pending",
            RecordState::Sending => "sending",
            RecordState::Delivered => "delivered",
            RecordState::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Result<RecordState> {
        Ok(match s {
            "zero" => RecordState::Zero,
            "pending" => RecordState::Pending,
            "sending" => RecordState::Sending,
            "delivered" => RecordState::Delivered,
            "rejected" => RecordState::Rejected,
            other => return Err(StoreError::Corrupt(format!("record state {other:?}"))),
        })
    }
}

/// A record about to be sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    pub instance_key: i64,
    pub window_start: i64,
    pub begin: i64,
    pub end: i64,
    pub window_usage: Decimal,
    pub carry_in: Decimal,
    pub carry_out: Decimal,
    pub record_time: i64,
    pub record: UsageRecord,
    pub state: RecordState,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordRow {
    pub metering_sn: String,
    pub instance_key: i64,
    pub instance_id: String,
    pub window_start: i64,
    pub begin: i64,
    pub end: i64,
    pub usage_value: Decimal,
    pub window_usage: Decimal,
    pub carry_in: Decimal,
    pub carry_out: Decimal,
    pub record_time: i64,
    pub relate_pkg: Option<String>,
    pub body: Vec<u8>,
    pub state: RecordState,
    pub batch_id: Option<i64>,
    pub attempts: i64,
}

/// Inserts a sealed record. A second record for the same instance and period, or the same
/// serial, violates a UNIQUE constraint: sealing twice is impossible by construction.
pub fn insert(conn: &Connection, r: &NewRecord, now_ns: i64) -> Result<()> {
    let body = serde_json::to_vec(&r.record).map_err(|e| StoreError::Invalid(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO records (metering_sn, instance_ref, window_start, begin_s, end_s, usage_value, window_usage, carry_in, carry_out,
                              record_time_s, relate_pkg, body, state, updated_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        r.record.metering_sn,
        r.instance_key,
        r.window_start,
        r.begin,
        r.end,
        r.record.usage_value,
        r.window_usage.normalize().to_string(),
        r.carry_in.normalize().to_string(),
        r.carry_out.normalize().to_string(),
        r.record_time,
        r.record.relate_pkg_instance,
        body,
        r.state.as_str(),
        now_ns
    ])?;
    if r.state == RecordState::Pending {
        conn.prepare_cached("INSERT INTO upload_queue (window_start, metering_sn) VALUES (?1, ?2)")?
            .execute(params![r.window_start, r.record.metering_sn])?;
    }
    Ok(())
}

/// The effective state of `records r` as SQL: a stored `pending` is `sending` while its queue
/// row is in an open batch and `delivered` while it is in a delivered, not yet settled one.
/// Only stored `pending` rows look at the queue.
pub(crate) const STATE_SQL: &str = "CASE WHEN r.state = 'pending' THEN coalesce((SELECT CASE b.state WHEN 'open' THEN 'sending' \
     WHEN 'delivered' THEN 'delivered' END FROM upload_queue q JOIN batches b INDEXED BY batches_state ON b.id = q.batch_id \
     WHERE q.window_start = r.window_start AND q.metering_sn = r.metering_sn), 'pending') ELSE r.state END";

/// The batch of `records r` as SQL: the queue's while queued, else the stored one.
const BATCH_SQL: &str = "CASE WHEN r.state = 'pending' THEN (SELECT q.batch_id FROM upload_queue q \
     WHERE q.window_start = r.window_start AND q.metering_sn = r.metering_sn) ELSE r.batch_id END";

/// Whether any queued record is in a batch (open, or delivered and not yet settled): when none
/// is, stored states are effective states and readers can skip [`STATE_SQL`].
pub(crate) fn any_in_batch(conn: &Connection) -> Result<bool> {
    Ok(conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM upload_queue WHERE batch_id IS NOT NULL)")?.query_row([], |r| r.get(0))?)
}

fn columns() -> String {
    format!(
        "r.metering_sn, r.instance_ref, i.instance_id, r.window_start, r.begin_s, r.end_s, r.usage_value, r.window_usage, r.carry_in,
         r.carry_out, r.record_time_s, r.relate_pkg, r.body, {STATE_SQL}, {BATCH_SQL}, r.attempts"
    )
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Result<RecordRow>> {
    let text = |i: usize| r.get::<_, String>(i);
    let (uv, wu, ci, co, st) = (text(6)?, text(7)?, text(8)?, text(9)?, text(13)?);
    let build = || -> Result<RecordRow> {
        Ok(RecordRow {
            metering_sn: r.get(0)?,
            instance_key: r.get(1)?,
            instance_id: r.get(2)?,
            window_start: r.get(3)?,
            begin: r.get(4)?,
            end: r.get(5)?,
            usage_value: dec(&uv)?,
            window_usage: dec(&wu)?,
            carry_in: dec(&ci)?,
            carry_out: dec(&co)?,
            record_time: r.get(10)?,
            relate_pkg: r.get(11)?,
            body: r.get(12)?,
            state: RecordState::parse(&st)?,
            batch_id: r.get(14)?,
            attempts: r.get(15)?,
        })
    };
    Ok(build())
}

fn query(conn: &Connection, where_sql: &str, params: impl rusqlite::Params) -> Result<Vec<RecordRow>> {
    query_from(conn, "records r", where_sql, params)
}

/// Records read from `from` (which names the records table `r`), joined to their instance.
fn query_from(conn: &Connection, from: &str, where_sql: &str, params: impl rusqlite::Params) -> Result<Vec<RecordRow>> {
    let sql = format!("SELECT {} FROM {from} JOIN instances i ON i.ref = r.instance_ref WHERE {where_sql}", columns());
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params, from_row)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

/// Records of one instance with window start in `[from, to)`, in time order.
pub fn of_instance(conn: &Connection, instance_key: i64, from: i64, to: i64) -> Result<Vec<RecordRow>> {
    query(
        conn,
        "r.instance_ref = ?1 AND r.window_start >= ?2 AND r.window_start < ?3 ORDER BY r.window_start, r.begin_s",
        params![instance_key, from, to],
    )
}

/// What preview needs of a record: no body, no join, one decimal.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSummary {
    pub metering_sn: String,
    pub window_start: i64,
    pub begin: i64,
    pub end: i64,
    pub usage_value: Decimal,
    pub state: RecordState,
    pub relate_pkg: Option<String>,
}

/// Summaries of one instance's records with window start in `[from, to)`, in time order.
pub fn summaries_of_instance(conn: &Connection, instance_key: i64, from: i64, to: i64) -> Result<Vec<RecordSummary>> {
    // Outside an upload run no queued record is in a batch, and the stored state is the state.
    let state = if any_in_batch(conn)? { STATE_SQL } else { "r.state" };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT r.metering_sn, r.window_start, r.begin_s, r.end_s, r.usage_value, {state}, r.relate_pkg FROM records r
         WHERE r.instance_ref = ?1 AND r.window_start >= ?2 AND r.window_start < ?3 ORDER BY r.window_start, r.begin_s"
    ))?;
    let mut rows = stmt.query(params![instance_key, from, to])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(RecordSummary {
            metering_sn: r.get(0)?,
            window_start: r.get(1)?,
            begin: r.get(2)?,
            end: r.get(3)?,
            usage_value: dec(r.get_ref(4)?.as_str().map_err(rusqlite::Error::from)?)?,
            state: RecordState::parse(r.get_ref(5)?.as_str().map_err(rusqlite::Error::from)?)?,
            relate_pkg: r.get(6)?,
        });
    }
    Ok(out)
}

/// Queue rows joined to their records (`q` the queue, `r` the record).
const QUEUED: &str = "upload_queue q JOIN records r ON r.metering_sn = q.metering_sn";

/// Records waiting for upload (`pending`, or `sending` in an open batch), oldest first.
pub fn unsent(conn: &Connection, limit: usize) -> Result<Vec<RecordRow>> {
    query_from(
        conn,
        QUEUED,
        "(q.batch_id IS NULL OR (SELECT b.state FROM batches b INDEXED BY batches_state WHERE b.id = q.batch_id) = 'open')
         ORDER BY q.window_start, q.metering_sn LIMIT ?1",
        [limit as i64],
    )
}

/// How many records wait for upload (`pending`, or `sending` in an open batch): the size of
/// [`unsent`], counted in the queue alone.
pub fn waiting(conn: &Connection) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM upload_queue q
             WHERE q.batch_id IS NULL OR (SELECT b.state FROM batches b INDEXED BY batches_state WHERE b.id = q.batch_id) = 'open'",
        )?
        .query_row([], |r| r.get(0))?;
    Ok(n as u64)
}

/// Records of one batch, in body order: queued members of an open (or unsettled) batch, and
/// records that name it after delivery or rejection.
pub fn in_batch(conn: &Connection, batch_id: i64) -> Result<Vec<RecordRow>> {
    query(
        conn,
        "(r.metering_sn IN (SELECT metering_sn FROM upload_queue WHERE batch_id = ?1) OR (r.batch_id = ?1 AND r.state <> 'pending'))
         ORDER BY r.window_start, r.metering_sn",
        [batch_id],
    )
}

/// Only `pending` records (not in a batch), oldest first.
pub fn pending(conn: &Connection, limit: usize) -> Result<Vec<RecordRow>> {
    query_from(conn, QUEUED, "q.batch_id IS NULL ORDER BY q.window_start, q.metering_sn LIMIT ?1", [limit as i64])
}

/// Pending records that begin before `cutoff` (window starts never exceed begins, so the
/// queue's pending index narrows the search).
pub fn pending_before(conn: &Connection, cutoff: i64) -> Result<Vec<RecordRow>> {
    query_from(
        conn,
        QUEUED,
        "q.batch_id IS NULL AND q.window_start < ?1 AND r.begin_s < ?1 ORDER BY q.window_start, q.metering_sn",
        [cutoff],
    )
}

/// Every record, for status and tests.
pub fn all(conn: &Connection) -> Result<Vec<RecordRow>> {
    query(conn, "1 ORDER BY r.instance_ref, r.window_start, r.begin_s", [])
}

/// Count of records by (effective) state; states without records are left out.
pub fn count_by_state(conn: &Connection) -> Result<Vec<(RecordState, u64)>> {
    let mut counts: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    let mut stmt = conn.prepare_cached("SELECT state, count(*) FROM records GROUP BY state")?;
    for r in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (s, n) = r?;
        *counts.entry(s).or_default() += n;
    }
    // Queued records in a batch are stored as `pending`: count them by their batch's state.
    let mut stmt = conn.prepare_cached(
        "SELECT (SELECT b.state FROM batches b INDEXED BY batches_state WHERE b.id = q.batch_id) AS s, count(*) FROM upload_queue q
         WHERE q.batch_id IS NOT NULL GROUP BY s",
    )?;
    for r in stmt.query_map([], |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?)))? {
        let (batch_state, n) = r?;
        let state = match batch_state.as_deref() {
            Some("open") => "sending",
            Some("delivered") => "delivered",
            _ => continue,
        };
        *counts.entry("pending".into()).or_default() -= n;
        *counts.entry(state.into()).or_default() += n;
    }
    let mut out = Vec::new();
    for (s, n) in counts {
        if n < 0 {
            return Err(StoreError::Corrupt(format!("{} record(s) in state {s}", n)));
        }
        if n > 0 {
            out.push((RecordState::parse(&s)?, n as u64));
        }
    }
    Ok(out)
}

/// One entry of the rejected log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RejectedRow {
    pub metering_sn: String,
    pub instance_id: String,
    pub code: String,
    pub message: String,
    pub at_ns: i64,
    pub body: String,
    pub requeued: bool,
}
