//! Upload batches: the canonical bytes of a request, stored before the first attempt, so every
//! retry sends exactly the same body. A record belongs to at most one open batch at a time.
//!
//! Batch life: `open` (sending) → `delivered`; or `split` into two halves (the store refused
//! the whole request, so nothing of it was billed); or `abandoned` (configuration error: its
//! records go back to `pending`). A batch whose answer was lost stays `open` and is resent
//! as it is — harmless, since the store keeps the first record per instance and period.

use super::records::{self, RecordRow};
use super::{Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension};

/// A stored batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: i64,
    pub body: Vec<u8>,
    pub records: i64,
    pub attempts: i64,
}

/// Joins stored record bodies (each already canonical JSON) into the canonical request body.
pub fn join_bodies(bodies: &[&[u8]]) -> Vec<u8> {
    let len: usize = bodies.iter().map(|b| b.len() + 1).sum::<usize>() + 20;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"{\"usage_records\":[");
    for (i, b) in bodies.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b);
    }
    out.extend_from_slice(b"]}");
    out
}

/// What a batch needs of a record: its serial and its canonical bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub metering_sn: String,
    pub body: Vec<u8>,
}

impl From<RecordRow> for Member {
    fn from(r: RecordRow) -> Member {
        Member { metering_sn: r.metering_sn, body: r.body }
    }
}

/// Up to `n` pending records, oldest first, as batch members (reads only serial and bytes).
pub fn next_pending(conn: &Connection, n: usize) -> Result<Vec<Member>> {
    let mut stmt =
        conn.prepare_cached("SELECT metering_sn, body FROM records WHERE state = 'pending' ORDER BY window_start, metering_sn LIMIT ?1")?;
    let rows = stmt.query_map([n as i64], |r| Ok(Member { metering_sn: r.get(0)?, body: r.get(1)? }))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Creates an open batch of `recs` (in that order) and marks them `sending`.
pub fn create(conn: &Connection, recs: &[Member], now_ns: i64) -> Result<Batch> {
    let bodies: Vec<&[u8]> = recs.iter().map(|r| r.body.as_slice()).collect();
    let body = join_bodies(&bodies);
    conn.prepare_cached("INSERT INTO batches (body, records, state, created_ns) VALUES (?1, ?2, 'open', ?3)")?.execute(params![
        body,
        recs.len() as i64,
        now_ns
    ])?;
    let id = conn.last_insert_rowid();
    let mut mark = conn.prepare_cached(
        "UPDATE records SET state = 'sending', batch_id = ?2, updated_ns = ?3 WHERE metering_sn = ?1 AND state IN ('pending', 'sending')",
    )?;
    for r in recs {
        if mark.execute(params![r.metering_sn, id, now_ns])? != 1 {
            return Err(StoreError::Invalid(format!("record {} is no longer waiting for upload", r.metering_sn)));
        }
    }
    Ok(Batch { id, body, records: recs.len() as i64, attempts: 0 })
}

/// Open batches, oldest first (left by a crash, a lost answer or an exhausted retry budget).
pub fn open(conn: &Connection) -> Result<Vec<Batch>> {
    let mut stmt = conn.prepare_cached("SELECT id, body, records, attempts FROM batches WHERE state = 'open' ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok(Batch { id: r.get(0)?, body: r.get(1)?, records: r.get(2)?, attempts: r.get(3)? }))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The records of a batch, in body order (batches are always built in (window, serial) order).
pub fn members(conn: &Connection, id: i64) -> Result<Vec<RecordRow>> {
    records::in_batch(conn, id)
}

/// Counts an attempt and its outcome text.
pub fn attempted(conn: &Connection, id: i64, error: Option<&str>) -> Result<()> {
    conn.prepare_cached("UPDATE batches SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1")?.execute(params![id, error])?;
    Ok(())
}

/// The store accepted the batch: every record in it is delivered.
pub fn delivered(conn: &Connection, id: i64, now_ns: i64) -> Result<()> {
    conn.prepare_cached("UPDATE batches SET state = 'delivered' WHERE id = ?1 AND state = 'open'")?.execute([id])?;
    conn.prepare_cached("UPDATE records SET state = 'delivered', updated_ns = ?2 WHERE batch_id = ?1 AND state = 'sending'")?
        .execute(params![id, now_ns])?;
    Ok(())
}

/// Replaces a refused batch by two halves (the store billed nothing of it).
pub fn split(conn: &Connection, id: i64, now_ns: i64) -> Result<(Batch, Batch)> {
    let recs = members(conn, id)?;
    if recs.len() < 2 {
        return Err(StoreError::Invalid(format!("batch {id} has {} record(s); cannot split", recs.len())));
    }
    conn.prepare_cached("UPDATE batches SET state = 'split' WHERE id = ?1")?.execute([id])?;
    let recs: Vec<Member> = recs.into_iter().map(Member::from).collect();
    let (a, b) = recs.split_at(recs.len() / 2);
    Ok((create(conn, a, now_ns)?, create(conn, b, now_ns)?))
}

/// Gives a batch up without billing (configuration error): its records are pending again.
pub fn abandon(conn: &Connection, id: i64, now_ns: i64) -> Result<()> {
    conn.prepare_cached("UPDATE batches SET state = 'abandoned' WHERE id = ?1 AND state = 'open'")?.execute([id])?;
    conn.prepare_cached(
        "UPDATE records SET state = 'pending', batch_id = NULL, updated_ns = ?2 WHERE batch_id = ?1 AND state = 'sending'",
    )?
    .execute(params![id, now_ns])?;
    Ok(())
}

/// Rejects every record of a (single-record) batch and logs the body that was sent.
pub fn reject(conn: &Connection, id: i64, code: &str, message: &str, now_ns: i64) -> Result<Vec<String>> {
    let batch: Vec<u8> = conn.prepare_cached("SELECT body FROM batches WHERE id = ?1")?.query_row([id], |r| r.get(0))?;
    let recs = records::in_batch(conn, id)?;
    conn.prepare_cached("UPDATE batches SET state = 'split' WHERE id = ?1 AND state = 'open'")?.execute([id])?;
    for r in &recs {
        reject_record(conn, &r.metering_sn, code, message, &batch, now_ns)?;
    }
    Ok(recs.into_iter().map(|r| r.metering_sn).collect())
}

/// Marks one record rejected and appends it to the rejected log.
/// A record that is no longer waiting (delivered meanwhile, e.g. by a concurrent uploader) is
/// left as it is.
pub fn reject_record(conn: &Connection, sn: &str, code: &str, message: &str, body: &[u8], now_ns: i64) -> Result<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE records SET state = 'rejected', updated_ns = ?2 WHERE metering_sn = ?1 AND state IN ('pending', 'sending')",
        )?
        .execute(params![sn, now_ns])?;
    if changed == 0 {
        return Ok(());
    }
    conn.prepare_cached("INSERT INTO rejected (metering_sn, code, message, at_ns, body) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![sn, code, message, now_ns, body])?;
    Ok(())
}

/// Puts a rejected record back to `pending` (same serial, same bytes) after its cause is fixed.
pub fn requeue(conn: &Connection, sn: &str, now_ns: i64) -> Result<()> {
    let state: Option<String> =
        conn.prepare_cached("SELECT state FROM records WHERE metering_sn = ?1")?.query_row([sn], |r| r.get(0)).optional()?;
    match state.as_deref() {
        None => return Err(StoreError::Invalid(format!("no record has metering_sn {sn:?}; see `meterd rejected`"))),
        Some("rejected") => {}
        Some(s) => return Err(StoreError::Invalid(format!("record {sn} is {s}, not rejected; only rejected records can be requeued"))),
    }
    conn.prepare_cached("UPDATE records SET state = 'pending', batch_id = NULL, updated_ns = ?2 WHERE metering_sn = ?1")?
        .execute(params![sn, now_ns])?;
    conn.prepare_cached("UPDATE rejected SET requeued_ns = ?2 WHERE metering_sn = ?1 AND requeued_ns IS NULL")?
        .execute(params![sn, now_ns])?;
    Ok(())
}

/// The rejected log, newest first.
pub fn rejected_log(conn: &Connection) -> Result<Vec<records::RejectedRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT j.metering_sn, i.instance_id, j.code, j.message, j.at_ns, j.body, j.requeued_ns FROM rejected j
         JOIN records r ON r.metering_sn = j.metering_sn JOIN instances i ON i.ref = r.instance_ref ORDER BY j.id DESC",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(records::RejectedRow {
            metering_sn: r.get(0)?,
            instance_id: r.get(1)?,
            code: r.get(2)?,
            message: r.get(3)?,
            at_ns: r.get(4)?,
            body: String::from_utf8_lossy(&r.get::<_, Vec<u8>>(5)?).into_owned(),
            requeued: r.get::<_, Option<i64>>(6)?.is_some(),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
