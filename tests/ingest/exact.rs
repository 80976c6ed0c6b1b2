//! Quantities are exact decimals end to end: what is sent (as a JSON number or a string) is
//! stored digit for digit, and the running window totals are exact sums, checked against
//! integer arithmetic done here independently of meterd's decimal type.

use crate::util::db::{self, decimal, nanos};
use crate::util::{array, ndjson, now, ns, Env, Ev};
use serde_json::json;
use std::collections::BTreeMap;

fn secs(t: &str) -> i64 {
    ns(t) / 1_000_000_000
}

fn setup() -> Env {
    // Running window sums: the storage plan sums, as before `weighted_sum`.
    let env = Env::with_config(&crate::util::example_config_storage_sum());
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    env.add_instance("inst-s", "storage", "2026-11-01T00:00:00Z");
    env
}

#[test]
fn extremes_round_trip_as_numbers_and_strings() {
    let env = setup();
    let daemon = env.daemon();
    let http = daemon.http();
    let (tiny, huge) = ("0.000000001", "999999999999.999999999");
    let events = [
        Ev::new("tiny-s", "inst-a", tiny, "2026-11-23T11:00:00Z").json(),
        Ev::num("tiny-n", "inst-a", tiny, "2026-11-23T11:00:00Z").json(),
        Ev::new("huge-s", "inst-a", huge, "2026-11-23T12:00:00Z").json(),
        // As a JSON number this has 21 significant digits; through f64 it would be 1e12.
        Ev::num("huge-n", "inst-a", huge, "2026-11-23T12:00:00Z").json(),
    ];
    assert_eq!(http.events(array(&events)).ok(), json!({"accepted": 4, "duplicates": 0, "rejected": []}));
    let c = env.db();
    for (id, q) in [("tiny-s", tiny), ("tiny-n", tiny), ("huge-s", huge), ("huge-n", huge)] {
        assert_eq!(db::event(&c, "inst-a", id).unwrap().0, q, "{id} stored exactly");
    }
    assert_eq!(db::window_usage(&c, "inst-a", secs("2026-11-23T11:00:00Z")).unwrap(), "0.000000002");
    assert_eq!(db::window_usage(&c, "inst-a", secs("2026-11-23T12:00:00Z")).unwrap(), "1999999999999.999999998");
    // The number form and the string form are the same value: each is a duplicate of the other.
    let swapped = [
        Ev::num("tiny-s", "inst-a", tiny, "2026-11-23T11:00:00Z").json(),
        Ev::new("huge-n", "inst-a", huge, "2026-11-23T12:00:00Z").json(),
        Ev::num("huge-s", "inst-a", "999999999999.9999999990", "2026-11-23T12:00:00Z").json(),
    ];
    let r = http.events(array(&swapped)).ok();
    assert_eq!((r["accepted"].clone(), r["duplicates"].clone()), (json!(0), json!(2)), "{r}");
    assert!(r["rejected"][0]["error"].as_str().unwrap().contains("more than 9 fractional digits"), "{r}");
    // A value one nano-unit away is a different value: a conflict, not a duplicate.
    let off_by_one = Ev::num("huge-n", "inst-a", "999999999999.999999998", "2026-11-23T12:00:00Z").json();
    let r = http.events(off_by_one).ok();
    assert_eq!(r["rejected"].as_array().unwrap().len(), 1, "{r}");
}

#[test]
fn ten_tenths_make_exactly_one() {
    let env = setup();
    let events: Vec<String> = (0..10)
        .map(|i| {
            let (id, t) = (format!("tenth-{i}"), format!("2026-11-23T10:{:02}:00Z", i * 5));
            if i % 2 == 0 { Ev::new(&id, "inst-a", "0.1", &t) } else { Ev::num(&id, "inst-a", "0.1", &t) }.json()
        })
        .collect();
    env.ingest_file("tenths.ndjson", &ndjson(&events)).success();
    let c = env.db();
    assert_eq!(db::windows(&c, "inst-a"), vec![(secs("2026-11-23T10:00:00Z"), "1".to_string(), 10)]);
}

#[test]
fn a_hand_computed_sum() {
    // 123456789.123456789 + 876543210.876543211 + 0.000000001 + 999999999999.999999999
    //   = 1000000000.000000000 + 0.000000001 + 999999999999.999999999 = 1001000000000
    let env = setup();
    let qs = ["123456789.123456789", "876543210.876543211", "0.000000001", "999999999999.999999999"];
    let events: Vec<String> =
        qs.iter().enumerate().map(|(i, q)| Ev::num(&format!("h{i}"), "inst-a", q, "2026-11-23T11:00:00Z").json()).collect();
    env.ingest_file("hand.json", &array(&events)).success();
    assert_eq!(db::window_usage(&env.db(), "inst-a", secs("2026-11-23T11:00:00Z")).unwrap(), "1001000000000");
}

/// A deterministic stream of 9-decimal quantities of every magnitude up to the 1e12 limit.
fn quantities(n: usize) -> Vec<String> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let scale = 10u128.pow((i % 22) as u32); // 1e0 .. 1e21 nano-units
            let max = 1_000_000_000_000_000_000_000u128; // 1e12 in nano-units
            decimal(((x as u128) % (scale * 10)).min(max) as i128)
        })
        .collect()
}

#[test]
fn many_concurrent_nine_decimal_values_sum_exactly() {
    // 2,000 events over hourly (inst-a) and day (inst-s, +08:00 days) windows, sent as NDJSON
    // batches by four threads sharing one library `Collector`, so one commit often merges
    // several requests' deltas into the same window. Every window total must equal the integer
    // sum of its events. (The library door: no daemon whose sealing would move closed windows'
    // usage, so each window is checked against its own events.)
    let env = setup();
    let qs = quantities(2000);
    let mut events = Vec::new();
    let mut expected: BTreeMap<(&str, i64), (i128, i64)> = BTreeMap::new();
    for (i, q) in qs.iter().enumerate() {
        let k = i as i64;
        // inst-s: ~40 min apart over 18 days; inst-a: 21 s apart over the day so far.
        let (inst, t) = if i % 3 == 0 {
            ("inst-s", ns("2026-11-05T00:00:00Z") + k / 3 * 2_390_000_000_000)
        } else {
            ("inst-a", ns("2026-11-23T00:00:00Z") + k * 21_000_000_000)
        };
        let time = meterd::model::Timestamp(t).to_rfc3339();
        let id = format!("m{i}");
        events.push(if i % 2 == 0 { Ev::new(&id, inst, q, &time) } else { Ev::num(&id, inst, q, &time) }.json());
        let (s, day) = (t / 1_000_000_000, 86_400);
        let local = s + 8 * 3600;
        let start = if inst == "inst-a" { s - s.rem_euclid(3600) } else { local - local.rem_euclid(day) - 8 * 3600 };
        let w = expected.entry((inst, start)).or_default();
        w.0 += nanos(q);
        w.1 += 1;
    }
    assert!(events.len() == 2000 && expected.len() > 20);
    let collector = env.collector();
    std::thread::scope(|s| {
        for chunk in events.chunks(500) {
            let collector = &collector;
            s.spawn(move || {
                for batch in chunk.chunks(50) {
                    let r = collector.ingest_body(&ndjson(batch), now()).expect("ingest");
                    assert_eq!((r.accepted, r.rejected.len()), (batch.len() as u64, 0), "{r:?}");
                }
            });
        }
    });
    drop(collector);
    let c = env.db();
    let mut got = BTreeMap::new();
    for inst in ["inst-a", "inst-s"] {
        for (start, usage, count) in db::windows(&c, inst) {
            got.insert((inst, start), (nanos(&usage), count));
        }
    }
    assert_eq!(got, expected);
    let total: i128 = qs.iter().map(|q| nanos(q)).sum();
    let stored: i128 = db::all_events(&c).iter().map(|e| nanos(&e.2)).sum();
    assert_eq!(decimal(stored), decimal(total));
}
