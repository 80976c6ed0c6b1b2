//! Storing an admitted event of a level plan (`weighted_sum`; issue 14, rule in
//! [`crate::model::weighted`]).
//!
//! Every such event is indexed in `window_events` by its own window — late ones too, unlike a
//! point plan's: a late event still sets the level of every window not sealed yet, and the
//! seal reads the level from the indexed events. In its own open window it bills 0 to
//! `windows` (so `windows` knows the window has events; the seal integrates the level). A late
//! event (its window already sealed, or the instance released and sealed through its
//! release) is stored and acknowledged with `billed_window` NULL and reported as
//! [`Verdict::Late`] with what it would have changed in the sealed windows
//! ([`crate::model::weighted::late_change`], unit·seconds): the level it replaces (the previous
//! event in level order, or 0) and the time until the next event, the seal cursor or the
//! release, minus frozen intervals. Sealed records never change; the writer adds the change to
//! `instances.late_change` for `status`, preview and `/metrics`. Only late events pay for the
//! reads (three indexed queries, plus the events this transaction holds back: SQLite writes
//! them first, PostgreSQL's are read from memory); on-time events do no more work than a point
//! plan's.
//!
//! `collector.late = "reject"` refuses a late event before it gets here ([`super::decide::admit`]),
//! as for every plan: it is not stored, so it sets no level either.

use super::decide::{KeyProbe, TxCtx, Verdict};
use super::parse::EventInput;
use crate::model::weighted::{late_change, level_order, LevelEvent};
use crate::model::Timestamp;
use crate::store::dedupe::NewEvent;
use crate::store::{levels, StoreError};
use rust_decimal::Decimal;
use std::cmp::Ordering;

/// Stores the admitted event `ev` of a level plan's instance (cache slot `slot`); `billed` is
/// [`super::decide::admit`]'s answer: its own window when open, another or none when late.
pub(super) fn level(
    cx: &mut TxCtx<'_, '_>,
    slot: usize,
    ev: &EventInput,
    probe: KeyProbe,
    billed: Option<i64>,
    props: Option<&str>,
    now: Timestamp,
) -> Result<Verdict, StoreError> {
    let ctx = cx.instances.at(slot);
    let Some(plan) = &ctx.plan else {
        return Err(StoreError::Internal(format!("instance {:?} has no plan: admit refuses its new events", ctx.row.instance_id)));
    };
    let own = cx.cfg.timezone.window_start(plan.period, ev.time);
    let key = ctx.row.key;
    let open = billed == Some(own);
    let change = if open {
        cx.tail.add(key, own, Decimal::ZERO)?;
        None
    } else {
        Some(sealed_change(cx, slot, ev, own)?)
    };
    let new = NewEvent {
        event_id: &ev.id,
        time: ev.time,
        quantity: ev.quantity,
        billed_window: open.then_some(own),
        billed_qty: (open && !ev.quantity.0.is_zero()).then_some(Decimal::ZERO),
        received: now,
        props,
        point_window: Some(own),
    };
    cx.append(probe, key, new)?;
    cx.tail.appended();
    Ok(match change {
        None => Verdict::Accepted,
        Some(c) => {
            let ctx = cx.instances.at_mut(slot);
            ctx.new_late_change =
                ctx.new_late_change.checked_add(c).ok_or_else(|| crate::model::WeightedError::Overflow { what: "late changes".into() })?;
            Verdict::Late { id: ev.id.clone(), instance_id: ev.instance_id.clone(), change: Some(c) }
        }
    })
}

/// What the late event `ev` (own window `own`, already sealed) would have changed in the
/// sealed windows, unit·seconds: read before it is stored, from every event stored so far and
/// those this transaction holds back. Its neighbours in level order are among the events of
/// its own window, the one setting the level before that window, the first later window's, and
/// the held ones.
fn sealed_change(cx: &mut TxCtx<'_, '_>, slot: usize, ev: &EventInput, own: i64) -> Result<Decimal, StoreError> {
    let key = cx.instances.at(slot).row.key;
    let mut known = cx.held_levels(key)?;
    let tx = cx.tx;
    known.extend(levels::events_between(tx, key, own, own + 1, i64::MAX)?.into_iter().map(|(_, e)| e));
    known.extend(levels::last_before(tx, key, own, i64::MAX)?);
    known.extend(levels::next_window_events(tx, key, own)?);
    let me = LevelEvent { time_ns: ev.time.0, id: ev.id.clone(), quantity: ev.quantity.0 };
    let before = known.iter().filter(|e| level_order(e, &me) == Ordering::Less).max_by(|a, b| level_order(a, b));
    let next = known.iter().filter(|e| level_order(e, &me) == Ordering::Greater).min_by(|a, b| level_order(a, b));
    let before = before.map_or(Decimal::ZERO, |e| e.quantity);
    let ctx = cx.instances.at(slot);
    let frozen = levels::frozen_secs(&ctx.history);
    Ok(late_change(before, &me, next.map(LevelEvent::second), ctx.row.sealed_until, ctx.row.release.map(Timestamp::secs), &frozen)?)
}
