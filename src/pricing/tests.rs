//! Golden tests: `fixtures/pricing/*.json` hold cases computed by hand; each case gives a plan,
//! a sequence of record usages in one accumulation period, and the expected charges.

use super::*;
use crate::config::PlanToml;
use serde::Deserialize;
use std::str::FromStr;

#[derive(Deserialize)]
struct Case {
    name: String,
    plan: serde_json::Value,
    usages: Vec<String>,
    charges: Vec<String>,
    charges_2dp: Vec<String>,
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn plan_from_json(v: &serde_json::Value) -> crate::config::Plan {
    let toml_text = toml::to_string(v).unwrap();
    toml::from_str::<PlanToml>(&toml_text).unwrap().validate().unwrap()
}

#[test]
fn golden_pricing_fixtures() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/pricing");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let cases: Vec<Case> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for c in cases {
            let plan = plan_from_json(&c.plan);
            let mut before = Decimal::ZERO;
            for (i, u) in c.usages.iter().enumerate() {
                let got = charge(&plan.pricing, before, d(u)).unwrap();
                assert_eq!(got, d(&c.charges[i]), "{}: {} record {i}", path.display(), c.name);
                assert_eq!(truncate_2dp(got), d(&c.charges_2dp[i]), "{}: {} record {i} (2dp)", path.display(), c.name);
                before += d(u);
            }
            n += 1;
        }
    }
    assert!(n >= 8, "expected the golden cases, found {n}");
}

fn tiers() -> Vec<Tier> {
    vec![Tier { up_to: Some(d("3")), price: d("0.3") }, Tier { up_to: None, price: d("0.2") }]
}

#[test]
fn documented_example() {
    let step = Pricing::Graduated { tiers: tiers(), accumulation: Accumulation::Month };
    let tier = Pricing::Volume { tiers: tiers() };
    assert_eq!(charge(&step, d("0"), d("8")).unwrap(), d("1.90"));
    assert_eq!(charge(&tier, d("0"), d("8")).unwrap(), d("1.60"));
    let two = charge(&step, d("0"), d("2")).unwrap() + charge(&step, d("2"), d("6")).unwrap();
    assert_eq!(two, d("1.90"));
}

#[test]
fn step_is_additive_over_any_split() {
    // G(a+b) − G(0) = [G(a) − G(0)] + [G(a+b) − G(a)] for every split: the sum of step charges
    // of a period never depends on how usage was cut into records.
    let step = Pricing::Graduated { tiers: tiers(), accumulation: Accumulation::Month };
    for a in ["0", "0.0001", "1", "2.9999", "3", "3.0001", "7"] {
        for b in ["0", "0.5", "3", "10"] {
            let whole = charge(&step, d("0"), d(a) + d(b)).unwrap();
            let parts = charge(&step, d("0"), d(a)).unwrap() + charge(&step, d(a), d(b)).unwrap();
            assert_eq!(whole, parts, "a={a} b={b}");
        }
    }
}

#[test]
fn accumulation_boundaries_follow_the_zone() {
    let tz: FixedTz = "+08:00".parse().unwrap();
    let t = |s: &str| crate::model::parse_rfc3339(s).unwrap().secs();
    // 2026-11-30T16:00Z is 2026-12-01T00:00 in Beijing: a new month starts there.
    assert_eq!(accumulation_start(Accumulation::Month, tz, t("2026-11-30T16:00:00Z")), t("2026-11-30T16:00:00Z"));
    assert_eq!(accumulation_start(Accumulation::Month, tz, t("2026-11-30T15:00:00Z")), t("2026-10-31T16:00:00Z"));
    assert_eq!(accumulation_start(Accumulation::Day, tz, t("2026-11-30T15:00:00Z")), t("2026-11-29T16:00:00Z"));
    assert_eq!(accumulation_start(Accumulation::Period, tz, t("2026-11-30T15:00:00Z")), t("2026-11-30T15:00:00Z"));
}
