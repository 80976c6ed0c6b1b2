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
//! drops the queue row ([`super::batches::apply_deliveries`]). So the `records` row changes once per
//! delivery, in bulk, while the per-batch steps touch only the queue, whose rows of one batch
//! are adjacent. Every reader here returns the effective state; `zero`, `rejected` and applied
//! `delivered` are stored as they are. On PostgreSQL a queue row also carries a copy of its
//! record's bytes (`upload_queue.body`, written by the seal, PG migration 9), where a cut reads
//! them ([`super::batches::next_pending`]); NULL is always allowed there and means "read the
//! record's", so every other writer of queue rows (requeue, a store copy from SQLite) stays as
//! it was.
//!
//! **Both backends.** Every statement here and in [`super::batches`] runs on SQLite and
//! PostgreSQL alike (see [`super::sql`]), except the queue insert of [`insert`] (the copy of
//! the bytes is written on PostgreSQL only), the reads of [`super::batches::next_pending`] and
//! the apply (see there), and one spelled per backend: SQLite is
//! told to look a batch's state up through the covering index `batches_state` (`INDEXED BY`,
//! `hinted!`), so it never reads a batch row with its large body; PostgreSQL has no such
//! hint and plans the lookup itself, so its spelling is the same statement without it.
//! PostgreSQL's queue has no index on `batch_id` (PG migration 11): there the readers of a
//! batch's queue rows ([`in_batch`], [`count_by_state`], `any_in_batch`) go through the
//! batches' key ranges (`batch_ranges`, see [`super::batches`]).

use super::sql::{params, Backend, Param, Row, Tx};
use super::{dec, Result, StoreError};
use crate::model::UsageRecord;
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

/// A decimal column of a row (decimal text on SQLite, `numeric` on PostgreSQL). On SQLite the
/// text is parsed where it lies (no copy: the point reads run over every event of a window),
/// with the same error as ever for text that is not a decimal.
pub(crate) fn dec_at(r: &Row<'_>, i: usize) -> Result<Decimal> {
    match r {
        Row::Sqlite(_) => r.with_str(i, dec),
        Row::Pg(_) => r.get(i),
    }
}

/// Inserts a sealed record. A second record for the same instance and period, or the same
/// serial, violates a UNIQUE constraint: sealing twice is impossible by construction.
pub fn insert(tx: &Tx<'_>, r: &NewRecord, now_ns: i64) -> Result<()> {
    let body = crate::upload::body::record_bytes(&r.record);
    tx.execute(
        "INSERT INTO records (metering_sn, instance_ref, window_start, begin_s, end_s, usage_value, window_usage, carry_in, carry_out,
                              record_time_s, relate_pkg, body, state, updated_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
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
        ],
    )?;
    if r.state == RecordState::Pending {
        // On PostgreSQL the queue row carries the bytes too (PG migration 9, `batches::next_pending`).
        match tx.backend() {
            Backend::Sqlite => tx.execute(
                "INSERT INTO upload_queue (window_start, metering_sn) VALUES (?1, ?2)",
                params![r.window_start, r.record.metering_sn],
            )?,
            Backend::Postgres => tx.execute(
                "INSERT INTO upload_queue (window_start, metering_sn, body) VALUES (?1, ?2, ?3)",
                params![r.window_start, r.record.metering_sn, body],
            )?,
        };
    }
    Ok(())
}

/// A statement that looks batches `b` up by id, spelled for the backend of `tx`: on SQLite
/// with `INDEXED BY batches_state` after `$before` (which ends with `batches b`), so the lookup
/// reads the covering index `(id, state)` and never a batch row with its body; on PostgreSQL,
/// which has no planner hints, the same statement without it. Both spellings are constants.
macro_rules! hinted {
    ($tx:expr, $before:literal, $after:literal) => {
        match $tx.backend() {
            $crate::store::sql::Backend::Sqlite => concat!($before, " INDEXED BY batches_state", $after),
            $crate::store::sql::Backend::Postgres => concat!($before, $after),
        }
    };
}
pub(crate) use hinted;

/// The effective state of `records r` as SQL: a stored `pending` is `sending` while its queue
/// row is in an open batch and `delivered` while it is in a delivered, not yet applied one.
/// Only stored `pending` rows look at the queue.
pub(crate) fn state_sql(tx: &Tx<'_>) -> &'static str {
    hinted!(
        tx,
        "CASE WHEN r.state = 'pending' THEN coalesce((SELECT CASE b.state WHEN 'open' THEN 'sending' \
         WHEN 'delivered' THEN 'delivered' END FROM upload_queue q JOIN batches b",
        " ON b.id = q.batch_id \
         WHERE q.window_start = r.window_start AND q.metering_sn = r.metering_sn), 'pending') ELSE r.state END"
    )
}

/// The batch of `records r` as SQL: the queue's while queued, else the stored one.
const BATCH_SQL: &str = "CASE WHEN r.state = 'pending' THEN (SELECT q.batch_id FROM upload_queue q \
     WHERE q.window_start = r.window_start AND q.metering_sn = r.metering_sn) ELSE r.batch_id END";

/// Whether any queued record is in a batch (open, or delivered and not yet applied): when none
/// is, stored states are effective states and readers can skip [`state_sql`]. On PostgreSQL,
/// whose queue has no index on `batch_id`, whether any batch has a key range (a range exists
/// while its batch has queue rows: `store::batches`, PG migration 11).
pub(crate) fn any_in_batch(tx: &Tx<'_>) -> Result<bool> {
    match tx.backend() {
        Backend::Sqlite => tx.one("SELECT EXISTS (SELECT 1 FROM upload_queue WHERE batch_id IS NOT NULL)", params![]),
        Backend::Postgres => tx.one("SELECT EXISTS (SELECT 1 FROM batch_ranges)", params![]),
    }
}

fn columns(tx: &Tx<'_>) -> String {
    format!(
        "r.metering_sn, r.instance_ref, i.instance_id, r.window_start, r.begin_s, r.end_s, r.usage_value, r.window_usage, r.carry_in,
         r.carry_out, r.record_time_s, r.relate_pkg, r.body, {}, {BATCH_SQL}, r.attempts",
        state_sql(tx)
    )
}

fn from_row(r: &Row<'_>) -> Result<RecordRow> {
    Ok(RecordRow {
        metering_sn: r.get(0)?,
        instance_key: r.get(1)?,
        instance_id: r.get(2)?,
        window_start: r.get(3)?,
        begin: r.get(4)?,
        end: r.get(5)?,
        usage_value: dec_at(r, 6)?,
        window_usage: dec_at(r, 7)?,
        carry_in: dec_at(r, 8)?,
        carry_out: dec_at(r, 9)?,
        record_time: r.get(10)?,
        relate_pkg: r.get(11)?,
        body: r.get(12)?,
        state: RecordState::parse(&r.get::<String>(13)?)?,
        batch_id: r.get(14)?,
        attempts: r.get(15)?,
    })
}

fn query(tx: &Tx<'_>, where_sql: &str, params: &[&dyn Param]) -> Result<Vec<RecordRow>> {
    query_from(tx, "records r", where_sql, params)
}

/// Records read from `from` (which names the records table `r`), joined to their instance.
fn query_from(tx: &Tx<'_>, from: &str, where_sql: &str, params: &[&dyn Param]) -> Result<Vec<RecordRow>> {
    let sql = format!("SELECT {} FROM {from} JOIN instances i ON i.ref = r.instance_ref WHERE {where_sql}", columns(tx));
    tx.query_map(&sql, params, from_row)
}

/// Records of one instance with window start in `[from, to)`, in time order.
pub fn of_instance(tx: &Tx<'_>, instance_key: i64, from: i64, to: i64) -> Result<Vec<RecordRow>> {
    query(
        tx,
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
pub fn summaries_of_instance(tx: &Tx<'_>, instance_key: i64, from: i64, to: i64) -> Result<Vec<RecordSummary>> {
    // Outside an upload run no queued record is in a batch, and the stored state is the state.
    let state = if any_in_batch(tx)? { state_sql(tx) } else { "r.state" };
    let sql = format!(
        "SELECT r.metering_sn, r.window_start, r.begin_s, r.end_s, r.usage_value, {state}, r.relate_pkg FROM records r
         WHERE r.instance_ref = ?1 AND r.window_start >= ?2 AND r.window_start < ?3 ORDER BY r.window_start, r.begin_s"
    );
    tx.query_map(&sql, params![instance_key, from, to], |r| {
        Ok(RecordSummary {
            metering_sn: r.get(0)?,
            window_start: r.get(1)?,
            begin: r.get(2)?,
            end: r.get(3)?,
            usage_value: dec_at(r, 4)?,
            state: state_at(r, 5)?,
            relate_pkg: r.get(6)?,
        })
    })
}

/// A state column of a row, parsed where it lies on SQLite (no copy per record).
fn state_at(r: &Row<'_>, i: usize) -> Result<RecordState> {
    match r {
        Row::Sqlite(r) => RecordState::parse(r.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?),
        Row::Pg(_) => RecordState::parse(&r.get::<String>(i)?),
    }
}

/// Queue rows joined to their records (`q` the queue, `r` the record).
const QUEUED: &str = "upload_queue q JOIN records r ON r.metering_sn = q.metering_sn";

/// Records waiting for upload (`pending`, or `sending` in an open batch), oldest first.
pub fn unsent(tx: &Tx<'_>, limit: usize) -> Result<Vec<RecordRow>> {
    let where_sql = hinted!(
        tx,
        "(q.batch_id IS NULL OR (SELECT b.state FROM batches b",
        " WHERE b.id = q.batch_id) = 'open')
         ORDER BY q.window_start, q.metering_sn LIMIT ?1"
    );
    query_from(tx, QUEUED, where_sql, params![limit as i64])
}

/// How many records wait for upload (`pending`, or `sending` in an open batch): the size of
/// [`unsent`], counted in the queue alone.
///
/// On PostgreSQL the pending rows are counted in the queue's partial index of them
/// (`upload_queue_pending`) and the rows of open batches over those batches' key ranges
/// (`batch_ranges`, see [`super::batches`]), so the queue rows of delivered batches not yet
/// applied are never read: one scan of the whole queue was 3 % of an upload run of 100k
/// records (2026-11-30, `METERD_BENCH_PGSS=1`).
pub fn waiting(tx: &Tx<'_>) -> Result<u64> {
    if tx.backend() == Backend::Postgres {
        let sql = format!(
            "SELECT (SELECT count(*) FROM upload_queue WHERE batch_id IS NULL)
                  + (SELECT count(*) FROM {} WHERE {} = 'open')",
            super::batches::PG_BATCHED_ROWS,
            super::batches::PG_RANGE_STATE
        );
        return Ok(tx.one::<i64>(&sql, params![])? as u64);
    }
    let sql = hinted!(
        tx,
        "SELECT count(*) FROM upload_queue q
             WHERE q.batch_id IS NULL OR (SELECT b.state FROM batches b",
        " WHERE b.id = q.batch_id) = 'open'"
    );
    Ok(tx.one::<i64>(sql, params![])? as u64)
}

/// Records of one batch, in body order: queued members of an open (or unapplied) batch, and
/// records that name it after delivery or rejection.
///
/// The members of an open batch are all queued (a record leaves the queue only when its batch
/// is delivered and applied, or when it is rejected, which first ends its batch), so for an
/// open batch — the only one upload's split and rejection ask for — the queue alone answers.
/// Only other batches look for records naming them: on PostgreSQL, which has no index on
/// `records.batch_id` (see `store::pg_schema`, migration 7), that reads the whole table.
/// On PostgreSQL the queue rows of a batch are read over its key range (PG migration 11).
pub fn in_batch(tx: &Tx<'_>, batch_id: i64) -> Result<Vec<RecordRow>> {
    let state: Option<String> =
        tx.query_opt(hinted!(tx, "SELECT b.state FROM batches b", " WHERE b.id = ?1"), params![batch_id], |r| r.get(0))?;
    if tx.backend() == Backend::Postgres {
        let range = super::batches::range_of(tx, batch_id)?;
        return match (state.as_deref(), range) {
            (Some("open"), Some(g)) => query_from(
                tx,
                QUEUED,
                &format!("{} ORDER BY q.window_start, q.metering_sn", super::batches::PG_IN_RANGE),
                params![batch_id, g.first.0, g.first.1, g.last.0, g.last.1],
            ),
            (Some("open"), None) => Ok(Vec::new()),
            (_, Some(g)) => query(
                tx,
                &format!(
                    "(r.metering_sn IN (SELECT q.metering_sn FROM upload_queue q WHERE {}) OR (r.batch_id = ?1 AND r.state <> 'pending'))
                     ORDER BY r.window_start, r.metering_sn",
                    super::batches::PG_IN_RANGE
                ),
                params![batch_id, g.first.0, g.first.1, g.last.0, g.last.1],
            ),
            (_, None) => query(tx, "r.batch_id = ?1 AND r.state <> 'pending' ORDER BY r.window_start, r.metering_sn", params![batch_id]),
        };
    }
    if state.as_deref() == Some("open") {
        return query_from(tx, QUEUED, "q.batch_id = ?1 ORDER BY q.window_start, q.metering_sn", params![batch_id]);
    }
    query(
        tx,
        "(r.metering_sn IN (SELECT metering_sn FROM upload_queue WHERE batch_id = ?1) OR (r.batch_id = ?1 AND r.state <> 'pending'))
         ORDER BY r.window_start, r.metering_sn",
        params![batch_id],
    )
}

/// Only `pending` records (not in a batch), oldest first.
pub fn pending(tx: &Tx<'_>, limit: usize) -> Result<Vec<RecordRow>> {
    query_from(tx, QUEUED, "q.batch_id IS NULL ORDER BY q.window_start, q.metering_sn LIMIT ?1", params![limit as i64])
}

/// Pending records that begin before `cutoff` (window starts never exceed begins, so the
/// queue's pending index narrows the search).
pub fn pending_before(tx: &Tx<'_>, cutoff: i64) -> Result<Vec<RecordRow>> {
    query_from(
        tx,
        QUEUED,
        "q.batch_id IS NULL AND q.window_start < ?1 AND r.begin_s < ?1 ORDER BY q.window_start, q.metering_sn",
        params![cutoff],
    )
}

/// Every record, for status and tests.
pub fn all(tx: &Tx<'_>) -> Result<Vec<RecordRow>> {
    query(tx, "TRUE ORDER BY r.instance_ref, r.window_start, r.begin_s", params![])
}

/// Count of records by (effective) state; states without records are left out.
pub fn count_by_state(tx: &Tx<'_>) -> Result<Vec<(RecordState, u64)>> {
    let mut counts: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    tx.for_each("SELECT state, count(*) FROM records GROUP BY state", params![], |r| {
        *counts.entry(r.get::<String>(0)?).or_default() += r.get::<i64>(1)?;
        Ok(())
    })?;
    // Queued records in a batch are stored as `pending`: count them by their batch's state
    // (on PostgreSQL over the batches' key ranges, PG migration 11).
    let pg_by_batch;
    let by_batch = match tx.backend() {
        Backend::Sqlite => hinted!(
            tx,
            "SELECT (SELECT b.state FROM batches b",
            " WHERE b.id = q.batch_id) AS s, count(*) FROM upload_queue q
             WHERE q.batch_id IS NOT NULL GROUP BY s"
        ),
        Backend::Postgres => {
            pg_by_batch =
                format!("SELECT {} AS s, count(*) FROM {} GROUP BY s", super::batches::PG_RANGE_STATE, super::batches::PG_BATCHED_ROWS);
            pg_by_batch.as_str()
        }
    };
    for (batch_state, n) in tx.query_map(by_batch, params![], |r| Ok((r.get::<Option<String>>(0)?, r.get::<i64>(1)?)))? {
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
