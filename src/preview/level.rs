//! A level plan's open windows in the preview (`weighted_sum`; issue 14): every window from
//! the seal cursor up to the query's `now` shows the integral so far — over its part up to
//! `now` (and the release), minus frozen intervals — floored to 4 decimals, carry not
//! included (the seal adds it). A window with no events still shows the level held through
//! it. Without a `now` no open window is shown: a level's value is only known up to a time.

use crate::config::{Config, Plan};
use crate::model::weighted::{cut, integral};
use crate::model::Timestamp;
use crate::store::sql::Tx;
use crate::store::{levels, lifecycle, InstanceRow, StoreError};
use rust_decimal::Decimal;

/// One open window: (window start, begin, end, value so far in unit·hours), UTC seconds.
pub type OpenRow = (i64, i64, i64, Decimal);

/// The open windows of `inst` starting before `to` (UTC s), integrated up to `now`.
pub fn open_rows(
    tx: &Tx<'_>,
    cfg: &Config,
    plan: &Plan,
    inst: &InstanceRow,
    now: Option<Timestamp>,
    to: i64,
) -> Result<Vec<OpenRow>, StoreError> {
    let Some(now) = now else { return Ok(Vec::new()) };
    let stop = inst.release.map_or(now.secs(), |r| r.secs().min(now.secs()));
    let mut start = inst.sealed_until.max(cfg.timezone.window_start(plan.period, inst.start));
    let last = stop.min(to);
    if start >= last {
        return Ok(Vec::new());
    }
    let frozen = levels::frozen_secs(&lifecycle::history(tx, inst.key)?);
    let seq = levels::max_seq(tx)?;
    let mut level = levels::level_before(tx, inst.key, start, seq)?;
    let events = levels::events_between(tx, inst.key, start, last, seq)?;
    let mut rest = events.as_slice();
    let mut out = Vec::new();
    while start < last {
        let end = cfg.timezone.window_end(plan.period, start);
        let n = rest.iter().take_while(|(w, _)| *w < end).count();
        let evs: Vec<_> = rest[..n].iter().map(|(_, e)| e.clone()).collect();
        rest = &rest[n..];
        let (begin, upto) = (start.max(inst.start.secs()), end.min(stop));
        let so_far = integral(level, &evs, begin, upto, &frozen)?;
        if !so_far.is_zero() || !evs.is_empty() {
            out.push((start, begin, end.min(inst.release.map_or(end, Timestamp::secs)), cut(so_far, Decimal::ZERO)?.value));
        }
        level = evs.last().map_or(level, |e| e.quantity);
        start = end;
    }
    Ok(out)
}
