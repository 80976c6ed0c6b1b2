//! Upload batches: the canonical bytes of a request, stored before the first attempt, so every
//! retry sends exactly the same body. A record belongs to at most one open batch at a time.
//!
//! Batch life: `open` (sending) → `delivered`; or `split` into two halves (the store refused
//! the whole request, so nothing of it was billed); or `abandoned` (configuration error: its
//! records go back to `pending`). A batch whose answer was lost stays `open` and is resent
//! as it is — harmless, since the store keeps the first record per instance and period.
//!
//! Membership lives in `upload_queue` (see [`super::records`]): cutting a batch points the
//! queue rows of its records at it (they are adjacent: batches are cut in queue order), and
//! delivery is the one update of the batch row, committed before anything counts as
//! delivered. [`apply_deliveries`] later writes `delivered` and the batch id into the records rows of
//! delivered batches, many batches in one transaction, and drops their queue rows; until then
//! every reader already sees them delivered, and nothing about them is sent again.
//!
//! A cut marks its members with one `UPDATE … RETURNING` over their key range and checks what
//! it returns against the members; only a range that holds other pending records (a split's
//! half, a record sealed late into an older window) or a member no longer pending is marked row
//! by row. On PostgreSQL `upload_queue.batch_id` has no foreign key (PG migration 7): the
//! per-row check locked the batch's row once per record, and `create` alone writes the column,
//! with the id its own `INSERT` just returned; batch rows are never deleted.
//!
//! **Batch key ranges (PostgreSQL, PG migration 11).** There `upload_queue` has no index on
//! `batch_id`: with one, a cut's update of each member's queue row wrote an entry into it
//! too. Instead `batch_ranges` holds, for every batch that has queue rows, a key range
//! `(first_ws, first_sn) ..= (last_ws, last_sn)` of the queue that holds all of them, and
//! every reader of a batch's queue rows scans that range of the queue's key index, keeping the
//! rows whose `batch_id` is the batch's (`range_of`, `PG_IN_RANGE`). A cut marked by one
//! statement stores the bounds that statement was limited to; a cut marked row by row (a
//! member out of key order, or a range holding other pending rows) stores a range padded to
//! whole windows, `(min window, '') ..= (max window + 1, '')`: the empty text sorts first in
//! every collation, so the padded range holds every member whatever the database's collation.
//! Other rows inside a range (another batch's, a pending record sealed late into an older
//! window) are never taken for members: the filter on `batch_id` leaves them out. A range is
//! removed with its batch's last queue row (the apply, `unqueue`) or, for a batch whose
//! records were rejected one by one, at the next apply; so while any queue row is in a batch,
//! a range exists (`records::any_in_batch` asks that on PostgreSQL). Why dropping the index is
//! safe: the only readers of queue rows by batch are here and in `records` (`in_batch`, the
//! counts by state), and each now reads the range; a node of an older build, which would cut
//! batches without one, has its queue updates refused by the schema (PG migration 11).
//!
//! On PostgreSQL a cut reads its members' bytes from their queue rows (`upload_queue.body`, a
//! copy the seal writes: PG migration 9), not from `records`, and [`apply_deliveries`] is one
//! statement that reads each delivered batch's state once ([`next_pending`] and
//! `apply_deliveries_pg` say why that is exact).
//!
//! Every other statement runs on SQLite and PostgreSQL alike (see [`super::sql`]); a new batch's id
//! comes back from its `INSERT … RETURNING id`. Lookups of a batch's state name SQLite's
//! covering index, spelled per backend (`records::hinted!`).

use super::records::{self, hinted, RecordRow};
use super::sql::{params, Backend, Row, Tx};
use super::{Result, StoreError};

/// A stored batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: i64,
    pub body: Vec<u8>,
    pub records: i64,
    pub attempts: i64,
}

/// What a batch needs of a record: its queue key (window start, serial) and its canonical bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub window_start: i64,
    pub metering_sn: String,
    pub body: Vec<u8>,
}

impl From<RecordRow> for Member {
    fn from(r: RecordRow) -> Member {
        Member { window_start: r.window_start, metering_sn: r.metering_sn, body: r.body }
    }
}

/// Up to `n` pending records, oldest first, as batch members (reads only key and bytes).
///
/// On PostgreSQL the bytes come from the queue row itself (PG migration 9: the seal copies
/// them there), read as the pending index is walked; only a row without them (queued before
/// that migration, requeued, copied from another store, or sealed by an older build) probes
/// its record. On SQLite the record is probed by serial, as it always was.
pub fn next_pending(tx: &Tx<'_>, n: usize) -> Result<Vec<Member>> {
    let sql = match tx.backend() {
        Backend::Sqlite => {
            "SELECT q.window_start, q.metering_sn, r.body FROM upload_queue q JOIN records r ON r.metering_sn = q.metering_sn
             WHERE q.batch_id IS NULL ORDER BY q.window_start, q.metering_sn LIMIT ?1"
        }
        Backend::Postgres => {
            "SELECT q.window_start, q.metering_sn, coalesce(q.body, (SELECT r.body FROM records r WHERE r.metering_sn = q.metering_sn))
             FROM upload_queue q WHERE q.batch_id IS NULL ORDER BY q.window_start, q.metering_sn LIMIT ?1"
        }
    };
    tx.query_map(sql, params![n as i64], |r| Ok(Member { window_start: r.get(0)?, metering_sn: r.get(1)?, body: r.get(2)? }))
}

/// Whether text column `i` of `r` is `text` (on SQLite compared where it lies, no copy).
fn text_is(r: &Row<'_>, i: usize, text: &str) -> Result<bool> {
    match r {
        Row::Sqlite(r) => Ok(r.get_ref(i)?.as_str().map_err(rusqlite::Error::from)? == text),
        Row::Pg(_) => Ok(r.get::<String>(i)? == text),
    }
}

/// [`next_pending`], reusing `read_before`: the members read in an earlier transaction. A
/// sealed record's bytes never change, so only which records are pending can differ; when the
/// keys of the first `n` pending records (read from the queue's index alone) are exactly those
/// of `read_before`, its bodies are the bodies, and the records table is not read again.
pub fn next_pending_reusing(tx: &Tx<'_>, n: usize, read_before: Vec<Member>) -> Result<Vec<Member>> {
    let mut before = read_before.iter();
    let mut same = true;
    tx.for_each(
        "SELECT window_start, metering_sn FROM upload_queue WHERE batch_id IS NULL ORDER BY window_start, metering_sn LIMIT ?1",
        params![n as i64],
        |k| {
            if same {
                same = match before.next() {
                    Some(m) => k.get::<i64>(0)? == m.window_start && text_is(k, 1, &m.metering_sn)?,
                    None => false,
                };
            }
            Ok(())
        },
    )?;
    if same && before.next().is_none() {
        Ok(read_before)
    } else {
        next_pending(tx, n)
    }
}

/// A queue key range on PostgreSQL: `(first_ws, first_sn) ..= (last_ws, last_sn)` of
/// `batch_ranges` (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRange {
    pub first: (i64, String),
    pub last: (i64, String),
}

impl KeyRange {
    /// The range padded to whole windows that holds every key of `recs` (non-empty), whatever
    /// the order the database's collation gives the serials (see the module docs).
    fn padded(recs: &[Member]) -> KeyRange {
        let lo = recs.iter().map(|r| r.window_start).min().unwrap_or(0);
        let hi = recs.iter().map(|r| r.window_start).max().unwrap_or(0);
        KeyRange { first: (lo, String::new()), last: (hi.saturating_add(1), String::new()) }
    }
}

/// The queue rows `q` of one batch on PostgreSQL as SQL: its `batch_id` is `?1`, its key in
/// the range `(?2, ?3) ..= (?4, ?5)` (a [`KeyRange`]), so the key index is scanned over the
/// range only.
pub(crate) const PG_IN_RANGE: &str =
    "q.batch_id = ?1 AND (q.window_start, q.metering_sn) >= (?2, ?3) AND (q.window_start, q.metering_sn) <= (?4, ?5)";

/// The key range of batch `id`'s queue rows on PostgreSQL (`batch_ranges`); `None` when it has
/// none (applied, split, abandoned, rejected, or never had members).
pub(crate) fn range_of(tx: &Tx<'_>, id: i64) -> Result<Option<KeyRange>> {
    tx.query_opt("SELECT first_ws, first_sn, last_ws, last_sn FROM batch_ranges WHERE batch_id = ?1", params![id], |r| {
        Ok(KeyRange { first: (r.get(0)?, r.get(1)?), last: (r.get(2)?, r.get(3)?) })
    })
}

/// Creates an open batch of `recs` (in that order) whose request body is `body` (made by
/// `upload::body::join_records` from the members' bytes; stored as given and resent unchanged):
/// its records are `sending` from now on. Every record must be pending (queued, in no batch).
/// On PostgreSQL the batch's key range goes into `batch_ranges` (see the module docs).
pub fn create(tx: &Tx<'_>, recs: &[Member], body: Vec<u8>, now_ns: i64) -> Result<Batch> {
    let id: i64 = tx.one(
        "INSERT INTO batches (body, records, state, created_ns) VALUES (?1, ?2, 'open', ?3) RETURNING id",
        params![body, recs.len() as i64, now_ns],
    )?;
    let (Some(first), Some(last)) = (recs.first(), recs.last()) else { return Ok(Batch { id, body, records: 0, attempts: 0 }) };
    let sorted = in_key_order(recs);
    // A cut from `next_pending` (or a half of a split): the members should be exactly the
    // pending rows of their key range, so one statement marks them (checked by what it returns).
    let by_range = sorted && mark_range(tx, id, recs, (first, last))?;
    if tx.backend() == Backend::Postgres {
        let range = if by_range {
            KeyRange { first: (first.window_start, first.metering_sn.clone()), last: (last.window_start, last.metering_sn.clone()) }
        } else {
            KeyRange::padded(recs)
        };
        store_range(tx, id, &range)?;
    }
    if !by_range {
        for r in recs {
            let marked = tx.execute(
                "UPDATE upload_queue SET batch_id = ?3 WHERE window_start = ?1 AND metering_sn = ?2 AND batch_id IS NULL",
                params![r.window_start, r.metering_sn, id],
            )?;
            if marked != 1 {
                return Err(StoreError::Invalid(format!("record {} is no longer waiting for upload", r.metering_sn)));
            }
        }
    }
    Ok(Batch { id, body, records: recs.len() as i64, attempts: 0 })
}

/// What [`cut_read_ahead`] did.
#[derive(Debug)]
pub enum ReadAhead {
    /// The batch of the records read ahead, created (PostgreSQL).
    Cut(Batch),
    /// The first pending records, for [`create`] (empty when none is pending).
    Pending(Vec<Member>),
}

/// The next batch's records, given `read`: up to `size` pending records read by
/// [`next_pending`] in an earlier transaction. On PostgreSQL the batch of `read` is created at
/// once when they are still the first pending records (`create_read_ahead`); on SQLite, and
/// on PostgreSQL when they are not, the first pending records are returned, reusing `read`'s
/// bytes where the keys match ([`next_pending_reusing`], SQLite) or read again.
pub fn cut_read_ahead(
    tx: &Tx<'_>,
    size: usize,
    read: Vec<Member>,
    body: impl FnOnce(&[Member]) -> Vec<u8>,
    now_ns: i64,
) -> Result<ReadAhead> {
    match tx.backend() {
        Backend::Postgres => Ok(match create_read_ahead(tx, &read, body, now_ns)? {
            Some(b) => ReadAhead::Cut(b),
            None => ReadAhead::Pending(next_pending(tx, size)?),
        }),
        Backend::Sqlite => Ok(ReadAhead::Pending(next_pending_reusing(tx, size, read)?)),
    }
}

/// [`create`] on PostgreSQL of `read`, the first pending records as [`next_pending`] read them
/// in an earlier transaction (the uploader reads ahead while a request is in flight), without
/// reading the queue's keys again as [`next_pending_reusing`] does: one probe says that no
/// pending record lies before the first of them (a record sealed late into an older window,
/// or a batch given back), and the cut's one `UPDATE … RETURNING` ([`mark_range`]) checks that
/// the pending rows of their key range are exactly them. The batch's body is made by `body`
/// only then. `None` (nothing written) when either check fails or `read` is empty: the caller
/// reads the queue again. The batch's id is drawn from its identity sequence first, since the
/// queue rows are marked before the batch row is written; a drawn id left unused is a gap.
///
/// Measured (2026-11-30, `METERD_BENCH_PGSS=1 METERD_BENCH_ONLY=pg-upload`): the key scan this
/// replaces was 2.9 µs of the server's 31 µs per record.
fn create_read_ahead(tx: &Tx<'_>, read: &[Member], body: impl FnOnce(&[Member]) -> Vec<u8>, now_ns: i64) -> Result<Option<Batch>> {
    let (Some(first), Some(last)) = (read.first(), read.last()) else { return Ok(None) };
    let sorted = in_key_order(read);
    let (id, earlier): (i64, bool) = tx.query_row(
        "SELECT nextval(pg_get_serial_sequence('batches', 'id')),
                EXISTS (SELECT 1 FROM upload_queue WHERE batch_id IS NULL AND (window_start, metering_sn) < (?1, ?2))",
        params![first.window_start, first.metering_sn],
        |r| Ok((r.get(0)?, r.get::<bool>(1)?)),
    )?;
    if !sorted || earlier || !mark_range(tx, id, read, (first, last))? {
        return Ok(None);
    }
    let body = body(read);
    tx.execute(
        "INSERT INTO batches (id, body, records, state, created_ns) VALUES (?1, ?2, ?3, 'open', ?4)",
        params![id, body, read.len() as i64, now_ns],
    )?;
    let range = KeyRange { first: (first.window_start, first.metering_sn.clone()), last: (last.window_start, last.metering_sn.clone()) };
    store_range(tx, id, &range)?;
    Ok(Some(Batch { id, body, records: read.len() as i64, attempts: 0 }))
}

/// Whether `recs` are sorted and distinct by queue key (window start, serial), as a cut by one
/// statement needs.
fn in_key_order(recs: &[Member]) -> bool {
    recs.windows(2).all(|w| (w[0].window_start, &w[0].metering_sn) < (w[1].window_start, &w[1].metering_sn))
}

/// Stores batch `id`'s key range in `batch_ranges` (PostgreSQL; see the module docs).
fn store_range(tx: &Tx<'_>, id: i64, range: &KeyRange) -> Result<()> {
    tx.execute(
        "INSERT INTO batch_ranges (batch_id, first_ws, first_sn, last_ws, last_sn) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, range.first.0, range.first.1, range.last.0, range.last.1],
    )?;
    Ok(())
}

/// Marks the pending queue rows of the key range `first..=last` of `recs` (sorted, distinct)
/// for batch `id` in one statement, and checks from what it returns that they are exactly
/// `recs`. When they are not (another pending record lies in the range, or a member is no
/// longer pending), takes the marks back and returns `false`: the caller marks row by row.
fn mark_range(tx: &Tx<'_>, id: i64, recs: &[Member], (first, last): (&Member, &Member)) -> Result<bool> {
    const RANGE: &str = "(window_start, metering_sn) >= (?1, ?2) AND (window_start, metering_sn) <= (?3, ?4)";
    let range = params![first.window_start, first.metering_sn, last.window_start, last.metering_sn, id];
    let mut marked = tx.query_map(
        &format!("UPDATE upload_queue SET batch_id = ?5 WHERE batch_id IS NULL AND {RANGE} RETURNING window_start, metering_sn"),
        range,
        |r| Ok((r.get::<i64>(0)?, r.get::<String>(1)?)),
    )?;
    // RETURNING gives no order; Rust orders strings by their bytes, as both backends' keys do.
    marked.sort_unstable();
    let exact = marked.len() == recs.len() && marked.iter().zip(recs).all(|(m, r)| m.0 == r.window_start && m.1 == r.metering_sn);
    if !exact {
        tx.execute(&format!("UPDATE upload_queue SET batch_id = NULL WHERE batch_id = ?5 AND {RANGE}"), range)?;
    }
    Ok(exact)
}

/// Open batches, oldest first (left by a crash, a lost answer or an exhausted retry budget).
pub fn open(tx: &Tx<'_>) -> Result<Vec<Batch>> {
    tx.query_map("SELECT id, body, records, attempts FROM batches WHERE state = 'open' ORDER BY id", params![], |r| {
        Ok(Batch { id: r.get(0)?, body: r.get(1)?, records: r.get(2)?, attempts: r.get(3)? })
    })
}

/// The records of a batch, in body order (batches are always built in (window, serial) order).
pub fn members(tx: &Tx<'_>, id: i64) -> Result<Vec<RecordRow>> {
    records::in_batch(tx, id)
}

/// Counts an attempt and its outcome text.
pub fn attempted(tx: &Tx<'_>, id: i64, error: Option<&str>) -> Result<()> {
    tx.execute("UPDATE batches SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1", params![id, error])?;
    Ok(())
}

/// The store accepted the batch: every record in it is delivered (one row: the records follow
/// their batch until [`apply_deliveries`] writes it into them).
pub fn delivered(tx: &Tx<'_>, id: i64) -> Result<()> {
    tx.execute("UPDATE batches SET state = 'delivered' WHERE id = ?1 AND state = 'open'", params![id])?;
    Ok(())
}

/// [`attempted`] without an error, then [`delivered`], as one update of the batch row (every
/// update of a batch row rereads or rewrites its body's overflow pages).
pub fn attempt_delivered(tx: &Tx<'_>, id: i64) -> Result<()> {
    tx.execute(
        "UPDATE batches SET attempts = attempts + 1, last_error = NULL,
         state = CASE state WHEN 'open' THEN 'delivered' ELSE state END WHERE id = ?1",
        params![id],
    )?;
    Ok(())
}

/// Records of delivered batches whose `records` rows still say `pending`.
pub fn unapplied_deliveries(tx: &Tx<'_>) -> Result<u64> {
    if tx.backend() == Backend::Postgres {
        let sql = format!("SELECT count(*) FROM {PG_BATCHED_ROWS} WHERE {PG_RANGE_STATE} = 'delivered'");
        return Ok(tx.one::<i64>(&sql, params![])? as u64);
    }
    let sql = hinted!(
        tx,
        "SELECT count(*) FROM upload_queue q WHERE q.batch_id IS NOT NULL AND (SELECT b.state FROM batches b",
        " WHERE b.id = q.batch_id) = 'delivered'"
    );
    Ok(tx.one::<i64>(sql, params![])? as u64)
}

/// Applies the store's answer to the records of every delivered batch: writes `delivered` and
/// the batch id into their records rows and drops their queue rows; returns how many records
/// it updated. Bookkeeping only: the records were delivered (and read as delivered) since their
/// batch was. (Called `settle` before issue 16; nothing here is a payment.)
///
/// The join names the queue's whole key `(window_start, metering_sn)` (a queue row always
/// carries its record's `window_start`): on PostgreSQL, with `metering_sn` alone, a plan that
/// walks `records` probed `upload_queue_pkey` by its second column, a scan of the whole index
/// per record (~0.5 ms per record at 10k queued, issue 13's upload bench: 823 rec/s).
pub fn apply_deliveries(tx: &Tx<'_>, now_ns: i64) -> Result<u64> {
    if tx.backend() == Backend::Postgres {
        return apply_deliveries_pg(tx, now_ns);
    }
    let update = hinted!(
        tx,
        "UPDATE records SET state = 'delivered', batch_id = d.batch_id, updated_ns = ?1
             FROM (SELECT q.window_start, q.metering_sn, q.batch_id FROM upload_queue q
                   WHERE q.batch_id IS NOT NULL AND (SELECT b.state FROM batches b",
        " WHERE b.id = q.batch_id) = 'delivered') AS d
             WHERE records.metering_sn = d.metering_sn AND records.window_start = d.window_start
               AND records.state = 'pending'"
    );
    let n = tx.execute(update, params![now_ns])?;
    let delete = hinted!(
        tx,
        "DELETE FROM upload_queue WHERE batch_id IS NOT NULL AND (SELECT b.state FROM batches b",
        " WHERE b.id = upload_queue.batch_id) = 'delivered'"
    );
    let dropped = tx.execute(delete, params![])?;
    if n != dropped {
        return Err(StoreError::Corrupt(format!("applied {n} record(s) but {dropped} queue row(s) of delivered batches")));
    }
    Ok(n)
}

/// The queue rows `q` of every batch that has a key range `g` on PostgreSQL, as a `FROM`
/// clause (see the module docs); [`PG_RANGE_STATE`] is the state of `g`'s batch.
pub(crate) const PG_BATCHED_ROWS: &str = "batch_ranges g JOIN upload_queue q ON q.batch_id = g.batch_id
     AND (q.window_start, q.metering_sn) >= (g.first_ws, g.first_sn) AND (q.window_start, q.metering_sn) <= (g.last_ws, g.last_sn)";

/// The state of the batch of range `g`, as SQL: one probe of `batches` by its key per range
/// (the ranges are few; the batches, never deleted, many).
pub(crate) const PG_RANGE_STATE: &str = "(SELECT b.state FROM batches b WHERE b.id = g.batch_id)";

/// [`apply_deliveries`] on PostgreSQL: takes the key ranges of the batches that are no longer
/// open out of `batch_ranges` (delivered ones; and split ones whose records were rejected one
/// by one, which have no queue rows left), reading each batch's state once; then, one
/// statement per range, deletes the queue rows of the range that name its batch (a scan of
/// the key index over the range: bounds given as values, so the planner sees how narrow it
/// is; joined to the ranges, it hashed the whole queue) and writes the records the deletion
/// returns. So a queued record costs one delete and one (HOT) update of its records row.
fn apply_deliveries_pg(tx: &Tx<'_>, now_ns: i64) -> Result<u64> {
    let done = tx.query_map(
        "DELETE FROM batch_ranges g WHERE (SELECT b.state FROM batches b WHERE b.id = g.batch_id) <> 'open'
         RETURNING g.batch_id, g.first_ws, g.first_sn, g.last_ws, g.last_sn",
        params![],
        |r| Ok((r.get::<i64>(0)?, KeyRange { first: (r.get(1)?, r.get(2)?), last: (r.get(3)?, r.get(4)?) })),
    )?;
    let apply = format!(
        "WITH d AS (DELETE FROM upload_queue q WHERE {PG_IN_RANGE} RETURNING q.window_start, q.metering_sn),
              u AS (UPDATE records r SET state = 'delivered', batch_id = ?1, updated_ns = ?6 FROM d
                     WHERE r.metering_sn = d.metering_sn AND r.window_start = d.window_start AND r.state = 'pending' RETURNING 1)
         SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM u)"
    );
    let (mut dropped, mut n) = (0i64, 0i64);
    for (id, g) in done {
        let (d, u): (i64, i64) =
            tx.query_row(&apply, params![id, g.first.0, g.first.1, g.last.0, g.last.1, now_ns], |r| Ok((r.get(0)?, r.get(1)?)))?;
        dropped += d;
        n += u;
    }
    if n != dropped {
        return Err(StoreError::Corrupt(format!("applied {n} record(s) but {dropped} queue row(s) of delivered batches")));
    }
    Ok(n as u64)
}

/// Takes the queued records of batch `id` out of it: pending again (on PostgreSQL through
/// its key range, which goes with them).
fn unqueue(tx: &Tx<'_>, id: i64) -> Result<()> {
    if tx.backend() == Backend::Postgres {
        if let Some(g) = range_of(tx, id)? {
            tx.execute(
                &format!("UPDATE upload_queue q SET batch_id = NULL WHERE {PG_IN_RANGE}"),
                params![id, g.first.0, g.first.1, g.last.0, g.last.1],
            )?;
            tx.execute("DELETE FROM batch_ranges WHERE batch_id = ?1", params![id])?;
        }
        return Ok(());
    }
    tx.execute("UPDATE upload_queue SET batch_id = NULL WHERE batch_id = ?1", params![id])?;
    Ok(())
}

/// Takes a refused batch apart (the store billed nothing of it): marks it split, its records
/// pending again, and returns its members in two halves, in order, for the caller to cut into
/// two batches ([`create`]) in the same transaction.
pub fn split(tx: &Tx<'_>, id: i64) -> Result<(Vec<Member>, Vec<Member>)> {
    let recs = members(tx, id)?;
    if recs.len() < 2 {
        return Err(StoreError::Internal(format!("batch {id} has {} record(s); cannot split", recs.len())));
    }
    tx.execute("UPDATE batches SET state = 'split' WHERE id = ?1", params![id])?;
    unqueue(tx, id)?;
    let mut a: Vec<Member> = recs.into_iter().map(Member::from).collect();
    let b = a.split_off(a.len() / 2);
    Ok((a, b))
}

/// Gives a batch up without billing (configuration error): its records are pending again.
pub fn abandon(tx: &Tx<'_>, id: i64) -> Result<()> {
    let n = tx.execute("UPDATE batches SET state = 'abandoned' WHERE id = ?1 AND state = 'open'", params![id])?;
    if n == 1 {
        unqueue(tx, id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Timestamp, UsageRecord};
    use crate::store::dead_letters::{refuse_batch, refuse_record, requeue};
    use crate::store::records::{NewRecord, RecordState};
    use crate::store::{instances, Store};
    use rust_decimal::Decimal;

    /// A store with `n` pending records of one instance (hours 0..n) and one zero record.
    fn store(n: i64) -> (tempfile::TempDir, Store, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let (s, sns) = store_at(&dir.path().join("t.db"), n);
        (dir, s, sns)
    }

    /// [`store`] at `db`: a SQLite path or a PostgreSQL URL.
    fn store_at(db: &std::path::Path, n: i64) -> (Store, Vec<String>) {
        let mut s = Store::open(db).unwrap();
        let sns = s
            .write(|tx| {
                let inst = instances::add(tx, "i-1", "p", Timestamp::from_secs(0), Timestamp::from_secs(0))?;
                let mut sns = Vec::new();
                for h in 0..=n {
                    let sn = format!("sn-{h:04}");
                    let state = if h == n { RecordState::Zero } else { RecordState::Pending };
                    let record = UsageRecord {
                        begin_time: format!("b{h}"),
                        end_time: format!("e{h}"),
                        instance_id: "i-1".into(),
                        metering_sn: sn.clone(),
                        record_time: "r".into(),
                        relate_pkg_instance: None,
                        usage_value: "1".into(),
                    };
                    let (begin, end) = (h * 3600, h * 3600 + 3600);
                    let one = Decimal::ONE;
                    let rec = NewRecord {
                        instance_key: inst.key,
                        window_start: begin,
                        begin,
                        end,
                        window_usage: one,
                        carry_in: Decimal::ZERO,
                        carry_out: Decimal::ZERO,
                        record_time: end,
                        record,
                        state,
                    };
                    records::insert(tx, &rec, 1)?;
                    if state == RecordState::Pending {
                        sns.push(sn);
                    }
                }
                Ok(sns)
            })
            .unwrap();
        (s, sns)
    }

    fn states(s: &mut Store) -> Vec<(String, u64)> {
        s.read(records::count_by_state).unwrap().into_iter().map(|(st, n)| (st.as_str().to_string(), n)).collect()
    }

    fn stored(s: &mut Store, sn: &str) -> (String, Option<i64>) {
        s.read(|tx| {
            tx.query_row("SELECT state, batch_id FROM records WHERE metering_sn = ?1", crate::store::sql::params![sn], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })
        .unwrap()
    }

    fn cut(s: &mut Store, n: usize) -> Batch {
        s.write(|tx| {
            let recs = next_pending(tx, n)?;
            create(tx, &recs, body(&recs), 2)
        })
        .unwrap()
    }

    /// The request body of `recs`, as the upload driver makes it.
    fn body(recs: &[Member]) -> Vec<u8> {
        crate::upload::body::join_records(&recs.iter().map(|r| r.body.as_slice()).collect::<Vec<_>>())
    }

    /// [`split`], and the two halves cut as batches.
    fn split_cut(tx: &Tx<'_>, id: i64, now_ns: i64) -> Result<(Batch, Batch)> {
        let (a, b) = split(tx, id)?;
        Ok((create(tx, &a, body(&a), now_ns)?, create(tx, &b, body(&b), now_ns)?))
    }

    fn owned(v: &[(&str, u64)]) -> Vec<(String, u64)> {
        v.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    }

    #[test]
    fn delivery_reads_through_the_batch_until_its_delivery_is_applied() {
        let (_d, mut s, sns) = store(5);
        assert_eq!(states(&mut s), owned(&[("pending", 5), ("zero", 1)]));
        let a = cut(&mut s, 3);
        assert_eq!(a.records, 3);
        assert_eq!(states(&mut s), owned(&[("pending", 2), ("sending", 3), ("zero", 1)]));
        let all = s.read(records::all).unwrap();
        assert_eq!(all.iter().filter(|r| r.batch_id == Some(a.id)).count(), 3);
        assert_eq!(s.read(|tx| records::unsent(tx, 100)).unwrap().len(), 5);
        assert_eq!(s.read(|tx| records::pending(tx, 100)).unwrap().iter().map(|r| &r.metering_sn).collect::<Vec<_>>(), [&sns[3], &sns[4]]);
        assert_eq!(s.read(|tx| members(tx, a.id)).unwrap().len(), 3);

        s.write(|tx| delivered(tx, a.id)).unwrap();
        assert_eq!(states(&mut s), owned(&[("delivered", 3), ("pending", 2), ("zero", 1)]));
        assert_eq!(stored(&mut s, &sns[0]), ("pending".into(), None), "the row waits for apply_deliveries");
        assert_eq!(s.read(unapplied_deliveries).unwrap(), 3);
        assert_eq!(s.read(|tx| records::unsent(tx, 100)).unwrap().len(), 2, "delivered records are not waiting");
        assert_eq!(s.read(records::waiting).unwrap(), 2);
        let summaries = s.read(|tx| records::summaries_of_instance(tx, 1, i64::MIN, i64::MAX)).unwrap();
        assert_eq!(summaries.iter().filter(|r| r.state == RecordState::Delivered).count(), 3);
        // Nothing delivered is cut again.
        let b = cut(&mut s, 10);
        assert_eq!(b.records, 2);

        assert_eq!(s.write(|tx| apply_deliveries(tx, 3)).unwrap(), 3);
        assert_eq!(stored(&mut s, &sns[0]), ("delivered".into(), Some(a.id)));
        assert_eq!(s.read(unapplied_deliveries).unwrap(), 0);
        assert_eq!(states(&mut s), owned(&[("delivered", 3), ("sending", 2), ("zero", 1)]));
        assert_eq!(s.read(|tx| members(tx, a.id)).unwrap().len(), 3, "a batch whose delivery is applied still knows its records");
        assert_eq!(s.write(|tx| apply_deliveries(tx, 4)).unwrap(), 0, "an open batch is not applied");
        s.write(|tx| delivered(tx, b.id).and_then(|()| apply_deliveries(tx, 5))).unwrap();
        assert_eq!(states(&mut s), owned(&[("delivered", 5), ("zero", 1)]));
        let left: i64 = s.read(|tx| tx.one("SELECT count(*) FROM upload_queue", crate::store::sql::params![])).unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn split_abandon_reject_and_requeue_keep_the_queue_exact() {
        let (_d, mut s, sns) = store(4);
        let a = cut(&mut s, 4);
        let (h1, h2) = s.write(|tx| split_cut(tx, a.id, 3)).unwrap();
        assert_eq!((h1.records, h2.records), (2, 2));
        assert_eq!(s.read(|tx| members(tx, a.id)).unwrap().len(), 0, "the split batch holds nothing");
        assert_eq!(states(&mut s), owned(&[("sending", 4), ("zero", 1)]));

        // Configuration error on the first half: its records wait again, in no batch.
        s.write(|tx| abandon(tx, h1.id)).unwrap();
        assert_eq!(states(&mut s), owned(&[("pending", 2), ("sending", 2), ("zero", 1)]));
        assert_eq!(s.read(|tx| records::pending(tx, 10)).unwrap().len(), 2);

        // A bad record in the second half, split down to one record and rejected alone.
        let (q1, q2) = s.write(|tx| split_cut(tx, h2.id, 3)).unwrap();
        let rejected = s.write(|tx| refuse_batch(tx, q1.id, "MKT.9001", "bad", 4)).unwrap();
        assert_eq!(rejected, [sns[2].clone()]);
        assert_eq!(stored(&mut s, &sns[2]), ("rejected".into(), Some(q1.id)));
        assert_eq!(states(&mut s), owned(&[("pending", 2), ("rejected", 1), ("sending", 1), ("zero", 1)]));
        let err = s.write(|tx| requeue(tx, &sns[3], 5)).unwrap_err().to_string();
        assert!(err.contains("is sending, not rejected"), "{err}");

        // Delivered meanwhile: an expiry does not reject it.
        s.write(|tx| delivered(tx, q2.id)).unwrap();
        s.write(|tx| refuse_record(tx, &sns[3], "EXPIRED", "late", b"{}", 6)).unwrap();
        assert_eq!(states(&mut s), owned(&[("delivered", 1), ("pending", 2), ("rejected", 1), ("zero", 1)]));

        s.write(|tx| requeue(tx, &sns[2], 7)).unwrap();
        assert_eq!(stored(&mut s, &sns[2]), ("pending".into(), None));
        assert_eq!(s.read(|tx| records::pending(tx, 10)).unwrap().len(), 3);
        let c = cut(&mut s, 10);
        assert_eq!(c.records, 3);
        assert_eq!(String::from_utf8(c.body).unwrap().matches("sn-").count(), 3);
        s.write(|tx| delivered(tx, c.id).and_then(|()| apply_deliveries(tx, 8).map(drop))).unwrap();
        assert_eq!(states(&mut s), owned(&[("delivered", 4), ("zero", 1)]));
        assert_eq!(s.read(batches_rejected).unwrap(), 1);
    }

    #[test]
    fn a_cut_whose_key_range_holds_another_pending_record_marks_only_its_members() {
        let (_d, mut s, sns) = store(4);
        let all = s.read(|tx| next_pending(tx, 4)).unwrap();
        let sn_of = |m: &[Member]| m.iter().map(|m| m.metering_sn.clone()).collect::<Vec<_>>();
        let ends = vec![all[0].clone(), all[3].clone()];
        let b = s.write(|tx| create(tx, &ends, body(&ends), 2)).unwrap();
        assert_eq!(s.read(|tx| members(tx, b.id)).unwrap().iter().map(|r| &r.metering_sn).collect::<Vec<_>>(), [&sns[0], &sns[3]]);
        assert_eq!(sn_of(&s.read(|tx| next_pending(tx, 4)).unwrap()), [sns[1].clone(), sns[2].clone()], "the records between stay pending");
        // A member no longer pending: refused, and nothing of the cut stays marked.
        let err = s.write(|tx| create(tx, &all[..3], body(&all[..3]), 3)).unwrap_err().to_string();
        assert!(err.contains("is no longer waiting for upload"), "{err}");
        assert_eq!(sn_of(&s.read(|tx| next_pending(tx, 4)).unwrap()), [sns[1].clone(), sns[2].clone()]);
        let c = cut(&mut s, 4);
        assert_eq!(c.records, 2);
    }

    #[test]
    fn members_read_earlier_are_reused_only_while_the_same_records_are_pending() {
        let (_d, mut s, sns) = store(4);
        let marker = |m: &[Member]| m.iter().map(|m| m.body.len()).collect::<Vec<_>>();
        let read = s.read(|tx| next_pending(tx, 2)).unwrap();
        let mut tagged = read.clone();
        tagged[0].body = b"read-before".to_vec();
        let again = s.read(|tx| next_pending_reusing(tx, 2, tagged.clone())).unwrap();
        assert_eq!(again, tagged, "same keys: the earlier read is used as it is");
        let a = cut(&mut s, 1);
        assert_eq!(s.read(|tx| members(tx, a.id)).unwrap()[0].metering_sn, sns[0]);
        let fresh = s.read(|tx| next_pending_reusing(tx, 2, tagged.clone())).unwrap();
        assert_eq!(fresh.iter().map(|m| &m.metering_sn).collect::<Vec<_>>(), [&sns[1], &sns[2]], "the pending set moved on");
        assert_eq!(marker(&fresh), marker(&s.read(|tx| next_pending(tx, 2)).unwrap()));
        let fewer = s.read(|tx| next_pending_reusing(tx, 5, fresh.clone())).unwrap();
        assert_eq!(fewer.len(), 3, "a shorter earlier read is not enough");
    }

    #[test]
    fn the_queue_migration_keeps_open_batches_and_waiting_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let queue_migration = crate::store::MIGRATIONS.iter().position(|m| m.contains("CREATE TABLE upload_queue")).unwrap();
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            for m in &crate::store::MIGRATIONS[..queue_migration] {
                c.execute_batch(m).unwrap();
            }
            c.pragma_update(None, "user_version", queue_migration as i64).unwrap();
            c.execute_batch(
                "INSERT INTO instances (ref, instance_id, plan, start_ns, created_ns) VALUES (1, 'i', 'p', 0, 0);
                 INSERT INTO batches (id, body, records, state, created_ns) VALUES (7, x'7b7d', 1, 'open', 0);
                 INSERT INTO records (metering_sn, instance_ref, window_start, begin_s, end_s, usage_value, window_usage, carry_in,
                                      carry_out, record_time_s, body, state, batch_id, updated_ns)
                 VALUES ('a', 1, 0, 0, 3600, '1', '1', '0', '0', 3600, x'7b7d', 'sending', 7, 0),
                        ('b', 1, 3600, 3600, 7200, '1', '1', '0', '0', 7200, x'7b7d', 'pending', NULL, 0),
                        ('c', 1, 7200, 7200, 10800, '1', '1', '0', '0', 10800, x'7b7d', 'delivered', 6, 0);",
            )
            .unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        assert_eq!(states(&mut s), owned(&[("delivered", 1), ("pending", 1), ("sending", 1)]));
        assert_eq!(stored(&mut s, "a"), ("pending".into(), None), "in the queue now, with its batch");
        assert_eq!(s.read(|tx| members(tx, 7)).unwrap().iter().map(|r| r.metering_sn.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(s.read(open).unwrap().len(), 1, "the open batch is resent as it is");
        assert_eq!(s.read(|tx| next_pending(tx, 10)).unwrap().iter().map(|m| m.metering_sn.as_str()).collect::<Vec<_>>(), ["b"]);
        s.write(|tx| delivered(tx, 7).and_then(|()| apply_deliveries(tx, 1))).unwrap();
        assert_eq!(stored(&mut s, "a"), ("delivered".into(), Some(7)));
    }

    fn batches_rejected(tx: &Tx<'_>) -> Result<i64> {
        tx.one("SELECT count(*) FROM rejected WHERE requeued_ns IS NOT NULL", params![])
    }

    /// The locks `upload::applier` relies on (PostgreSQL). An apply (`Lock::Apply`) runs while
    /// a delivery transaction (`Lock::Upload`) is open, and leaves that delivery for later (it
    /// is not committed); a writer of any other kind (`Lock::Writers`: a seal, a split) waits
    /// for an open delivery, and an apply waits for an open writer; two deliveries, or two
    /// applies, run one at a time. Were the apply's lock the writers' lock taken exclusively,
    /// the first check fails; were it to leave the writers' lock alone, the third. (Waits are bounded below the server's 10 s limit on a session
    /// idle in a transaction, which would end the transactions held open here.)
    #[test]
    fn on_postgresql_an_apply_runs_beside_a_delivery_and_other_writers_exclude_both() {
        use crate::store::pg::Lock;
        use crate::store::sql::params;
        use std::sync::mpsc;
        use std::time::Duration;
        let Some(cluster) = crate::store::pg_schema::test_pg::PgCluster::shared() else { return };
        let url = cluster.fresh_db();
        let db = std::path::Path::new(&url);
        let (mut s, sns) = store_at(db, 4);
        let a = cut(&mut s, 2);
        s.write(|tx| delivered(tx, a.id)).unwrap();
        let b = cut(&mut s, 2);
        // Runs `f` on a new connection in a transaction under `lock`, which it holds open until
        // the returned sender says; the receiver gets `f`'s answer once the transaction began.
        let hold = |lock: Lock, f: fn(&Tx<'_>) -> Result<u64>| {
            let mut conn = Store::open(db).unwrap();
            let (began_tx, began) = mpsc::channel();
            let (release_tx, release) = mpsc::channel::<()>();
            let done = std::thread::spawn(move || {
                conn.write_under(lock, |tx| {
                    began_tx.send(f(tx)?).unwrap();
                    let _ = release.recv();
                    Ok(())
                })
                .unwrap();
            });
            (began, release_tx, done)
        };
        const SOON: Duration = Duration::from_secs(5);

        // 1. A delivery of b, held open; an apply beside it.
        let b_id = b.id;
        let mut delivery = Store::open(db).unwrap();
        let (in_delivery_tx, in_delivery) = mpsc::channel();
        let (release_delivery, release) = mpsc::channel::<()>();
        let delivering = std::thread::spawn(move || {
            delivery
                .write_under(Lock::Upload, |tx| {
                    attempt_delivered(tx, b_id)?;
                    in_delivery_tx.send(()).unwrap();
                    let _ = release.recv();
                    Ok(())
                })
                .unwrap();
        });
        in_delivery.recv().unwrap();
        let (applied, release_apply, applying) = hold(Lock::Apply, |tx| apply_deliveries(tx, 7));
        let n = applied.recv_timeout(SOON).expect("the apply runs while the delivery is open");
        assert_eq!(n, 2, "batch a, delivered and committed; not b, whose delivery is not committed");
        release_apply.send(()).unwrap();
        applying.join().unwrap();

        // 2. Another writer waits for the open delivery.
        let (wrote, release_writer, writing) = hold(Lock::Writers, |_| Ok(0));
        assert!(wrote.recv_timeout(Duration::from_millis(500)).is_err(), "a plain writer waits for the open delivery");
        release_delivery.send(()).unwrap();
        delivering.join().unwrap();
        wrote.recv_timeout(SOON).expect("the plain writer runs once the delivery committed");

        // 3. While that writer is open, an apply waits for it.
        let (applied, release_apply, applying) = hold(Lock::Apply, |tx| apply_deliveries(tx, 8));
        assert!(applied.recv_timeout(Duration::from_millis(500)).is_err(), "an apply waits for the open writer");
        release_writer.send(()).unwrap();
        writing.join().unwrap();
        assert_eq!(applied.recv_timeout(SOON).expect("the apply runs once the writer committed"), 2, "b, now committed");
        release_apply.send(()).unwrap();
        applying.join().unwrap();

        // 4. Two deliveries (two uploaders), or two applies, run one at a time.
        for lock in [Lock::Upload, Lock::Apply] {
            let (first, release_first, first_done) = hold(lock, |_| Ok(0));
            first.recv_timeout(SOON).expect("the first runs");
            let (second, release_second, second_done) = hold(lock, |_| Ok(0));
            assert!(second.recv_timeout(Duration::from_millis(500)).is_err(), "{lock:?}: the second waits for the first");
            release_first.send(()).unwrap();
            first_done.join().unwrap();
            second.recv_timeout(SOON).expect("the second runs once the first committed");
            release_second.send(()).unwrap();
            second_done.join().unwrap();
        }

        assert_eq!(stored(&mut s, &sns[0]), ("delivered".into(), Some(a.id)));
        assert_eq!(stored(&mut s, &sns[3]), ("delivered".into(), Some(b.id)));
        let left: i64 = s.read(|tx| tx.one("SELECT count(*) FROM upload_queue", params![])).unwrap();
        assert_eq!(left, 0);
    }
}
