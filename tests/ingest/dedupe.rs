//! Exactly-once: an event is identified by (`instance_id`, `id`). The same event again is a
//! duplicate (success, not counted again) — in the same request, in a later one, through
//! another door, written differently but equal in value, or sent by many clients at once. The
//! same key with another quantity or time is a conflict: rejected, naming both values, and the
//! stored event stays as it was.

use crate::util::{array, db, ndjson, ns, Env, Ev, Http};
use serde_json::json;

fn setup() -> Env {
    let env = Env::new();
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    env.add_instance("inst-b", "calls", "2026-11-01T00:00:00Z");
    env
}

/// The window of 11:00 UTC on 2026-11-23, where these events fall. It is still open at NOW
/// (12:00, and sealing waits `seal.grace` after a window ends), so a daemon that seals closed
/// windows at start leaves it alone and its running total is exactly what was ingested.
const HOUR_11: i64 = 1_795_431_600;

#[test]
fn duplicates_within_and_across_requests_count_once() {
    let env = setup();
    let daemon = env.daemon();
    let http = daemon.http();
    let e1 = Ev::new("e1", "inst-a", "1.5", "2026-11-23T11:00:00Z").json();
    // The same value written three ways: string, number with a trailing zero, other offset.
    let e1_num = Ev::num("e1", "inst-a", "1.50", "2026-11-23T11:00:00Z").json();
    let e1_tz = Ev::new("e1", "inst-a", "1.500000000", "2026-11-23T19:00:00+08:00").json();
    let r = http.events(array(&[e1.clone(), e1_num.clone(), e1_tz.clone()])).ok();
    assert_eq!(r, json!({"accepted": 1, "duplicates": 2, "rejected": []}));
    let r = http.events(ndjson(&[e1.clone(), e1_num, e1_tz])).ok();
    assert_eq!(r, json!({"accepted": 0, "duplicates": 3, "rejected": []}));
    // Another door, same store.
    drop(daemon);
    let run = env.ingest_file("again.ndjson", e1.as_bytes());
    run.success();
    assert_eq!(run.json(), json!({"accepted": 0, "duplicates": 1, "rejected": []}));

    let c = env.db();
    assert_eq!(db::copies(&c, "inst-a", "e1"), 1);
    assert_eq!(db::event(&c, "inst-a", "e1"), Some(("1.5".into(), ns("2026-11-23T11:00:00Z"))));
    assert_eq!(db::windows(&c, "inst-a"), vec![(HOUR_11, "1.5".into(), 1)], "a duplicate adds no usage");
}

#[test]
fn the_same_id_in_another_instance_is_another_event() {
    let env = setup();
    let a = Ev::new("shared", "inst-a", "1", "2026-11-23T11:00:00Z").json();
    let b = Ev::new("shared", "inst-b", "1", "2026-11-23T11:00:00Z").json();
    assert_eq!(env.ingest_file("e.ndjson", &ndjson(&[a, b])).json(), json!({"accepted": 2, "duplicates": 0, "rejected": []}));
    let c = env.db();
    assert_eq!((db::copies(&c, "inst-a", "shared"), db::copies(&c, "inst-b", "shared")), (1, 1));
}

#[test]
fn a_conflicting_resend_is_rejected_and_changes_nothing() {
    let env = setup();
    let daemon = env.daemon();
    let http = daemon.http();
    let original = Ev::new("c1", "inst-a", "1.5", "2026-11-23T11:00:00Z");
    assert_eq!(http.events(original.json()).ok()["accepted"], 1);

    let other_qty = original.clone().set_str("quantity", "2").json();
    let other_time = original.clone().set_str("time", "2026-11-23T11:00:01Z").json();
    let r = http.events(array(&[other_qty, original.json(), other_time])).ok();
    assert_eq!((r["accepted"].clone(), r["duplicates"].clone()), (json!(0), json!(1)), "{r}");
    let rejected = r["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{r}");
    let (q, t) = (rejected[0]["error"].as_str().unwrap(), rejected[1]["error"].as_str().unwrap());
    assert_eq!((rejected[0]["index"].clone(), rejected[0]["id"].clone()), (json!(0), json!("c1")));
    assert!(q.contains("quantity 1.5") && q.contains("quantity 2"), "names both quantities: {q}");
    assert_eq!(rejected[1]["index"], 2);
    assert!(t.contains("2026-11-23T11:00:00Z") && t.contains("2026-11-23T11:00:01Z"), "names both times: {t}");

    let c = env.db();
    assert_eq!(db::event(&c, "inst-a", "c1"), Some(("1.5".into(), ns("2026-11-23T11:00:00Z"))), "stored event unchanged");
    assert_eq!(db::windows(&c, "inst-a"), vec![(HOUR_11, "1.5".into(), 1)], "no usage from the conflicts");
}

#[test]
fn a_conflict_inside_one_request_keeps_the_first() {
    let env = setup();
    let first = Ev::new("c2", "inst-a", "1", "2026-11-23T11:00:00Z").json();
    let second = Ev::new("c2", "inst-a", "7", "2026-11-23T11:00:00Z").json();
    let run = env.ingest_file("e.ndjson", &ndjson(&[first, second]));
    run.code(1);
    let r = run.json();
    assert_eq!((r["accepted"].clone(), r["duplicates"].clone()), (json!(1), json!(0)));
    assert_eq!(r["rejected"][0]["index"], 1);
    let error = r["rejected"][0]["error"].as_str().unwrap();
    assert!(error.contains("quantity 1 ") && error.contains("quantity 7"), "{error}");
    assert_eq!(db::event(&env.db(), "inst-a", "c2").unwrap().0, "1");
}

#[test]
fn concurrent_senders_of_the_same_events_store_each_once() {
    // Eight clients post the same 50 events at once (so the writer groups their requests into
    // shared commits): across all answers each event is accepted exactly once.
    let env = setup();
    let daemon = env.daemon();
    let events: Vec<String> =
        (0..50).map(|i| Ev::new(&format!("conc-{i}"), "inst-a", "0.1", &format!("2026-11-23T11:{:02}:00Z", i % 60)).json()).collect();
    let body = array(&events);
    let answers: Vec<serde_json::Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (addr, body) = (daemon.addr.clone(), body.clone());
                s.spawn(move || Http::new(&addr, None).events(body).ok())
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("sender")).collect()
    });
    let accepted: u64 = answers.iter().map(|a| a["accepted"].as_u64().unwrap()).sum();
    let duplicates: u64 = answers.iter().map(|a| a["duplicates"].as_u64().unwrap()).sum();
    assert_eq!((accepted, duplicates), (50, 7 * 50), "{answers:?}");
    let c = env.db();
    assert_eq!(db::count_events(&c), 50);
    assert_eq!(db::windows(&c, "inst-a"), vec![(HOUR_11, "5".into(), 50)], "50 × 0.1, counted once each");
}

/// On PostgreSQL new events go to the server while the rest of the batch is still being
/// decided (`store::pg_copy`), taking every key as new until it knows otherwise; a stored key
/// among them fails that stream, and the failure is reported by whatever statement comes next
/// — here the load of another instance in the middle of the batch, long after the stored key
/// was sent. The batch is then decided again with the lookup: the stored key is a duplicate,
/// and every new event is stored once.
#[test]
fn a_stored_key_sent_early_in_a_long_batch_is_a_duplicate() {
    let env = setup();
    let stored = Ev::new("e-stored", "inst-a", "2", "2026-11-23T11:00:00Z").json();
    assert_eq!(env.ingest_file("first.ndjson", stored.as_bytes()).json(), json!({"accepted": 1, "duplicates": 0, "rejected": []}));
    let mut batch = vec![stored];
    // About 80 KiB of rows: past the first chunk sent while deciding.
    batch.extend((0..900).map(|i| Ev::new(&format!("a-{i}"), "inst-a", "1", "2026-11-23T11:00:00Z").json()));
    // Not yet loaded by this process: loading it is the next statement.
    batch.extend((0..5).map(|i| Ev::new(&format!("b-{i}"), "inst-b", "1", "2026-11-23T11:00:00Z").json()));
    let run = env.ingest_file("batch.ndjson", &ndjson(&batch));
    run.success();
    assert_eq!(run.json(), json!({"accepted": 905, "duplicates": 1, "rejected": []}));
    let c = env.db();
    assert_eq!(db::copies(&c, "inst-a", "e-stored"), 1);
    assert_eq!(db::windows(&c, "inst-a"), vec![(HOUR_11, "902".into(), 901)]);
    assert_eq!(db::windows(&c, "inst-b"), vec![(HOUR_11, "5".into(), 5)]);
}
