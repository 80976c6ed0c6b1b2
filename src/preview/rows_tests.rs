//! Table tests of the preview's pure step, [`price_rows`]: which rows are shown, what each is
//! charged and what the instance's sums are.

use super::*;
use crate::config::Pricing;

const HOUR: i64 = 3_600;
/// 2026-11-23T00:00:00Z.
const DAY0: i64 = 1_795_392_000;

fn d(s: &str) -> Decimal {
    s.parse().expect("a decimal")
}

fn cfg() -> Config {
    Config::from_toml_str(crate::config::EXAMPLE_CONFIG).expect("the example config is valid")
}

/// The example's `calls` plan: step pricing, 0.3 up to 3 per month, 0.2 above.
fn calls(cfg: &Config, package: Option<PackageMode>) -> Plan {
    Plan { package, ..cfg.plan("calls").expect("the example has `calls`").clone() }
}

fn raw(hour: i64, state: &'static str, usage: &str) -> Raw {
    let window = DAY0 + hour * HOUR;
    let sn = (state != "open").then(|| format!("sn-{hour}"));
    Raw { window, begin: window, end: window + HOUR, state, usage: d(usage), sn, pkg: None, flagged: None }
}

/// (state, usage, charge, drawn, covered) of a row.
type Shown = (&'static str, Decimal, Decimal, Option<Decimal>, Option<Decimal>);

/// [`Shown`] of each row shown.
fn shown(p: &Priced) -> Vec<Shown> {
    p.rows.iter().map(|r| (r.state, r.usage, r.charge, r.drawn, r.covered)).collect()
}

#[test]
fn rows_before_from_only_accumulate_and_rejected_rows_cost_nothing() {
    let cfg = cfg();
    let rows = vec![raw(0, "delivered", "2"), raw(1, "rejected", "2"), raw(2, "pending", "2"), raw(3, "open", "1")];
    let p = price_rows(&calls(&cfg, None), cfg.timezone, "i-1", DAY0 + HOUR, rows, None).expect("no overflow");
    // Hour 0 (2 at 0.3) is hidden but fills the first step; the rejected hour buys nothing;
    // hour 2 has 1 left at 0.3 and 1 at 0.2; the open hour is all at 0.2.
    assert_eq!(
        shown(&p),
        [("rejected", d("2"), d("0"), None, None), ("pending", d("2"), d("0.5"), None, None), ("open", d("1"), d("0.2"), None, None)]
    );
    assert_eq!((p.usage, p.charge), (d("5"), d("0.7")), "the usage of every row shown, rejected too");
    assert_eq!(p.rows[1].metering_sn.as_deref(), Some("sn-2"));
    assert_eq!(p.rows[1].charge_2dp, d("0.50"));
    assert_eq!(p.rows[2].metering_sn, None);
    assert!(p.rows.iter().all(|r| r.instance_id == "i-1" && r.plan == "calls"));
}

#[test]
fn package_plans_show_what_is_drawn_or_covered() {
    let cfg = cfg();
    let rows = || vec![raw(0, "pending", "2"), raw(1, "rejected", "3"), raw(2, "open", "4")];
    // Stop-before-excess: prepaid, charge 0; the rejected record drew nothing.
    let p = price_rows(&calls(&cfg, Some(PackageMode::Stop)), cfg.timezone, "i-1", i64::MIN, rows(), None).expect("no overflow");
    assert_eq!(
        shown(&p),
        [
            ("pending", d("2"), d("0"), Some(d("2")), None),
            ("rejected", d("3"), d("0"), Some(d("0")), None),
            ("open", d("4"), d("0"), Some(d("4")), None),
        ]
    );
    assert_eq!((p.usage, p.charge), (d("9"), d("0")));
    // Pay-per-use packages: charged for what they do not cover (the excess accumulates).
    let covered = [d("2"), d("0"), d("1")];
    let p = price_rows(&calls(&cfg, Some(PackageMode::Payg)), cfg.timezone, "i-1", i64::MIN, rows(), Some(&covered)).expect("no overflow");
    assert_eq!(
        shown(&p),
        [
            ("pending", d("2"), d("0"), None, Some(d("2"))),
            ("rejected", d("3"), d("0"), None, Some(d("0"))),
            ("open", d("4"), d("0.9"), None, Some(d("1"))),
        ]
    );
    // A coverage list shorter than the rows covers nothing more.
    let p =
        price_rows(&calls(&cfg, Some(PackageMode::Payg)), cfg.timezone, "i-1", i64::MIN, rows(), Some(&covered[..1])).expect("no overflow");
    assert_eq!(p.rows[2].covered, Some(d("0")));
}

#[test]
fn an_overflow_says_which_sum_overflowed() {
    let cfg = cfg();
    let big = Decimal::MAX.to_string();
    let fixed = |price: &str| Plan { pricing: Pricing::Fixed { price: d(price) }, ..calls(&cfg, None) };
    let got = price_rows(&fixed("2"), cfg.timezone, "i-1", i64::MIN, vec![raw(0, "pending", &big)], None);
    assert_eq!(got, Err(Overflow::Charges));
    let got = price_rows(&fixed("0"), cfg.timezone, "i-1", i64::MIN, vec![raw(0, "pending", &big), raw(1, "pending", &big)], None);
    assert_eq!(got, Err(Overflow::Totals));
}

#[test]
fn a_record_shows_its_delivery_state() {
    // (record state, label)
    for (state, label) in [
        (RecordState::Zero, "zero"),
        (RecordState::Pending, "pending"),
        (RecordState::Sending, "sending"),
        (RecordState::Delivered, "delivered"),
        (RecordState::Rejected, "rejected"),
    ] {
        assert_eq!(record_label(state), label, "{state:?}");
    }
}
