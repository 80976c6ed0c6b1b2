//! What the mock store billed: one JSON line per billed record (the record's fields plus
//! `billed_at`), appended and flushed to the ledger file before the request is answered.
//!
//! Duplicates are answered with success but not billed again, like the real store, which
//! keeps the first record: a record is a duplicate when its (`instance_id`, `begin_time`,
//! `end_time`) or its `metering_sn` was billed before, in an earlier request or earlier in the
//! same one. An existing ledger file is read at start so a restarted mock still knows what it
//! billed.

use crate::model::UsageRecord;
use serde::Serialize;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::Path;

/// One billed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    #[serde(flatten)]
    pub record: UsageRecord,
    /// When the mock billed it, RFC 3339 UTC from the real clock.
    pub billed_at: String,
}

/// How one request's records were counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Billed {
    pub billed: u64,
    pub duplicates: u64,
}

/// The billed records, their dedupe keys and the optional file.
#[derive(Debug, Default)]
pub struct Ledger {
    file: Option<File>,
    periods: HashSet<(String, String, String)>,
    serials: HashSet<String>,
    entries: Vec<LedgerEntry>,
}

fn period_key(r: &UsageRecord) -> (String, String, String) {
    (r.instance_id.clone(), r.begin_time.clone(), r.end_time.clone())
}

impl Ledger {
    /// An in-memory ledger, or one appending to `path` after reading what it already holds.
    pub fn open(path: Option<&Path>) -> io::Result<Ledger> {
        let mut ledger = Ledger::default();
        let Some(path) = path else { return Ok(ledger) };
        if path.exists() {
            for entry in read_entries(path)? {
                ledger.remember(entry);
            }
        }
        ledger.file = Some(OpenOptions::new().create(true).append(true).open(path)?);
        Ok(ledger)
    }

    fn remember(&mut self, entry: LedgerEntry) {
        self.periods.insert(period_key(&entry.record));
        self.serials.insert(entry.record.metering_sn.clone());
        self.entries.push(entry);
    }

    /// Bills the records that are not duplicates. A record's keys are remembered as soon as it
    /// is billed (so a later copy in the same request is a duplicate); the new lines are then
    /// written and flushed in one go, and on an I/O error the keys this request added are
    /// forgotten again, so nothing counts as billed in memory.
    pub fn bill(&mut self, records: Vec<UsageRecord>, billed_at: &str) -> io::Result<Billed> {
        let mut fresh: Vec<LedgerEntry> = Vec::new();
        let mut outcome = Billed::default();
        for record in records {
            let period = period_key(&record);
            if self.periods.contains(&period) || self.serials.contains(&record.metering_sn) {
                outcome.duplicates += 1;
            } else {
                self.periods.insert(period);
                self.serials.insert(record.metering_sn.clone());
                fresh.push(LedgerEntry { record, billed_at: billed_at.to_string() });
            }
        }
        if let Err(e) = self.append(&fresh) {
            for entry in &fresh {
                self.periods.remove(&period_key(&entry.record));
                self.serials.remove(&entry.record.metering_sn);
            }
            return Err(e);
        }
        outcome.billed = fresh.len() as u64;
        self.entries.extend(fresh);
        Ok(outcome)
    }

    /// Writes and flushes `entries` as JSON lines, in one write, when there is a file.
    fn append(&mut self, entries: &[LedgerEntry]) -> io::Result<()> {
        let Some(file) = &mut self.file else { return Ok(()) };
        let mut lines = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut lines, e)?;
            lines.push(b'\n');
        }
        file.write_all(&lines)?;
        file.flush()
    }

    pub fn entries(&self) -> &[LedgerEntry] {
        &self.entries
    }
}

/// Reads a ledger file back (also used by tests and tools to check what was billed).
pub fn read_entries(path: &Path) -> io::Result<Vec<LedgerEntry>> {
    let mut out = Vec::new();
    for (n, line) in io::BufReader::new(File::open(path)?).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, format!("ledger {} line {}: {e}", path.display(), n + 1));
        let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        let billed_at = match v.remove("billed_at") {
            Some(serde_json::Value::String(s)) => s,
            _ => return Err(bad("no billed_at".into())),
        };
        let record: UsageRecord = serde_json::from_value(serde_json::Value::Object(v)).map_err(|e| bad(e.to_string()))?;
        out.push(LedgerEntry { record, billed_at });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(instance: &str, begin: &str, sn: &str) -> UsageRecord {
        UsageRecord {
            begin_time: begin.into(),
            end_time: "20220809T090000Z".into(),
            instance_id: instance.into(),
            metering_sn: sn.into(),
            record_time: "20220809T091000Z".into(),
            relate_pkg_instance: None,
            usage_value: "1".into(),
        }
    }

    #[test]
    fn bills_once_by_period_or_serial_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let mut l = Ledger::open(Some(&path)).unwrap();
        let a = rec("i", "20220809T080000Z", "sn-a");
        let same_period = rec("i", "20220809T080000Z", "sn-other");
        let same_sn = rec("j", "20220809T083000Z", "sn-a");
        let b = rec("i", "20220809T081500Z", "sn-b");
        assert_eq!(l.bill(vec![a.clone(), same_period, a.clone()], "t1").unwrap(), Billed { billed: 1, duplicates: 2 });
        assert_eq!(l.bill(vec![same_sn, b.clone()], "t2").unwrap(), Billed { billed: 1, duplicates: 1 });
        drop(l);
        let on_disk = read_entries(&path).unwrap();
        assert_eq!(on_disk.iter().map(|e| (&e.record, e.billed_at.as_str())).collect::<Vec<_>>(), [(&a, "t1"), (&b, "t2")]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().next().unwrap().ends_with(r#""usage_value":"1","billed_at":"t1"}"#), "{text}");
        let mut reopened = Ledger::open(Some(&path)).unwrap();
        assert_eq!(reopened.bill(vec![a], "t3").unwrap(), Billed { billed: 0, duplicates: 1 });
        assert_eq!(reopened.entries().len(), 2);
    }

    #[test]
    fn refuses_a_corrupt_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        std::fs::write(&path, "{\"not\":\"an entry\"}\n").unwrap();
        assert!(Ledger::open(Some(&path)).unwrap_err().to_string().contains("line 1"));
    }
}
