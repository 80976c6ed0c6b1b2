//! The shared store's visibility (issue 13): `meterd status` (table and JSON), `GET
//! /v1/status` and `/metrics` show the backend, this node, the sealer lease's holder, epoch
//! and expiry, and the nodes seen — with a real daemon on a real PostgreSQL server; on SQLite
//! `meterd status` says there is no lease (one machine).

#[path = "util/mod.rs"]
mod util;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use util::pg::PgCluster;
use util::Env;

#[test]
fn status_and_metrics_show_the_lease_holder_and_the_nodes_on_postgres() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut env = Env::new();
    env.db = PathBuf::from(pg.fresh_db());
    let d = env.daemon_with(&["--node", "node-a"], &[]);
    // The lease loop takes the lease at start; wait until the status shows it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let s = d.http().get("/v1/status").ok();
        if s["store"]["lease"]["held_here"] == true || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let store = &status["store"];
    assert_eq!(store["backend"], "postgres", "{status}");
    assert_eq!(store["node"], "node-a", "{status}");
    assert_eq!(store["lease"]["holder"], "node-a", "{status}");
    assert_eq!(store["lease"]["epoch"], 1, "{status}");
    assert_eq!(store["lease"]["held_here"], true, "{status}");
    assert!(store["lease"]["expires"].as_str().is_some_and(|t| t.ends_with('Z')), "{status}");
    assert_eq!(store["lease_state"], "held by this node", "{status}");
    assert_eq!(store["nodes_seen"][0]["name"], "node-a", "{status}");
    assert!(!status.to_string().contains(pg.password()), "the password never shows");

    let text = d.http().get("/metrics").text();
    for line in ["meterd_store_backend{backend=\"postgres\"} 1", "meterd_lease_held 1", "meterd_lease_epoch 1", "meterd_nodes_seen 1"] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }

    // Another node's view: not the holder; node-a is still the one seen.
    let run = |args: &[&str]| {
        let out = env.cmd().args(["--node", "node-b"]).args(args).stdin(std::process::Stdio::null()).output().unwrap();
        util::Run::from(out)
    };
    let json = run(&["status", "--format", "json", "--now", util::NOW]);
    json.success();
    let s = json.json();
    assert_eq!(s["store"]["node"], "node-b", "{s}");
    assert_eq!(s["store"]["lease"]["held_here"], false, "{s}");
    assert_eq!(s["store"]["lease_state"], "held by node-a", "{s}");
    let table = run(&["status", "--now", util::NOW]);
    table.success();
    assert!(table.stdout.contains("store               postgres (this node: node-b)"), "{}", table.stdout);
    assert!(table.stdout.contains("sealer lease        held by node-a, epoch 1, expires "), "the holder named once: {}", table.stdout);
    assert!(table.stdout.contains("nodes seen          node-a ("), "{}", table.stdout);

    // A one-shot run under the daemon's node name does not share its lease (two processes
    // would pass one fence): it is refused, exit 4, and the daemon keeps the lease.
    let out = env.cmd().args(["--node", "node-a", "seal", "--now", util::NOW]).stdin(std::process::Stdio::null()).output().unwrap();
    let same_name = util::Run::from(out);
    assert_eq!(same_name.code, 4, "{}", same_name.stderr);
    assert!(same_name.stderr.contains("another process named node-a") && same_name.stderr.contains("--node"), "{}", same_name.stderr);
    let after = d.http().get("/v1/status").ok();
    assert_eq!(
        (after["store"]["lease"]["holder"].as_str(), after["store"]["lease"]["epoch"].as_i64()),
        (Some("node-a"), Some(1)),
        "{after}"
    );
    assert_eq!(after["store"]["lease"]["held_here"], true, "{after}");
    // Nor does a one-shot `status` under that name say it holds the lease: the process does not.
    let out = env
        .cmd()
        .args(["--node", "node-a", "status", "--format", "json", "--now", util::NOW])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let same_name = util::Run::from(out);
    same_name.success();
    let view = same_name.json();
    assert_eq!(view["store"]["lease"]["held_here"], false, "{view}");
    assert_eq!(view["store"]["lease_state"], "held by node-a", "{view}");

    // A clean stop gives the lease back: shown as free, not as expired in 1970.
    let mut d = d;
    d.signal("-TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(0), "a clean stop: {}", d.stderr());
    let table = run(&["status", "--now", util::NOW]);
    table.success();
    assert!(table.stdout.contains("sealer lease        free: released by node-a (epoch 1)"), "{}", table.stdout);
    assert!(!table.stdout.contains("1970"), "{}", table.stdout);
    // The JSON says so too: released, not expired, no 1970 expiry; and the OpenAPI document's
    // Status schema takes it (as it takes the held lease above).
    let json = run(&["status", "--format", "json", "--now", util::NOW]);
    json.success();
    let released = json.json();
    let lease = &released["store"]["lease"];
    assert_eq!((&lease["released"], &lease["expired"], &lease["held_here"]), (&json!(true), &json!(false), &json!(false)), "{released}");
    assert!(lease["expires"].is_null(), "{released}");
    assert!(!released.to_string().contains("1970"), "{released}");
    for s in [&status, &released] {
        conforms_to_status_schema(s);
    }
}

/// Checks a status snapshot against `components.schemas.Status` of `schemas/openapi.json`.
fn conforms_to_status_schema(status: &Value) {
    let text = std::fs::read_to_string(util::repo_file("schemas/openapi.json")).expect("read schemas/openapi.json");
    let doc: Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [{"$ref": "#/components/schemas/Status"}],
    });
    let v = jsonschema::options().should_validate_formats(true).build(&root).expect("the Status schema compiles");
    let errs: Vec<_> = v.iter_errors(status).map(|e| format!("{e} (at {})", e.instance_path)).collect();
    assert!(errs.is_empty(), "the status does not match the document: {errs:#?}\n{status:#}");
}

#[test]
fn status_on_sqlite_says_there_is_no_lease() {
    let env = Env::new();
    env.run(&["instance", "add", "i-1", "--plan", "calls", "--start", "2026-11-01T00:00:00Z"]).success();
    let out = env.cmd().args(["--node", "solo", "status", "--now", util::NOW]).stdin(std::process::Stdio::null()).output().unwrap();
    let table = util::Run::from(out);
    table.success();
    assert!(table.stdout.contains("store               sqlite (this node: solo)"), "{}", table.stdout);
    assert!(table.stdout.contains("sealer lease        no lease (one machine)"), "{}", table.stdout);
    assert!(!table.stdout.contains("nodes seen"), "{}", table.stdout);
    let json = env.run(&["status", "--format", "json", "--now", util::NOW]);
    let s = json.json();
    assert_eq!(s["store"]["backend"], "sqlite");
    assert_eq!(s["store"]["lease_state"], "no lease (one machine)");
    assert!(s["store"]["lease"].is_null());
}

/// The `seal` check of `/readyz` (and `/v1/status`) on `d`.
fn seal_check(d: &util::Daemon) -> Value {
    let ready = d.http().get("/readyz").json();
    ready["checks"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "seal").cloned()).unwrap_or(Value::Null)
}

#[test]
fn a_standby_reports_the_holders_seals_on_the_store_not_a_seal_of_its_own() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut env = Env::with_config(&util::example_config_with(&[("seal = \"0 */5 * * * *\"", "seal = \"* * * * * *\"")]));
    env.db = PathBuf::from(pg.fresh_db());
    let a = env.daemon_with(&["--node", "node-a"], &[]);
    // node-a takes the lease and seals every second: the store records its last seal.
    util::wait_for("node-a to hold the lease and seal", util::PATIENCE, || {
        let s = a.http().get("/v1/status").ok();
        s["store"]["lease"]["held_here"] == true && s["last_seal"].is_string()
    });
    let b = env.daemon_with(&["--node", "node-b"], &[]);
    util::wait_for("node-b's status", util::PATIENCE, || b.http().try_get("/v1/status").is_ok_and(|r| r.status == 200));
    // node-b never sealed: its seal check says it stands by, who seals, and the store's last
    // seal — and passes (a standby pages nobody).
    let check = seal_check(&b);
    let detail = check["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("standby: node-a holds the sealer lease (epoch 1); last seal on the store "), "{check}");
    assert_eq!(check["ok"], true, "{check}");
    // The holder reports its own seals.
    let held = seal_check(&a);
    assert!(held["detail"].as_str().is_some_and(|d| d.starts_with("last successful seal ")), "{held}");
    // Both read the store's last seal in status and /metrics.
    let s = b.http().get("/v1/status").ok();
    assert!(s["last_seal"].as_str().is_some_and(|t| t.ends_with('Z')), "{s}");
    let text = b.http().get("/metrics").text();
    let line = text.lines().find(|l| l.starts_with("meterd_last_seal_success_timestamp_seconds ")).unwrap_or_default();
    assert!(line.split(' ').nth(1).and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| v > 0.0), "{line:?}");
    conforms_to_status_schema(&s);
}

/// The value of `series` in `d`'s `/metrics`.
fn gauge(d: &util::Daemon, series: &str) -> Option<f64> {
    let text = d.http().get("/metrics").text();
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

#[test]
fn a_second_process_under_the_same_node_name_is_logged_once_and_shown_while_it_lasts() {
    const WARNING: &str = "the sealer lease names this node but another process took it";
    const CLEARED: &str = "no other process holds the sealer lease under this node's name any more";
    let Some(pg) = PgCluster::shared() else { return };
    // A 3 s lease: the lease loop ticks every second.
    let mut env = Env::with_config(&util::example_config_with(&[("lease = \"15s\"", "lease = \"3s\"")]));
    env.db = PathBuf::from(pg.fresh_db());
    let mut a = env.daemon_with(&["--node", "node-a"], &[]);
    util::wait_for("node-a to hold the lease", util::PATIENCE, || a.http().get("/v1/status").ok()["store"]["lease"]["held_here"] == true);
    let b = env.daemon_with(&["--node", "node-a"], &[("RUST_LOG", "info")]);
    util::wait_for("the same-name warning", util::PATIENCE, || b.stderr().contains(WARNING));
    // Several lease ticks later: still one warning, and the clash still shows.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(b.stderr().matches(WARNING).count(), 1, "{}", b.stderr());
    assert_eq!(gauge(&b, "meterd_lease_name_clash"), Some(1.0));
    let check = seal_check(&b);
    assert!(
        check["detail"].as_str().is_some_and(|d| d.starts_with("standby: another process named node-a holds the sealer lease (epoch 1)")),
        "{check}"
    );
    assert_eq!(gauge(&a, "meterd_lease_name_clash"), Some(0.0), "the holder is not the one clashing");
    // The other process stops (releasing the lease): the clash clears, logged once.
    a.signal("-TERM");
    assert_eq!(a.wait_exit(Duration::from_secs(20)), Some(0), "{}", a.stderr());
    util::wait_for("the clash to clear", util::PATIENCE, || gauge(&b, "meterd_lease_name_clash") == Some(0.0));
    std::thread::sleep(Duration::from_millis(2500));
    let log = b.stderr();
    assert_eq!((log.matches(WARNING).count(), log.matches(CLEARED).count()), (1, 1), "{log}");
}
