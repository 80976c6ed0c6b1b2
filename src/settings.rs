//! Settings that cut windows, checked against what the store remembers (issue 12, kind 7).
//!
//! Windows are cut when usage is stored: an event keeps the window that bills it, and a sealed
//! record never changes. Re-cutting them under stored usage gives overlapping records (a day
//! `[16:00Z, 16:00Z)` in `+08:00` next to `[00:00Z, 00:00Z)` in `+00:00`) or seals a day that
//! has not ended. So every command that opens the store with a config ([`check`]) compares:
//!
//! - **a plan in use that is missing** from the config: an instance that is not finished
//!   (released and sealed through its release) names a plan the config lacks → error, naming
//!   the plan, a few instances and their count. Renaming a plan: keep both `[[plan]]` blocks,
//!   move the instances (`meterd instance move`), then drop the old one.
//! - **`timezone`** against the zone the store remembers. A store with no usage adopts the
//!   configured zone (a WARN); otherwise → error: put the zone back, or change it with
//!   `meterd store set-timezone ZONE`, which [`timezone_blockers`] allows only while no
//!   unfinished day-period instance has usage and no monthly/yearly package is still valid
//!   (hourly windows are whole UTC hours in every zone; day windows and quota periods are not).
//! - **each plan's `period`** against the period its instances were cut with. If no unfinished
//!   instance of the plan has usage, the new period is adopted (a WARN); otherwise → error:
//!   put it back, or define a new plan and move the instances.
//! - **each plan's `aggregation`** (issue 14) the same way: `sum`/`count` fix a window's value
//!   at ingest, the others recompute it at seal from events indexed at ingest only for them, so
//!   switching under stored usage would bill windows from the wrong facts.
//!
//! The decisions are pure functions of the remembered values, the config and per-instance
//! facts; [`check`] is the thin shell that reads and records them. Changes are written only
//! when something differs, so a normal start takes no write lock.

use crate::config::Config;
use crate::model::{FixedTz, Period, Timestamp};
use crate::store::settings::{self as mem, Remembered};
use crate::store::{instances, InstanceRow, Store, StoreError};
use std::collections::BTreeMap;

/// At most this many instance ids are named in a message (with the total count).
const NAMED: usize = 5;

/// A setting differs from what the store remembers, or a plan in use is missing.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `a, b, c and 4 more (7 instances)`.
pub fn name_some(ids: &[String]) -> String {
    let shown = ids.iter().take(NAMED).cloned().collect::<Vec<_>>().join(", ");
    match ids.len() {
        n if n > NAMED => format!("{shown} and {} more ({n} instances)", n - NAMED),
        1 => format!("{shown} (1 instance)"),
        n => format!("{shown} ({n} instances)"),
    }
}

/// The warning for a `timezone` other than the store's Beijing time (`+08:00`), if any.
pub fn zone_warning(tz: FixedTz) -> Option<String> {
    (tz != FixedTz::default()).then(|| {
        format!(
            "timezone = \"{tz}\": the cloud store cuts days and months in Beijing time (+08:00), so day windows and day/month step \
             accumulation differ from the store's (preview may not match the bill; daily records may be refused or billed per store day)"
        )
    })
}

/// Finished: released, and sealed through the release, so it cuts no more windows.
pub fn finished(i: &InstanceRow) -> bool {
    i.release.is_some_and(|r| r.secs() <= i.sealed_until)
}

/// Plans named by unfinished instances but missing from `cfg`, each with its instances.
pub fn missing_plans(cfg: &Config, insts: &[InstanceRow]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in insts.iter().filter(|i| cfg.plan(&i.plan).is_none() && !finished(i)) {
        out.entry(i.plan.clone()).or_default().push(i.instance_id.clone());
    }
    out
}

fn missing_message(plan: &str, ids: &[String]) -> String {
    format!(
        "plan {plan:?} is used by {} but is not in the config; add its [[plan]] back (same name and period). \
         To rename or replace it, keep both [[plan]] blocks, move each instance with \
         `meterd instance move ID --plan NEW --at BOUNDARY` (see `meterd instance move --help`), then remove the old one",
        name_some(ids)
    )
}

fn timezone_message(stored: &str, configured: FixedTz) -> String {
    format!(
        "`timezone` = \"{configured}\" in the config, but this store cut its day windows, month boundaries and package periods \
         in \"{stored}\" and holds usage; changing it would re-cut them (overlapping day records). Set `timezone = \"{stored}\"` \
         back, or change the store's zone with `meterd store set-timezone {configured}` (allowed while no unreleased day-period \
         instance has usage and no monthly/yearly package is valid)"
    )
}

fn aggregation_message(plan: &str, stored: &str, configured: &str, ids: &[String]) -> String {
    format!(
        "plan {plan:?} has `aggregation = \"{configured}\"` in the config, but the store holds usage of {} aggregated by \"{stored}\"; \
         changing it would bill stored windows from the wrong facts. Set `aggregation = \"{stored}\"` back; to bill by \"{configured}\", \
         add a new [[plan]] with it and move each instance with `meterd instance move ID --plan NEW --at BOUNDARY` \
         (at a boundary with no usage stored past it)",
        name_some(ids)
    )
}

fn period_message(plan: &str, stored: &str, configured: Period, ids: &[String]) -> String {
    format!(
        "plan {plan:?} has `period = \"{}\"` in the config, but the store cut the windows of {} with period \"{stored}\"; \
         changing it would re-cut stored windows. Set `period = \"{stored}\"` back; to bill them by {}, add a new [[plan]] \
         with that period and move each instance with `meterd instance move ID --plan NEW --at BOUNDARY`",
        configured.as_str(),
        name_some(ids),
        configured.as_str()
    )
}

/// Checks the config against the store and records settings the store does not know yet.
/// Returns warnings to log (settings adopted because no stored usage depends on them).
pub fn check(store: &mut Store, cfg: &Config) -> Result<Vec<String>, SettingsError> {
    let (remembered, insts) = store.read(|tx| Ok((mem::remembered(tx)?, instances::list(tx)?)))?;
    if let Some((plan, ids)) = missing_plans(cfg, &insts).into_iter().next() {
        return Err(SettingsError::Config(missing_message(&plan, &ids)));
    }
    let zone = cfg.timezone.to_string();
    let zone_differs = remembered.timezone.as_deref().is_some_and(|z| z != zone);
    let changed_plans: Vec<(&String, &crate::config::Plan)> =
        cfg.plans.iter().filter(|(name, p)| remembered.periods.get(*name).is_some_and(|s| s != p.period.as_str())).collect();
    let changed_aggregations: Vec<(&String, &crate::config::Plan)> =
        cfg.plans.iter().filter(|(name, p)| remembered.aggregations.get(*name).is_some_and(|s| s != p.aggregation.as_str())).collect();
    if remembered.timezone.is_some()
        && !zone_differs
        && changed_plans.is_empty()
        && changed_aggregations.is_empty()
        && cfg.plans.keys().all(|n| remembered.periods.contains_key(n) && remembered.aggregations.contains_key(n))
    {
        return Ok(Vec::new());
    }
    let mut warnings = Vec::new();
    store
        .write(|tx| {
            // Usage facts, only for what differs.
            let cut = |i: &InstanceRow| mem::is_cut(tx, i.key, i.sealed_until);
            if let (true, Some(stored)) = (zone_differs, remembered.timezone.as_deref()) {
                let mut any = false;
                for i in &insts {
                    if cut(i)? {
                        any = true;
                        break;
                    }
                }
                if any {
                    return Err(StoreError::Invalid(timezone_message(stored, cfg.timezone)));
                }
                warnings.push(format!(
                    "`timezone` changed from \"{stored}\" to \"{zone}\"; the store holds no usage yet, so it adopts \"{zone}\""
                ));
            }
            for (name, plan) in &changed_plans {
                let stored = remembered.periods.get(*name).map(String::as_str).unwrap_or_default();
                let mut ids = Vec::new();
                for i in insts.iter().filter(|i| &i.plan == *name && !finished(i)) {
                    if cut(i)? {
                        ids.push(i.instance_id.clone());
                    }
                }
                if !ids.is_empty() {
                    return Err(StoreError::Invalid(period_message(name, stored, plan.period, &ids)));
                }
                warnings.push(format!(
                "plan {name:?}: `period` changed from \"{stored}\" to \"{}\"; none of its instances has usage yet, so the store adopts it",
                plan.period.as_str()
            ));
            }
            for (name, plan) in &changed_aggregations {
                let stored = remembered.aggregations.get(*name).map(String::as_str).unwrap_or_default();
                let mut ids = Vec::new();
                for i in insts.iter().filter(|i| &i.plan == *name && !finished(i)) {
                    if cut(i)? {
                        ids.push(i.instance_id.clone());
                    }
                }
                if !ids.is_empty() {
                    return Err(StoreError::Invalid(aggregation_message(name, stored, plan.aggregation.as_str(), &ids)));
                }
                warnings.push(format!(
                    "plan {name:?}: `aggregation` changed from \"{stored}\" to \"{}\"; none of its instances has usage yet, so the store adopts it",
                    plan.aggregation
                ));
            }
            mem::remember_timezone(tx, &zone)?;
            for (name, plan) in &cfg.plans {
                mem::remember_period(tx, name, plan.period.as_str())?;
                mem::remember_aggregation(tx, name, plan.aggregation.as_str())?;
            }
            Ok(())
        })
        .map_err(|e| match e {
            StoreError::Invalid(m) => SettingsError::Config(m),
            other => SettingsError::Store(other),
        })?;
    Ok(warnings)
}

/// What stops the store's zone from changing at `now`: unfinished day-period instances with
/// usage, and monthly/yearly packages still valid. Empty when the change is safe.
pub fn timezone_blockers(store: &mut Store, cfg: &Config, now: Timestamp) -> Result<Vec<String>, StoreError> {
    store.read(|tx| {
        let remembered: Remembered = mem::remembered(tx)?;
        let period_of = |plan: &str| -> Option<String> {
            remembered.periods.get(plan).cloned().or_else(|| cfg.plan(plan).map(|p| p.period.as_str().to_string()))
        };
        let mut out = Vec::new();
        for i in instances::list(tx)? {
            if period_of(&i.plan).as_deref() == Some("day") && !finished(&i) && mem::is_cut(tx, i.key, i.sealed_until)? {
                out.push(format!("instance {} (plan {:?}, day windows)", i.instance_id, i.plan));
            }
        }
        for (pkg, inst) in mem::resetting_packages(tx, now)? {
            out.push(format!("package {pkg} of {inst} (monthly/yearly reset)"));
        }
        Ok(out)
    })
}

/// Why moving an instance from `old` to `new` period at `at` is unsafe, if it is. `next` is
/// the start of the instance's first unsealed window; `usage_from_next` whether usage is
/// billed in a window at or after it. Pure.
pub fn move_refusal(tz: FixedTz, old: Period, new: Period, at: i64, next: i64, usage_from_next: bool) -> Option<String> {
    let t = Timestamp::from_secs(at);
    if tz.window_start(old, t) != at || tz.window_start(new, t) != at {
        return Some(format!("--at {t} is not a window boundary of both periods ({} and {}) in timezone {tz}", old.as_str(), new.as_str()));
    }
    if at != next {
        return Some(format!(
            "--at {t} is not the instance's next unsealed window boundary {}: windows before it are either sealed or still open under the old plan; move at {}",
            Timestamp::from_secs(next),
            Timestamp::from_secs(next)
        ));
    }
    if old != new && usage_from_next {
        return Some(format!(
            "usage is already stored in windows from {t} on, cut by period \"{}\"; a period change needs an instance with no usage past its seal cursor (seal at a boundary before new usage arrives), or register the customer's new subscription as a new instance",
            old.as_str()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_few_and_counts() {
        let ids: Vec<String> = (0..7).map(|i| format!("i{i}")).collect();
        assert_eq!(name_some(&ids), "i0, i1, i2, i3, i4 and 2 more (7 instances)");
        assert_eq!(name_some(&ids[..1]), "i0 (1 instance)");
    }

    #[test]
    fn move_needs_a_common_boundary_at_the_cursor() {
        let tz: FixedTz = "+08:00".parse().unwrap();
        let day = 1_795_190_400; // 2026-11-20T16:00:00Z, a local midnight in +08:00
        assert!(move_refusal(tz, Period::Hour, Period::Day, day, day, false).is_none());
        assert!(move_refusal(tz, Period::Hour, Period::Day, day + 3600, day + 3600, false).unwrap().contains("boundary"));
        assert!(move_refusal(tz, Period::Hour, Period::Day, day, day - 3600, false).unwrap().contains("next unsealed"));
        assert!(move_refusal(tz, Period::Hour, Period::Day, day, day, true).unwrap().contains("already stored"));
        assert!(move_refusal(tz, Period::Hour, Period::Hour, day + 3600, day + 3600, true).is_none());
    }
}
