//! Validation of one usage record exactly as the API doc's field table describes it.
//!
//! A record arrives as raw JSON members (duplicates kept, values unparsed) so the mock can see
//! what a typed parse would hide: duplicate keys, `null`s, and a `usage_value` number's exact
//! text (`1e3` must be refused, and `f64` would turn it into `1000`). Codes:
//! - unknown, duplicate or missing field, wrong JSON type, empty required string → `MKT.0101`;
//! - too long, time not `yyyyMMdd'T'HHmmss'Z'`, `usage_value` not a plain decimal > 0 with ≤ 4
//!   decimals and ≤ 8 integer digits (Double(12,4)) → `MKT.0100`;
//! - `begin_time` ≥ `end_time` → `MKT.9002`;
//! - `begin_time` more than 21 days before the mock's now → `MKT.9004`;
//! - instance not in the known list (when one is configured) → `MKT.9001`;
//! - with a package list: `instance_id` naming a package instance → `MKT.9001` (the store
//!   knows no pay-per-use instance by that id); a record of an instance that has packages
//!   without `relate_pkg_instance`, or naming a package that is not one of that instance's →
//!   `MKT.0101` (a missing or illegal parameter: the record itself is malformed for a
//!   stop-before-excess product, so meterd bisects it out and rejects it alone).

use super::codes::{Code, Rejection};
use crate::model::{Timestamp, UsageRecord};
use chrono::format::{Item, Parsed, StrftimeItems};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashSet;
use std::fmt;

/// How far back a record may begin (the store's 21-day rule).
pub const MAX_BEGIN_AGE_SECS: i64 = 21 * 86_400;

/// (name, required, max length in characters).
const FIELDS: [(&str, bool, usize); 7] = [
    ("begin_time", true, 17),
    ("end_time", true, 17),
    ("instance_id", true, 64),
    ("metering_sn", true, 64),
    ("record_time", true, 17),
    ("relate_pkg_instance", false, 64),
    ("usage_value", true, 20),
];

/// A JSON object's members in order, duplicates kept, values unparsed.
pub struct Members(pub Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    out.push(entry);
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// What records are checked against.
pub struct Context<'a> {
    /// The mock's notion of now for the 21-day rule (`--now`, else the real clock).
    pub now: Timestamp,
    /// Known instance ids; `None` accepts any.
    pub instances: Option<&'a HashSet<String>>,
    /// Package instances per instance; `None`: no package checks.
    pub packages: Option<&'a Packages>,
}

/// Package instance ids by the instance they were bought for.
pub type Packages = std::collections::HashMap<String, HashSet<String>>;

/// Checks record number `index` (0-based) and returns it as a [`UsageRecord`]; a numeric
/// `usage_value` is kept as its exact JSON text.
pub fn check_record(index: usize, raw: &RawValue, ctx: &Context) -> Result<UsageRecord, Rejection> {
    let fail = |code, msg: String| Rejection::new(code, format!("usage_records[{index}]: {msg}"));
    let members: Members = serde_json::from_str(raw.get()).map_err(|_| fail(Code::InvalidParameter, "is not a JSON object".into()))?;
    let mut values: [Option<String>; 7] = Default::default();
    for (name, value) in &members.0 {
        let slot =
            FIELDS.iter().position(|(n, _, _)| n == name).ok_or_else(|| fail(Code::InvalidParameter, format!("unknown field {name:?}")))?;
        if values[slot].is_some() {
            return Err(fail(Code::InvalidParameter, format!("field {name:?} appears twice")));
        }
        let text = field_text(name, value).ok_or_else(|| fail(Code::InvalidParameter, format!("{name} must be a string")))?;
        values[slot] = Some(text);
    }
    for (slot, (name, required, max)) in FIELDS.iter().enumerate() {
        match &values[slot] {
            None if *required => return Err(fail(Code::InvalidParameter, format!("missing field {name:?}"))),
            Some(v) if v.is_empty() => return Err(fail(Code::InvalidParameter, format!("{name} is empty"))),
            Some(v) if v.chars().count() > *max => return Err(fail(Code::BadValue, format!("{name} is longer than {max} characters"))),
            _ => {}
        }
    }
    let [begin_time, end_time, instance_id, metering_sn, record_time, relate_pkg_instance, usage_value] = values;
    let record = UsageRecord {
        begin_time: begin_time.unwrap_or_default(),
        end_time: end_time.unwrap_or_default(),
        instance_id: instance_id.unwrap_or_default(),
        metering_sn: metering_sn.unwrap_or_default(),
        record_time: record_time.unwrap_or_default(),
        relate_pkg_instance,
        usage_value: usage_value.unwrap_or_default(),
    };
    check_semantics(&record, ctx).map_err(|(code, msg)| fail(code, msg))?;
    Ok(record)
}

/// A string member's value; for `usage_value` also a JSON number's exact text.
fn field_text(name: &str, value: &RawValue) -> Option<String> {
    let raw = value.get();
    if raw.starts_with('"') {
        return serde_json::from_str::<String>(raw).ok();
    }
    let is_number = raw.starts_with(|c: char| c == '-' || c.is_ascii_digit());
    (name == "usage_value" && is_number).then(|| raw.to_string())
}

fn check_semantics(r: &UsageRecord, ctx: &Context) -> Result<(), (Code, String)> {
    let begin = record_time(&r.begin_time).map_err(|m| (Code::BadValue, format!("begin_time {m}")))?;
    let end = record_time(&r.end_time).map_err(|m| (Code::BadValue, format!("end_time {m}")))?;
    record_time(&r.record_time).map_err(|m| (Code::BadValue, format!("record_time {m}")))?;
    usage_value(&r.usage_value).map_err(|m| (Code::BadValue, format!("usage_value {:?} {m}", r.usage_value)))?;
    if begin >= end {
        return Err((Code::InvalidEntries, format!("begin_time {} is not before end_time {}", r.begin_time, r.end_time)));
    }
    if begin < ctx.now.add_secs(-MAX_BEGIN_AGE_SECS) {
        return Err((Code::BeginOutOfRange, format!("begin_time {} is more than 21 days before {}", r.begin_time, ctx.now)));
    }
    if ctx.instances.is_some_and(|known| !known.contains(&r.instance_id)) {
        return Err((Code::InstanceNotFound, format!("instance_id {:?} not found", r.instance_id)));
    }
    if let Some(pkgs) = ctx.packages {
        check_package(r, pkgs)?;
    }
    Ok(())
}

fn check_package(r: &UsageRecord, pkgs: &Packages) -> Result<(), (Code, String)> {
    if pkgs.values().any(|set| set.contains(&r.instance_id)) {
        return Err((Code::InstanceNotFound, format!("instance_id {:?} is a package instance, not a pay-per-use instance", r.instance_id)));
    }
    let Some(own) = pkgs.get(&r.instance_id) else { return Ok(()) };
    match &r.relate_pkg_instance {
        None => Err((Code::InvalidParameter, format!("instance {:?} has packages; relate_pkg_instance is required", r.instance_id))),
        Some(p) if !own.contains(p) => {
            Err((Code::InvalidParameter, format!("relate_pkg_instance {p:?} is not a package of instance {:?}", r.instance_id)))
        }
        Some(_) => Ok(()),
    }
}

/// Parses `yyyyMMdd'T'HHmmss'Z'` strictly (exactly 16 characters, a real calendar time).
pub fn record_time(text: &str) -> Result<Timestamp, String> {
    let b = text.as_bytes();
    let shaped = b.len() == 16 && b[8] == b'T' && b[15] == b'Z' && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
    let bad = || format!("{text:?} is not a UTC time in the form yyyyMMddTHHmmssZ");
    if !shaped {
        return Err(bad());
    }
    // `NaiveDateTime::parse_from_str` with the format's items parsed once, not per field.
    static ITEMS: std::sync::OnceLock<Vec<Item<'static>>> = std::sync::OnceLock::new();
    let items = ITEMS.get_or_init(|| StrftimeItems::new("%Y%m%dT%H%M%SZ").collect());
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, text, items.iter()).map_err(|_| bad())?;
    let dt = parsed.to_naive_datetime_with_offset(0).map_err(|_| bad())?;
    Timestamp::from_datetime(dt.and_utc()).ok_or_else(bad)
}

/// A plain decimal > 0 with at most 4 decimals and at most 8 integer digits (12 in all).
pub fn usage_value(text: &str) -> Result<(), &'static str> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (text.contains('.') && frac.is_empty()) {
        return Err("is not a plain decimal (digits with an optional '.' fraction; no sign or exponent)");
    }
    if frac.len() > 4 {
        return Err("has more than 4 decimal places");
    }
    if int.trim_start_matches('0').len() > 8 {
        return Err("has more than 12 digits (8 before the point)");
    }
    if !text.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        return Err("must be greater than 0");
    }
    Ok(())
}

#[cfg(test)]
#[path = "fields_tests.rs"]
mod tests;
