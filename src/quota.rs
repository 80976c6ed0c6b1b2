//! Quota views and pay-per-use package coverage (design §4.2), for `GET
//! /v1/instances/{id}/quota`, `meterd package list`, status and preview.
//!
//! - **Stop-before-excess** (`package = "stop"`): what each package used per reset period is
//!   written at ingest (`collector::quota`); the view reads it.
//! - **Pay-per-use packages** (`package = "payg"`): records are reported as for any instance
//!   and the *store* applies the quota, so meterd estimates it from what the store sees: the
//!   instance's records (then its open windows) in time order, each drawn from the packages
//!   valid at its begin time, earliest expiry first, like stop usage ([`payg_cover`]). What a
//!   record draws is its *covered* usage; the rest is *billable*, and only the billable part
//!   is priced: tier pricing takes the tier of the record's billable usage, and step pricing
//!   accumulates billable usage only. Why: the prepaid units were paid for by the package; the
//!   excess is billed "per unit" as ordinary pay-per-use usage, so it is priced exactly as an
//!   instance without packages that used only the excess would be — prepaid units neither buy
//!   a cheaper step for the excess nor push it into a dearer tier.
//!
//! A package not valid at `now` shows `used` and `remaining` 0; `remaining` of the instance is
//! the sum over packages valid at `now`; a stop instance with nothing left is `exhausted`.
//!
//! **As of a time** ([`view_as_of`], `meterd package list --now T`): only draws made by usage
//! with a time before `T` count. Stop-before-excess draws are stored per package and period,
//! not per event, so they are recomputed: the instance's billed events replayed in commit
//! order through the same split as at ingest, summing the draws of events before `T`, each
//! package's capped at its stored use (the replay cannot tell when a package was registered
//! against the events' clock). Pay-per-use packages
//! count the records (and open windows) that begin before `T`, the time the store deducts
//! them at. The replay reads every event of the instance, so it runs only when asked.

use crate::config::{Config, PackageMode};
use crate::model::{split_quota, FixedTz, Package, Reset, Timestamp};
use crate::store::sql::Tx;
use crate::store::{packages, records, windows, InstanceRow, StoreError};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

/// (package id, period start) → used.
pub type Usage = BTreeMap<(String, i64), Decimal>;

/// One package as the quota view shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackageQuota {
    pub package_id: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub quota: Decimal,
    pub from: Timestamp,
    pub to: Timestamp,
    pub reset: Reset,
    /// `valid`, `expired` or `not_yet_valid` at `now`.
    pub state: &'static str,
    /// Start of the reset period holding `now` (a valid package), or of its last period (an
    /// expired one); none for a package not valid yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_start: Option<Timestamp>,
    /// Used in that period (0 for a package not valid yet).
    #[serde(with = "rust_decimal::serde::str")]
    pub used: Decimal,
    /// What can still be drawn: the quota less `used` for a valid package, 0 otherwise.
    #[serde(with = "rust_decimal::serde::str")]
    pub remaining: Decimal,
}

/// An instance's quota at `now`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuotaView {
    pub instance_id: String,
    pub plan: String,
    /// The plan's `package` setting (`stop`, `payg`), if any.
    pub mode: Option<PackageMode>,
    pub now: Timestamp,
    pub packages: Vec<PackageQuota>,
    /// Σ remaining of the packages valid at `now`.
    #[serde(with = "rust_decimal::serde::str")]
    pub remaining: Decimal,
    /// Stop-before-excess with no quota left: the service must stop.
    pub exhausted: bool,
    /// Usage no package covered (stop-before-excess): kept, shown, never uploaded.
    #[serde(with = "rust_decimal::serde::str")]
    pub over_quota: Decimal,
}

/// The quota view of one instance at `now`, with every draw stored so far.
pub fn view(tx: &Tx<'_>, cfg: &Config, inst: &InstanceRow, now: Timestamp) -> Result<QuotaView, StoreError> {
    view_with(tx, cfg, inst, now, false)
}

/// The quota view of one instance as of `at`: only draws by usage with a time before `at`
/// (see the module docs; reads every event of a stop instance).
pub fn view_as_of(tx: &Tx<'_>, cfg: &Config, inst: &InstanceRow, at: Timestamp) -> Result<QuotaView, StoreError> {
    view_with(tx, cfg, inst, at, true)
}

fn view_with(tx: &Tx<'_>, cfg: &Config, inst: &InstanceRow, now: Timestamp, as_of: bool) -> Result<QuotaView, StoreError> {
    let plan = cfg.plan(&inst.plan);
    let mode = plan.and_then(|p| p.package);
    let pkgs = packages::of_instance(tx, inst.key)?;
    let used = match (mode, plan) {
        (Some(PackageMode::Payg), _) => {
            let rows = payg_rows(tx, inst)?;
            let seen: Vec<(i64, Decimal)> = rows.into_iter().filter(|(begin, _)| !as_of || *begin < now.secs()).collect();
            payg_cover(&pkgs, cfg.timezone, &seen).1
        }
        (Some(PackageMode::Stop), Some(plan)) if as_of => {
            let stored = packages::usage_of_instance(tx, inst.key)?;
            let events = packages::billed_events(tx, inst.key)?;
            stop_used_before(&pkgs, &stored, cfg.timezone, plan.aggregation, &events, now)
        }
        _ => packages::usage_of_instance(tx, inst.key)?,
    };
    let packages: Vec<PackageQuota> = pkgs.iter().map(|p| package_at(p, cfg.timezone, &used, now)).collect();
    let remaining: Decimal = packages.iter().map(|p| p.remaining).sum();
    let packages = packages
        .into_iter()
        .map(|p| PackageQuota { quota: p.quota.normalize(), used: p.used.normalize(), remaining: p.remaining.normalize(), ..p })
        .collect();
    Ok(QuotaView {
        instance_id: inst.instance_id.clone(),
        plan: inst.plan.clone(),
        mode,
        now,
        exhausted: mode == Some(PackageMode::Stop) && remaining <= Decimal::ZERO,
        remaining: remaining.normalize(),
        packages,
        over_quota: packages::over_quota(tx, inst.key)?.normalize(),
    })
}

fn package_at(p: &Package, tz: FixedTz, used: &Usage, now: Timestamp) -> PackageQuota {
    let state = if p.valid_at(now) {
        "valid"
    } else if now < p.from {
        "not_yet_valid"
    } else {
        "expired"
    };
    // A valid package shows its current reset period; an expired one its last (what it ended
    // with: a package used up and then expired shows `used` = its quota, not 0).
    let period = match state {
        "valid" => Some(p.period_start(tz, now)),
        "expired" => Some(p.period_start(tz, Timestamp(p.to.0 - 1))),
        _ => None,
    };
    let u = period.and_then(|s| used.get(&(p.package_id.clone(), s)).copied()).unwrap_or_default();
    PackageQuota {
        package_id: p.package_id.clone(),
        quota: p.quota,
        from: p.from,
        to: p.to,
        reset: p.reset,
        state,
        period_start: period.map(Timestamp::from_secs),
        used: u,
        remaining: if state == "valid" { (p.quota - u).max(Decimal::ZERO) } else { Decimal::ZERO },
    }
}

/// What the store sees of a pay-per-use instance, in time order: (begin in UTC seconds,
/// usage) of every sealed record the store did not reject (a rejected or expired record draws
/// nothing from a package), then of every open window.
pub fn payg_rows(tx: &Tx<'_>, inst: &InstanceRow) -> Result<Vec<(i64, Decimal)>, StoreError> {
    let mut rows: Vec<(i64, i64, Decimal)> = records::of_instance(tx, inst.key, i64::MIN, i64::MAX)?
        .into_iter()
        .filter(|r| r.state != records::RecordState::Rejected)
        .map(|r| (r.window_start, r.begin, r.usage_value))
        .collect();
    for w in windows::of_instance(tx, inst.key, inst.sealed_until, i64::MAX)? {
        rows.push((w.start, w.start.max(inst.start.secs()), w.usage));
    }
    rows.sort_by_key(|r| (r.0, r.1));
    Ok(rows.into_iter().map(|(_, b, u)| (b, u)).collect())
}

/// Stop-before-excess draws by usage before `at`, replayed (pure): `events` (time, quantity)
/// in commit order, each drawing its billing quantity from `pkgs` as
/// `collector::quota::deduct` did; the draws of events with a time before `at` are summed, each
/// (package, period) capped at what is stored as used (`stored`: the replay assumes every
/// package was registered before the usage, so usage stored before a package was added could
/// otherwise show against it).
pub fn stop_used_before(
    pkgs: &[Package],
    stored: &Usage,
    tz: FixedTz,
    aggregation: crate::model::Aggregation,
    events: &[(Timestamp, Decimal)],
    at: Timestamp,
) -> Usage {
    let (mut all, mut before): (Usage, Usage) = (BTreeMap::new(), BTreeMap::new());
    for &(time, quantity) in events {
        let q = aggregation.billing_quantity(quantity);
        let (parts, _) = split_quota(pkgs, tz, time, q, |i, p| all.get(&(pkgs[i].package_id.clone(), p)).copied().unwrap_or_default());
        for (i, period, amount) in parts {
            let key = (pkgs[i].package_id.clone(), period);
            *all.entry(key.clone()).or_default() += amount;
            if time < at {
                *before.entry(key).or_default() += amount;
            }
        }
    }
    for (key, used) in before.iter_mut() {
        *used = (*used).min(stored.get(key).copied().unwrap_or_default());
    }
    before
}

/// Pay-per-use coverage: for rows `(begin, usage)` in time order, the covered part of each
/// (drawn from the packages valid at its begin), and what each package used per period.
pub fn payg_cover(pkgs: &[Package], tz: FixedTz, rows: &[(i64, Decimal)]) -> (Vec<Decimal>, Usage) {
    let mut used: Usage = BTreeMap::new();
    let mut covered = Vec::with_capacity(rows.len());
    for &(begin, usage) in rows {
        let (parts, _) = split_quota(pkgs, tz, Timestamp::from_secs(begin), usage, |i, p| {
            used.get(&(pkgs[i].package_id.clone(), p)).copied().unwrap_or_default()
        });
        let mut c = Decimal::ZERO;
        for (i, period, amount) in parts {
            *used.entry((pkgs[i].package_id.clone(), period)).or_default() += amount;
            c += amount;
        }
        covered.push(c);
    }
    (covered, used)
}

/// Every reset period a package was used in: (package id, period start, quota, used,
/// remaining), for preview's per-package consumption.
pub fn periods(pkgs: &[Package], used: &Usage) -> Vec<PeriodUse> {
    let quota: BTreeMap<&str, Decimal> = pkgs.iter().map(|p| (p.package_id.as_str(), p.quota)).collect();
    used.iter()
        .map(|((id, start), u)| {
            let q = quota.get(id.as_str()).copied().unwrap_or_default();
            PeriodUse {
                package_id: id.clone(),
                period_start: Timestamp::from_secs(*start),
                quota: q,
                used: *u,
                remaining: (q - *u).max(Decimal::ZERO),
            }
        })
        .collect()
}

/// A package's consumption in one reset period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodUse {
    pub package_id: String,
    pub period_start: Timestamp,
    #[serde(with = "rust_decimal::serde::str")]
    pub quota: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub used: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub remaining: Decimal,
}

impl PeriodUse {
    /// Shortest decimal forms (`10`, not `10.0000`), as every output shows them.
    pub fn normalize(&mut self) {
        for d in [&mut self.quota, &mut self.used, &mut self.remaining] {
            *d = d.normalize();
        }
    }
}

/// Validates a package as a user wrote it (CLI flags or the HTTP body).
pub fn new_package(package_id: &str, quota: &str, from: &str, to: &str, reset: Option<&str>) -> Result<packages::NewPackage, String> {
    crate::model::valid_package_id(package_id)?;
    let quota = crate::model::parse_quota(quota)?;
    let from = crate::model::parse_rfc3339(from).map_err(|e| format!("`from`: {e}"))?;
    let to = crate::model::parse_rfc3339(to).map_err(|e| format!("`to`: {e}"))?;
    let reset = match reset {
        None => Reset::None,
        Some(r) => Reset::parse(r).ok_or_else(|| format!("`reset` {r:?} must be \"none\", \"monthly\" or \"yearly\""))?,
    };
    Ok(packages::NewPackage { package_id: package_id.to_string(), quota, from, to, reset })
}

/// Registers a package for an instance whose plan has a `package` setting.
pub fn add(tx: &Tx<'_>, cfg: &Config, instance_id: &str, p: &packages::NewPackage, now: Timestamp) -> Result<Package, StoreError> {
    register(tx, cfg, instance_id, p, now).map(|r| r.package)
}

/// [`add`], saying whether the package is new ([`packages::register`]).
pub fn register(
    tx: &Tx<'_>,
    cfg: &Config,
    instance_id: &str,
    p: &packages::NewPackage,
    now: Timestamp,
) -> Result<packages::Registered, StoreError> {
    let inst = crate::store::instances::get(tx, instance_id)?.ok_or_else(|| crate::store::instances::unknown(instance_id))?;
    if cfg.plan(&inst.plan).and_then(|pl| pl.package).is_none() {
        return Err(StoreError::Invalid(format!(
            "instance {instance_id:?} uses plan {:?}, which has no `package` setting; set package = \"stop\" or \"payg\" in that [[plan]] first",
            inst.plan
        )));
    }
    packages::register(tx, instance_id, p, now)
}
