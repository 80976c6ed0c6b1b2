//! Which announcements a fact calls for: pure functions from a fact (a package's use, an
//! instance's window usage, a waiting record's deadline, a rejection, a readiness change) and
//! the receivers to the notices to enqueue. They decide *crossed or not*; whether a state was
//! announced before is the outbox's unique `(target, state)` (see `store::notify`), so calling
//! them again with a fact past the same threshold enqueues nothing new.
//!
//! State keys (one announcement each per receiver):
//! - `quota:<package_id>:<period start, unix s>:<fraction>` — a new package or reset period is a
//!   new state;
//! - `usage:<instance_id>:<window start, unix s>:<amount>` — a new window is a new state;
//! - `deadline_near:<metering_sn>` and `deadline_missed:<metering_sn>`;
//! - `rejected:<metering_sn>:<rejected at, unix ns>` — a requeued record rejected again is new;
//! - `readiness:<node>:<lost|regained>:<at, unix ns>` — each change once.

use super::build;
use crate::config::{EventKind, NotifyTarget};
use crate::model::Timestamp;
use crate::store::notify::NewNotice;
use rust_decimal::Decimal;
use serde::Serialize;

/// What a package of a stop-before-excess instance used in one reset period.
#[derive(Debug, Clone)]
pub struct PackageUse<'a> {
    pub instance_id: &'a str,
    pub plan: &'a str,
    pub package_id: &'a str,
    /// Start of the package's reset period (unix seconds).
    pub period_start: i64,
    pub quota: Decimal,
    pub used: Decimal,
    /// Quota left over every package of the instance valid now; 0: the service must stop.
    pub instance_remaining: Decimal,
}

/// `data` of `quota.crossed`; decimals as exact strings.
#[derive(Serialize)]
struct QuotaData<'a> {
    package_id: &'a str,
    fraction: String,
    remaining: String,
    total: String,
    used: String,
    period_start: Timestamp,
    instance_remaining: String,
    instance_exhausted: bool,
}

/// `quota.crossed` notices: one per receiver that wants them (and covers the plan) and per
/// configured fraction `f` with `used ≥ f · quota`. A package with no quota crosses nothing.
pub fn quota(targets: &[NotifyTarget], u: &PackageUse<'_>, at: Timestamp) -> Vec<NewNotice> {
    if u.quota <= Decimal::ZERO {
        return Vec::new();
    }
    let mut out = Vec::new();
    for t in targets.iter().filter(|t| t.wants(EventKind::QuotaCrossed) && t.covers_plan(u.plan)) {
        for f in t.quota_fractions.iter().filter(|f| u.used >= **f * u.quota) {
            let data = QuotaData {
                package_id: u.package_id,
                fraction: f.normalize().to_string(),
                remaining: (u.quota - u.used).max(Decimal::ZERO).normalize().to_string(),
                total: u.quota.normalize().to_string(),
                used: u.used.normalize().to_string(),
                period_start: Timestamp::from_secs(u.period_start),
                instance_remaining: u.instance_remaining.normalize().to_string(),
                instance_exhausted: u.instance_remaining <= Decimal::ZERO,
            };
            let state = format!("quota:{}:{}:{}", u.package_id, u.period_start, f.normalize());
            out.push(build(&t.name, EventKind::QuotaCrossed, state, Some(u.instance_id), at, data));
        }
    }
    out
}

/// An instance's usage in one window (its plan's record period).
#[derive(Debug, Clone)]
pub struct WindowUse<'a> {
    pub instance_id: &'a str,
    pub plan: &'a str,
    /// Window start, unix seconds.
    pub window_start: i64,
    pub usage: Decimal,
}

/// `usage.crossed` notices: per receiver and configured amount `a` with `usage ≥ a`.
pub fn usage(targets: &[NotifyTarget], u: &WindowUse<'_>, at: Timestamp) -> Vec<NewNotice> {
    let mut out = Vec::new();
    for t in targets.iter().filter(|t| t.wants(EventKind::UsageCrossed) && t.covers_plan(u.plan)) {
        for a in t.usage_amounts.iter().filter(|a| u.usage >= **a) {
            let data = serde_json::json!({
                "amount": a.normalize().to_string(),
                "usage": u.usage.normalize().to_string(),
                "window_start": Timestamp::from_secs(u.window_start),
            });
            let state = format!("usage:{}:{}:{}", u.instance_id, u.window_start, a.normalize());
            out.push(build(&t.name, EventKind::UsageCrossed, state, Some(u.instance_id), at, data));
        }
    }
    out
}

/// A record waiting for the store's acceptance.
#[derive(Debug, Clone)]
pub struct Waiting<'a> {
    pub metering_sn: &'a str,
    pub instance_id: &'a str,
    pub plan: &'a str,
    /// Its reporting deadline, unix seconds (`status::deadline`).
    pub deadline: i64,
}

/// `record.deadline_missed` when `now` is at or past the deadline, else
/// `record.deadline_near` once `now` is within the receiver's `deadline_margin` of it.
pub fn deadline(targets: &[NotifyTarget], r: &Waiting<'_>, now: Timestamp) -> Vec<NewNotice> {
    let mut out = Vec::new();
    for t in targets.iter().filter(|t| t.covers_plan(r.plan)) {
        let (kind, prefix) = if now.secs() >= r.deadline {
            (EventKind::DeadlineMissed, "deadline_missed")
        } else if now.secs() >= r.deadline - t.deadline_margin.as_secs_i64() {
            (EventKind::DeadlineNear, "deadline_near")
        } else {
            continue;
        };
        if t.wants(kind) {
            let data = serde_json::json!({"metering_sn": r.metering_sn, "deadline": Timestamp::from_secs(r.deadline)});
            out.push(build(&t.name, kind, format!("{prefix}:{}", r.metering_sn), Some(r.instance_id), now, data));
        }
    }
    out
}

/// A record the store rejected (a row of the rejected log).
#[derive(Debug, Clone)]
pub struct Rejection<'a> {
    pub metering_sn: &'a str,
    pub instance_id: &'a str,
    pub plan: &'a str,
    pub code: &'a str,
    pub message: &'a str,
    pub at_ns: i64,
}

/// `record.rejected` notices, one per receiver that wants them.
pub fn rejected(targets: &[NotifyTarget], r: &Rejection<'_>) -> Vec<NewNotice> {
    let at = Timestamp(r.at_ns);
    targets
        .iter()
        .filter(|t| t.wants(EventKind::RecordRejected) && t.covers_plan(r.plan))
        .map(|t| {
            let data = serde_json::json!({"metering_sn": r.metering_sn, "code": r.code, "message": r.message});
            build(&t.name, EventKind::RecordRejected, format!("rejected:{}:{}", r.metering_sn, r.at_ns), Some(r.instance_id), at, data)
        })
        .collect()
}

/// `readiness.lost` (with the failing checks) or `readiness.regained`, for every receiver
/// that wants it (readiness is not about an instance: `plans` does not filter it).
pub fn readiness(targets: &[NotifyTarget], node: &str, ready: bool, failing: &[String], at: Timestamp) -> Vec<NewNotice> {
    let (kind, word) = if ready { (EventKind::ReadinessRegained, "regained") } else { (EventKind::ReadinessLost, "lost") };
    targets
        .iter()
        .filter(|t| t.wants(kind))
        .map(|t| {
            let data = serde_json::json!({"node": node, "failing": failing});
            build(&t.name, kind, format!("readiness:{node}:{word}:{}", at.0), None, at, data)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn targets() -> Vec<NotifyTarget> {
        Config::from_toml_str(
            "[[notify]]\nname = \"a\"\nurl = \"https://a.example\"\nsecret = \"s\"\nusage_amounts = [\"100\", \"50\"]\n\
             [[notify]]\nname = \"b\"\nurl = \"https://b.example\"\nsecret = \"s\"\nevents = [\"record.rejected\"]\n",
        )
        .unwrap()
        .notify
    }

    fn pkg(used: &str, remaining: &str) -> PackageUse<'static> {
        PackageUse {
            instance_id: "i-1",
            plan: "p",
            package_id: "pkg-1",
            period_start: 1_764_460_800,
            quota: Decimal::from(1000),
            used: used.parse().unwrap(),
            instance_remaining: remaining.parse().unwrap(),
        }
    }

    #[test]
    fn quota_crossings_by_fraction() {
        let at = Timestamp::from_secs(1_764_460_900);
        for (used, want) in [
            ("0", vec![]),
            ("799.9999", vec![]),
            ("800", vec!["0.8"]),
            ("999", vec!["0.8"]),
            ("1000", vec!["0.8", "1"]),
            ("1200", vec!["0.8", "1"]),
        ] {
            let got: Vec<String> = quota(&targets(), &pkg(used, "0"), at).into_iter().map(|n| n.state).collect();
            let want: Vec<String> = want.into_iter().map(|f| format!("quota:pkg-1:1764460800:{f}")).collect();
            assert_eq!(got, want, "used {used}");
        }
        let n = &quota(&targets(), &pkg("800", "200"), at)[0];
        assert_eq!(n.target, "a", "b did not ask for quota events");
        assert!(
            n.body.contains(r#""data":{"package_id":"pkg-1","fraction":"0.8","remaining":"200","total":"1000","used":"800""#),
            "{}",
            n.body
        );
        assert!(n.body.contains(r#""instance_exhausted":false"#));
    }

    #[test]
    fn a_new_period_is_a_new_state() {
        let at = Timestamp::from_secs(0);
        let a = quota(&targets(), &pkg("1000", "0"), at);
        let b = quota(&targets(), &PackageUse { period_start: 1_767_139_200, ..pkg("1000", "0") }, at);
        assert_ne!(a[0].state, b[0].state);
        assert_ne!(a[0].id, b[0].id);
        assert_eq!(a[0].id, quota(&targets(), &pkg("1001", "0"), at)[0].id, "the same state has the same id");
    }

    #[test]
    fn usage_crossings_by_amount() {
        let u = |used: &str| WindowUse { instance_id: "i-1", plan: "p", window_start: 3600, usage: used.parse().unwrap() };
        let states = |used: &str| usage(&targets(), &u(used), Timestamp::from_secs(0)).into_iter().map(|n| n.state).collect::<Vec<_>>();
        assert!(states("49.9").is_empty());
        assert_eq!(states("50"), vec!["usage:i-1:3600:50"]);
        assert_eq!(states("100"), vec!["usage:i-1:3600:50", "usage:i-1:3600:100"]);
    }

    #[test]
    fn deadline_near_then_missed() {
        let r = Waiting { metering_sn: "sn1", instance_id: "i-1", plan: "p", deadline: 10_000 };
        let kinds = |now| deadline(&targets(), &r, Timestamp::from_secs(now)).into_iter().map(|n| n.kind).collect::<Vec<_>>();
        assert!(kinds(10_000 - 3601).is_empty());
        assert_eq!(kinds(10_000 - 3600), vec!["record.deadline_near"]);
        assert_eq!(kinds(10_000), vec!["record.deadline_missed"]);
    }

    #[test]
    fn rejections_and_readiness_go_to_those_who_asked() {
        let r = Rejection { metering_sn: "sn1", instance_id: "i-1", plan: "p", code: "MKT.0100", message: "bad", at_ns: 5 };
        let got: Vec<String> = rejected(&targets(), &r).into_iter().map(|n| n.target).collect();
        assert_eq!(got, vec!["a", "b"]);
        let lost = readiness(&targets(), "n1", false, &["store".into()], Timestamp(7));
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].kind, "readiness.lost");
        assert!(lost[0].body.contains(r#""instance_id":null"#));
    }
}
