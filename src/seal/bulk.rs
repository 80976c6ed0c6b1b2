//! Set-based reads and writes of a seal transaction on PostgreSQL (issue 13, "Performance").
//!
//! On SQLite every store call of a seal is a function call into the same process, and
//! [`super::seal_instance`] reads and writes per instance and per record as it always has. On
//! PostgreSQL each statement is a round trip to the server (on a small machine, a switch from
//! client to server and back), and a seal used to send about five per instance and two per
//! record. Here one chunk of instances (one write transaction of [`super::seal_counting`])
//! instead costs a fixed handful of statements, whatever its number of windows:
//!
//! - [`Prefetched::load`], after the transaction took the writers' lock: the chunk's instance
//!   rows (re-read under the lock, as before: another sealer may have moved a cursor), their
//!   status histories, which of them have packages (those few load their packages one by one,
//!   as on SQLite), and every window each instance will seal — `[sealed_until, until)` per
//!   instance, passed as arrays and joined with `unnest`;
//! - the decisions themselves run unchanged over what was read;
//! - [`Prefetched::flush`], before the commit: every record of the chunk in one
//!   `INSERT … SELECT FROM unnest(…)` whose `RETURNING` feeds the `upload_queue` insert of the
//!   pending ones (one statement for both tables), and every cursor and carry in one
//!   `UPDATE … FROM unnest(…)`.
//!
//! Nothing about the transaction changes: the same rows are written in the same transaction,
//! under the same lock and the same fence check (made by `Store::write` before any of this); a
//! second record for one instance and period still violates the records' UNIQUE key and
//! rolls the whole chunk back. Level plans, point plans and stop-before-excess packages read
//! what they need themselves (their extra reads are per window or per event and rarer); their
//! records still go through [`Prefetched::flush`] when sealed from here.

use crate::model::Timestamp;
use crate::store::lifecycle::{History, Status};
use crate::store::records::{NewRecord, RecordState};
use crate::store::sql::Tx;
use crate::store::{instances, InstanceRow, StoreError, WindowRow};
use rust_decimal::Decimal;
use std::collections::{HashMap, HashSet};

/// What one chunk's seal read in bulk, and the writes it holds back until [`Prefetched::flush`].
#[derive(Default)]
pub(super) struct Prefetched {
    /// Instance rows by instance id, as stored under the writers' lock.
    instances: HashMap<String, InstanceRow>,
    /// Status histories by instance key (instances without one have no entry).
    histories: HashMap<i64, History>,
    /// Instances that have at least one package.
    with_packages: HashSet<i64>,
    /// Windows to seal by instance key, in time order.
    windows: HashMap<i64, Vec<WindowRow>>,
    /// Records sealed so far in this transaction, not yet written.
    records: Vec<NewRecord>,
    /// (instance key, new cursor, carry) sealed so far, not yet written.
    cursors: Vec<(i64, i64, Decimal)>,
}

impl Prefetched {
    /// Reads the rows of `ids` and what sealing them needs: `until(row)` is the boundary up to
    /// which an instance will be sealed (`None`: it will not be). One statement each for
    /// instances, histories, packages and windows. PostgreSQL only (arrays).
    pub fn load(tx: &Tx<'_>, ids: &[String], until: impl Fn(&InstanceRow) -> Option<i64>) -> Result<Prefetched, StoreError> {
        let mut pre = Prefetched::default();
        let Some(mut pg) = tx.pg() else { return Err(StoreError::Internal("the bulk seal reads run on PostgreSQL only".into())) };
        let rows = pg.query_typed(
            &format!("SELECT {} FROM instances WHERE instance_id = ANY($1)", instances::COLUMNS),
            &[&ids],
            instances::from_row,
        )?;
        let mut keys = Vec::new();
        let (mut wk, mut wfrom, mut wto) = (Vec::new(), Vec::new(), Vec::new());
        for row in rows {
            if let Some(to) = until(&row) {
                if row.sealed_until < to {
                    wk.push(row.key);
                    wfrom.push(row.sealed_until);
                    wto.push(to);
                }
            }
            keys.push(row.key);
            pre.instances.insert(row.instance_id.clone(), row);
        }
        let history = pg.query_typed(
            "SELECT instance_ref, at_ns, status FROM instance_status WHERE instance_ref = ANY($1) ORDER BY instance_ref, at_ns",
            &[&keys],
            |r| {
                let s: String = r.get(2)?;
                let status = Status::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("instance status {s:?}")))?;
                Ok((r.get::<i64>(0)?, Timestamp(r.get(1)?), status))
            },
        )?;
        for (key, at, status) in history {
            pre.histories.entry(key).or_insert_with(|| History(Vec::new())).0.push((at, status));
        }
        pre.with_packages = pg
            .query_typed("SELECT DISTINCT instance_ref FROM packages WHERE instance_ref = ANY($1)", &[&keys], |r| r.get::<i64>(0))?
            .into_iter()
            .collect();
        let windows = pg.query_typed(
            "SELECT w.instance_ref, w.start_s, w.usage, w.events
               FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS c(k, f, t)
               JOIN windows w ON w.instance_ref = c.k AND w.start_s >= c.f AND w.start_s < c.t
              ORDER BY w.instance_ref, w.start_s",
            &[&wk, &wfrom, &wto],
            |r| Ok(WindowRow { instance_key: r.get(0)?, start: r.get(1)?, usage: r.get(2)?, events: r.get::<i64>(3)? as u64 }),
        )?;
        for w in windows {
            pre.windows.entry(w.instance_key).or_default().push(w);
        }
        Ok(pre)
    }

    /// The stored row of instance `id` (`None`: not registered any more).
    pub fn instance(&self, id: &str) -> Option<InstanceRow> {
        self.instances.get(id).cloned()
    }

    /// The status history of instance `key` (empty when it has none).
    pub fn take_history(&mut self, key: i64) -> History {
        self.histories.remove(&key).unwrap_or(History(Vec::new()))
    }

    /// Whether instance `key` has packages (their carries are then loaded one by one).
    pub fn has_packages(&self, key: i64) -> bool {
        self.with_packages.contains(&key)
    }

    /// The windows of instance `key` from its cursor to its `until`, in time order.
    pub fn take_windows(&mut self, key: i64) -> Vec<WindowRow> {
        self.windows.remove(&key).unwrap_or_default()
    }

    /// Holds a sealed record back until [`Prefetched::flush`].
    pub fn push_record(&mut self, rec: NewRecord) {
        self.records.push(rec);
    }

    /// Holds a cursor move (and the carry left) back until [`Prefetched::flush`].
    pub fn push_cursor(&mut self, key: i64, sealed_until: i64, carry: Decimal) {
        self.cursors.push((key, sealed_until, carry));
    }

    /// Writes the held records (with the queue rows of the pending ones) and cursors: one
    /// statement each, whatever their number. Call inside the transaction that read them.
    pub fn flush(&mut self, tx: &Tx<'_>, now_ns: i64) -> Result<(), StoreError> {
        let Some(mut pg) = tx.pg() else { return Err(StoreError::Internal("the bulk seal writes run on PostgreSQL only".into())) };
        let records = std::mem::take(&mut self.records);
        if !records.is_empty() {
            let mut cols = RecordColumns::default();
            for r in &records {
                cols.push(r)?;
            }
            let pending = records.iter().filter(|r| r.state == RecordState::Pending).count() as u64;
            let queued = pg.execute_typed(
                "WITH r AS (
                   INSERT INTO records (metering_sn, instance_ref, window_start, begin_s, end_s, usage_value, window_usage, carry_in,
                                        carry_out, record_time_s, relate_pkg, body, state, updated_ns)
                   SELECT sn, k, ws, b, e, v, wu, ci, co, rt, rp, body, st, $14
                     FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::numeric[], $7::numeric[],
                                 $8::numeric[], $9::numeric[], $10::bigint[], $11::text[], $12::bytea[], $13::text[])
                          AS u(sn, k, ws, b, e, v, wu, ci, co, rt, rp, body, st)
                   RETURNING window_start, metering_sn, state, body)
                 INSERT INTO upload_queue (window_start, metering_sn, body)
                   SELECT window_start, metering_sn, body FROM r WHERE state = 'pending'",
                &[
                    &cols.sn,
                    &cols.key,
                    &cols.window_start,
                    &cols.begin,
                    &cols.end,
                    &cols.value,
                    &cols.window_usage,
                    &cols.carry_in,
                    &cols.carry_out,
                    &cols.record_time,
                    &cols.relate_pkg,
                    &cols.body,
                    &cols.state,
                    &now_ns,
                ],
            )?;
            if queued != pending {
                return Err(StoreError::Corrupt(format!("queued {queued} record(s) for upload of {pending} pending")));
            }
        }
        let cursors = std::mem::take(&mut self.cursors);
        if !cursors.is_empty() {
            let keys: Vec<i64> = cursors.iter().map(|c| c.0).collect();
            let until: Vec<i64> = cursors.iter().map(|c| c.1).collect();
            let carry: Vec<Decimal> = cursors.iter().map(|c| c.2.normalize()).collect();
            // Never back, as `instances::set_sealed`.
            pg.execute_typed(
                "UPDATE instances i SET sealed_until = CASE WHEN i.sealed_until > u.s THEN i.sealed_until ELSE u.s END, carry = u.c
                   FROM unnest($1::bigint[], $2::bigint[], $3::numeric[]) AS u(k, s, c) WHERE i.ref = u.k",
                &[&keys, &until, &carry],
            )?;
        }
        Ok(())
    }
}

/// The columns of many records, as the arrays of the bulk insert (values as
/// `records::insert` binds them: decimals normalised, the value as its text says).
#[derive(Default)]
struct RecordColumns {
    sn: Vec<String>,
    key: Vec<i64>,
    window_start: Vec<i64>,
    begin: Vec<i64>,
    end: Vec<i64>,
    value: Vec<Decimal>,
    window_usage: Vec<Decimal>,
    carry_in: Vec<Decimal>,
    carry_out: Vec<Decimal>,
    record_time: Vec<i64>,
    relate_pkg: Vec<Option<String>>,
    body: Vec<Vec<u8>>,
    state: Vec<&'static str>,
}

impl RecordColumns {
    fn push(&mut self, r: &NewRecord) -> Result<(), StoreError> {
        let body = crate::upload::body::record_bytes(&r.record);
        let value: Decimal = r.record.usage_value.parse().map_err(|_| {
            StoreError::Internal(format!("record {}: usage value {:?} is not a decimal", r.record.metering_sn, r.record.usage_value))
        })?;
        self.sn.push(r.record.metering_sn.clone());
        self.key.push(r.instance_key);
        self.window_start.push(r.window_start);
        self.begin.push(r.begin);
        self.end.push(r.end);
        self.value.push(value);
        self.window_usage.push(r.window_usage.normalize());
        self.carry_in.push(r.carry_in.normalize());
        self.carry_out.push(r.carry_out.normalize());
        self.record_time.push(r.record_time);
        self.relate_pkg.push(r.record.relate_pkg_instance.clone());
        self.body.push(body);
        self.state.push(r.state.as_str());
        Ok(())
    }
}
