//! `meterd instance add|release|freeze|unfreeze|move|list`.

use super::{Ctx, Failure, ListFormat};
use crate::model::Timestamp;
use crate::store::instances;
use crate::store::lifecycle::{self, Status};
use crate::views::{instance_json, instance_state as state};

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Register an instance with its plan and start time.
    Add {
        id: String,
        #[arg(long)]
        plan: String,
        /// RFC 3339 start time of the subscription.
        #[arg(long, value_parser = super::timestamp)]
        start: Timestamp,
    },
    /// Record the time an instance was released.
    Release {
        id: String,
        #[arg(long, value_parser = super::timestamp)]
        at: Timestamp,
    },
    /// Record that the cloud store froze the instance (expiry, violation) at a time.
    Freeze {
        id: String,
        #[arg(long, value_parser = super::timestamp)]
        at: Timestamp,
    },
    /// Record that the cloud store unfroze the instance at a time.
    Unfreeze {
        id: String,
        #[arg(long, value_parser = super::timestamp)]
        at: Timestamp,
    },
    /// Move an instance to another plan from a window boundary on: AT must be the instance's
    /// next unsealed window boundary, a boundary of both plans' periods; a period change also
    /// needs no usage stored from AT on. Use it to rename or replace a plan safely.
    Move {
        id: String,
        #[arg(long)]
        plan: String,
        #[arg(long, value_parser = super::timestamp)]
        at: Timestamp,
    },
    /// List instances.
    List {
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
}

pub fn run(ctx: &Ctx, cmd: &Cmd) -> Result<u8, Failure> {
    let mut store = ctx.store()?;
    match cmd {
        Cmd::Add { id, plan, start } => {
            crate::model::valid_instance_id(id).map_err(Failure::usage)?;
            if ctx.cfg.plan(plan).is_none() {
                let known: Vec<_> = ctx.cfg.plans.keys().cloned().collect();
                return Err(Failure::usage(format!("plan {plan:?} is not in the config; known plans: {known:?}")));
            }
            let start = *start;
            let instances::Registered { row, new } = store.write(|tx| instances::register(tx, id, plan, start, Timestamp::now()))?;
            if new {
                println!("instance {} registered: plan {}, start {}", row.instance_id, row.plan, row.start);
            } else {
                // A released instance stays released: `add` never undoes a release.
                let released = row.release.map(|t| format!(", released at {t}")).unwrap_or_default();
                println!(
                    "instance {} is already registered with plan {}, start {}{released}; nothing changed",
                    row.instance_id, row.plan, row.start
                );
            }
        }
        Cmd::Release { id, at } => {
            let at = *at;
            let billing = |plan: &str| crate::store::lifecycle_release::Billing::of(&ctx.cfg, plan);
            let released = store.write(|tx| instances::release(tx, id, at, &billing))?;
            println!("instance {} released at {}", released.instance.instance_id, at);
            if let Some(w) = released.warning() {
                eprintln!("meterd: warning: {w}");
            }
        }
        Cmd::Move { id, plan, at } => {
            let at = *at;
            let from = move_plan(ctx, &mut store, id, plan, at)?;
            println!("instance {id} moved from plan {from} to plan {plan} at {at}");
        }
        Cmd::Freeze { id, at } | Cmd::Unfreeze { id, at } => {
            let status = if matches!(cmd, Cmd::Freeze { .. }) { Status::Freeze } else { Status::Unfreeze };
            let at = *at;
            let change = store.write(|tx| lifecycle::set_status(tx, id, status, at, Timestamp::now()))?;
            println!("instance {id}: {} at {at}", status.as_str());
            if let Some(w) = change.warning(status, at) {
                eprintln!("meterd: warning: {id}: {w}");
            }
        }
        Cmd::List { format } => {
            let now = Timestamp::now();
            let rows = store.read(|tx| {
                instances::list(tx)?.into_iter().map(|r| Ok((lifecycle::history(tx, r.key)?, r))).collect::<Result<Vec<_>, _>>()
            })?;
            if *format == ListFormat::Json {
                let v: Vec<_> = rows.iter().map(|(h, r)| instance_json(r, h, now)).collect();
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!("{:<40} {:<12} {:<9} {:<22} {:<22} SEALED UNTIL", "INSTANCE", "PLAN", "STATE", "START", "RELEASE");
                for (h, r) in rows {
                    let rel = r.release.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
                    let sealed = crate::views::sealed_until(&r).map_or_else(|| crate::views::NOT_SEALED.to_string(), |t| t.to_string());
                    let start = r.start.to_string();
                    println!("{:<40} {:<12} {:<9} {:<22} {:<22} {sealed}", r.instance_id, r.plan, state(&r, &h, now), start, rel);
                }
            }
        }
    }
    Ok(0)
}

/// Switches `id` to plan `plan` from `at` on, if that cuts no stored window differently
/// (see [`crate::settings::move_refusal`]); returns the old plan's name.
fn move_plan(ctx: &Ctx, store: &mut crate::store::Store, id: &str, plan: &str, at: Timestamp) -> Result<String, Failure> {
    let cfg = &ctx.cfg;
    let new = cfg.plan(plan).ok_or_else(|| {
        Failure::usage(format!(
            "plan {plan:?} is not in the config; add its [[plan]] first (known plans: {:?})",
            cfg.plans.keys().collect::<Vec<_>>()
        ))
    })?;
    let out = store.write(|tx| {
        let inst = instances::get(tx, id)?.ok_or_else(|| instances::unknown(id))?;
        let invalid = |m: String| crate::store::StoreError::Invalid(format!("cannot move instance {id:?} to plan {plan:?}: {m}"));
        let old =
            cfg.plan(&inst.plan).ok_or_else(|| invalid(format!("its plan {:?} is not in the config; add it back first", inst.plan)))?;
        if let Some(r) = inst.release.filter(|r| *r <= at) {
            return Err(invalid(format!("it was released at {r}")));
        }
        let next = inst.sealed_until.max(cfg.timezone.window_start(old.period, inst.start));
        let usage = crate::store::settings::has_usage_from(tx, inst.key, next)?;
        if let Some(m) = crate::settings::move_refusal(cfg.timezone, old.period, new.period, at.secs(), next, usage) {
            return Err(invalid(m));
        }
        if old.package != new.package && usage {
            return Err(invalid("the plans differ in `package` mode and usage is already stored from the boundary on".into()));
        }
        if old.aggregation != new.aggregation && (old.aggregation.is_level() || new.aggregation.is_level()) {
            // A level spans windows (the level before the move would hold on) and its carry
            // and records are kept in unit·seconds: neither carries over to another rule.
            return Err(invalid(format!(
                "the plans differ in `aggregation` ({} and {}) and one of them is weighted_sum, whose level and unit·second carry do not carry over to another aggregation; register the customer's new subscription as a new instance",
                old.aggregation, new.aggregation
            )));
        }
        if old.aggregation != new.aggregation && usage {
            return Err(invalid(format!(
                "the plans differ in `aggregation` ({} and {}) and usage is already stored from the boundary on; move at a boundary before new usage arrives",
                old.aggregation, new.aggregation
            )));
        }
        crate::store::settings::set_plan(tx, inst.key, plan)?;
        Ok(inst.plan)
    })?;
    Ok(out)
}
