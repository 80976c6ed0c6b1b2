//! Preview end to end (issue 12, kinds 5 and 6): the real `meterd` binary on a real SQLite
//! file, the daemon's HTTP routes on loopback, and `meterd mock-store` for store rejections.
//!
//! - Every range against every cursor position answers (CLI and HTTP), never a panic; an
//!   inverted range is a clear error (exit 2 / 400); and the next instance registration works.
//! - A panic inside a request answers 500 and the next request works (fault switches).
//! - Preview prices only what the store charges: stop-before-excess records are prepaid (charge
//!   0, units `drawn` shown); rejected and expired records cost nothing and do not count toward
//!   step accumulation.

mod util;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use util::{Env, Ev};

const KEY: &str = "KEY-preview-t3sts-0b1c2d3e4f";

fn config(endpoint: &str) -> String {
    format!(
        r#"timezone = "+08:00"

[[plan]]
name = "hourly"
factor = "api_calls"
period = "hour"
pricing = "fixed"
price = "1"

[[plan]]
name = "stop"
factor = "api_calls"
period = "hour"
pricing = "fixed"
price = "1"
package = "stop"

[[plan]]
name = "payg"
factor = "api_calls"
period = "hour"
pricing = "fixed"
price = "1"
package = "payg"

[[plan]]
name = "calls"
factor = "api_calls"
period = "hour"
pricing = "step"
accumulation = "month"
tiers = [ {{ up_to = "3", price = "0.3" }}, {{ price = "0.2" }} ]

[upload]
endpoint = "{endpoint}"
fallback = "{endpoint}"
max_attempts = 1
backoff_base = "10ms"
backoff_cap = "50ms"
"#
    )
}

fn ingest(env: &Env, now: &str, events: &[Ev]) -> Value {
    let body: Vec<String> = events.iter().map(|e| e.json()).collect();
    let r = env.run_stdin(&["ingest", "--now", now, "-"], body.join("\n").as_bytes());
    r.success();
    r.json()
}

/// `(begin_time, state, usage, charge)` of each row.
fn rows(p: &Value) -> Vec<(String, String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    p["rows"].as_array().unwrap().iter().map(|r| (s(&r["begin_time"]), s(&r["state"]), s(&r["usage"]), s(&r["charge"]))).collect()
}

fn validate(v: &Value) {
    let text = std::fs::read_to_string(util::repo_file("schemas/preview.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap();
    let errs: Vec<String> = validator.iter_errors(v).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(errs.is_empty(), "preview.schema.json: {errs:#?}\n{v:#}");
}

/// i-1 (hourly fixed at 1) and i-2 (hourly step, monthly accumulation), started 00:00: 3 units
/// at 10:10, sealed at 11:06 (seal cursor 11:00), then 4 units at 11:30 after the seal (an open
/// window in the unfolded tail: the normal state of a running daemon).
fn running_store() -> Env {
    let env = Env::with_config(&config("http://127.0.0.1:9"));
    env.add_instance("i-1", "hourly", "2026-11-23T00:00:00Z");
    env.add_instance("i-2", "calls", "2026-11-23T00:00:00Z");
    let at = |id: &str, qty: &str, t: &str| ["i-1", "i-2"].map(|i| Ev::new(id, i, qty, t));
    ingest(&env, "2026-11-23T10:20:00Z", &at("a", "3", "2026-11-23T10:10:00Z"));
    env.run(&["seal", "--now", "2026-11-23T11:06:00Z"]).success();
    ingest(&env, "2026-11-23T11:40:00Z", &at("b", "4", "2026-11-23T11:30:00Z"));
    env
}

/// The instances of [`running_store`].
const INSTANCES: [&str; 2] = ["i-1", "i-2"];

/// Positions around the record's window (10:00), the seal cursor (11:00) and the last event
/// (11:30, window 11:00), and the first and last instants a timestamp holds; `None` leaves
/// the bound open.
const BOUNDS: [Option<&str>; 10] = [
    None,
    Some("1677-09-21T00:12:44Z"),
    Some("2026-11-23T09:00:00Z"),
    Some("2026-11-23T10:00:00Z"),
    Some("2026-11-23T10:30:00Z"),
    Some("2026-11-23T11:00:00Z"),
    Some("2026-11-23T11:30:00Z"),
    Some("2026-11-23T12:00:00Z"),
    Some("2026-11-24T00:00:00Z"),
    Some("2262-04-11T23:47:16Z"),
];

/// What a range must show of `inst`: the windows (10:00 sealed, 11:00 open) starting in
/// `[from, to)`; `None` when the range is inverted. Step charges count the earlier record of
/// the month even when the range leaves it out: 0.9 = G(3), 0.8 = G(7) − G(3).
fn expected(inst: &str, from: Option<&str>, to: Option<&str>) -> Option<Vec<(String, String, String, String)>> {
    let ns = |t: Option<&str>, open: i64| t.map_or(open, util::ns);
    let (f, t) = (ns(from, i64::MIN), ns(to, i64::MAX));
    if f > t {
        return None;
    }
    let (c1, c2) = if inst == "i-1" { ("3", "4") } else { ("0.9", "0.8") };
    let all = [("2026-11-23T10:00:00Z", "pending", "3", c1), ("2026-11-23T11:00:00Z", "open", "4", c2)];
    Some(
        all.iter()
            .filter(|(b, ..)| (f..t).contains(&util::ns(b)))
            .map(|(b, s, u, c)| (b.to_string(), s.to_string(), u.to_string(), c.to_string()))
            .collect(),
    )
}

#[test]
fn every_preview_range_answers_on_the_cli_and_the_next_registration_works() {
    let env = running_store();
    let mut n = 0;
    for from in BOUNDS {
        for to in BOUNDS {
            for inst in INSTANCES {
                let mut args = vec!["preview", "--format", "json", "--instance", inst];
                if let Some(f) = from {
                    args.extend(["--from", f]);
                }
                if let Some(t) = to {
                    args.extend(["--to", t]);
                }
                let r = env.run(&args);
                match expected(inst, from, to) {
                    Some(want) => {
                        r.success();
                        let p = r.json();
                        assert_eq!(rows(&p), want, "{inst} --from {from:?} --to {to:?}");
                        validate(&p);
                    }
                    None => {
                        r.code(2);
                        assert!(r.stderr.contains("inverted") && r.stderr.contains("--from"), "--from {from:?} --to {to:?}: {}", r.stderr);
                    }
                }
            }
            n += 1;
            env.add_instance(&format!("new-{n}"), "hourly", "2026-11-23T00:00:00Z");
        }
    }
    // The issue's example: `--to` before the seal cursor once events arrived after the seal.
    let p = env.run(&["preview", "--format", "json", "--instance", "i-1", "--to", "2026-11-23T10:30:00Z"]).success().json();
    assert_eq!(rows(&p), [("2026-11-23T10:00:00Z".into(), "pending".into(), "3".into(), "3".into())]);
    for format in ["table", "csv", "html"] {
        env.run(&["preview", "--format", format, "--to", "2026-11-23T10:30:00Z"]).success();
    }
}

#[test]
fn every_preview_range_answers_over_http_and_the_next_registration_works() {
    let env = running_store();
    let d = env.daemon_at("2026-11-23T11:45:00Z", &[], &[]);
    let h = d.http();
    let mut n = 0;
    for from in BOUNDS {
        for to in BOUNDS {
            for inst in INSTANCES {
                let mut q = vec![format!("instance={inst}")];
                q.extend(from.map(|f| format!("from={f}")));
                q.extend(to.map(|t| format!("to={t}")));
                let r = h.get(&format!("/v1/preview?{}", q.join("&")));
                match expected(inst, from, to) {
                    Some(want) => {
                        let p = r.ok();
                        assert_eq!(rows(&p), want, "{inst} from {from:?} to {to:?}");
                    }
                    None => {
                        assert_eq!(r.status, 400, "from {from:?} to {to:?}: {}", r.text());
                        assert!(r.json()["error"].as_str().unwrap().contains("inverted"), "{}", r.text());
                    }
                }
            }
            n += 1;
            let body = format!(r#"{{"instance_id":"new-{n}","plan":"hourly","start":"2026-11-23T00:00:00Z"}}"#);
            h.post("/v1/instances", body).created();
        }
    }
    for path in ["/v1/status", "/v1/instances", "/v1/instances/i-1/quota"] {
        h.get(path).ok();
    }
    assert_eq!(h.get("/metrics").status, 200);
}

/// An unknown `/v1/preview` parameter is named, with the accepted ones listed; one given
/// twice is refused too (400 both, in the API's error shape).
#[test]
fn an_unknown_preview_parameter_is_named_with_the_accepted_ones() {
    let env = running_store();
    let d = env.daemon_at("2026-11-23T11:45:00Z", &[], &[]);
    let h = d.http();
    let r = h.get("/v1/preview?instance=i-1&form=2026-11-23T00:00:00Z");
    assert_eq!(r.status, 400, "{}", r.text());
    let error = r.json()["error"].as_str().unwrap().to_string();
    assert!(error.starts_with("unknown query parameter `form`"), "{error}");
    assert!(error.contains("`instance`") && error.contains("`from` and `to`"), "lists the accepted ones: {error}");
    assert!(!error.contains("deserialize"), "not serde's words: {error}");
    let r = h.get("/v1/preview?from=2026-11-23T00:00:00Z&from=2026-11-23T01:00:00Z");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("`from` is given twice"), "{}", r.text());
    assert_eq!(rows(&h.get("/v1/preview?instance=i-1&from=2026-11-23T10%3A00%3A00Z").ok()).len(), 2, "encoded values still work");
}

#[test]
fn a_panic_inside_a_request_answers_500_and_the_next_request_works() {
    for point in ["preview-in-transaction", "preview-handler"] {
        let env = running_store();
        let d = env.daemon_at("2026-11-23T11:45:00Z", &[], &[("METERD_FAULTS", point)]);
        let h = d.http();
        for _ in 0..2 {
            let r = h.get("/v1/preview");
            assert_eq!(r.status, 500, "{point}: {}", r.text());
            assert!(r.json()["error"].as_str().unwrap().contains("internal error"), "{point}: {}", r.text());
        }
        // Everything that shares the admin connection still answers.
        let v = h.post("/v1/instances", r#"{"instance_id":"after-panic","plan":"hourly","start":"2026-11-23T00:00:00Z"}"#).created();
        assert_eq!(v["instance_id"], "after-panic", "{point}");
        assert_eq!(h.get("/v1/instances").ok().as_array().unwrap().len(), 3, "{point}");
        h.get("/v1/status").ok();
        h.get("/v1/instances/i-1/quota").ok();
        assert_eq!(h.get("/metrics").status, 200, "{point}");
        h.post("/v1/instances/after-panic/release", r#"{"time":"2026-11-23T11:00:00Z"}"#).ok();
        let r = h.events(Ev::new("c", "i-1", "1", "2026-11-23T11:40:00Z").json()).ok();
        assert_eq!(r["accepted"], 1, "{point}: {r}");
        assert_eq!(h.get("/healthz").status, 200);
        assert!(d.stderr().contains(point), "{point}: the panic is logged");
    }
}

/// The table's columns fit their content: with a plan name far longer than the old 8-character
/// column, every value still starts (text) or ends (numbers) under its header.
#[test]
fn the_preview_table_keeps_values_under_their_headers_for_long_plan_names() {
    let long = "enterprise-api-calls-2026";
    let plan = format!("\n[[plan]]\nname = \"{long}\"\nfactor = \"api_calls\"\nunit = \"kilorequests\"\nperiod = \"hour\"\npricing = \"fixed\"\nprice = \"1\"\n");
    let env = Env::with_config(&(config("http://127.0.0.1:9") + &plan));
    env.add_instance("i-long", long, "2026-11-23T00:00:00Z");
    env.add_instance("i-1", "hourly", "2026-11-23T00:00:00Z");
    ingest(
        &env,
        "2026-11-23T10:20:00Z",
        &[Ev::new("a", "i-long", "1234.5", "2026-11-23T10:10:00Z"), Ev::new("a", "i-1", "3", "2026-11-23T10:10:00Z")],
    );
    let table = env.run(&["preview", "--now", "2026-11-23T10:30:00Z"]).success().stdout.clone();
    let lines: Vec<&str> = table.lines().collect();
    let header = lines[0];
    let at = |name: &str| header.find(name).unwrap_or_else(|| panic!("no {name} in {header}"));
    let rows: Vec<&str> = lines[1..].iter().take_while(|l| !l.is_empty()).copied().collect();
    assert_eq!(rows.len(), 2, "{table}");
    for row in rows {
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert!(row[at("PLAN")..].starts_with(fields[1]), "PLAN:\n{table}");
        assert!(row[at("BEGIN (UTC)")..].starts_with(fields[2]), "BEGIN:\n{table}");
        assert!(row[at("STATE")..].starts_with("open"), "STATE:\n{table}");
        let charge_end = at("CHARGE") + "CHARGE".len();
        assert!(row[..charge_end].ends_with(fields[6]), "CHARGE ends under its header:\n{table}");
    }
    assert!(table.contains(&format!("total i-long  {long}  usage")), "{table}");
    // The total lines line up too: usage, unit, charge and currency each in one column.
    let totals: Vec<&str> = table.lines().filter(|l| l.starts_with("total ")).collect();
    assert_eq!(totals.len(), 2, "{table}");
    let at = |l: &str, what: &str| l.find(what);
    assert!(at(totals[0], "  charge ").is_some() && at(totals[0], "  charge ") == at(totals[1], "  charge "), "charge lines up:\n{table}");
    assert_eq!(totals[0].rfind(' '), totals[1].rfind(' '), "the currency lines up:\n{table}");
}

#[test]
fn stop_package_records_are_prepaid_charge_0_with_the_units_drawn() {
    let env = Env::with_config(&config("http://127.0.0.1:9"));
    env.add_instance("s-1", "stop", "2026-11-23T00:00:00Z");
    env.run(&["package", "add", "s-1", "pkg-10", "--quota", "10", "--from", "2026-11-01T00:00:00Z", "--to", "2026-12-01T00:00:00Z"])
        .success();
    ingest(&env, "2026-11-23T09:50:00Z", &[Ev::new("a", "s-1", "12", "2026-11-23T09:30:00Z")]);
    for sealed in [false, true] {
        if sealed {
            env.run(&["seal", "--now", "2026-11-23T10:06:00Z"]).success();
        }
        let p = env.run(&["preview", "--format", "json"]).success().json();
        let row = &p["rows"][0];
        let state = if sealed { "pending" } else { "open" };
        assert_eq!((row["state"].as_str(), row["usage"].as_str(), row["charge"].as_str()), (Some(state), Some("10"), Some("0")), "{p:#}");
        assert_eq!((row["charge_2dp"].as_str(), row["drawn"].as_str()), (Some("0.00"), Some("10")), "{p:#}");
        if sealed {
            assert_eq!(row["relate_pkg_instance"], "pkg-10");
        }
        let t = &p["instances"][0];
        assert_eq!((t["charge"].as_str(), t["over_quota"].as_str()), (Some("0"), Some("2")), "{p:#}");
        assert_eq!(p["totals"][0]["charge_2dp"], "0.00");
        validate(&p);
    }
    let csv = env.run(&["preview", "--format", "csv"]).success().stdout.clone();
    assert!(csv.ends_with('\n') && !csv.ends_with("\n\n"), "one newline ends the last record, no empty row: {csv:?}");
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().ends_with(",relate_pkg_instance,drawn,covered,flagged"), "{csv}");
    assert!(csv.contains(",pkg-10,10"), "{csv}");
    let table = env.run(&["preview"]).success().stdout.clone();
    assert!(table.contains("PREPAID") && table.contains("over_quota 2"), "{table}");
    let html = env.run(&["preview", "--format", "html"]).success().stdout.clone();
    assert!(html.contains("drawn from package") && html.contains("10 (pkg-10)"), "{html}");
}

#[test]
fn expired_records_are_not_charged_nor_counted_in_step_accumulation() {
    let env = Env::with_config(&config("http://127.0.0.1:9"));
    env.add_instance("c-1", "calls", "2026-11-01T00:00:00Z");
    ingest(&env, "2026-11-01T01:30:00Z", &[Ev::new("a", "c-1", "2", "2026-11-01T01:10:00Z")]);
    env.run(&["seal", "--now", "2026-11-01T02:06:00Z"]).success();
    ingest(&env, "2026-11-23T01:30:00Z", &[Ev::new("b", "c-1", "2", "2026-11-23T01:10:00Z")]);
    env.run(&["seal", "--now", "2026-11-23T02:06:00Z"]).success();
    let before = env.run(&["preview", "--format", "json"]).success().json();
    assert_eq!(rows(&before)[1].3, "0.5", "before expiry both count: G(4) − G(2)");
    // The 11-01 record begins more than 21 days before 11-23T02:10: it expires unsent (the
    // other one cannot be delivered to the closed port and stays pending).
    let up = env.cmd().args(["upload", "--now", "2026-11-23T02:10:00Z"]).env("METERD_ISV_KEY", KEY).stdin(Stdio::null()).output().unwrap();
    assert_ne!(up.status.code(), Some(0), "{}", String::from_utf8_lossy(&up.stdout));
    let p = env.run(&["preview", "--format", "json"]).success().json();
    // The second record's batch is open after the failed attempt: `sending`, still billable.
    let got: Vec<_> = rows(&p).into_iter().map(|(b, s, u, c)| (b, s.replace("sending", "pending"), u, c)).collect();
    assert_eq!(
        got,
        [
            ("2026-11-01T01:00:00Z".into(), "rejected".into(), "2".into(), "0".into()),
            ("2026-11-23T01:00:00Z".into(), "pending".into(), "2".into(), "0.6".into()),
        ],
        "{p:#}"
    );
    assert_eq!(p["instances"][0]["charge_2dp"], "0.60");
    validate(&p);
}

/// `meterd mock-store` as a child process; killed on drop.
struct MockChild {
    child: Child,
    endpoint: String,
}

impl MockChild {
    fn start(env: &Env, extra: &[&str]) -> MockChild {
        let mut cmd = Command::new(util::bin());
        cmd.args(["mock-store", "--listen", "127.0.0.1:0", "--key-env", "METERD_TEST_PREVIEW_KEY", "--now", "2026-11-23T12:00:00Z"])
            .args(extra)
            .env("METERD_TEST_PREVIEW_KEY", KEY)
            .env_remove("RUST_LOG")
            .current_dir(env.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn mock-store");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let endpoint = line.trim().strip_prefix("mock-store listening on ").expect("mock announces its address").to_string();
        MockChild { child, endpoint }
    }
}

impl Drop for MockChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn records_the_store_rejected_are_not_charged_nor_counted_in_step_accumulation() {
    let env = Env::with_config("");
    // The store knows only `known`: `c-1`'s records are refused (MKT.9001).
    std::fs::write(env.dir.path().join("instances.txt"), "known\n").unwrap();
    let mock = MockChild::start(&env, &["--instances", "instances.txt"]);
    std::fs::write(&env.config, config(&mock.endpoint)).unwrap();
    env.add_instance("c-1", "calls", "2026-11-01T00:00:00Z");
    env.add_instance("pg-1", "payg", "2026-11-01T00:00:00Z");
    env.run(&["package", "add", "pg-1", "pkg-5", "--quota", "5", "--from", "2026-11-01T00:00:00Z", "--to", "2026-12-01T00:00:00Z"])
        .success();
    ingest(
        &env,
        "2026-11-23T01:30:00Z",
        &[Ev::new("a", "c-1", "2", "2026-11-23T01:10:00Z"), Ev::new("a", "pg-1", "3", "2026-11-23T01:10:00Z")],
    );
    env.run(&["seal", "--now", "2026-11-23T02:06:00Z"]).success();
    let up = env.cmd().args(["upload", "--now", "2026-11-23T02:10:00Z"]).env("METERD_ISV_KEY", KEY).stdin(Stdio::null()).output().unwrap();
    assert_eq!(up.status.code(), Some(1), "records rejected: {}", String::from_utf8_lossy(&up.stdout));
    ingest(
        &env,
        "2026-11-23T02:30:00Z",
        &[Ev::new("b", "c-1", "2", "2026-11-23T02:10:00Z"), Ev::new("b", "pg-1", "4", "2026-11-23T02:10:00Z")],
    );
    env.run(&["seal", "--now", "2026-11-23T03:06:00Z"]).success();

    // Pay-per-use package: the rejected record drew nothing, so the 5 units still cover the next 4.
    let p = env.run(&["preview", "--format", "json", "--instance", "pg-1"]).success().json();
    let cov: Vec<(Value, Value, Value)> =
        p["rows"].as_array().unwrap().iter().map(|r| (r["state"].clone(), r["covered"].clone(), r["charge"].clone())).collect();
    assert_eq!(cov, [(json!("rejected"), json!("0"), json!("0")), (json!("pending"), json!("4"), json!("0"))], "{p:#}");
    validate(&p);
    let q = env.run(&["package", "list", "pg-1", "--format", "json", "--now", "2026-11-23T03:10:00Z"]).success().json();
    assert_eq!(q[0]["remaining"], "1", "{q:#}");

    let p = env.run(&["preview", "--format", "json", "--instance", "c-1"]).success().json();
    assert_eq!(
        rows(&p),
        [
            ("2026-11-23T01:00:00Z".into(), "rejected".into(), "2".into(), "0".into()),
            ("2026-11-23T02:00:00Z".into(), "pending".into(), "2".into(), "0.6".into()),
        ],
        "the rejected record costs nothing and the next is priced from the first step: {p:#}"
    );
    assert_eq!((p["instances"][0]["usage"].clone(), p["instances"][0]["charge"].clone()), (json!("4"), json!("0.6")));
    validate(&p);
}
