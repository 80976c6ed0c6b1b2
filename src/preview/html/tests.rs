use super::chart::Axis;
use super::{escape, render};
use crate::model::Timestamp;
use crate::preview::{CurrencyTotal, InstanceTotal, Preview, PreviewRow};
use rust_decimal::Decimal;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn row(id: &str, hour: i64, state: &'static str, usage: &str, charge: &str, sn: Option<&str>) -> PreviewRow {
    let begin = 1_795_392_000 + hour * 3600; // 2026-11-23T00:00:00Z
    PreviewRow {
        instance_id: id.into(),
        plan: "calls".into(),
        begin_time: Timestamp::from_secs(begin),
        end_time: Timestamp::from_secs(begin + 3600),
        state,
        usage: d(usage),
        charge: d(charge),
        charge_2dp: crate::pricing::truncate_2dp(d(charge)),
        metering_sn: sn.map(String::from),
        relate_pkg_instance: None,
        covered: None,
        drawn: None,
        flagged: None,
    }
}

fn total(id: &str, plan: &str, unit: &str, usage: &str, charge: &str) -> InstanceTotal {
    InstanceTotal {
        instance_id: id.into(),
        plan: plan.into(),
        currency: "CNY".into(),
        unit: unit.into(),
        usage: d(usage),
        charge: d(charge),
        charge_2dp: crate::pricing::truncate_2dp(d(charge)),
        unbillable: d("1.5"),
        carried: d("0.00004"),
        over_quota: Decimal::ZERO,
        late_unbilled: 0,
        late_unbilled_change: Default::default(),
        packages: Vec::new(),
    }
}

const HOSTILE: &str = "<script>alert(1)</script>&\"'";

fn sample() -> Preview {
    Preview {
        rows: vec![
            row("inst-a", 0, "delivered", "5", "1.3", Some("sn-a0")),
            row("inst-a", 1, "pending", "6", "1.2", Some("sn-a1")),
            row("inst-a", 2, "open", "7.125", "1.425", None),
            row(HOSTILE, 0, "zero", "0", "0", Some("sn-h0")),
            row(HOSTILE, 1, "rejected", "12.000000001", "9.6000000008", Some("sn-h1")),
        ],
        instances: vec![
            total("inst-a", "calls", "call", "18.125", "3.925"),
            total(HOSTILE, HOSTILE, HOSTILE, "12.000000001", "9.6000000008"),
        ],
        totals: vec![CurrencyTotal { currency: "CNY".into(), charge: d("13.5250000008"), charge_2dp: d("13.52") }],
    }
}

#[test]
fn escape_neutralises_markup_and_quotes() {
    assert_eq!(escape("<script>x</script>"), "&lt;script&gt;x&lt;/script&gt;");
    assert_eq!(escape("&\"'"), "&amp;&quot;&#39;");
    assert_eq!(escape("plain GB·h"), "plain GB·h");
}

#[test]
fn page_is_self_contained() {
    let page = render(&sample());
    assert!(!page.to_lowercase().contains("<script"), "no scripts");
    assert!(!page.contains("http://") && !page.contains("https://"), "nothing fetched or linked");
    assert!(!page.contains("url("), "no CSS resources");
}

#[test]
fn page_has_one_chart_per_instance_and_every_record() {
    let p = sample();
    let page = render(&p);
    assert_eq!(page.matches("<svg").count(), p.instances.len());
    for sn in p.rows.iter().filter_map(|r| r.metering_sn.as_deref()) {
        assert!(page.contains(sn), "missing {sn}");
    }
    assert!(page.contains("13.52 CNY"), "grand total");
    assert!(page.contains("12.000000001"), "exact usage shown");
    assert!(page.contains("Carried") && page.contains("0.00004") && page.contains("Unbillable"));
}

#[test]
fn hostile_names_are_escaped() {
    let page = render(&sample());
    assert!(!page.contains(HOSTILE));
    assert!(!page.contains("<script>"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;"));
}

#[test]
fn tags_are_balanced() {
    for p in [sample(), Preview { rows: vec![], instances: vec![], totals: vec![] }] {
        let page = render(&p);
        for tag in ["svg", "table", "section", "header", "main", "tr", "text", "title", "ul", "ol", "p", "b"] {
            let opened = page.matches(&format!("<{tag}>")).count() + page.matches(&format!("<{tag} ")).count();
            assert_eq!(opened, page.matches(&format!("</{tag}>")).count(), "<{tag}> unbalanced");
        }
    }
}

#[test]
fn empty_preview_says_how_to_ingest() {
    let page = render(&Preview { rows: vec![], instances: vec![], totals: vec![] });
    assert!(page.contains("Nothing yet"));
    assert!(page.contains("meterd ingest"));
    assert!(page.contains("meterd instance add"));
    assert!(!page.contains("<svg"));
}

#[test]
fn axis_ticks_are_exact_1_2_5_steps() {
    assert_eq!(Axis::for_max(d("7")), Axis { top: d("8"), step: d("2") });
    assert_eq!(Axis::for_max(d("15")), Axis { top: d("15"), step: d("5") });
    assert_eq!(Axis::for_max(d("0.92")), Axis { top: d("1.0"), step: d("0.5") });
    assert_eq!(Axis::for_max(d("73.791")), Axis { top: d("80"), step: d("20") });
    assert_eq!(Axis::for_max(Decimal::ZERO), Axis { top: Decimal::ONE, step: Decimal::ONE });
    assert_eq!(Axis::for_max(d("0.0000000001")).top, d("0.0000000001"));
    // Near the largest decimal a 1-2-5 step overflows: one interval instead of a panic.
    for max in [Decimal::MAX, Decimal::MAX / d("3"), d("70000000000000000000000000000")] {
        let a = Axis::for_max(max);
        assert!(a.top >= max && a.step > Decimal::ZERO, "{max}: {a:?}");
    }
}
