//! The three doors share one code path: the same events give the same ingest result through
//! `meterd ingest FILE` / stdin, `POST /v1/events` (array, NDJSON, one object) and the
//! library's `Collector`, and store the same rows.

use crate::util::cases::{good_events, mixed_request};
use crate::util::{array, ndjson, now, Env, NOW};
use crate::validation::{check_mixed, check_resend, check_stored};
use serde_json::{json, Value};

/// Runs the mixed request through one door on a fresh store, checks the answer and the store,
/// re-sends the good events, and returns the first answer.
fn through(door: impl Fn(&Env, &[String], bool) -> Value) -> Value {
    let env = Env::new();
    env.add_case_instances();
    let (events, expected, goods) = mixed_request();
    let result = door(&env, &events, true);
    check_mixed(&result, &expected, &goods);
    check_stored(&env, &goods);
    let again: Vec<String> = goods.iter().map(|g| g.ev.json()).collect();
    check_resend(&door(&env, &again, false), &goods);
    check_stored(&env, &goods);
    result
}

#[test]
fn cli_file_ndjson_and_stdin_array() {
    let file = through(|env, events, some_bad| {
        let run = env.ingest_file("events.ndjson", &ndjson(events));
        run.code(if some_bad { 1 } else { 0 });
        run.json()
    });
    let stdin = through(|env, events, some_bad| {
        let run = env.run_stdin(&["ingest", "--now", NOW, "-"], &array(events));
        run.code(if some_bad { 1 } else { 0 });
        run.json()
    });
    assert_eq!(file, stdin);
}

#[test]
fn http_array_and_ndjson_match_the_cli() {
    let http_array = through(|env, events, _| env.daemon().http().events(array(events)).ok());
    let http_ndjson = through(|env, events, _| env.daemon().http().events(ndjson(events)).ok());
    let cli = through(|env, events, _| env.ingest_file("e.json", &array(events)).json());
    assert_eq!(http_array, http_ndjson);
    assert_eq!(http_array, cli);
}

#[test]
fn library_collector_matches_the_cli() {
    let lib = through(|env, events, _| {
        let collector = env.collector();
        let result = collector.ingest_body(&ndjson(events), now()).expect("ingest");
        serde_json::to_value(result).expect("result serialises")
    });
    let cli = through(|env, events, _| env.ingest_file("e.ndjson", &ndjson(events)).json());
    assert_eq!(lib, cli);
}

#[test]
fn library_parsed_events_and_reopen() {
    // `ingest_events` takes already-parsed events; an embedding app that restarts (drops the
    // collector, starts a new one on the same file) still sees every event as a duplicate.
    let env = Env::new();
    env.add_case_instances();
    let goods = good_events();
    let parsed: Vec<_> =
        goods.iter().map(|g| meterd::collector::parse::parse_event(g.ev.json().as_bytes()).expect("good event parses")).collect();
    let first = env.collector().ingest_events(parsed.clone(), now()).expect("ingest");
    assert_eq!((first.accepted, first.duplicates, first.rejected.len()), (goods.len() as u64, 0, 0));
    let second = env.collector().ingest_events(parsed, now()).expect("ingest again");
    assert_eq!((second.accepted, second.duplicates, second.rejected.len()), (0, goods.len() as u64, 0));
    check_stored(&env, &goods);
}

#[test]
fn http_single_object_bodies() {
    let env = Env::new();
    env.add_case_instances();
    let daemon = env.daemon();
    let http = daemon.http();
    let good = &good_events()[0];
    assert_eq!(http.events(good.ev.json()).ok(), json!({"accepted": 1, "duplicates": 0, "rejected": []}));
    // A pretty-printed single object is one event, not NDJSON lines.
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&good.ev.json()).unwrap()).unwrap();
    assert_eq!(http.events(pretty).ok(), json!({"accepted": 0, "duplicates": 1, "rejected": []}));
    let bad = crate::util::Ev::new("lonely", "inst-calls", "-3", "2026-11-23T08:00:00Z").json();
    let r = http.events(bad).ok();
    assert_eq!(r["accepted"], 0);
    assert_eq!(r["rejected"][0]["index"], 0);
    assert_eq!(r["rejected"][0]["id"], "lonely");
}

#[test]
fn library_events_built_in_code_meet_the_same_field_rules() {
    // JSON goes through the parser's checks; events built in code must not skip them.
    use meterd::collector::EventInput;
    use meterd::model::Quantity;
    let env = Env::new();
    env.add_case_instances();
    let good = meterd::collector::parse::parse_event(good_events()[0].ev.json().as_bytes()).expect("good event parses");
    let with = |f: &dyn Fn(&mut EventInput)| {
        let mut e = good.clone();
        f(&mut e);
        e
    };
    let bad = vec![
        (with(&|e| e.quantity = Quantity(rust_decimal::Decimal::new(-15, 1))), "sign"),
        (with(&|e| e.quantity = Quantity(rust_decimal::Decimal::new(1, 12))), "more than 9 fractional digits"),
        (
            with(&|e| e.quantity = Quantity(rust_decimal::Decimal::new(2, 0) * rust_decimal::Decimal::new(1_000_000_000_000, 0))),
            "larger than 1e12",
        ),
        (with(&|e| e.id = String::new()), "`id` must be 1–128 characters"),
        (with(&|e| e.instance_id = "bad id".into()), "`instance_id` may only hold"),
    ];
    let n = bad.len();
    let mut all: Vec<EventInput> = bad.iter().map(|(e, _)| e.clone()).collect();
    all.push(good.clone());
    let r = env.collector().ingest_events(all, now()).expect("ingest");
    assert_eq!((r.accepted, r.rejected.len()), (1, n), "{:?}", r.rejected);
    for (rej, (_, why)) in r.rejected.iter().zip(&bad) {
        assert!(rej.error.contains(why), "{} should say {why:?}", rej.error);
    }
    assert_eq!(crate::util::db::count_events(&env.db()), 1, "only the good event is stored");
}

/// The good events of the shared cases, built in code as an embedding service would.
fn built_in_code() -> (Vec<meterd::EventInput>, usize) {
    let goods = good_events();
    let parsed = goods.iter().map(|g| meterd::collector::parse::parse_event(g.ev.json().as_bytes()).expect("good event parses")).collect();
    (parsed, goods.len())
}

#[test]
fn library_blocking_ingest_from_a_tokio_handler() {
    // Issue 16 item 9: a new user calls the blocking `ingest_events` from `#[tokio::main]` (a
    // multi-thread runtime) or from a current-thread runtime's task. Before the fix both
    // panicked with "Cannot block the current thread from within a runtime".
    for multi in [true, false] {
        let env = Env::new();
        env.add_case_instances();
        let (events, n) = built_in_code();
        let collector = std::sync::Arc::new(env.collector());
        let rt = if multi {
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
        } else {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        }
        .expect("runtime");
        let c = collector.clone();
        let r = rt.block_on(async move {
            let in_handler = tokio::spawn(async move { c.ingest_events(events, now()) });
            in_handler.await.expect("the handler task does not panic")
        });
        let r = r.expect("ingest");
        assert_eq!((r.accepted, r.duplicates, r.rejected.len()), (n as u64, 0, 0), "multi-thread runtime: {multi}");
        check_stored(&env, &good_events());
    }
}

#[test]
fn library_async_ingest_of_events_built_in_code() {
    let env = Env::new();
    env.add_case_instances();
    let (events, n) = built_in_code();
    let collector = meterd::Collector::builder(&env.db, env.cfg()).start().expect("collector starts without a commit hook");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let first = rt.block_on(collector.ingest_events_async(events.clone(), now())).expect("ingest");
    assert_eq!((first.accepted, first.duplicates, first.rejected.len()), (n as u64, 0, 0));
    let again = rt.block_on(collector.ingest_events_async(events, now())).expect("ingest again");
    assert_eq!((again.accepted, again.duplicates, again.rejected.len()), (0, n as u64, 0));
    let mut bad = built_in_code().0.remove(0);
    bad.instance_id = "no spaces allowed".into();
    let r = rt.block_on(collector.ingest_events_async(vec![bad], now())).expect("ingest");
    assert_eq!(r.rejected.len(), 1, "built events meet the same field rules as JSON: {r:?}");
    assert!(r.rejected[0].error.contains("instance_id"), "{}", r.rejected[0].error);
    check_stored(&env, &good_events());
}
