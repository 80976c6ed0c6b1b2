//! Design §2, rule by rule: every bad event in one request is rejected on its own, with its
//! position, its id when readable, and a message naming the field; the good events around it
//! are stored exactly as sent.

use crate::util::cases::{mixed_request, Case, Good};
use crate::util::{array, db, ns, Env};
use serde_json::Value;

/// Asserts an ingest result for [`mixed_request`]: every good event accepted, each bad one
/// rejected at its index with its id and a message naming its field and rule.
pub fn check_mixed(result: &Value, expected: &[(usize, Case)], goods: &[Good]) {
    let rejected = result["rejected"].as_array().unwrap_or_else(|| panic!("no `rejected` array in {result}"));
    for (i, (index, case)) in expected.iter().enumerate() {
        let Some(r) = rejected.get(i) else { panic!("case {:?} (index {index}) was not rejected; result: {result:#}", case.rule) };
        assert_eq!(r["index"], *index, "case {:?}: wrong index in {r}", case.rule);
        let error = r["error"].as_str().unwrap_or_else(|| panic!("case {:?}: no error text in {r}", case.rule));
        assert!(error.contains(case.field), "case {:?}: error does not name {:?}: {error}", case.rule, case.field);
        assert!(error.contains(case.why), "case {:?}: error does not say {:?}: {error}", case.rule, case.why);
        match case.id {
            Some(id) => assert_eq!(r["id"], id, "case {:?}: wrong id in {r}", case.rule),
            None => assert!(r.get("id").is_none(), "case {:?}: an unreadable id must be omitted: {r}", case.rule),
        }
    }
    assert_eq!(
        rejected.len(),
        expected.len(),
        "unexpected rejections: {:#}",
        Value::from(rejected[expected.len().min(rejected.len())..].to_vec())
    );
    assert_eq!(result["accepted"], goods.len(), "every good event is stored: {result:#}");
    assert_eq!(result["duplicates"], 0);
}

/// Asserts that exactly the good events are in the store, with their exact quantity and UTC
/// time.
pub fn check_stored(env: &Env, goods: &[Good]) {
    let c = env.db();
    assert_eq!(db::count_events(&c), goods.len() as i64, "only the good events are stored");
    for g in goods {
        let stored = db::event(&c, &g.instance, &g.id).unwrap_or_else(|| panic!("good event {:?} is not stored", g.id));
        assert_eq!(stored, (g.stored_qty.to_string(), ns(g.utc)), "event {:?} stored as sent", g.id);
    }
}

/// Asserts that re-sending the good events finds every one of them already stored.
pub fn check_resend(result: &Value, goods: &[Good]) {
    assert_eq!(result, &serde_json::json!({"accepted": 0, "duplicates": goods.len(), "rejected": []}));
}

#[test]
fn every_rule_rejects_its_event_alone_and_good_neighbours_are_stored() {
    let env = Env::new();
    env.add_case_instances();
    let daemon = env.daemon();
    let http = daemon.http();
    let (events, expected, goods) = mixed_request();
    let result = http.events(array(&events)).ok();
    check_mixed(&result, &expected, &goods);
    check_stored(&env, &goods);

    let again: Vec<String> = goods.iter().map(|g| g.ev.json()).collect();
    check_resend(&http.events(array(&again)).ok(), &goods);
    check_stored(&env, &goods);
}

#[test]
fn the_table_covers_every_rule_of_design_section_2() {
    // A guard on the table itself: a rule dropped from it would silently stop being tested.
    let rules: Vec<&str> = crate::util::cases::bad_cases().iter().map(|c| c.rule).collect();
    for rule in [
        "missing id",
        "missing instance_id",
        "missing quantity",
        "missing time",
        "unknown field",
        "empty id",
        "id over 128",
        "id not printable",
        "instance id characters",
        "instance id over 64",
        "unknown instance",
        "time without offset",
        "time in the future",
        "time too old",
        "time before start",
        "time at release",
        "time after release",
        "wrong metric",
    ] {
        assert!(rules.contains(&rule), "no case for {rule:?}");
    }
    let quantity_cases = crate::util::cases::bad_cases().iter().filter(|c| c.rule == "quantity").count();
    assert!(quantity_cases >= 10, "negative, 1e3, NaN, 1e400, >9 decimals, >1e12, wrong types");
}

#[test]
fn a_request_larger_than_one_commit_keeps_every_index() {
    // 25,000 events: more than one writer job (10,000) and more than one commit group (20,000).
    // Bad events placed at chunk edges must be reported at their own positions, and every
    // other event stored once.
    let env = Env::new();
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    let bad_at = [0usize, 9_999, 10_000, 19_999, 20_000, 24_999];
    let events: Vec<String> = (0..25_000)
        .map(|i| {
            let q = if bad_at.contains(&i) { "-1" } else { "0.001" };
            crate::util::Ev::new(&format!("big-{i}"), "inst-a", q, &format!("2026-11-23T{:02}:{:02}:00Z", i % 12, i % 60)).json()
        })
        .collect();
    let daemon = env.daemon();
    let r = daemon.http().events(crate::util::ndjson(&events)).ok();
    let indexes: Vec<u64> = r["rejected"].as_array().unwrap().iter().map(|x| x["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, bad_at.map(|i| i as u64));
    for (x, i) in r["rejected"].as_array().unwrap().iter().zip(bad_at) {
        assert_eq!(x["id"], format!("big-{i}"));
    }
    assert_eq!(r["accepted"], 25_000 - bad_at.len());
    let c = env.db();
    assert_eq!(db::count_events(&c), 25_000 - bad_at.len() as i64);
    let (w, e) = db::window_and_event_sums(&c, "inst-a");
    assert_eq!((w, e), (24_994 * 1_000_000, 24_994 * 1_000_000), "0.001 × 24,994 = 24.994 exactly");
}
