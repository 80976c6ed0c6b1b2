//! Views shared by the command line, the HTTP server and the demo: the preview as a
//! fixed-width table, and an instance as JSON. They live below `cli` and `server` so that
//! library code never imports `cli` (issue 16, item 3; `tests/layering.rs` checks it). Pure:
//! data in, text or JSON out.

use crate::model::Timestamp;
use crate::preview::Preview;
use crate::store::lifecycle;
use crate::store::InstanceRow;
use std::fmt::Write;

/// A fixed-width table for terminals.
pub fn preview_table(p: &Preview) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<38} {:<8} {:<20} {:<20} {:<9} {:>16} {:>12} {:>16} {:<32}",
        "INSTANCE", "PLAN", "BEGIN (UTC)", "END (UTC)", "STATE", "USAGE", "CHARGE", "DRAWN", "METERING_SN"
    );
    for r in &p.rows {
        let _ = writeln!(
            s,
            "{:<38} {:<8} {:<20} {:<20} {:<9} {:>16} {:>12} {:>16} {:<32}",
            r.instance_id,
            r.plan,
            r.begin_time.to_string(),
            r.end_time.to_string(),
            r.state,
            r.usage.to_string(),
            r.charge_2dp.to_string(),
            r.drawn.map_or_else(|| "-".to_string(), |d| d.to_string()),
            r.metering_sn.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(s);
    for t in &p.instances {
        let mut extra = String::new();
        if !t.unbillable.is_zero() {
            let _ = write!(extra, "  unbillable {}", t.unbillable);
        }
        if !t.over_quota.is_zero() {
            let _ = write!(extra, "  over_quota {}", t.over_quota);
        }
        let _ = writeln!(
            s,
            "total {:<38} {:<8} usage {:>14} {:<6} charge {:>10} {}{extra}",
            t.instance_id,
            t.plan,
            t.usage.to_string(),
            t.unit,
            t.charge_2dp.to_string(),
            t.currency
        );
    }
    for t in &p.totals {
        let _ = writeln!(s, "grand total: {} {}", t.charge_2dp, t.currency);
    }
    s
}

/// `released`, `frozen` or `active` at `now`.
pub fn instance_state(r: &InstanceRow, h: &lifecycle::History, now: Timestamp) -> &'static str {
    if r.release.is_some_and(|t| t <= now) {
        "released"
    } else {
        h.state_at(now)
    }
}

/// The JSON form of an instance used by the CLI and HTTP API.
pub fn instance_json(r: &InstanceRow, h: &lifecycle::History, now: Timestamp) -> serde_json::Value {
    let history: Vec<_> = h.0.iter().map(|(at, s)| serde_json::json!({"status": s.as_str(), "time": at})).collect();
    serde_json::json!({
        "instance_id": r.instance_id,
        "plan": r.plan,
        "state": instance_state(r, h, now),
        "status_history": history,
        "start": r.start,
        "release": r.release,
        "sealed_until": crate::model::Timestamp::from_secs(r.sealed_until),
    })
}
