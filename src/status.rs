//! Status: how the pipeline is doing, for `meterd status`, `GET /v1/status` and the gauges of
//! `/metrics` (both read the same snapshot, so they agree).
//!
//! Besides the counts it carries the health checks the store can decide ([`crate::health`]):
//! records and closed-but-unsealed windows past their reporting deadline. A window counts as
//! unsealed once it is closed (`end + seal.grace` passed) and has usage but no record yet; its
//! deadline is the one its record would have. The daemon adds its live checks to the same list.

use crate::audit;
use crate::config::Config;
use crate::model::{Period, Timestamp};
use crate::store::records::RecordState;
use crate::store::sql::Tx;
use crate::store::{events, instances, lifecycle, lifecycle_flags, meta, packages, records, Store, StoreError};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

/// Hourly records must reach the store within 2 hours of their end.
pub const HOURLY_DEADLINE_SECS: i64 = 2 * 3600;
/// Daily records: by 01:00 (Beijing) after the day, i.e. 1 hour after a local-midnight end.
pub const DAILY_DEADLINE_SECS: i64 = 3600;

/// The status snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub now: Timestamp,
    /// Set when `timezone` is not the store's Beijing time (`+08:00`): day windows and day/month
    /// step accumulation then differ from the store's (issue 12, kind 8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone_warning: Option<String>,
    pub instances: u64,
    pub events: u64,
    /// Records by delivery state.
    pub records: BTreeMap<String, u64>,
    /// Records waiting for upload (pending or sending).
    pub backlog: u64,
    /// Begin time of the oldest record waiting for upload.
    pub oldest_pending: Option<Timestamp>,
    /// Waiting records whose reporting deadline has passed.
    pub past_deadline: u64,
    /// The earliest reporting deadline of a record waiting for upload (`/metrics`
    /// `meterd_records_next_deadline_timestamp_seconds`, which the "approaching deadline" alert
    /// of `contrib/prometheus` watches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_deadline: Option<Timestamp>,
    /// When the last upload run that delivered at least one record ended (RFC 3339), by
    /// whichever node ran it; `None` before any. A run that delivered some batches and then
    /// stopped on a failure counts: `last_error` then says why it stopped.
    pub last_successful_upload: Option<String>,
    /// The store's last successful seal, by whichever node sealed (every seal run writes it,
    /// the daemon's and `meterd seal`'s; on a shared store every node reads the same); `None`
    /// before any.
    pub last_seal: Option<Timestamp>,
    /// The latest upload run's failure (`TIME: what failed`); `None` when that run ended
    /// without one (a later clean run clears an earlier failure).
    pub last_error: Option<String>,
    /// Instances frozen at `now`.
    pub frozen: Vec<String>,
    /// Late usage of released instances that no record can bill, per instance, in the plan's
    /// unit (`weighted_sum`: the carry left at the release, kept in unit·seconds, shown in
    /// unit·hours to 9 decimals).
    pub unbillable: BTreeMap<String, String>,
    /// Carried usage no record can ever bill, per instance (see [`audit::stranded`]): should
    /// never show; sealing and `instance release` move it to `unbillable`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stranded_carry: BTreeMap<String, String>,
    /// Stop-before-excess usage no package covered, per instance: kept, never uploaded.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub over_quota: BTreeMap<String, String>,
    /// Stop-before-excess instances with no quota left at `now`: their service must stop.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quota_exhausted: Vec<String>,
    /// Per instance with packages (or a plan with a `package` setting): each package's use in
    /// its current reset period and what is left, at `now`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quota: Vec<crate::quota::QuotaView>,
    /// Sealed records that a release or freeze reported later contradicts: ending after the
    /// instance's release (the store refuses them) or lying inside a frozen interval (see
    /// `store::lifecycle_flags`). A sealed record never changes; these are for the seller to
    /// settle with the store.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flagged_records: Vec<lifecycle_flags::Flagged>,
    /// Events of point plans (`max`, `latest`, `unique_count`) stored after their window was
    /// sealed, or taken out of their window by a release reported late
    /// (`store::lifecycle_release`), per instance: acknowledged, billed nowhere (issue 14).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub late_unbilled: BTreeMap<String, u64>,
    /// `weighted_sum` plans: what events stored after their window was sealed would have
    /// changed in the sealed windows, per instance, in the plan's unit·hours (signed, rounded
    /// to 4 decimals); never billed — a sealed record never changes (issue 14).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub late_unbilled_change: BTreeMap<String, String>,
    /// Point plans: what the 4-decimal floor dropped from their records, per instance (not
    /// carried: those values are not additive; shown so nothing is dropped silently).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rounding_dropped: BTreeMap<String, String>,
    /// Instances whose conservation check fails (should always be empty); only computed when
    /// asked for, since it reads every event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conservation_violations: Option<Vec<String>>,
    /// Closed windows with usage and no record yet (the seal loop is behind or failing).
    pub unsealed_windows: u64,
    /// Those of them whose record would already be past its reporting deadline.
    pub unsealed_past_deadline: u64,
    /// Unfinished instances whose plan is not in the config (instance id → plan): never sealed.
    /// A finished one (released, sealed through its release) may lose its plan
    /// ([`crate::settings`]): it has nothing left to seal, so it is not listed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub missing_plans: BTreeMap<String, String>,
    /// Health checks (see [`crate::health`]): the store's here, the daemon's live ones too.
    pub checks: Vec<crate::health::Check>,
    /// Per plan with instances (when the audit ran): its aggregation, which check the audit
    /// ran ([`audit::check_name`]) and whether it holds for every instance of the plan.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_checks: BTreeMap<String, PlanCheck>,
    /// Notices not acknowledged whose receiver is no longer in the config, per receiver name
    /// (`crate::notify::Outbox`, the same counts as `/metrics`'
    /// `meterd_notifications_orphaned`): never sent until a `[[notify]]` of that name is
    /// configured again. Shown, but not a `status --check` failure: nothing billed depends on
    /// them (the store-side facts they announce are in this status too), and they arise only
    /// from a receiver the operator removed or renamed — a check failing until the receiver
    /// is restored would keep failing after every deliberate removal.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub notifications_orphaned: BTreeMap<String, u64>,
    /// Which store this is and, on a shared one, who seals (set by the caller that knows the
    /// node: [`store_view`]); omitted where nobody set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreView>,
}

/// The store's backend and, on PostgreSQL, the sealer lease and the nodes seen (issue 13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreView {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// This process's node name (`--node` / `METERD_NODE`, else host name and pid).
    pub node: String,
    /// The sealer lease as stored; `None` on SQLite or before any node took it.
    pub lease: Option<LeaseView>,
    /// What the lease means here, in words: "no lease (one machine)" on SQLite, "held by this
    /// node", "held by NODE", "expired (held by NODE)" or "free" on PostgreSQL.
    pub lease_state: String,
    /// Nodes that reported within [`NODES_SEEN_LEASES`] leases, most recent first (empty on
    /// SQLite, where there is one machine and no heartbeat).
    pub nodes_seen: Vec<NodeView>,
}

impl StoreView {
    /// The lease in one line for `meterd status`, the holder named once: `held by node-a,
    /// epoch 1, expires T`, `held by this node (node-a), epoch 1, expires T`, `expired: held by
    /// node-a (epoch 1) until T; another node may take it`, or [`StoreView::lease_state`]
    /// alone where there is no lease row (SQLite, a free lease).
    pub fn lease_line(&self) -> String {
        match &self.lease {
            None => self.lease_state.clone(),
            Some(l) => match l.expires {
                None => format!("free: released by {} (epoch {}) when it stopped; any node may take it", l.holder, l.epoch),
                Some(t) if l.expired => format!("expired: held by {} (epoch {}) until {t}; another node may take it", l.holder, l.epoch),
                Some(t) if l.held_here => format!("held by this node ({}), epoch {}, expires {t}", l.holder, l.epoch),
                Some(t) => format!("held by {}, epoch {}, expires {t}", l.holder, l.epoch),
            },
        }
    }
}

/// The sealer lease row; times by the database's clock. Three states, never two at once: held
/// (`expires` in the future), expired (`expired`: it ran out; the holder keeps it until another
/// node takes it) and released (`released`: the holder gave it back at a clean stop; `expires`
/// is `null`, not the 1970 the row stores — `store::lease::release` sets its expiry to 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseView {
    pub holder: String,
    pub epoch: i64,
    /// When the lease runs out; `None` (JSON `null`) once released.
    pub expires: Option<Timestamp>,
    /// Whether this process holds the lease at its stored epoch (false once released).
    pub held_here: bool,
    /// Whether `expires` passed (another node may take it; the holder keeps it until one
    /// does); false for a released lease, which did not run out.
    pub expired: bool,
    /// Whether the holder gave the lease back at a clean stop: any node may take it.
    pub released: bool,
}

impl LeaseView {
    /// The view of a lease row read at `now_ns` (the database's clock); `held` is the epoch at
    /// which this process holds it, if any. An expiry of 0 means released (see above).
    pub fn of_row(holder: String, epoch: i64, expires_ns: i64, node: &str, held: Option<i64>, now_ns: i64) -> LeaseView {
        let released = expires_ns == 0;
        LeaseView {
            held_here: !released && holder == node && held == Some(epoch),
            expired: !released && expires_ns <= now_ns,
            released,
            expires: (!released).then_some(Timestamp(expires_ns)),
            holder,
            epoch,
        }
    }
}

/// One node of a shared store, from its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeView {
    pub name: String,
    pub version: String,
    pub started: Timestamp,
    pub last_seen: Timestamp,
}

/// A node counts as seen when its heartbeat is at most this many lease durations old (the
/// daemon heartbeats every third of a lease, so a live node is never missing; a stopped one
/// drops out after a few minutes at the default 15 s lease).
pub const NODES_SEEN_LEASES: u32 = 5;

/// Reads [`StoreView`] for `node` from `store`; `held` is the epoch at which this process holds
/// the sealer lease (`None`: it holds none — a one-shot command, a standby), so a lease that
/// names this node but was taken by another process of that name is not "held here"; `ttl` is
/// `[store] lease` (see `store::lease`). On SQLite it reads nothing: no lease, one machine.
pub fn store_view(store: &mut Store, node: &str, held: Option<i64>, ttl: std::time::Duration) -> Result<StoreView, StoreError> {
    use crate::store::lease as l;
    let backend = store.backend();
    if backend == crate::store::sql::Backend::Sqlite {
        return Ok(StoreView {
            backend: backend.as_str(),
            node: node.to_string(),
            lease: None,
            lease_state: "no lease (one machine)".into(),
            nodes_seen: Vec::new(),
        });
    }
    store.read(|tx| {
        let now = l::db_now_ns(tx)?;
        let lease = l::get(tx, l::SEALER)?.map(|r| LeaseView::of_row(r.holder, r.epoch, r.expires_ns, node, held, now));
        let lease_state = match &lease {
            None => "free".to_string(),
            Some(v) if v.released => format!("free (released by {})", v.holder),
            Some(v) if v.expired => format!("expired (held by {})", v.holder),
            Some(v) if v.held_here => "held by this node".to_string(),
            Some(v) => format!("held by {}", v.holder),
        };
        let nodes_seen = l::nodes_seen(tx, ttl * NODES_SEEN_LEASES)?
            .into_iter()
            .map(|n| NodeView { name: n.name, version: n.version, started: Timestamp(n.started_ns), last_seen: Timestamp(n.last_seen_ns) })
            .collect();
        Ok(StoreView { backend: backend.as_str(), node: node.to_string(), lease, lease_state, nodes_seen })
    })
}

/// Which audit check ran for a plan, and whether it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlanCheck {
    pub aggregation: crate::model::Aggregation,
    pub check: &'static str,
    pub holds: bool,
}

/// The reporting deadline of a record of `period` that ends at `end` (UTC seconds).
pub fn deadline(period: Period, end: i64) -> i64 {
    match period {
        Period::Hour => end + HOURLY_DEADLINE_SECS,
        Period::Day => end + DAILY_DEADLINE_SECS,
    }
}

/// Reads the status at `now`.
pub fn status(store: &mut Store, cfg: &Config, now: Timestamp, with_audit: bool) -> Result<Status, StoreError> {
    let (insts, frozen, flagged, quota, stranded, n_events, by_state, waiting, last_ok, last_err, unsealed) = store.read(|tx| {
        let insts = instances::list(tx)?;
        let mut frozen = Vec::new();
        let mut flagged = Vec::new();
        let mut quota = Vec::new();
        let mut stranded = BTreeMap::new();
        for i in &insts {
            let history = lifecycle::history(tx, i.key)?;
            if history.frozen_since(now).is_some() {
                frozen.push(i.instance_id.clone());
            }
            flagged.extend(lifecycle_flags::of_instance(tx, i, &history)?);
            let pkgs = packages::of_instance(tx, i.key)?;
            let lost = audit::stranded(i, &pkgs);
            if !lost.is_zero() {
                stranded.insert(i.instance_id.clone(), lost.normalize().to_string());
            }
            let packaged = cfg.plan(&i.plan).is_some_and(|p| p.package.is_some());
            if packaged || !pkgs.is_empty() {
                quota.push(crate::quota::view(tx, cfg, i, now)?);
            }
        }
        Ok((
            insts.clone(),
            frozen,
            flagged,
            quota,
            stranded,
            events::count(tx)?,
            records::count_by_state(tx)?,
            records::unsent(tx, usize::MAX >> 1)?,
            meta::get(tx, meta::LAST_UPLOAD_OK)?,
            meta::get(tx, meta::LAST_UPLOAD_ERROR)?,
            unsealed_windows(tx, cfg, &insts, now)?,
        ))
    })?;
    let (late_unbilled, late_unbilled_change, rounding_dropped, last_seal, undelivered) = store.read(|tx| {
        let late: BTreeMap<String, u64> = crate::store::points::late_unbilled(tx)?.into_iter().collect();
        let change: BTreeMap<String, String> = crate::store::levels::late_changes(tx)?
            .into_iter()
            .map(|(i, c)| (i, crate::model::weighted::hours_shown(c, 4).to_string()))
            .collect();
        let mut dropped = BTreeMap::new();
        for i in insts.iter().filter(|i| cfg.plan(&i.plan).is_some_and(|p| p.aggregation.is_point())) {
            let d = crate::store::points::dropped(tx, i.key)?;
            if !d.is_zero() {
                dropped.insert(i.instance_id.clone(), d.normalize().to_string());
            }
        }
        let last_seal = meta::get(tx, meta::LAST_SEAL)?.and_then(|t| t.parse::<Timestamp>().ok());
        Ok((late, change, dropped, last_seal, crate::store::notify::undelivered_by_target(tx)?))
    })?;
    let plan_of: BTreeMap<i64, Period> = insts.iter().filter_map(|i| cfg.plan(&i.plan).map(|p| (i.key, p.period))).collect();
    let past_deadline =
        waiting.iter().filter(|r| plan_of.get(&r.instance_key).is_some_and(|p| deadline(*p, r.end) < now.secs())).count() as u64;
    let mut audit_checks = BTreeMap::new();
    let violations = if with_audit {
        let balances = audit::balances_with(store, &audit::rule_of(cfg))?;
        let plan_name: BTreeMap<&str, &str> = insts.iter().map(|i| (i.instance_id.as_str(), i.plan.as_str())).collect();
        for b in &balances {
            let plan = plan_name.get(b.instance_id.as_str()).copied().unwrap_or_default().to_string();
            let e = audit_checks.entry(plan).or_insert(PlanCheck {
                aggregation: b.aggregation,
                check: audit::check_name(b.aggregation),
                holds: true,
            });
            e.holds &= b.holds();
        }
        Some(balances.into_iter().filter(|b| !b.holds()).map(|b| b.instance_id).collect())
    } else {
        None
    };
    let inputs = crate::health::Inputs {
        now: now.secs(),
        records_past_deadline: past_deadline,
        windows_past_deadline: unsealed.1,
        ..Default::default()
    };
    Ok(Status {
        store: None,
        checks: crate::health::evaluate(&inputs),
        unsealed_windows: unsealed.0,
        unsealed_past_deadline: unsealed.1,
        missing_plans: insts
            .iter()
            .filter(|i| cfg.plan(&i.plan).is_none() && !crate::settings::finished(i))
            .map(|i| (i.instance_id.clone(), i.plan.clone()))
            .collect(),
        now,
        timezone_warning: crate::settings::zone_warning(cfg.timezone),
        instances: insts.len() as u64,
        frozen,
        events: n_events,
        records: by_state.iter().map(|(s, n)| (s.as_str().to_string(), *n)).collect(),
        backlog: by_state.iter().filter(|(s, _)| matches!(s, RecordState::Pending | RecordState::Sending)).map(|(_, n)| n).sum(),
        oldest_pending: waiting.iter().map(|r| r.begin).min().map(Timestamp::from_secs),
        past_deadline,
        next_deadline: waiting
            .iter()
            .filter_map(|r| plan_of.get(&r.instance_key).map(|p| deadline(*p, r.end)))
            .min()
            .map(Timestamp::from_secs),
        last_successful_upload: last_ok,
        last_seal,
        notifications_orphaned: crate::notify::Outbox::split(&undelivered, &cfg.notify).orphaned,
        last_error: last_err,
        unbillable: insts
            .iter()
            .filter(|i| i.unbillable > Decimal::ZERO)
            .map(|i| {
                // A weighted_sum instance keeps it in unit·seconds: shown in unit·hours.
                let level = cfg.plan(&i.plan).is_some_and(|p| p.aggregation.is_level());
                let shown = if level { crate::model::weighted::hours_shown(i.unbillable, 9) } else { i.unbillable.normalize() };
                (i.instance_id.clone(), shown.to_string())
            })
            .collect(),
        stranded_carry: stranded,
        over_quota: quota.iter().filter(|q| !q.over_quota.is_zero()).map(|q| (q.instance_id.clone(), q.over_quota.to_string())).collect(),
        quota_exhausted: quota.iter().filter(|q| q.exhausted).map(|q| q.instance_id.clone()).collect(),
        quota,
        flagged_records: flagged,
        late_unbilled,
        late_unbilled_change,
        rounding_dropped,
        conservation_violations: violations,
        audit_checks,
    })
}

/// (closed windows with usage and no record, those of them past their reporting deadline).
fn unsealed_windows(tx: &Tx<'_>, cfg: &Config, insts: &[instances::InstanceRow], now: Timestamp) -> Result<(u64, u64), StoreError> {
    let due: Vec<_> = insts
        .iter()
        .filter_map(|i| cfg.plan(&i.plan).map(|p| (i, p, crate::seal::closed_until(cfg, p, now))))
        .filter(|(i, _, closed)| i.sealed_until < *closed)
        .collect();
    if due.is_empty() {
        return Ok((0, 0));
    }
    let tail = crate::store::windows::Unfolded::load(tx)?;
    let (mut n, mut late) = (0, 0);
    for (i, plan, closed) in due {
        for w in crate::store::windows::of_instance_with(tx, &tail, i.key, i.sealed_until, closed)? {
            // A point plan's window (max, latest, unique_count) and a level plan's
            // (weighted_sum) bill 0 to `windows` per event and are sealed from their events, so
            // their events count as usage here.
            if w.usage.is_zero() && !((plan.aggregation.is_point() || plan.aggregation.is_level()) && w.events > 0) {
                continue;
            }
            n += 1;
            if deadline(plan.period, cfg.timezone.window_end(plan.period, w.start)) < now.secs() {
                late += 1;
            }
        }
    }
    Ok((n, late))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_line_names_the_holder_once() {
        let view = |held_here, expired| StoreView {
            backend: "postgres",
            node: if held_here { "n1".into() } else { "n2".into() },
            lease: Some(LeaseView {
                holder: "n1".into(),
                epoch: 1,
                expires: Some(Timestamp::from_secs(1_795_435_200)),
                held_here,
                expired,
                released: false,
            }),
            lease_state: String::new(),
            nodes_seen: Vec::new(),
        };
        assert_eq!(view(false, false).lease_line(), "held by n1, epoch 1, expires 2026-11-23T12:00:00Z");
        assert_eq!(view(true, false).lease_line(), "held by this node (n1), epoch 1, expires 2026-11-23T12:00:00Z");
        assert_eq!(view(false, true).lease_line(), "expired: held by n1 (epoch 1) until 2026-11-23T12:00:00Z; another node may take it");
        for line in [view(false, false), view(true, false), view(false, true)].map(|v| v.lease_line()) {
            assert_eq!(line.matches("n1").count(), 1, "{line}");
        }
    }

    #[test]
    fn a_released_lease_is_neither_expired_nor_dated_1970() {
        let v = LeaseView::of_row("n1".into(), 1, 0, "n1", Some(1), 5);
        assert_eq!((v.released, v.expired, v.held_here, v.expires), (true, false, false, None));
        let json = serde_json::to_value(&v).unwrap_or_default();
        assert_eq!(json["expires"], serde_json::Value::Null, "{json}");
        assert_eq!(json["released"], true, "{json}");
        let run_out = LeaseView::of_row("n1".into(), 1, 5, "n2", None, 5);
        assert_eq!((run_out.released, run_out.expired, run_out.expires), (false, true, Some(Timestamp(5))));
    }
}
