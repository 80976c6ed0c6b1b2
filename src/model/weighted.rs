//! The `weighted_sum` aggregation (issue 14), pure: the time integral of a level.
//!
//! An event's quantity is a *level* (GB stored, seats held) that holds from the event's time
//! until the instance's next event — next in *level order*: by time, ties by `id` in byte order,
//! as `latest` breaks them ([`level_order`]) — or the instance's release. Before the first event
//! the level is 0. Frozen intervals `[freeze, unfreeze)` are not billed: the level still holds
//! through them (the app does not re-report an unchanged level) and bills again from the
//! unfreeze on. A window's value is ∫ level dt over the window ∩ the instance's billable life,
//! in unit·hours.
//!
//! **Exact, in unit·seconds.** The integral is Σ level × whole seconds, an exact [`Decimal`]
//! in unit·seconds ([`integral`]). Every instant — event times, freezes, unfreezes, the start and
//! the release — is floored to its whole UTC second (`Timestamp::secs`, the same floor that cuts
//! records' periods and windows), so a level switches on a second boundary. Why not integrate in
//! nanoseconds: an event quantity has up to 9 decimals and up to 13 integer digits, so a day's
//! integral in unit·nanoseconds needs up to 9 + 9 fractional and 31 significant digits, more
//! than a `Decimal` holds (28); in whole seconds it needs at most 26 (≤ 1e12 × 86 400 s, 9
//! decimals), so every window of any valid input is integrated exactly and the conservation law
//! below holds to the last digit. Sub-second order is not lost: events are still ordered by
//! their nanosecond time (and id); of two events in one second the later one holds from that
//! second on, the earlier one for 0 seconds.
//!
//! **Cutting a record** ([`cut`]): value = ⌊(integral + carry-in) ÷ 3600⌋ to 4 decimals (capped at
//! the store's 99999999.9999), carry-out = integral + carry-in − value × 3600, in unit·seconds.
//! 1/3600 does not terminate in decimal, so the carry — and the conservation law — stay in
//! unit·seconds: per window, value × 3600 + carry-out = integral + carry-in exactly, hence per
//! instance Σ values × 3600 + last carry = Σ integrals. The carry-out is below 0.36 unit·s
//! (0.0001 unit·h) unless the value was capped.
//!
//! **Late events** ([`late_change`]): an event stored after its window was sealed sets the level
//! from its time on for the windows not sealed yet (the seal reads the level from the stored
//! events); what it would have changed in the sealed windows is reported, in unit·seconds here.
//!
//! All arithmetic is checked: an overflow is a [`WeightedError`], never a panic. No `f64`.

use super::MAX_RECORD_VALUE;
use rust_decimal::{Decimal, RoundingStrategy};

const NS_PER_SEC: i64 = 1_000_000_000;
const SECONDS_PER_HOUR: Decimal = Decimal::from_parts(3600, 0, 0, false, 0);
/// 0.0001 unit·h in unit·s: the smallest step of a record's value.
const STEP_SECONDS: Decimal = Decimal::from_parts(36, 0, 0, false, 2);
const STEP: Decimal = Decimal::from_parts(1, 0, 0, false, 4);

/// One stored event of a `weighted_sum` instance: the level it sets from its time on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelEvent {
    /// Event time, UTC nanoseconds.
    pub time_ns: i64,
    pub id: String,
    /// The level, in the plan's unit.
    pub quantity: Decimal,
}

impl LevelEvent {
    /// The whole UTC second the level switches at (the event time floored).
    pub fn second(&self) -> i64 {
        self.time_ns.div_euclid(NS_PER_SEC)
    }
}

/// Level order: time, then id in byte order (the last event in this order holds).
pub fn level_order(a: &LevelEvent, b: &LevelEvent) -> std::cmp::Ordering {
    (a.time_ns, a.id.as_bytes()).cmp(&(b.time_ns, b.id.as_bytes()))
}

/// The level after every one of `events` (any order) has set it: the quantity of the last in
/// level order; `None` for no events.
pub fn last_level(events: &[LevelEvent]) -> Option<Decimal> {
    events.iter().max_by(|a, b| level_order(a, b)).map(|e| e.quantity)
}

/// Frozen intervals `[freeze, unfreeze)` in UTC seconds, in time order; `None`: not unfrozen.
pub type Frozen = [(i64, Option<i64>)];

/// Why an integral could not be computed exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightedError {
    /// A product or sum left the exact range of a decimal (28 significant digits).
    #[error("the time integral of a level overflows exact decimal arithmetic ({what}); no valid event (quantity ≤ 1e12, hour or day windows) can cause this — check the stored events of the instance")]
    Overflow { what: String },
}

fn overflow(what: impl Into<String>) -> WeightedError {
    WeightedError::Overflow { what: what.into() }
}

/// Seconds of `[a, b)` (UTC seconds) outside every frozen interval; 0 when `b ≤ a`.
pub fn active_seconds(a: i64, b: i64, frozen: &Frozen) -> i64 {
    if b <= a {
        return 0;
    }
    let inside: i64 = frozen
        .iter()
        .map(|&(from, to)| {
            let (lo, hi) = (from.max(a), to.map_or(b, |t| t.min(b)));
            (hi - lo).max(0)
        })
        .sum();
    (b - a) - inside
}

/// ∫ level dt over `[begin, end)` (UTC seconds) minus the frozen intervals, in unit·seconds.
/// `level` is the level held at `begin` before any of `events` (which must be in level order);
/// events before `begin` set the starting level, events at or after `end` are ignored.
pub fn integral(mut level: Decimal, events: &[LevelEvent], begin: i64, end: i64, frozen: &Frozen) -> Result<Decimal, WeightedError> {
    let mut total = Decimal::ZERO;
    let mut at = begin;
    let mut add = |level: Decimal, from: i64, to: i64| -> Result<(), WeightedError> {
        let secs = active_seconds(from, to, frozen);
        if secs > 0 && !level.is_zero() {
            let part = level.checked_mul(Decimal::from(secs)).ok_or_else(|| overflow(format!("level {level} × {secs} s")))?;
            total = total.checked_add(part).ok_or_else(|| overflow("window integral"))?;
        }
        Ok(())
    };
    for e in events {
        let s = e.second();
        if s >= end {
            break;
        }
        if s > at {
            add(level, at, s)?;
            at = s;
        }
        level = e.quantity;
    }
    add(level, at, end)?;
    Ok(total)
}

/// A record cut from an integral: its value and what is carried on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// unit·hours, 4 decimals, at most 99999999.9999.
    pub value: Decimal,
    /// unit·seconds: integral + carry-in − value × 3600 (< 0.36 unless the value was capped).
    pub carry_out: Decimal,
}

/// Cuts the record of `integral` plus `carry_in` (both unit·seconds, non-negative): see the
/// module docs. Exact: the 4-decimal floor of the quotient is checked against the product.
pub fn cut(integral: Decimal, carry_in: Decimal) -> Result<Cut, WeightedError> {
    let total = integral.checked_add(carry_in).ok_or_else(|| overflow("integral + carry"))?;
    let quotient = total.checked_div(SECONDS_PER_HOUR).ok_or_else(|| overflow("÷ 3600"))?;
    let mut value = quotient.round_dp_with_strategy(4, RoundingStrategy::ToZero);
    let times = |v: Decimal| v.checked_mul(SECONDS_PER_HOUR).ok_or_else(|| overflow("value × 3600"));
    let mut carry_out = total - times(value)?;
    // The quotient was rounded to 28 digits: step the floor to where the carry is in [0, 0.36).
    while carry_out < Decimal::ZERO {
        value -= STEP;
        carry_out += STEP_SECONDS;
    }
    while carry_out >= STEP_SECONDS {
        value += STEP;
        carry_out -= STEP_SECONDS;
    }
    if value > MAX_RECORD_VALUE {
        carry_out += times(value - MAX_RECORD_VALUE)?;
        value = MAX_RECORD_VALUE;
    }
    Ok(Cut { value: value.normalize(), carry_out: carry_out.normalize() })
}

/// One window to seal: the level before it, its events, its billable bounds, the carry-in.
#[derive(Debug, Clone, Copy)]
pub struct WindowIn<'a> {
    /// The level held at the window's start (the last earlier event's quantity, or 0).
    pub level: Decimal,
    /// The window's events, in level order.
    pub events: &'a [LevelEvent],
    /// The window ∩ the instance's life, UTC seconds `[begin, end)`.
    pub begin: i64,
    pub end: i64,
    pub frozen: &'a Frozen,
    /// unit·seconds carried from the previous record.
    pub carry_in: Decimal,
}

/// What sealing one window gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowOut {
    /// ∫ level dt over the billable part of the window, unit·seconds.
    pub integral: Decimal,
    pub cut: Cut,
    /// The level held after the window's events (the next window's `level`).
    pub level_after: Decimal,
}

/// Seals one window (see [`integral`] and [`cut`]).
pub fn seal_window(w: WindowIn<'_>) -> Result<WindowOut, WeightedError> {
    let integral = integral(w.level, w.events, w.begin, w.end, w.frozen)?;
    let cut = cut(integral, w.carry_in)?;
    let level_after = w.events.last().map_or(w.level, |e| e.quantity);
    Ok(WindowOut { integral, cut, level_after })
}

/// What a late event would have changed in sealed time, in unit·seconds (negative when it
/// lowers the level): (its quantity − `before`, the level it replaces) × the active seconds from
/// its second until the next event in level order (`next`, its second), the seal cursor
/// `sealed_until` or the release `life_end`, whichever comes first.
pub fn late_change(
    before: Decimal,
    late: &LevelEvent,
    next: Option<i64>,
    sealed_until: i64,
    life_end: Option<i64>,
    frozen: &Frozen,
) -> Result<Decimal, WeightedError> {
    let end = [next, Some(sealed_until), life_end].into_iter().flatten().min().unwrap_or(sealed_until);
    let secs = active_seconds(late.second(), end, frozen);
    let delta = late.quantity.checked_sub(before).ok_or_else(|| overflow("level change"))?;
    delta.checked_mul(Decimal::from(secs)).ok_or_else(|| overflow("late change"))
}

/// unit·seconds shown as unit·hours, rounded half-even to `dp` decimals — for display only:
/// billing never divides outside [`cut`].
pub fn hours_shown(unit_seconds: Decimal, dp: u32) -> Decimal {
    unit_seconds.checked_div(SECONDS_PER_HOUR).map_or(unit_seconds, |h| h.round_dp(dp)).normalize()
}

#[cfg(test)]
#[path = "weighted_tests.rs"]
mod tests;
