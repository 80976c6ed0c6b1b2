//! The dead-letter log: records the cloud store refused (or that expired before they could be
//! delivered), each with the store's code and message and the exact body that was sent, until
//! the seller fixes the cause and requeues it (`meterd rejected`, `meterd requeue`).
//!
//! Not to be confused with events refused at ingest (the collector's `rejected` verdicts, never
//! stored): those are the sender's to fix and resend; these are sealed records the store
//! would not bill. The table keeps its first name, `rejected` (migrations are append-only),
//! and a refused record's state is `rejected` (see [`super::records::RecordState`]).
//!
//! Every statement runs on SQLite and PostgreSQL alike (see [`super::sql`]).

use super::records;
use super::sql::{params, Tx};
use super::{Result, StoreError};

/// One dead letter: a record the cloud store refused (or that expired unsent), with the
/// store's `code` and `message`, when (`at_ns`, UTC nanoseconds), the `body` that was sent
/// (UTF-8, lossily) and whether it was requeued since.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadLetter {
    pub metering_sn: String,
    pub instance_id: String,
    pub code: String,
    pub message: String,
    pub at_ns: i64,
    pub body: String,
    pub requeued: bool,
}

/// The store refused batch `id` (a single record, after bisection): marks each of its records
/// `rejected` and adds it to the log with the body that was sent; returns their serials.
pub fn refuse_batch(tx: &Tx<'_>, id: i64, code: &str, message: &str, now_ns: i64) -> Result<Vec<String>> {
    let batch: Vec<u8> = tx.one("SELECT body FROM batches WHERE id = ?1", params![id])?;
    let recs = records::in_batch(tx, id)?;
    tx.execute("UPDATE batches SET state = 'split' WHERE id = ?1 AND state = 'open'", params![id])?;
    for r in &recs {
        refuse_record(tx, &r.metering_sn, code, message, &batch, now_ns)?;
    }
    Ok(recs.into_iter().map(|r| r.metering_sn).collect())
}

/// The effective state, queue key and batch of the record `sn`, if there is one.
fn record_state(tx: &Tx<'_>, sn: &str) -> Result<Option<(String, i64, Option<i64>)>> {
    let sql = format!(
        "SELECT {}, r.window_start, (SELECT q.batch_id FROM upload_queue q WHERE q.window_start = r.window_start AND q.metering_sn = r.metering_sn)
         FROM records r WHERE r.metering_sn = ?1",
        records::state_sql(tx)
    );
    tx.query_opt(&sql, params![sn], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
}

/// Marks one record `rejected` and adds it to the log (`body`: what was, or would have been, sent).
/// A record that is no longer waiting (delivered meanwhile, e.g. by a concurrent uploader) is
/// left as it is.
pub fn refuse_record(tx: &Tx<'_>, sn: &str, code: &str, message: &str, body: &[u8], now_ns: i64) -> Result<()> {
    let Some((state, window_start, batch)) = record_state(tx, sn)? else { return Ok(()) };
    if state != "pending" && state != "sending" {
        return Ok(());
    }
    // A record rejected out of a batch keeps naming it, as a delivered one does.
    tx.execute(
        "UPDATE records SET state = 'rejected', batch_id = coalesce(?3, batch_id), updated_ns = ?2 WHERE metering_sn = ?1 AND state = 'pending'",
        params![sn, now_ns, batch],
    )?;
    tx.execute("DELETE FROM upload_queue WHERE window_start = ?1 AND metering_sn = ?2", params![window_start, sn])?;
    tx.execute(
        "INSERT INTO rejected (metering_sn, code, message, at_ns, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![sn, code, message, now_ns, body],
    )?;
    Ok(())
}

/// Puts a rejected record back to `pending` (same serial, same bytes) after its cause is fixed.
pub fn requeue(tx: &Tx<'_>, sn: &str, now_ns: i64) -> Result<()> {
    let (window_start, state) = match record_state(tx, sn)? {
        None => return Err(StoreError::NotFound(format!("no record has metering_sn {sn:?}; see `meterd rejected`"))),
        Some((s, w, _)) => (w, s),
    };
    if state != "rejected" {
        return Err(StoreError::Invalid(format!("record {sn} is {state}, not rejected; only rejected records can be requeued")));
    }
    tx.execute("UPDATE records SET state = 'pending', batch_id = NULL, updated_ns = ?2 WHERE metering_sn = ?1", params![sn, now_ns])?;
    tx.execute("INSERT INTO upload_queue (window_start, metering_sn) VALUES (?1, ?2)", params![window_start, sn])?;
    tx.execute("UPDATE rejected SET requeued_ns = ?2 WHERE metering_sn = ?1 AND requeued_ns IS NULL", params![sn, now_ns])?;
    Ok(())
}

/// The log, newest first (`meterd rejected`).
pub fn list(tx: &Tx<'_>) -> Result<Vec<DeadLetter>> {
    tx.query_map(
        "SELECT j.metering_sn, i.instance_id, j.code, j.message, j.at_ns, j.body, j.requeued_ns FROM rejected j
         JOIN records r ON r.metering_sn = j.metering_sn JOIN instances i ON i.ref = r.instance_ref ORDER BY j.id DESC",
        params![],
        |r| {
            Ok(DeadLetter {
                metering_sn: r.get(0)?,
                instance_id: r.get(1)?,
                code: r.get(2)?,
                message: r.get(3)?,
                at_ns: r.get(4)?,
                body: String::from_utf8_lossy(&r.get::<Vec<u8>>(5)?).into_owned(),
                requeued: r.get::<Option<i64>>(6)?.is_some(),
            })
        },
    )
}
