//! `schemas/` against the code: the event schema accepts every event the collector stores and
//! rejects exactly the bad events whose fault shows in the JSON itself (design §2); every ingest
//! result the CLI, the HTTP server and the library produce — including rejections — validates
//! against the ingest-result schema, and HTTP error bodies against the error schema.

mod util;

use serde_json::{json, Value};
use util::cases::{bad_cases, good_events, mixed_request};
use util::{array, ndjson, repo_file, Env, NOW};

fn schema(name: &str) -> Value {
    let path = repo_file(&format!("schemas/{name}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn validator(name: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&schema(name)).unwrap_or_else(|e| panic!("{name} does not compile: {e}"))
}

/// Every validation error, with where it is, for readable failures.
fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance).map(|e| format!("{e} (at {})", e.instance_path)).collect()
}

fn assert_valid(v: &jsonschema::Validator, what: &str, instance: &Value) {
    let errs = errors(v, instance);
    assert!(errs.is_empty(), "{what} does not validate: {errs:#?}\n{instance:#}");
}

/// The schema's verdict on raw event text; text that is not JSON at all is not valid.
fn event_is_valid(v: &jsonschema::Validator, text: &str) -> bool {
    serde_json::from_str::<Value>(text).map(|ev| v.is_valid(&ev)).unwrap_or(false)
}

#[test]
fn schemas_are_valid_draft_2020_12() {
    for name in ["event.schema.json", "ingest-result.schema.json", "error.schema.json"] {
        let s = schema(name);
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema", "{name}");
        if let Err(e) = jsonschema::meta::validate(&s) {
            panic!("{name} is not a valid JSON Schema: {e}");
        }
        validator(name);
    }
}

#[test]
fn demo_events_the_collector_accepts_validate_and_the_bad_ones_are_pinned() {
    let env = Env::new();
    let instances: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(repo_file("fixtures/demo/instances.json")).unwrap()).unwrap();
    for i in &instances {
        env.add_instance(i["instance_id"].as_str().unwrap(), i["plan"].as_str().unwrap(), i["start"].as_str().unwrap());
    }
    let text = std::fs::read_to_string(repo_file("fixtures/demo/events.ndjson")).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let now = meterd::model::parse_rfc3339(meterd::demo::DEMO_NOW).unwrap();
    let result = env.collector().ingest_body(text.as_bytes(), now).expect("ingest the demo events");
    let rejected: Vec<usize> = result.rejected.iter().map(|r| r.index).collect();

    let v = validator("event.schema.json");
    for (i, line) in lines.iter().enumerate() {
        if !rejected.contains(&i) {
            let ev: Value = serde_json::from_str(line).unwrap();
            assert_valid(&v, &format!("demo event #{i} (accepted by the collector)"), &ev);
        } else if !event_is_valid(&v, line) {
            // fine: the schema sees the fault too
        } else {
            // Schema-valid but rejected: only for rules that need the registry or the clock.
            let why = &result.rejected.iter().find(|r| r.index == i).unwrap().error;
            let beyond_schema =
                ["not registered", "ahead of now", "older than", "before the instance's start", "release", "billing factor"];
            assert!(beyond_schema.iter().any(|b| why.contains(b)), "demo event #{i} passes the schema but was rejected for: {why}");
        }
    }
    // What the fixture deliberately contains, so it cannot drift unnoticed.
    let ids: Vec<_> = result.rejected.iter().map(|r| r.id.as_deref().unwrap_or("-")).collect();
    // gb-0026 (2026-11-23T17:00Z) lies 5 h after DEMO_NOW, beyond `collector.max_future`.
    assert_eq!(ids, ["gb-0026", "bad-1", "bad-2"], "{result:?}");
    assert_eq!(result.duplicates, 2, "call-0001 and login-0004 are repeated once each");
    assert_eq!(result.accepted as usize, lines.len() - 5);
    let bad_1 = lines.iter().find(|l| l.contains("\"bad-1\"")).unwrap();
    assert!(!event_is_valid(&v, bad_1), "a negative quantity is visible to the schema");
}

#[test]
fn the_event_schema_draws_the_lines_of_design_section_2() {
    let v = validator("event.schema.json");
    for g in good_events() {
        assert_valid(&v, &format!("good event {:?}", g.id), &serde_json::from_str(&g.ev.json()).unwrap());
    }
    for case in bad_cases() {
        let valid = event_is_valid(&v, &case.event);
        assert_eq!(!valid, case.schema, "rule {:?}: schema says valid = {valid} for {}", case.rule, case.event);
    }
    // The edges of the quantity string pattern, which encodes 0 ≤ q ≤ 1e12 and ≤ 9 decimals.
    let base = |q: Value| json!({"id": "e", "instance_id": "i", "quantity": q, "time": "2026-11-23T08:00:00Z"});
    for ok in ["0", "000123.5", "999999999999.999999999", "1000000000000", "1000000000000.000000000", "0.000000001"] {
        assert!(v.is_valid(&base(json!(ok))), "{ok:?} should validate");
        assert!(meterd::model::Quantity::parse_event(ok).is_ok(), "the collector agrees on {ok:?}");
    }
    for bad in ["1000000000000.000000001", "9999999999999", "1000000000001", "0.0000000001", "1.", ".5", "1,5", " 1", "-0"] {
        assert!(!v.is_valid(&base(json!(bad))), "{bad:?} should not validate");
        assert!(meterd::model::Quantity::parse_event(bad).is_err(), "the collector agrees on {bad:?}");
    }
    assert!(v.is_valid(&base(json!(1_000_000_000_000u64))));
    assert!(!v.is_valid(&base(json!(1_000_000_000_001u64))));
    assert!(!v.is_valid(&base(json!(-0.5))));
}

#[test]
fn ingest_results_from_every_door_validate() {
    let v = validator("ingest-result.schema.json");
    let (events, _, goods) = mixed_request();
    let again: Vec<String> = goods.iter().map(|g| g.ev.json()).collect();
    let mut results = Vec::new();

    let env = Env::new();
    env.add_case_instances();
    results.push(("CLI, mixed", env.ingest_file("mixed.ndjson", &ndjson(&events)).json()));
    results.push(("CLI, duplicates", env.ingest_file("again.ndjson", &ndjson(&again)).json()));
    let env = Env::new();
    env.add_case_instances();
    {
        let daemon = env.daemon();
        let http = daemon.http();
        results.push(("HTTP array, mixed", http.events(array(&events)).ok()));
        results.push(("HTTP NDJSON, duplicates", http.events(ndjson(&again)).ok()));
        results.push(("HTTP object, rejected", http.events(bad_cases()[0].event.clone()).ok()));
        results.push(("HTTP, empty array", http.events("[]").ok()));
    }
    let env = Env::new();
    env.add_case_instances();
    let lib = env.collector().ingest_body(&array(&events), util::now()).unwrap();
    results.push(("library, mixed", serde_json::to_value(lib).unwrap()));

    for (what, r) in &results {
        assert_valid(&v, what, r);
    }
    let rejections: Vec<&Value> = results.iter().flat_map(|(_, r)| r["rejected"].as_array().unwrap()).collect();
    assert!(rejections.iter().any(|r| r.get("id").is_some()) && rejections.iter().any(|r| r.get("id").is_none()));

    // The schema is not vacuous.
    for bad in [
        json!({"accepted": 1, "duplicates": 0}),
        json!({"accepted": 1, "duplicates": 0, "rejected": [], "extra": 1}),
        json!({"accepted": -1, "duplicates": 0, "rejected": []}),
        json!({"accepted": 0, "duplicates": 0, "rejected": [{"index": -1, "error": "x"}]}),
        json!({"accepted": 0, "duplicates": 0, "rejected": [{"index": 0, "id": "", "error": "x"}]}),
        json!({"accepted": 0, "duplicates": 0, "rejected": [{"index": 0, "id": "a"}]}),
    ] {
        assert!(!v.is_valid(&bad), "should not validate: {bad}");
    }
}

#[test]
fn http_error_bodies_validate() {
    let v = validator("error.schema.json");
    let env = Env::with_config(&util::example_config_with(&[("# token_env = \"METERD_TOKEN\"", "token_env = \"METERD_TEST_TOKEN\"")]));
    let daemon = env.daemon_with(&[], &[("METERD_TEST_TOKEN", "t0ken")]);
    let (anon, http) = (daemon.http(), daemon.http_with_token("t0ken"));
    let answers = [
        (401, anon.events("[]")),
        (400, http.events("not json")),
        (400, http.post("/v1/instances", "{}")),
        (422, http.post("/v1/instances", r#"{"instance_id":"i","plan":"nope","start":"2026-11-01T00:00:00Z"}"#)),
        (422, http.post("/v1/instances/none/release", r#"{"time":"2026-11-01T00:00:00Z"}"#)),
    ];
    for (status, r) in &answers {
        assert_eq!(r.status, *status, "{}", r.text());
        assert!(r.content_type.starts_with("application/json"), "{}: {}", r.status, r.content_type);
        assert_valid(&v, &format!("HTTP {status} body"), &r.json());
    }
    let _ = NOW;
}

#[test]
fn previews_from_the_cli_and_http_validate() {
    let v = validator("preview.schema.json");
    assert!(jsonschema::meta::validate(&schema("preview.schema.json")).is_ok());
    let env = Env::new();
    env.add_instance("inst-p", "calls", "2026-11-23T06:20:00Z");
    env.add_instance("inst-s", "storage", "2026-11-20T00:00:00Z");
    let events = [
        util::Ev::new("p1", "inst-p", "2.5", "2026-11-23T06:30:00Z").json(),
        util::Ev::new("p2", "inst-p", "0.00001", "2026-11-23T08:30:00Z").json(),
        util::Ev::new("p3", "inst-p", "7", "2026-11-23T11:30:00Z").json(),
        util::Ev::new("s1", "inst-s", "12.125", "2026-11-22T10:00:00Z").json(),
    ];
    env.run_stdin(&["ingest", "--now", NOW, "-"], &ndjson(&events)).success();
    env.run(&["seal", "--now", NOW]).success();
    let cli = env.run(&["preview", "--format", "json"]).json();
    assert_valid(&v, "CLI preview", &cli);
    let states: Vec<&str> = cli["rows"].as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert!(states.contains(&"open") && states.contains(&"pending") && states.contains(&"zero"), "{states:?}");
    let d = env.daemon();
    let http = d.http().get("/v1/preview?instance=inst-p&from=2026-11-23T00:00:00Z").ok();
    assert_valid(&v, "HTTP preview", &http);
    assert_eq!(http["instances"].as_array().unwrap().len(), 1);
    // The schema is not empty: a row with a float charge or a bad state fails it.
    let mut bad = cli.clone();
    bad["rows"][0]["charge"] = json!(0.6);
    assert!(!v.is_valid(&bad));
    bad = cli.clone();
    bad["rows"][0]["state"] = json!("billed");
    assert!(!v.is_valid(&bad));
}
