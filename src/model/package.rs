//! Prepaid packages (design §4.2): a package instance bought for a pay-per-use instance, with a
//! quota in the plan's unit, a validity interval and a reset rule. Pure: no I/O, no clock.
//!
//! Rules kept here, used by ingest, sealing, preview and the quota views alike:
//! - a package is valid at `t` when `from ≤ t < to` (half-open, like windows);
//! - its quota renews each *reset period*: the calendar month (`monthly`) or year (`yearly`)
//!   in the configured zone, clipped to the validity; with `none` the whole validity is one
//!   period. A period is keyed by its (clipped) start in UTC seconds;
//! - usage is drawn from the packages valid at the usage's time, earliest expiry first (ties:
//!   package id), each up to what is left of its quota in the period holding that time
//!   ([`split`]).

use super::{FixedTz, Timestamp};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// When a package's quota renews.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Reset {
    #[default]
    None,
    Monthly,
    Yearly,
}

impl Reset {
    pub fn as_str(self) -> &'static str {
        match self {
            Reset::None => "none",
            Reset::Monthly => "monthly",
            Reset::Yearly => "yearly",
        }
    }

    pub fn parse(s: &str) -> Option<Reset> {
        match s {
            "none" => Some(Reset::None),
            "monthly" => Some(Reset::Monthly),
            "yearly" => Some(Reset::Yearly),
            _ => None,
        }
    }
}

/// A registered package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub package_id: String,
    #[serde(skip)]
    pub instance_key: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub quota: Decimal,
    pub from: Timestamp,
    pub to: Timestamp,
    pub reset: Reset,
    /// Remainder below 0.0001 (or a capped excess) waiting for this package's next record.
    #[serde(skip)]
    pub carry: Decimal,
}

impl Package {
    pub fn valid_at(&self, t: Timestamp) -> bool {
        self.from <= t && t < self.to
    }

    /// Start (UTC seconds) of the reset period holding `t` (meaningful when valid at `t`).
    pub fn period_start(&self, tz: FixedTz, t: Timestamp) -> i64 {
        let from = self.from.secs();
        match self.reset {
            Reset::None => from,
            Reset::Monthly => tz.month_start(t).max(from),
            Reset::Yearly => tz.year_start(t).max(from),
        }
    }
}

/// A quota as written by a user: a plain decimal > 0 with at most 4 decimals (the store's
/// precision, so records drawn from a package can add up to exactly its quota).
pub fn parse_quota(text: &str) -> Result<Decimal, String> {
    let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') && text.matches('.').count() <= 1;
    let d: Decimal = if plain { text.parse().ok() } else { None }
        .ok_or_else(|| format!("quota {text:?} is not a plain decimal (digits with an optional '.' fraction)"))?;
    if d.normalize().scale() > 4 {
        return Err(format!("quota {text} has more than 4 decimals; the store's usage values have at most 4"));
    }
    if d <= Decimal::ZERO || d > Decimal::new(1_000_000_000_000_000, 0) {
        return Err(format!("quota {text} must be greater than 0 and at most 1e18"));
    }
    Ok(d.normalize())
}

/// The packages valid at `t`, in deduction order: earliest expiry first, then package id.
pub fn deduction_order(packages: &[Package], t: Timestamp) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..packages.len()).filter(|&i| packages[i].valid_at(t)).collect();
    idx.sort_by(|&a, &b| (packages[a].to, &packages[a].package_id).cmp(&(packages[b].to, &packages[b].package_id)));
    idx
}

/// Splits `quantity` used at `t` over the packages: `used(i, period)` tells what package `i`
/// has used in the reset period starting at `period`. Returns the parts as
/// `(package index, period start, amount)` in deduction order, and what no quota covers.
pub fn split(
    packages: &[Package],
    tz: FixedTz,
    t: Timestamp,
    quantity: Decimal,
    mut used: impl FnMut(usize, i64) -> Decimal,
) -> (Vec<(usize, i64, Decimal)>, Decimal) {
    let mut rest = quantity;
    let mut parts = Vec::new();
    for i in deduction_order(packages, t) {
        if rest <= Decimal::ZERO {
            break;
        }
        let period = packages[i].period_start(tz, t);
        let left = packages[i].quota - used(i, period);
        if left <= Decimal::ZERO {
            continue;
        }
        let take = left.min(rest);
        parts.push((i, period, take));
        rest -= take;
    }
    (parts, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_rfc3339;

    fn t(s: &str) -> Timestamp {
        parse_rfc3339(s).unwrap()
    }

    fn pkg(id: &str, quota: &str, from: &str, to: &str, reset: Reset) -> Package {
        Package {
            package_id: id.into(),
            instance_key: 1,
            quota: quota.parse().unwrap(),
            from: t(from),
            to: t(to),
            reset,
            carry: Decimal::ZERO,
        }
    }

    #[test]
    fn earliest_expiry_first_and_remainder_over() {
        let p = [
            pkg("b", "50", "2026-11-01T00:00:00Z", "2027-01-01T00:00:00Z", Reset::None),
            pkg("a", "100", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", Reset::None),
            pkg("c", "7", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z", Reset::None),
        ];
        let (parts, over) = split(&p, FixedTz::default(), t("2026-11-23T10:00:00Z"), "160".parse().unwrap(), |_, _| Decimal::ZERO);
        let got: Vec<(usize, String)> = parts.iter().map(|(i, _, a)| (*i, a.to_string())).collect();
        assert_eq!(got, [(1, "100".to_string()), (0, "50".to_string())]);
        assert_eq!(over.to_string(), "10");
    }

    #[test]
    fn monthly_periods_follow_the_zone_and_are_clipped_to_validity() {
        let tz: FixedTz = "+08:00".parse().unwrap();
        let p = pkg("m", "10", "2026-11-10T00:00:00Z", "2027-11-10T00:00:00Z", Reset::Monthly);
        assert_eq!(p.period_start(tz, t("2026-11-20T00:00:00Z")), t("2026-11-10T00:00:00Z").secs());
        // 2026-11-30T16:00Z is December 1st, 00:00 in Beijing.
        assert_eq!(p.period_start(tz, t("2026-11-30T15:59:59Z")), t("2026-11-10T00:00:00Z").secs());
        assert_eq!(p.period_start(tz, t("2026-11-30T16:00:00Z")), t("2026-11-30T16:00:00Z").secs());
        let y = Package { reset: Reset::Yearly, ..p };
        assert_eq!(y.period_start(tz, t("2027-01-05T00:00:00Z")), t("2026-12-31T16:00:00Z").secs());
    }

    #[test]
    fn quotas_parse_strictly() {
        assert_eq!(parse_quota("100").unwrap().to_string(), "100");
        assert_eq!(parse_quota("0.5000").unwrap().to_string(), "0.5");
        for bad in ["0", "-1", "1e3", "0.00001", "", "1.2.3", "+4"] {
            assert!(parse_quota(bad).is_err(), "{bad}");
        }
    }
}
