//! Prepaid packages (design §4.2) end to end: the real `meterd` binary on a real SQLite file,
//! the real `meterd mock-store` on loopback told about the packages, and the daemon's HTTP
//! routes. Stop-before-excess windows cut per package, exhaustion reported by ingest, status
//! and the quota endpoint, `over_quota` kept and never uploaded, monthly reset in +08:00,
//! pay-per-use package coverage in preview, and the schemas of what is printed.

mod util;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use util::{Env, Ev};

const KEY: &str = "KEY-pkg-t3sts-0b1c2d3e4f";
const I: &str = "inst-stop";

fn plans(endpoint: &str) -> String {
    format!(
        r#"timezone = "+08:00"

[[plan]]
name = "stopcalls"
factor = "api_calls"
unit = "call"
period = "hour"
pricing = "fixed"
price = "0.1"
package = "stop"

[[plan]]
name = "paygcalls"
factor = "api_calls"
unit = "call"
period = "hour"
pricing = "step"
accumulation = "month"
tiers = [ {{ up_to = "3", price = "0.3" }}, {{ price = "0.2" }} ]
package = "payg"

[[plan]]
name = "calls"
factor = "api_calls"
period = "hour"
pricing = "fixed"
price = "0.3"

[upload]
endpoint = "{endpoint}"
fallback = "{endpoint}"
max_attempts = 3
backoff_base = "10ms"
backoff_cap = "50ms"
"#
    )
}

/// `meterd mock-store` as a child process; killed on drop.
struct MockChild {
    child: Child,
    endpoint: String,
}

impl MockChild {
    fn start(env: &Env, extra: &[&str]) -> MockChild {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meterd"));
        let ledger = env.dir.path().join("ledger.jsonl");
        cmd.args(["mock-store", "--listen", "127.0.0.1:0", "--key-env", "METERD_TEST_PKG_KEY", "--now", "2026-11-23T12:00:00Z"])
            .arg("--ledger")
            .arg(&ledger)
            .args(extra)
            .env("METERD_TEST_PKG_KEY", KEY)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn mock-store");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let endpoint = line.trim().strip_prefix("mock-store listening on ").expect("mock announces its address").to_string();
        MockChild { child, endpoint }
    }

    fn ledger(env: &Env) -> Vec<Value> {
        let text = std::fs::read_to_string(env.dir.path().join("ledger.jsonl")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect()
    }
}

impl Drop for MockChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An environment whose config uploads to a mock that knows `I`'s packages.
fn world() -> (Env, MockChild) {
    let env = Env::with_config("");
    std::fs::write(env.dir.path().join("packages.txt"), format!("# instance package\n{I} pkg-100\n{I} pkg-50\n")).unwrap();
    let mock = MockChild::start(&env, &["--packages", env.dir.path().join("packages.txt").to_str().unwrap()]);
    std::fs::write(&env.config, plans(&mock.endpoint)).unwrap();
    (env, mock)
}

fn ingest(env: &Env, now: &str, events: &[Ev]) -> Value {
    let body: Vec<String> = events.iter().map(|e| e.json()).collect();
    env.run_stdin(&["ingest", "--now", now, "-"], body.join("\n").as_bytes()).json()
}

fn upload(env: &Env, now: &str) -> Value {
    let out = env.cmd().args(["upload", "--now", now]).env("METERD_ISV_KEY", KEY).stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("upload report ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr)))
}

fn audit_holds(env: &Env) {
    let mut store = meterd::store::Store::open(&env.db).unwrap();
    for b in meterd::audit::balances(&mut store).unwrap() {
        assert!(b.holds(), "conservation broken: {b:?}");
    }
}

#[test]
fn stop_packages_cut_the_window_report_exhaustion_and_keep_over_quota() {
    let (env, _mock) = world();
    env.add_instance(I, "stopcalls", "2026-11-01T00:00:00Z");
    env.run(&["package", "add", I, "pkg-100", "--quota", "100", "--from", "2026-11-01T00:00:00Z", "--to", "2026-12-01T00:00:00Z"])
        .success();
    env.run(&["package", "add", I, "pkg-50", "--quota", "50", "--from", "2026-11-01T00:00:00Z", "--to", "2027-01-01T00:00:00Z"]).success();

    // 130 units in the 10:00 hour, in several events: the third crosses from pkg-100 (earliest
    // expiry) to pkg-50 at 10:25:07.
    let r = ingest(
        &env,
        "2026-11-23T10:50:00Z",
        &[
            Ev::new("a", I, "40", "2026-11-23T10:05:00Z"),
            Ev::new("b", I, "40", "2026-11-23T10:15:00Z"),
            Ev::new("c", I, "40", "2026-11-23T10:25:07.5Z"),
            Ev::new("d", I, "10", "2026-11-23T10:40:00Z"),
        ],
    );
    assert_eq!(r, json!({"accepted": 4, "duplicates": 0, "rejected": []}), "20 units are left: not exhausted");

    env.run(&["seal", "--now", "2026-11-23T11:06:00Z"]).success();
    let report = upload(&env, "2026-11-23T11:07:00Z");
    assert_eq!(report["delivered"], 2, "{report}");
    let billed: Vec<(String, String, String, String)> = MockChild::ledger(&env)
        .iter()
        .map(|e| {
            let r = e;
            let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
            (s("begin_time"), s("end_time"), s("usage_value"), s("relate_pkg_instance"))
        })
        .collect();
    let row = |b: &str, e: &str, v: &str, p: &str| (b.to_string(), e.to_string(), v.to_string(), p.to_string());
    assert_eq!(
        billed,
        [row("20261123T100000Z", "20261123T102507Z", "100", "pkg-100"), row("20261123T102507Z", "20261123T110000Z", "30", "pkg-50")],
        "two records with distinct, adjacent periods, each naming its package"
    );

    // 20 more units use up pkg-50: the ingest result says so, and so do the quota route and status.
    let r = ingest(&env, "2026-11-23T11:20:00Z", &[Ev::new("e", I, "20", "2026-11-23T11:10:00Z")]);
    assert_eq!(r["quota_exhausted"], json!([I]), "{r}");
    let d = env.daemon_at("2026-11-23T11:30:00Z", &[], &[]);
    let q = d.http().get(&format!("/v1/instances/{I}/quota")).ok();
    assert_eq!((q["exhausted"].clone(), q["remaining"].clone(), q["mode"].clone()), (json!(true), json!("0"), json!("stop")), "{q:#}");
    let used: Vec<(Value, Value, Value)> =
        q["packages"].as_array().unwrap().iter().map(|p| (p["package_id"].clone(), p["used"].clone(), p["remaining"].clone())).collect();
    assert_eq!(used, [(json!("pkg-100"), json!("100"), json!("0")), (json!("pkg-50"), json!("50"), json!("0"))]);
    assert_eq!(d.http().get("/v1/status").ok()["quota_exhausted"], json!([I]));
    drop(d);

    // 10 more units: accepted (acknowledged), kept as over_quota, never uploaded.
    let r = ingest(&env, "2026-11-23T11:40:00Z", &[Ev::new("f", I, "10", "2026-11-23T11:35:00Z")]);
    assert_eq!((r["accepted"].clone(), r["quota_exhausted"].clone()), (json!(1), json!([I])), "{r}");
    env.run(&["seal", "--now", "2026-11-23T12:06:00Z"]).success();
    let report = upload(&env, "2026-11-23T12:07:00Z");
    assert_eq!(report["delivered"], 1, "only the 20 drawn from pkg-50: {report}");
    let last = MockChild::ledger(&env).last().unwrap().clone();
    assert_eq!((last["usage_value"].as_str(), last["relate_pkg_instance"].as_str()), (Some("20"), Some("pkg-50")));
    assert_eq!(MockChild::ledger(&env).len(), 3, "nothing else was billed");

    let status = env.run(&["status", "--format", "json", "--now", "2026-11-23T12:10:00Z"]).json();
    assert_eq!(status["over_quota"], json!({ I: "10" }), "{status:#}");
    assert_eq!(status["conservation_violations"], json!([]));
    let p = env.run(&["preview", "--format", "json", "--instance", I]).json();
    assert_eq!(p["instances"][0]["over_quota"], "10");
    let pkgs: Vec<(Value, Value)> =
        p["instances"][0]["packages"].as_array().unwrap().iter().map(|u| (u["package_id"].clone(), u["used"].clone())).collect();
    assert_eq!(pkgs, [(json!("pkg-100"), json!("100")), (json!("pkg-50"), json!("50"))]);
    assert_eq!(p["instances"][0]["charge_2dp"], "0.00", "the 150 units drawn from packages are prepaid; the 10 over quota cost nothing");
    let drawn: Vec<(Value, Value)> =
        p["rows"].as_array().unwrap().iter().map(|r| (r["relate_pkg_instance"].clone(), r["drawn"].clone())).collect();
    assert_eq!(drawn, [(json!("pkg-100"), json!("100")), (json!("pkg-50"), json!("30")), (json!("pkg-50"), json!("20"))]);
    audit_holds(&env);
    // After pkg-100 expires, the list shows what it ended with (it showed `used 0`).
    let q = env.run(&["package", "list", I, "--format", "json", "--now", "2026-12-01T12:00:00Z"]).json();
    let expired = &q[0]["packages"][0];
    assert_eq!(
        (&expired["package_id"], &expired["state"], &expired["used"], &expired["remaining"], &expired["period_start"]),
        (&json!("pkg-100"), &json!("expired"), &json!("100"), &json!("0"), &json!("2026-11-01T00:00:00Z")),
        "{q:#}"
    );
    // `--now T` shows the use as of T: only draws by usage before T (it showed every draw).
    for (t, want) in [("10:20", ["80", "0"]), ("10:30", ["100", "20"]), ("11:00", ["100", "30"]), ("11:20", ["100", "50"])] {
        let q = env.run(&["package", "list", I, "--format", "json", "--now", &format!("2026-11-23T{t}:00Z")]).json();
        let used: Vec<&str> = q[0]["packages"].as_array().unwrap().iter().map(|p| p["used"].as_str().unwrap()).collect();
        assert_eq!(used, want, "as of {t}: {q:#}");
    }
    for (what, v) in [("ingest-result", &r), ("preview", &p)] {
        validate(&format!("{what}.schema.json"), v);
    }
}

/// A freeze reported after a stop window's usage was stored (issue 12): the window is only
/// partly frozen, so it is billed, but its package records — which wanted to begin at 10:00
/// and at the 10:25:07 crossing, both frozen — are placed in its active part, from the
/// unfreeze at 10:30 on: the first gets the first active second, the second the rest.
#[test]
fn stop_records_of_a_partly_frozen_window_lie_in_its_active_part() {
    let (env, _mock) = world();
    env.add_instance(I, "stopcalls", "2026-11-01T00:00:00Z");
    env.run(&["package", "add", I, "pkg-100", "--quota", "100", "--from", "2026-11-01T00:00:00Z", "--to", "2026-12-01T00:00:00Z"])
        .success();
    env.run(&["package", "add", I, "pkg-50", "--quota", "50", "--from", "2026-11-01T00:00:00Z", "--to", "2027-01-01T00:00:00Z"]).success();
    let r = ingest(
        &env,
        "2026-11-23T10:50:00Z",
        &[
            Ev::new("a", I, "40", "2026-11-23T10:05:00Z"),
            Ev::new("b", I, "40", "2026-11-23T10:15:00Z"),
            Ev::new("c", I, "40", "2026-11-23T10:25:07.5Z"),
            Ev::new("d", I, "10", "2026-11-23T10:40:00Z"),
        ],
    );
    assert_eq!(r["accepted"], 4, "{r}");
    env.run(&["instance", "freeze", I, "--at", "2026-11-23T09:58:00Z"]).success();
    env.run(&["instance", "unfreeze", I, "--at", "2026-11-23T10:30:00Z"]).success();
    env.run(&["seal", "--now", "2026-11-23T11:06:00Z"]).success();

    let mut store = meterd::store::Store::open(&env.db).unwrap();
    let all = store.read(meterd::store::records::all).unwrap();
    let t = |s: i64| meterd::model::Timestamp::from_secs(s).to_string();
    let got: Vec<(String, String, String, Option<String>)> =
        all.iter().map(|r| (t(r.begin), t(r.end), r.usage_value.to_string(), r.relate_pkg.clone())).collect();
    let row = |b: &str, e: &str, v: &str, p: &str| (b.to_string(), e.to_string(), v.to_string(), Some(p.to_string()));
    assert_eq!(
        got,
        [
            row("2026-11-23T10:30:00Z", "2026-11-23T10:30:01Z", "100", "pkg-100"),
            row("2026-11-23T10:30:01Z", "2026-11-23T11:00:00Z", "30", "pkg-50"),
        ],
        "both package records within the active part 10:30..11:00"
    );
    let report = upload(&env, "2026-11-23T11:07:00Z");
    assert_eq!(report["delivered"], 2, "{report}");
    audit_holds(&env);
}

/// `package add` of a package already registered (new-user trial): the same package again
/// says so and changes nothing (exit 0), as `instance add` does; other terms for it are
/// refused showing both; an id another instance owns is refused naming that instance.
#[test]
fn package_add_again_changes_nothing_and_an_owned_id_names_its_owner() {
    let env = Env::with_config(&plans("http://127.0.0.1:9"));
    env.add_instance(I, "stopcalls", "2026-11-01T00:00:00Z");
    env.add_instance("inst-other", "stopcalls", "2026-11-01T00:00:00Z");
    let add = |instance: &str, quota: &str| {
        env.run(&["package", "add", instance, "pkg-a", "--quota", quota, "--from", "2026-11-01T00:00:00Z", "--to", "2026-12-01T00:00:00Z"])
    };
    let first = add(I, "10").expect(0);
    assert!(first.stdout.starts_with("package pkg-a of inst-stop registered: quota 10"), "{}", first.stdout);
    let list = || env.run(&["package", "list", "--format", "json", "--now", "2026-11-23T12:00:00Z"]).expect(0).stdout;
    let before = list();

    let again = add(I, "10").expect(0);
    assert_eq!(
        again.stdout.trim(),
        "package pkg-a of inst-stop is already registered with quota 10, 2026-11-01T00:00:00Z to 2026-12-01T00:00:00Z, reset none; nothing changed"
    );
    assert_eq!(list(), before, "nothing changed");

    let other = add("inst-other", "10").expect(2);
    assert!(
        other
            .stderr
            .contains(r#"package "pkg-a" belongs to instance "inst-stop"; package ids are unique across instances: choose another id"#),
        "{}",
        other.stderr
    );
    let changed = add(I, "20").expect(2);
    assert!(
        changed.stderr.contains("is already registered with quota 10,") && changed.stderr.contains("cannot change to quota 20,"),
        "both terms: {}",
        changed.stderr
    );
    assert!(changed.stderr.contains("register a new package id instead"), "{}", changed.stderr);
    assert_eq!(list(), before, "nothing changed");
}

#[test]
fn mock_store_rejects_records_without_their_package_and_package_ids_as_instances() {
    // A non-stop instance the mock was told has packages: its record lacks relate_pkg_instance,
    // so the mock refuses it (MKT.0101) and meterd rejects it alone after bisecting.
    let env = Env::with_config("");
    std::fs::write(env.dir.path().join("packages.txt"), "plain-1 pkg-x\n").unwrap();
    let mock = MockChild::start(&env, &["--packages", env.dir.path().join("packages.txt").to_str().unwrap()]);
    std::fs::write(&env.config, plans(&mock.endpoint)).unwrap();
    for id in ["plain-1", "plain-2", "pkg-x"] {
        env.add_instance(id, "calls", "2026-11-01T00:00:00Z");
    }
    let events: Vec<Ev> = ["plain-1", "plain-2", "pkg-x"].iter().map(|i| Ev::new("a", i, "1", "2026-11-23T10:05:00Z")).collect();
    assert_eq!(ingest(&env, "2026-11-23T10:50:00Z", &events)["accepted"], 3);
    env.run(&["seal", "--now", "2026-11-23T11:06:00Z"]).success();
    let report = upload(&env, "2026-11-23T11:07:00Z");
    assert_eq!((report["delivered"].clone(), report["rejected"].clone()), (json!(1), json!(2)), "{report}");
    let rejected = env.run(&["rejected", "--format", "json"]).json();
    let mut codes: Vec<(String, String)> = rejected
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["instance_id"].as_str().unwrap().to_string(), r["code"].as_str().unwrap().to_string()))
        .collect();
    codes.sort();
    assert_eq!(codes, [("pkg-x".to_string(), "MKT.9001".to_string()), ("plain-1".to_string(), "MKT.0101".to_string())]);
}

#[test]
fn monthly_quota_renews_at_the_month_boundary_in_beijing() {
    let env = Env::with_config(&plans("http://127.0.0.1:9"));
    env.add_instance(I, "stopcalls", "2026-11-01T00:00:00Z");
    env.run(&[
        "package",
        "add",
        I,
        "pkg-m",
        "--quota",
        "10",
        "--from",
        "2026-11-01T00:00:00Z",
        "--to",
        "2027-11-01T00:00:00Z",
        "--reset",
        "monthly",
    ])
    .success();
    // 2026-11-30T15:xxZ is still November in Beijing (+08:00); 16:00Z is December 1st.
    let r = ingest(&env, "2026-11-30T15:40:00Z", &[Ev::new("a", I, "10", "2026-11-30T15:10:00Z")]);
    assert_eq!(r["quota_exhausted"], json!([I]));
    let r = ingest(&env, "2026-11-30T15:59:00Z", &[Ev::new("b", I, "4", "2026-11-30T15:50:00Z")]);
    assert_eq!(r["quota_exhausted"], json!([I]), "still November: nothing renewed");
    let r = ingest(&env, "2026-11-30T16:20:00Z", &[Ev::new("c", I, "6", "2026-11-30T16:10:00Z")]);
    assert!(r.get("quota_exhausted").is_none(), "December's quota: 6 of 10 used: {r}");
    let q = env.run(&["package", "list", I, "--format", "json", "--now", "2026-11-30T16:30:00Z"]).json();
    let p = &q[0]["packages"][0];
    assert_eq!(
        (p["period_start"].as_str(), p["used"].as_str(), p["remaining"].as_str()),
        (Some("2026-11-30T16:00:00Z"), Some("6"), Some("4"))
    );
    assert_eq!(q[0]["over_quota"], "4", "the 4 units after November's quota ran out");
    // At the end of November the same package showed nothing left.
    let q = env.run(&["package", "list", I, "--format", "json", "--now", "2026-11-30T15:59:59Z"]).json();
    assert_eq!((q[0]["remaining"].as_str(), q[0]["exhausted"].as_bool()), (Some("0"), Some(true)));
    env.run(&["seal", "--now", "2026-11-30T17:06:00Z"]).success();
    let recs = records(&env);
    assert_eq!(
        recs,
        [
            ("2026-11-30T15:00:00Z".into(), "10".into(), Some("pkg-m".into())),
            ("2026-11-30T16:00:00Z".into(), "6".into(), Some("pkg-m".into()))
        ]
    );
    audit_holds(&env);
}

/// (begin, value, relate_pkg) of every sealed record, from the database.
fn records(env: &Env) -> Vec<(String, String, Option<String>)> {
    let mut store = meterd::store::Store::open(&env.db).unwrap();
    let all = store.read(meterd::store::records::all).unwrap();
    all.iter()
        .map(|r| (meterd::model::Timestamp::from_secs(r.begin).to_string(), r.usage_value.to_string(), r.relate_pkg.clone()))
        .collect()
}

#[test]
fn http_package_routes_validate_and_answer_the_quota() {
    let env = Env::with_config(&plans("http://127.0.0.1:9"));
    env.add_instance(I, "stopcalls", "2026-11-01T00:00:00Z");
    env.add_instance("plain-1", "calls", "2026-11-01T00:00:00Z");
    let d = env.daemon_at("2026-11-23T12:00:00Z", &[], &[]);
    let h = d.http();
    let body = |id: &str, quota: &str| {
        format!(r#"{{"package_id":"{id}","quota":{quota},"from":"2026-11-01T00:00:00Z","to":"2026-12-01T00:00:00Z","reset":"monthly"}}"#)
    };
    let first = h.post(&format!("/v1/instances/{I}/packages"), body("pkg-h", r#""25""#));
    assert_eq!(first.status, 201, "a new package is created: {}", first.text());
    let v = first.json();
    assert_eq!((v["remaining"].as_str(), v["exhausted"].as_bool()), (Some("25"), Some(false)), "{v}");
    assert_eq!(h.post(&format!("/v1/instances/{I}/packages"), body("pkg-h", r#""25""#)).status, 200, "re-registering is a no-op");
    let changed = h.post(&format!("/v1/instances/{I}/packages"), body("pkg-h", "30"));
    assert_eq!(changed.status, 422, "{}", changed.text());
    for (path, b, status) in [
        (format!("/v1/instances/{I}/packages"), body("pkg-2", r#""1.00001""#), 422),
        (format!("/v1/instances/{I}/packages"), body("pkg-2", r#""0""#), 422),
        (format!("/v1/instances/{I}/packages"), body(I, r#""5""#), 422),
        ("/v1/instances/plain-1/packages".to_string(), body("pkg-3", r#""5""#), 422),
        ("/v1/instances/nope/packages".to_string(), body("pkg-4", r#""5""#), 422),
        (format!("/v1/instances/{I}/packages"), r#"{"package_id":"x"}"#.to_string(), 400),
    ] {
        let r = h.post(&path, b.clone());
        assert_eq!(r.status, status, "{path} {b}: {}", r.text());
    }
    let plain = h.post("/v1/instances/plain-1/packages", body("pkg-3", r#""5""#)).json();
    assert!(plain["error"].as_str().unwrap().contains("package = "), "{plain}");
    let r = h.events(Ev::new("x", I, "25", "2026-11-23T11:30:00Z").json()).ok();
    assert_eq!(r["quota_exhausted"], json!([I]));
    let q = h.get(&format!("/v1/instances/{I}/quota")).ok();
    assert_eq!((q["remaining"].as_str(), q["exhausted"].as_bool()), (Some("0"), Some(true)));
    assert_eq!(h.get("/v1/instances/nope/quota").status, 422);
    // A package id is never a pay-per-use instance: not as an event's instance, not registered.
    let r = h.events(Ev::new("y", "pkg-h", "1", "2026-11-23T11:30:00Z").json()).ok();
    assert!(r["rejected"][0]["error"].as_str().unwrap().contains("package instance"), "{r}");
    env.run(&["instance", "add", "pkg-h", "--plan", "calls", "--start", "2026-11-01T00:00:00Z"]).code(2);
}

#[test]
fn payg_packages_are_used_first_and_only_the_excess_is_charged() {
    let env = Env::with_config(&plans("http://127.0.0.1:9"));
    env.add_instance("pg-1", "paygcalls", "2026-11-01T00:00:00Z");
    env.run(&["package", "add", "pg-1", "pkg-p", "--quota", "5", "--from", "2026-11-01T00:00:00Z", "--to", "2026-12-01T00:00:00Z"])
        .success();
    let r = ingest(
        &env,
        "2026-11-23T05:00:00Z",
        &[Ev::new("a", "pg-1", "2", "2026-11-23T01:10:00Z"), Ev::new("b", "pg-1", "6", "2026-11-23T02:10:00Z")],
    );
    assert!(r.get("quota_exhausted").is_none(), "pay-per-use packages never stop the service: {r}");
    env.run(&["seal", "--now", "2026-11-23T05:00:00Z"]).success();
    // Records are the plain usage, without relate_pkg_instance.
    assert_eq!(records(&env), [("2026-11-23T01:00:00Z".into(), "2".into(), None), ("2026-11-23T02:00:00Z".into(), "6".into(), None)]);
    let p = env.run(&["preview", "--format", "json"]).json();
    let rows: Vec<(Value, Value, Value)> =
        p["rows"].as_array().unwrap().iter().map(|r| (r["usage"].clone(), r["covered"].clone(), r["charge"].clone())).collect();
    // 2 covered (charge 0); of 6, 3 covered and 3 billable: step over billable usage only,
    // G(3) − G(0) = 3 × 0.3 = 0.9.
    assert_eq!(rows, [(json!("2"), json!("2"), json!("0")), (json!("6"), json!("3"), json!("0.9"))]);
    // The table shows the covered units too (column PREPAID; it showed `-`).
    let table = env.run(&["preview"]).stdout;
    let prepaid: Vec<&str> =
        table.lines().filter(|l| l.starts_with("pg-1 ")).map(|l| l.split_whitespace().nth(7).unwrap_or_default()).collect();
    assert_eq!(prepaid, ["2", "3"], "{table}");
    let html = env.run(&["preview", "--format", "html"]).stdout;
    assert!(html.contains("covered by packages") && html.contains("<td class=\"num\">3</td>"), "{html}");
    assert_eq!(p["instances"][0]["charge_2dp"], "0.90");
    validate("preview.schema.json", &p);
    let q = env.run(&["package", "list", "pg-1", "--format", "json", "--now", "2026-11-23T05:00:00Z"]).json();
    assert_eq!((q[0]["remaining"].as_str(), q[0]["exhausted"].as_bool()), (Some("0"), Some(false)));
}

fn validate(schema: &str, v: &Value) {
    let text = std::fs::read_to_string(util::repo_file(&format!("schemas/{schema}"))).unwrap();
    let s: Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::validator_for(&s).unwrap();
    let errs: Vec<String> = validator.iter_errors(v).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(errs.is_empty(), "{schema}: {errs:#?}\n{v:#}");
}
