//! The per-event decision inside the ingest transaction: is the instance known (or may it be
//! auto-registered), is the event new, a duplicate or a conflict — asked first, so a resend is
//! judged by what was stored, not by today's rules — and, when new, does it fit the clock, the
//! instance's lifetime and plan, is it late, and which window bills it ([`admit`], pure).
//!
//! [`decide`] is the shell: it performs, in the transaction, what three pure steps decide —
//! [`after_lookup`] (the key lookup's outcome → duplicate, conflict or go on), [`admit`] (the
//! rules → the billing window or a refusal) and [`place`] (the aggregation → where the usage
//! goes: a window, unbillable, a point window, late, or the level rules). Their table tests
//! are in `decide_tests.rs`.

use super::parse::EventInput;
use super::result::{Refused, RejectReason};
use crate::config::{Config, LatePolicy, Plan};
use crate::model::Timestamp;
use crate::store::dedupe::{Appender, Dedupe, NewEvent, Probe};
use crate::store::lifecycle::{self, History};
use crate::store::pg_events::{PgEvents, PgNewEvent};
use crate::store::sql::Tx;
use crate::store::windows::TailSums;
use crate::store::{instances, InsertOutcome, InstanceRow, StoreError};
use rust_decimal::Decimal;

/// The outcome for one event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Verdict {
    #[default]
    Accepted,
    Duplicate,
    /// Stored and acknowledged, but billed nowhere: an event of a point plan (`max`, `latest`,
    /// `unique_count`) whose window was already sealed. Reported in the ingest result.
    Late {
        id: String,
        instance_id: String,
        /// `weighted_sum` only: what the event would have changed in sealed windows,
        /// unit·seconds, signed (it still sets the level of the windows not yet sealed).
        change: Option<Decimal>,
    },
    /// An event refused at ingest: never stored, the sender's to fix and resend. (Records the
    /// cloud store refused are another thing: dead letters, [`crate::store::dead_letters`].)
    Rejected {
        id: String,
        error: String,
        /// Set by the rule that refused the event; the metrics label.
        reason: RejectReason,
    },
}

/// An instance as seen by this transaction.
pub struct InstanceCtx {
    pub row: InstanceRow,
    /// FREEZE/UNFREEZE history: events are judged by the state at their own time.
    pub history: History,
    /// `None` when the plan was removed from the config, which the settings check allows only
    /// for a finished instance (released and sealed through its release): a resend of one of
    /// its stored events is still a duplicate, a new event is refused ([`admit`]).
    pub plan: Option<Plan>,
    /// Unbillable usage added by this transaction.
    pub new_unbillable: Decimal,
    /// Late point-plan events (billed nowhere) added by this transaction.
    pub new_late: u64,
    /// What late `weighted_sum` events of this transaction would have changed in sealed
    /// windows, unit·seconds, signed.
    pub new_late_change: Decimal,
    /// Packages and their use, for stop-before-excess plans only.
    pub quota: Option<super::quota::StopQuota>,
}

/// The writer's instances: looked up by id once per event (in [`TxCtx::probe_all`]), then by
/// slot. Slots stay valid until [`InstanceCache::clear`], which only happens between
/// transactions.
#[derive(Default)]
pub struct InstanceCache {
    slots: foldhash::HashMap<String, usize>,
    ctxs: Vec<InstanceCtx>,
}

impl InstanceCache {
    pub fn slot(&self, instance_id: &str) -> Option<usize> {
        self.slots.get(instance_id).copied()
    }

    /// The instance in `slot` (a slot handed out by this cache since its last clear).
    pub fn at(&self, slot: usize) -> &InstanceCtx {
        &self.ctxs[slot]
    }

    pub fn at_mut(&mut self, slot: usize) -> &mut InstanceCtx {
        &mut self.ctxs[slot]
    }

    pub fn get_mut(&mut self, instance_id: &str) -> Option<&mut InstanceCtx> {
        self.slot(instance_id).map(|i| &mut self.ctxs[i])
    }

    fn insert(&mut self, instance_id: String, ctx: InstanceCtx) -> usize {
        self.ctxs.push(ctx);
        self.slots.insert(instance_id, self.ctxs.len() - 1);
        self.ctxs.len() - 1
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut InstanceCtx> {
        self.ctxs.iter_mut()
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.ctxs.clear();
    }
}

/// Where a transaction finds stored events and holds new ones: SQLite's own dedupe structures
/// (Bloom filter, key runs, appender; `store::dedupe`) or PostgreSQL's unique key
/// (`store::pg_events`). The rules around them are the same.
pub enum Keys<'a, 'c> {
    Sqlite { dedupe: &'a mut Dedupe, app: &'a mut Appender<'c> },
    Postgres(&'a mut PgEvents),
}

/// An event's key, probed before it is decided: SQLite's Bloom probe, or (PostgreSQL) a key
/// already looked up in this transaction.
#[derive(Debug, Clone, Copy)]
pub enum KeyProbe {
    Sqlite(Probe),
    Postgres,
}

/// An event's instance slot and key probe, found before the event is decided.
pub type Prepared = Option<(usize, KeyProbe)>;

/// What deciding needs inside one write transaction.
pub struct TxCtx<'a, 'c> {
    /// The writer's transaction: instances, packages and status are loaded through it.
    pub tx: &'a Tx<'c>,
    pub keys: Keys<'a, 'c>,
    pub cfg: &'a Config,
    pub instances: &'a mut InstanceCache,
    /// Window usage this transaction adds (SQLite: the unfolded tail kept between
    /// transactions; PostgreSQL: this attempt's sums, added to that tail once it succeeds).
    pub tail: &'a mut TailSums,
}

impl TxCtx<'_, '_> {
    /// Probes the keys of a request's events whose instance is known, in one pass: on SQLite
    /// one tight loop over the Bloom filter, so its cache misses overlap instead of stalling
    /// each event in turn; on PostgreSQL one lookup query for all of them.
    pub fn probe_all(&mut self, events: &[(usize, EventInput)]) -> Result<Vec<Prepared>, StoreError> {
        let slots: Vec<Option<usize>> = events.iter().map(|(_, ev)| self.instances.slot(&ev.instance_id)).collect();
        let keys = slots.iter().zip(events).map(|(slot, (_, ev))| slot.map(|i| (self.instances.ctxs[i].row.key, ev.id.as_str())));
        Ok(match &mut self.keys {
            Keys::Sqlite { dedupe, .. } => {
                let probes = dedupe.probe_many(keys);
                slots.into_iter().zip(probes).map(|(slot, probe)| slot.zip(probe.map(KeyProbe::Sqlite))).collect()
            }
            Keys::Postgres(pg) => {
                pg.lookup(self.tx, keys.flatten())?;
                slots.into_iter().map(|slot| slot.map(|s| (s, KeyProbe::Postgres))).collect()
            }
        })
    }

    /// The probe of one event whose instance was just loaded.
    fn probe_one(&mut self, instance_key: i64, event_id: &str) -> Result<KeyProbe, StoreError> {
        Ok(match &mut self.keys {
            Keys::Sqlite { dedupe, .. } => KeyProbe::Sqlite(dedupe.probe(instance_key, event_id)),
            Keys::Postgres(pg) => {
                pg.lookup(self.tx, std::iter::once((instance_key, event_id)))?;
                KeyProbe::Postgres
            }
        })
    }

    /// Whether the event is new, a duplicate or a conflict.
    fn check(&mut self, probe: KeyProbe, instance_key: i64, ev: &EventInput, props: Option<&str>) -> Result<InsertOutcome, StoreError> {
        match (&mut self.keys, probe) {
            (Keys::Sqlite { dedupe, app }, KeyProbe::Sqlite(p)) => dedupe.check(app, p, &ev.id, ev.time, ev.quantity, props),
            (Keys::Postgres(pg), KeyProbe::Postgres) => Ok(pg.check(instance_key, &ev.id, ev.time, ev.quantity, props)),
            _ => Err(StoreError::Internal("an event probed on one backend was checked on the other".into())),
        }
    }

    /// The new events of `instance_key` this transaction holds back that index a level window
    /// (`weighted_sum`), for a read that must see them: SQLite writes its held rows now (a
    /// query then sees them; none are returned), PostgreSQL writes a point plan's events only
    /// before `COMMIT`, so they are returned instead.
    pub(super) fn held_levels(&mut self, instance_key: i64) -> Result<Vec<crate::model::LevelEvent>, StoreError> {
        match &mut self.keys {
            Keys::Sqlite { app, .. } => {
                app.flush()?;
                Ok(Vec::new())
            }
            Keys::Postgres(pg) => Ok(pg
                .held_of(instance_key)
                .filter(|e| e.point_window.is_some())
                .map(|e| crate::model::LevelEvent { time_ns: e.time.0, id: e.event_id.clone(), quantity: e.quantity.0 })
                .collect()),
        }
    }

    /// Stores a new event (written now or held back until the end of the transaction).
    pub(super) fn append(&mut self, probe: KeyProbe, instance_key: i64, new: NewEvent<'_>) -> Result<(), StoreError> {
        match (&mut self.keys, probe) {
            (Keys::Sqlite { dedupe, app }, KeyProbe::Sqlite(p)) => dedupe.append(app, p, new).map(|_| ()),
            (Keys::Postgres(pg), KeyProbe::Postgres) => {
                pg.append(
                    self.tx,
                    PgNewEvent {
                        instance_key,
                        event_id: new.event_id.to_owned(),
                        time: new.time,
                        quantity: new.quantity,
                        billed_window: new.billed_window,
                        billed_qty: new.billed_qty,
                        received: new.received,
                        props: new.props.map(str::to_owned),
                        point_window: new.point_window,
                    },
                )?;
                Ok(())
            }
            _ => Err(StoreError::Internal("an event probed on one backend was stored on the other".into())),
        }
    }
}

/// Decides one event and, when it is new, inserts it.
/// `prepared` is the event's [`TxCtx::probe_all`] entry.
///
/// Idempotency comes first: once the instance is known, the key is looked up before any other
/// rule, so an identical resend of a stored event is a [`Verdict::Duplicate`] whatever changed
/// since it was stored (its window sealed under `late = "reject"`, a freeze or release reported
/// later, a changed plan or metric, the clock past `max_age`), and the same key with another
/// quantity or time is a conflict. Only a new key meets the rules ([`admit`]). Before the
/// lookup come only the refusals that leave nothing to look up: a malformed event (refused at
/// parsing), and an unknown instance or a package instance's id (no event of it can be stored).
/// An instance whose plan is missing from the config (a finished one; see
/// [`crate::settings`]) is looked up too, and refuses only new events. The lookup
/// writes nothing of its own (at most it writes the events of this transaction held back so
/// far, which are written before `COMMIT` anyway), so a new event the rules then refuse leaves
/// no trace.
pub fn decide(cx: &mut TxCtx<'_, '_>, ev: &EventInput, prepared: Prepared, now: Timestamp) -> Result<Verdict, StoreError> {
    let (tx, cfg) = (cx.tx, cx.cfg);
    let (slot, probe) = match prepared {
        Some(p) => p,
        None => match instance(tx, cfg, cx.instances, ev, now)? {
            Ok(slot) => (slot, cx.probe_one(cx.instances.ctxs[slot].row.key, &ev.id)?),
            Err(msg) => return Ok(reject(ev, msg)),
        },
    };
    let instance_key = cx.instances.ctxs[slot].row.key;
    // Only events with properties pay for their canonical form.
    let props = ev.properties.as_ref().map(crate::model::Properties::canonical);
    if let Some(verdict) = after_lookup(cx.check(probe, instance_key, ev, props.as_deref())?, ev, props.as_deref()) {
        return Ok(verdict);
    }
    let ctx = &mut cx.instances.ctxs[slot];
    let billed = match admit(cfg, ctx, ev, now) {
        Ok(billed) => billed,
        Err(msg) => return Ok(reject(ev, msg)),
    };
    // `admit` refuses every new event of an instance without a plan.
    let Some(plan) = &ctx.plan else { return Ok(reject(ev, missing_plan(&ctx.row))) };
    let is_point = plan.aggregation.is_point();
    let (billed_window, billed_qty, point_window) = match place(cfg, plan, billed, ev) {
        Placement::Level => return super::level::level(cx, slot, ev, probe, billed, props.as_deref(), now),
        Placement::Window { window, amount } => {
            let covered = super::quota::deduct(tx, cfg, ctx, window, ev, amount)?;
            cx.tail.add(ctx.row.key, window, covered)?;
            (Some(window), (covered != ev.quantity.0).then_some(covered), None)
        }
        Placement::Unbillable { amount } => {
            ctx.new_unbillable += amount;
            (None, None, None)
        }
        Placement::PointOpen { window, billed_qty } => {
            cx.tail.add(ctx.row.key, window, Decimal::ZERO)?;
            (Some(window), billed_qty, Some(window))
        }
        Placement::PointLate => {
            ctx.new_late += 1;
            (None, None, None)
        }
    };
    cx.append(
        probe,
        instance_key,
        NewEvent {
            event_id: &ev.id,
            time: ev.time,
            quantity: ev.quantity,
            billed_window,
            billed_qty,
            received: now,
            props: props.as_deref(),
            point_window,
        },
    )?;
    cx.tail.appended();
    Ok(match (point_window, is_point) {
        (None, true) => Verdict::Late { id: ev.id.clone(), instance_id: ev.instance_id.clone(), change: None },
        _ => Verdict::Accepted,
    })
}

/// What the key lookup alone decides, pure: a new key goes on to the rules (`None`), the same
/// event stored before is a [`Verdict::Duplicate`], the same key with another quantity, time or
/// properties (`props`, canonical) is refused with both values of what differs.
pub fn after_lookup(outcome: InsertOutcome, ev: &EventInput, props: Option<&str>) -> Option<Verdict> {
    match outcome {
        InsertOutcome::Inserted => None,
        InsertOutcome::Duplicate => Some(Verdict::Duplicate),
        InsertOutcome::Conflict { stored_quantity, stored_time, stored_properties } => Some(reject(
            ev,
            RejectReason::Conflict.with(conflict_message(ev, stored_quantity, stored_time, stored_properties, props.map(str::to_owned))),
        )),
    }
}

/// Where an admitted new event's usage goes ([`place`]); window starts in UTC seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// `sum`/`count`: `amount` (the event's billing quantity: its quantity, or 1) is added to
    /// `window`, less what a stop-before-excess package takes ([`super::quota::deduct`]).
    Window { window: i64, amount: Decimal },
    /// `sum`/`count` usage of a released, fully sealed instance: kept as unbillable.
    Unbillable { amount: Decimal },
    /// A point plan (`max`, `latest`, `unique_count`) whose own window is still open: the event
    /// bills 0 to it (the seal recomputes the value from the window's events) and is indexed
    /// in `window_events`; `billed_qty` is `Some(0)` unless the quantity is 0 already.
    PointOpen { window: i64, billed_qty: Option<Decimal> },
    /// A point plan whose own window is sealed: stored billed nowhere, reported as
    /// [`Verdict::Late`] (issue 14).
    PointLate,
    /// `weighted_sum`: the level rules place it (`collector::level`).
    Level,
}

/// Where an event of `plan` that [`admit`] billed to `billed` goes. Pure.
pub fn place(cfg: &Config, plan: &Plan, billed: Option<i64>, ev: &EventInput) -> Placement {
    let agg = plan.aggregation;
    if agg.is_level() {
        return Placement::Level;
    }
    if agg.is_point() {
        let own = cfg.timezone.window_start(plan.period, ev.time);
        return if billed == Some(own) {
            Placement::PointOpen { window: own, billed_qty: (!ev.quantity.0.is_zero()).then_some(Decimal::ZERO) }
        } else {
            Placement::PointLate
        };
    }
    let amount = agg.billing_quantity(ev.quantity.0);
    match billed {
        Some(window) => Placement::Window { window, amount },
        None => Placement::Unbillable { amount },
    }
}

/// The rules for a new event of a known instance, in order: the clock ([`clock`]), the
/// `metric`, what the plan's aggregation needs of the event ([`aggregation_fields`]), the
/// instance's start and release, its frozen intervals, and late windows. Pure.
/// Returns the window start (UTC seconds) that bills the event, `None` for late usage of a
/// released, fully sealed instance (kept as unbillable), or the refusal message.
pub fn admit(cfg: &Config, ctx: &InstanceCtx, ev: &EventInput, now: Timestamp) -> Result<Option<i64>, Refused> {
    let Some(plan) = &ctx.plan else { return Err(missing_plan(&ctx.row)) };
    clock(cfg, ev, now)?;
    if let Some(m) = &ev.metric {
        if *m != plan.factor {
            return Err(RejectReason::Metric.with(format!(
                "`metric` {m:?} does not match the billing factor {:?} of plan {:?}; send that metric or none",
                plan.factor, plan.name
            )));
        }
    }
    aggregation_fields(plan, ev)?;
    if ev.time < ctx.row.start {
        return Err(RejectReason::Time.with(format!("`time` {} is before the instance's start {}", ev.time, ctx.row.start)));
    }
    if let Some(r) = ctx.row.release {
        if ev.time >= r {
            return Err(RejectReason::Time.with(format!("`time` {} is at or after the instance's release {r}", ev.time)));
        }
    }
    // A level (`weighted_sum`) reported while frozen is kept: the level holds through a freeze
    // and bills again from the unfreeze on, so refusing the change would bill the stale level
    // after the unfreeze. The frozen time itself is never billed (the seal skips it).
    if let Some(since) = ctx.history.frozen_since(ev.time).filter(|_| plan.aggregation != crate::model::Aggregation::WeightedSum) {
        let until = ctx.history.unfrozen_after(since).map(|u| format!(" until {u}")).unwrap_or_default();
        return Err(RejectReason::Time.with(format!(
            "`time` {} falls while the instance was frozen (since {since}{until}); a frozen instance produces no billable usage",
            ev.time
        )));
    }
    let own = cfg.timezone.window_start(plan.period, ev.time);
    if own >= ctx.row.sealed_until {
        Ok(Some(own))
    } else if cfg.collector.late == LatePolicy::Reject {
        Err(RejectReason::Time.with(format!(
            "`time` {} falls in a window that is already sealed (until {}); collector.late = \"reject\" refuses late events",
            ev.time,
            Timestamp::from_secs(ctx.row.sealed_until)
        )))
    } else if ctx.row.release.is_some_and(|r| r.secs() <= ctx.row.sealed_until) {
        Ok(None) // released and fully sealed: kept as unbillable
    } else {
        Ok(Some(ctx.row.sealed_until))
    }
}

/// The refusal of a new event of an instance whose plan is not in the config.
fn missing_plan(row: &InstanceRow) -> Refused {
    RejectReason::Invalid
        .with(format!("instance {:?} uses plan {:?}, which is not in the config; add the [[plan]] back", row.instance_id, row.plan))
}

/// What the plan's aggregation needs of an event (issue 14). Pure: a `quantity` unless the
/// plan counts events (`count`, `unique_count`); for `unique_count`, the property it counts.
pub fn aggregation_fields(plan: &Plan, ev: &EventInput) -> Result<(), Refused> {
    use crate::model::Aggregation;
    let agg = plan.aggregation;
    if ev.quantity_omitted && !matches!(agg, Aggregation::Count | Aggregation::UniqueCount) {
        return Err(RejectReason::MissingField.with(format!(
            "missing field `quantity`; every event needs `id`, `instance_id` and `time`, and a `quantity` unless its plan counts events (plan {:?} aggregates by {agg})",
            plan.name
        )));
    }
    if let (Aggregation::UniqueCount, Some(key)) = (agg, &plan.unique_by) {
        if ev.properties.as_ref().and_then(|p| p.get(key)).is_none() {
            return Err(RejectReason::Invalid.with(format!(
                "missing property {key:?}: plan {:?} counts the distinct values of `properties.{key}`; send e.g. \"properties\": {{\"{key}\": \"…\"}}",
                plan.name
            )));
        }
    }
    Ok(())
}

/// The refusal of a resend that differs from the stored event: both values of what differs.
fn conflict_message(
    ev: &EventInput,
    stored_q: crate::model::Quantity,
    stored_t: Timestamp,
    stored_p: Option<String>,
    props: Option<String>,
) -> String {
    let show = |p: &Option<String>| p.clone().unwrap_or_else(|| "none".into());
    let extra = if stored_p != props { format!(" and properties {}", show(&stored_p)) } else { String::new() };
    let this = if stored_p != props { format!(" and properties {}", show(&props)) } else { String::new() };
    format!(
        "event {:?} of instance {:?} is already stored with quantity {stored_q} at {stored_t}{extra}; this one has quantity {} at {}{this}. Resend the original values, or use a new id for new usage",
        ev.id, ev.instance_id, ev.quantity, ev.time
    )
}

/// The clock rules (`collector.max_future`, `collector.max_age`). Pure. They are judged in the
/// writer, after the key lookup, so that a resend of an event stored while it was young is a
/// duplicate, not a refusal; and before auto-registration, so that an event refused by them
/// registers nothing.
pub fn clock(cfg: &Config, ev: &EventInput, now: Timestamp) -> Result<(), Refused> {
    let c = &cfg.collector;
    if ev.time > now.add_secs(c.max_future.as_secs_i64()) {
        return Err(RejectReason::Time.with(format!(
            "`time` {} is more than {} ahead of now ({now}); check the sender's clock (collector.max_future)",
            ev.time, c.max_future
        )));
    }
    if ev.time < now.add_secs(-c.max_age.as_secs_i64()) {
        return Err(RejectReason::Time.with(format!(
            "`time` {} is older than {} (collector.max_age); the cloud store refuses records that begin more than 21 days ago",
            ev.time, c.max_age
        )));
    }
    Ok(())
}

/// The cache slot of `ev`'s instance, from the cache, the store, or auto-registration.
fn instance(
    tx: &Tx<'_>,
    cfg: &Config,
    cache: &mut InstanceCache,
    ev: &EventInput,
    now: Timestamp,
) -> Result<Result<usize, Refused>, StoreError> {
    if let Some(slot) = cache.slot(&ev.instance_id) {
        return Ok(Ok(slot));
    }
    Ok(load(tx, cfg, ev, now)?.map(|ctx| cache.insert(ev.instance_id.clone(), ctx)))
}

fn load(tx: &Tx<'_>, cfg: &Config, ev: &EventInput, now: Timestamp) -> Result<Result<InstanceCtx, Refused>, StoreError> {
    let row = match instances::get(tx, &ev.instance_id)? {
        Some(row) => row,
        None if crate::store::packages::get(tx, &ev.instance_id)?.is_some() => {
            return Ok(Err(RejectReason::InstanceId.with(format!(
                "`instance_id` {:?} is a package instance; send usage under the pay-per-use instance it belongs to",
                ev.instance_id
            ))))
        }
        None => match &cfg.collector.auto_register {
            Some(plan_name) => {
                if let Err(msg) = clock(cfg, ev, now) {
                    return Ok(Err(msg));
                }
                let plan = cfg.plan(plan_name).ok_or_else(|| StoreError::Internal(format!("auto_register plan {plan_name:?} vanished")))?;
                let start = Timestamp::from_secs(cfg.timezone.window_start(plan.period, ev.time));
                instances::add(tx, &ev.instance_id, plan_name, start, now)?
            }
            None => {
                return Ok(Err(RejectReason::InstanceId.with(format!(
                    "`instance_id` {:?} is not registered; add it with `meterd instance add {} --plan NAME --start TIME` (or set collector.auto_register)",
                    ev.instance_id, ev.instance_id
                ))))
            }
        },
    };
    // A missing plan refuses only new events, after the key lookup ([`admit`]).
    let plan = cfg.plan(&row.plan).cloned();
    let history = lifecycle::history(tx, row.key)?;
    let quota = match &plan {
        Some(plan) => super::quota::load(tx, plan, row.key)?,
        None => None,
    };
    Ok(Ok(InstanceCtx { row, history, plan, new_unbillable: Decimal::ZERO, new_late: 0, new_late_change: Decimal::ZERO, quota }))
}

fn reject(ev: &EventInput, refused: Refused) -> Verdict {
    Verdict::Rejected { id: ev.id.clone(), error: refused.message, reason: refused.reason }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
