//! The HTTP collector's whole-request answers and the instance endpoints (design §4, §7): a
//! body that is not JSON is refused whole (400), a body over `server.max_body` is refused (413),
//! a request without the configured bearer token is refused (401) — and none of them stores
//! anything.

use crate::util::{array, db, example_config_with, ndjson, Env, Ev, Http};
use serde_json::json;

fn one_event(id: &str) -> String {
    Ev::new(id, "inst-a", "1", "2026-11-23T08:00:00Z").json()
}

#[test]
fn a_body_that_is_not_json_is_refused_whole() {
    let env = Env::new();
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    let daemon = env.daemon();
    let http = daemon.http();
    for (body, says) in [
        ("hello world", "not JSON"),
        ("", "empty"),
        ("   \n", "empty"),
        (r#"[{"id":"x","instance_id":"inst-a","#, "not valid JSON"),
        ("id,instance_id,quantity,time\nx,inst-a,1,2026-11-23T08:00:00Z\n", "not JSON"),
    ] {
        let r = http.events(body);
        assert_eq!(r.status, 400, "{body:?} → {}", r.text());
        let error = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(says), "{body:?}: {error}");
        assert!(error.contains("NDJSON") || error.contains("JSON array"), "says what to send: {error}");
    }
    assert_eq!(db::count_events(&env.db()), 0);

    // NDJSON with one broken line is not "not JSON": the line is rejected on its own.
    let body = format!("{{\"id\": \"broken\n{}\n", one_event("fine"));
    let r = http.events(body).ok();
    assert_eq!(r["accepted"], 1, "{r}");
    assert_eq!(r["rejected"][0]["index"], 0);
    assert!(r["rejected"][0]["error"].as_str().unwrap().contains("invalid JSON"), "{r}");
}

/// An empty array is an empty batch (200, nothing accepted, documented in the OpenAPI
/// document); an array of non-objects is judged per element, each refused in the user's terms
/// (the fields an event needs), never with an internal type's name.
#[test]
fn an_empty_batch_is_200_and_non_objects_are_refused_saying_what_an_event_is() {
    let env = Env::new();
    let daemon = env.daemon();
    let http = daemon.http();
    let r = http.events("[]").ok();
    assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(0), Some(0)), "{r}");
    assert_eq!(r["rejected"], json!([]), "{r}");
    let doc = std::fs::read_to_string(crate::util::repo_file("schemas/openapi.json")).unwrap();
    assert!(doc.contains("An empty array (`[]`) is an empty batch"), "the OpenAPI document says what `[]` gets");
    let r = http.events("[1,2]").ok();
    let rejected = r["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{r}");
    for (i, rej) in rejected.iter().enumerate() {
        assert_eq!(rej["index"], i, "{r}");
        let error = rej["error"].as_str().unwrap();
        assert!(error.contains("each event must be a JSON object with `id`, `instance_id`"), "{error}");
        assert!(!error.contains("Wire") && !error.contains("struct"), "no internal names: {error}");
    }
}

#[test]
fn a_body_over_max_body_is_413_and_stores_nothing() {
    let env = Env::with_config(&example_config_with(&[("max_body = 16777216", "max_body = 4096")]));
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    let daemon = env.daemon();
    let http = daemon.http();
    let events: Vec<String> = (0..80).map(|i| one_event(&format!("big-{i}"))).collect();
    let body = ndjson(&events);
    assert!(body.len() > 4096);
    let r = http.events(body);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(db::count_events(&env.db()), 0);
    // The limit is on bytes, not events: the same events in small requests go through.
    for chunk in events.chunks(20) {
        assert!(ndjson(chunk).len() <= 4096);
        assert_eq!(http.events(ndjson(chunk)).ok()["accepted"], chunk.len());
    }
    assert_eq!(db::count_events(&env.db()), 80);
}

#[test]
fn without_the_bearer_token_nothing_is_stored() {
    const VAR: &str = "METERD_TEST_TOKEN";
    let env = Env::with_config(&example_config_with(&[("# token_env = \"METERD_TOKEN\"", "token_env = \"METERD_TEST_TOKEN\"")]));
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");

    // The daemon refuses to start when the variable is missing, naming the setting: a
    // configuration problem, exit code 2 (issue 15).
    let run = env.run(&["run", "--listen", "127.0.0.1:0"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("server.token_env") && run.stderr.contains(VAR), "{}", run.stderr);

    let daemon = env.daemon_with(&[], &[(VAR, "s3cret-token")]);
    let anonymous = daemon.http();
    let wrong = daemon.http_with_token("s3cret-tokeN");
    let right = daemon.http_with_token("s3cret-token");
    for http in [&anonymous, &wrong] {
        let r = http.events(one_event("e1"));
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(r.json()["error"].as_str().unwrap().contains("Bearer"));
        assert_eq!(http.post("/v1/instances", r#"{"instance_id":"sneaky","plan":"calls","start":"2026-11-01T00:00:00Z"}"#).status, 401);
        assert_eq!(http.post("/v1/instances/inst-a/release", r#"{"time":"2026-11-02T00:00:00Z"}"#).status, 401);
        assert_eq!(http.get("/v1/instances").status, 401);
    }
    let c = env.db();
    assert_eq!(db::count_events(&c), 0, "a refused request stores nothing");
    let instances: i64 = c.one("SELECT count(*) FROM instances WHERE release_ns IS NULL", &[]);
    assert_eq!(instances, 1, "no instance added or released without the token");
    assert_eq!(anonymous.get("/healthz").status, 200, "/healthz needs no token");

    assert_eq!(right.events(one_event("e1")).ok()["accepted"], 1);
    assert_eq!(db::count_events(&c), 1);
}

#[test]
fn instance_endpoints_add_list_release() {
    let env = Env::new();
    let daemon = env.daemon();
    let http = daemon.http();
    let add = |body: &str| http.post("/v1/instances", body.to_string());

    // A new instance: 201 Created, `created` true.
    let mut r = add(r#"{"instance_id":"inst-h","plan":"calls","start":"2026-11-20T00:00:00+08:00"}"#).created();
    assert_eq!(
        (r["instance_id"].clone(), r["plan"].clone(), r["start"].clone(), r["created"].clone()),
        (json!("inst-h"), json!("calls"), json!("2026-11-19T16:00:00Z"), json!(true))
    );
    assert_eq!(r["release"], json!(null));
    let before = http.get("/v1/instances").ok();
    // Registering the same instance again with the same values changes nothing and says so
    // (new-user trial: it was answered as a new registration): 200 OK, `created` false, the
    // instance as stored.
    let again = add(r#"{"instance_id":"inst-h","plan":"calls","start":"2026-11-19T16:00:00Z"}"#).ok();
    r["created"] = json!(false);
    assert_eq!(again, r, "the instance as stored, `created` false");
    assert_eq!(http.get("/v1/instances").ok(), before, "nothing changed");

    for (body, status, says) in [
        (r#"{"instance_id":"inst-h","plan":"storage","start":"2026-11-19T16:00:00Z"}"#, 422, "already registered"),
        (r#"{"instance_id":"inst-x","plan":"nope","start":"2026-11-19T16:00:00Z"}"#, 422, "\"nope\""),
        (r#"{"instance_id":"inst-x","plan":"calls","start":"yesterday"}"#, 422, "`start`"),
        (r#"{"instance_id":"inst-x","plan":"calls","start":"2026-11-19T16:00:00"}"#, 422, "`start`"),
        (r#"{"instance_id":"inst/x","plan":"calls","start":"2026-11-19T16:00:00Z"}"#, 422, "`instance_id`"),
        (r#"{"instance_id":"inst-x","plan":"calls"}"#, 400, "start"),
        (r#"{"instance_id":"inst-x","plan":"calls","start":"2026-11-19T16:00:00Z","extra":1}"#, 400, "extra"),
        ("not json", 400, "expected"),
    ] {
        let r = add(body);
        assert_eq!(r.status, status, "{body} → {}", r.text());
        assert!(r.json()["error"].as_str().unwrap().contains(says), "{body} → {}", r.text());
    }
    let list = http.get("/v1/instances").ok();
    assert_eq!(list.as_array().unwrap().len(), 1, "failed adds left nothing: {list}");

    // Events can be ingested for it. (A release before stored events is recorded with a
    // warning — the store's release is the truth — see tests/lifecycle.rs.)
    assert_eq!(http.events(Ev::new("h1", "inst-h", "1", "2026-11-22T10:00:00Z").json()).ok()["accepted"], 1);
    let release = |id: &str, body: &str| http.post(&format!("/v1/instances/{id}/release"), body.to_string());
    for (id, body, status, says) in [
        ("inst-h", r#"{"time":"2026-11-19T16:00:00Z"}"#, 422, "not after the instance's start"),
        ("inst-h", r#"{"time":"later"}"#, 422, "`time`"),
        ("inst-h", r#"{"at":"2026-11-22T11:00:00Z"}"#, 400, "time"),
        ("inst-none", r#"{"time":"2026-11-22T11:00:00Z"}"#, 422, "not registered"),
    ] {
        let r = release(id, body);
        assert_eq!(r.status, status, "{id} {body} → {}", r.text());
        assert!(r.json()["error"].as_str().unwrap().contains(says), "{id} {body} → {}", r.text());
    }
    let r = release("inst-h", r#"{"time":"2026-11-22T11:00:00Z"}"#).ok();
    assert_eq!(r["release"], "2026-11-22T11:00:00Z");
    assert_eq!(release("inst-h", r#"{"time":"2026-11-22T11:00:00Z"}"#).ok(), r, "the same release again is a no-op");
    assert_eq!(release("inst-h", r#"{"time":"2026-11-22T12:00:00Z"}"#).status, 422, "a different release time is refused");
    assert_eq!(http.get("/v1/instances").ok()[0]["release"], "2026-11-22T11:00:00Z");

    // After release, later events are refused; earlier ones still count.
    let r = http
        .events(array(&[
            Ev::new("h2", "inst-h", "1", "2026-11-22T10:59:59Z").json(),
            Ev::new("h3", "inst-h", "1", "2026-11-22T11:00:00Z").json(),
        ]))
        .ok();
    assert_eq!(r["accepted"], 1);
    assert_eq!(r["rejected"][0]["id"], "h3");
}

#[test]
fn a_second_client_sees_its_answer_while_another_is_refused() {
    // One bad request does not disturb a concurrent good one (per-request results).
    let env = Env::new();
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    let daemon = env.daemon();
    std::thread::scope(|s| {
        let addr = daemon.addr.clone();
        let bad = s.spawn(move || Http::new(&addr, None).events("garbage").status);
        let good = daemon.http().events(one_event("ok")).ok();
        assert_eq!(good["accepted"], 1);
        assert_eq!(bad.join().unwrap(), 400);
    });
}
