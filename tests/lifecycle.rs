//! Instance lifecycle (design §4.1): freeze/unfreeze as a history; events judged by the state
//! at their own time, through the real binary and the HTTP API.

mod util;

use util::{Env, Ev, NOW};

const I: &str = "inst-f";

fn ingest(env: &Env, now: &str, ev: &Ev) -> serde_json::Value {
    env.run_stdin(&["ingest", "--now", now, "-"], ev.json().as_bytes()).json()
}

#[test]
fn freeze_rejects_usage_inside_the_frozen_interval_only() {
    let env = Env::new();
    env.add_instance(I, "calls", "2026-11-23T00:00:00Z");
    env.run(&["instance", "freeze", I, "--at", "2026-11-23T10:20:00Z"]).success();
    // While frozen: an event at 11:00 is refused with a message naming the interval start.
    let r = ingest(&env, "2026-11-23T11:05:00Z", &Ev::new("e-1100", I, "1", "2026-11-23T11:00:00Z"));
    let err = r["rejected"][0]["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("frozen") && err.contains("2026-11-23T10:20:00Z"), "{r}");
    // Before the freeze: billed in its own window.
    assert_eq!(ingest(&env, "2026-11-23T11:05:00Z", &Ev::new("e-1010", I, "2", "2026-11-23T10:10:00Z"))["accepted"], 1);
    let list = env.run(&["instance", "list", "--format", "json"]).json();
    assert_eq!(list[0]["status_history"][0]["status"], "FREEZE");

    env.run(&["instance", "unfreeze", I, "--at", "2026-11-23T12:40:00Z"]).success();
    assert_eq!(ingest(&env, "2026-11-23T13:00:00Z", &Ev::new("e-1250", I, "3", "2026-11-23T12:50:00Z"))["accepted"], 1);
    // A late event from the frozen interval, arriving after the unfreeze, is still refused,
    // and the message names both ends of the interval.
    let r = ingest(&env, "2026-11-23T13:00:00Z", &Ev::new("e-1130", I, "4", "2026-11-23T11:30:00Z"));
    let err = r["rejected"][0]["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("2026-11-23T10:20:00Z") && err.contains("2026-11-23T12:40:00Z"), "{r}");

    env.run(&["seal", "--now", "2026-11-23T14:00:00Z"]).success();
    let p = env.run(&["preview", "--format", "json"]).json();
    let rows: Vec<(String, String)> = p["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["begin_time"].as_str().unwrap().to_string(), r["usage"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(rows, [("2026-11-23T10:00:00Z".to_string(), "2".to_string()), ("2026-11-23T12:00:00Z".to_string(), "3".to_string())]);
    let status = env.run(&["status", "--format", "json", "--now", "2026-11-23T14:00:00Z"]).json();
    assert_eq!(status["frozen"], serde_json::json!([]));
    assert_eq!(status["conservation_violations"], serde_json::json!([]));
}

#[test]
fn status_changes_must_alternate_and_come_in_order() {
    let env = Env::new();
    env.add_instance(I, "calls", "2026-11-23T00:00:00Z");
    env.run(&["instance", "unfreeze", I, "--at", "2026-11-23T10:00:00Z"]).code(2);
    env.run(&["instance", "freeze", I, "--at", "2026-11-23T10:00:00Z"]).success();
    env.run(&["instance", "freeze", I, "--at", "2026-11-23T10:00:00Z"]).success(); // a repeated notification
    env.run(&["instance", "freeze", I, "--at", "2026-11-23T11:00:00Z"]).code(2);
    env.run(&["instance", "unfreeze", I, "--at", "2026-11-23T09:00:00Z"]).code(2);
    let list = env.run(&["instance", "list", "--format", "json"]).json();
    assert_eq!(list[0]["state"], "frozen");
}

#[test]
fn http_status_route_records_freeze_and_unfreeze() {
    let env = Env::new();
    env.add_instance(I, "calls", "2026-11-23T00:00:00Z");
    let d = env.daemon();
    let h = d.http();
    let v = h.post(&format!("/v1/instances/{I}/status"), r#"{"status":"FREEZE","time":"2026-11-23T11:00:00Z"}"#).ok();
    assert_eq!(v["state"], "frozen", "{v}");
    let r = h.events(Ev::new("x", I, "1", "2026-11-23T11:30:00Z").json()).ok();
    assert_eq!(r["accepted"], 0, "{r}");
    assert_eq!(h.get("/v1/status").ok()["frozen"], serde_json::json!([I]));
    let bad = h.post(&format!("/v1/instances/{I}/status"), r#"{"status":"THAW","time":"2026-11-23T11:00:00Z"}"#);
    assert_eq!(bad.status, 400);
    let v = h.post(&format!("/v1/instances/{I}/status"), r#"{"status":"UNFREEZE","time":"2026-11-23T11:45:00Z"}"#).ok();
    assert_eq!(v["state"], "active");
    assert_eq!(h.events(Ev::new("y", I, "1", "2026-11-23T11:50:00Z").json()).ok()["accepted"], 1);
    let _ = NOW;
}
