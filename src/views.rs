//! Views shared by the command line, the HTTP server and the demo: the preview as a table
//! whose columns fit their content, and an instance as JSON. They live below `cli` and `server` so that
//! library code never imports `cli` (issue 16, item 3; `tests/layering.rs` checks it). Pure:
//! data in, text or JSON out.

use crate::model::Timestamp;
use crate::preview::Preview;
use crate::store::lifecycle;
use crate::store::InstanceRow;
use std::fmt::Write;

/// A column's alignment: text left, numbers right.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// The preview's columns: header and alignment.
const COLUMNS: [(&str, Align); 9] = [
    ("INSTANCE", Align::Left),
    ("PLAN", Align::Left),
    ("BEGIN (UTC)", Align::Left),
    ("END (UTC)", Align::Left),
    ("STATE", Align::Left),
    ("USAGE", Align::Right),
    ("CHARGE", Align::Right),
    ("PREPAID", Align::Right),
    ("METERING_SN", Align::Left),
];

/// The preview as a table for terminals: each column as wide as its widest cell or header
/// (counted in characters), two spaces between columns, so long plan names or instance ids
/// never push later values out from under their headers. The last column is not padded. Then
/// one `total` line per instance, its instance, plan, usage, unit and charge each aligned to the
/// widest of the column, and the grand totals.
pub fn preview_table(p: &Preview) -> String {
    let cells: Vec<[String; 9]> = p
        .rows
        .iter()
        .map(|r| {
            [
                r.instance_id.clone(),
                r.plan.clone(),
                r.begin_time.to_string(),
                r.end_time.to_string(),
                if r.flagged.is_some() { format!("{} (flagged)", r.state) } else { r.state.to_string() },
                r.usage.to_string(),
                r.charge_2dp.to_string(),
                // Units prepaid: drawn from a stop package, or covered by pay-per-use packages.
                r.drawn.or(r.covered).map_or_else(|| "-".to_string(), |d| d.to_string()),
                r.metering_sn.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut widths = COLUMNS.map(|(h, _)| width(h));
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(c));
        }
    }
    let mut s = String::new();
    line(&mut s, &COLUMNS.map(|(h, _)| h.to_string()), &widths);
    for row in &cells {
        line(&mut s, row, &widths);
    }
    let _ = writeln!(s);
    let iw = p.instances.iter().map(|t| width(&t.instance_id)).max().unwrap_or(0);
    let pw = p.instances.iter().map(|t| width(&t.plan)).max().unwrap_or(0);
    let usage_w = p.instances.iter().map(|t| width(&t.usage.to_string())).max().unwrap_or(0);
    let unit_w = p.instances.iter().map(|t| width(&t.unit)).max().unwrap_or(0);
    let charge_w = p.instances.iter().map(|t| width(&t.charge_2dp.to_string())).max().unwrap_or(0);
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
            "total {}  {}  usage {} {}  charge {} {}{extra}",
            pad(&t.instance_id, iw, Align::Left),
            pad(&t.plan, pw, Align::Left),
            pad(&t.usage.to_string(), usage_w, Align::Right),
            pad(&t.unit, unit_w, Align::Left),
            pad(&t.charge_2dp.to_string(), charge_w, Align::Right),
            t.currency
        );
    }
    for t in &p.totals {
        let _ = writeln!(s, "grand total: {} {}", t.charge_2dp, t.currency);
    }
    s
}

/// A cell's width in characters.
fn width(text: &str) -> usize {
    text.chars().count()
}

/// `text` padded to `w` characters on the side `align` leaves free.
fn pad(text: &str, w: usize, align: Align) -> String {
    let fill = " ".repeat(w.saturating_sub(width(text)));
    match align {
        Align::Left => format!("{text}{fill}"),
        Align::Right => format!("{fill}{text}"),
    }
}

/// One table line of `cells` in `widths`, the last cell unpadded.
fn line(s: &mut String, cells: &[String; 9], widths: &[usize; 9]) {
    let last = cells.len() - 1;
    let parts: Vec<String> = cells
        .iter()
        .zip(widths)
        .zip(COLUMNS)
        .enumerate()
        .map(|(i, ((c, w), (_, align)))| if i == last { c.clone() } else { pad(c, *w, align) })
        .collect();
    let _ = writeln!(s, "{}", parts.join("  "));
}

/// `released`, `frozen` or `active` at `now`.
pub fn instance_state(r: &InstanceRow, h: &lifecycle::History, now: Timestamp) -> &'static str {
    if r.release.is_some_and(|t| t <= now) {
        "released"
    } else {
        h.state_at(now)
    }
}

/// Where sealing of an instance has reached: `None` until its first seal (the store keeps 0,
/// which would read as 1970). JSON shows `null`, text [`NOT_SEALED`].
pub fn sealed_until(r: &InstanceRow) -> Option<Timestamp> {
    (r.sealed_until > 0).then(|| Timestamp::from_secs(r.sealed_until))
}

/// What text shows for an instance no seal has reached yet.
pub const NOT_SEALED: &str = "not yet sealed";

/// The JSON form of an instance used by the CLI and HTTP API; `sealed_until` is `null` until
/// the instance's first seal ([`sealed_until`]).
pub fn instance_json(r: &InstanceRow, h: &lifecycle::History, now: Timestamp) -> serde_json::Value {
    let history: Vec<_> = h.0.iter().map(|(at, s)| serde_json::json!({"status": s.as_str(), "time": at})).collect();
    serde_json::json!({
        "instance_id": r.instance_id,
        "plan": r.plan,
        "state": instance_state(r, h, now),
        "status_history": history,
        "start": r.start,
        "release": r.release,
        "sealed_until": sealed_until(r),
    })
}
