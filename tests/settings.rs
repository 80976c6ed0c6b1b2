//! Settings that cut windows, changed under a live store (issue 12, kind 7), and the smaller
//! output fixes of kind 8: normalised decimals and the Beijing-time warning. Real binary, real
//! SQLite files; the config file is rewritten between commands as an operator would.

mod util;

use serde_json::Value;
use util::{example_config_with, Env, Ev, Run, EXAMPLE_CONFIG};

const DAY: &str = "inst-day";
const HOUR: &str = "inst-hour";

fn set_config(env: &Env, text: &str) {
    std::fs::write(&env.config, text).expect("rewrite config");
}

fn ingest(env: &Env, now: &str, evs: &[Ev]) -> Value {
    let body: String = evs.iter().map(|e| e.json() + "\n").collect();
    env.run_stdin(&["ingest", "--now", now, "-"], body.as_bytes()).success().json()
}

/// Every command that opens the store with the config: (what, the run).
fn every_command(env: &Env, now: &str) -> Vec<(&'static str, Run)> {
    let ev = Ev::new("probe", HOUR, "1", now).json();
    let with_key = |args: &[&str]| Run::from(env.cmd().args(args).env("METERD_ISV_KEY", "k").output().expect("spawn"));
    vec![
        ("seal", env.run(&["seal", "--now", now])),
        ("preview", env.run(&["preview", "--format", "json"])),
        ("upload", with_key(&["upload", "--dry-run", "--now", now])),
        ("ingest", env.run_stdin(&["ingest", "--now", now, "-"], ev.as_bytes())),
        ("status", env.run(&["status", "--now", now])),
        ("instance list", env.run(&["instance", "list"])),
        ("package list", env.run(&["package", "list"])),
        ("run", run_bounded(env, &["run", "--listen", "127.0.0.1:0", "--now", now])),
    ]
}

/// Runs a command that should exit at once; one still running after 20 s (a daemon that
/// started) is killed and reported with code -1, so a missing refusal fails instead of hanging.
fn run_bounded(env: &Env, args: &[&str]) -> Run {
    use std::process::Stdio;
    let mut child = env.cmd().args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    for _ in 0..200 {
        if child.try_wait().expect("wait").is_some() {
            return Run::from(child.wait_with_output().expect("output"));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    Run { code: -1, stdout: String::from_utf8_lossy(&out.stdout).into(), stderr: String::from_utf8_lossy(&out.stderr).into() }
}

fn assert_refused(env: &Env, now: &str, needles: &[&str]) {
    for (what, r) in every_command(env, now) {
        assert_eq!(r.code, 2, "{what} must refuse with exit 2:\nstdout {}\nstderr {}", r.stdout, r.stderr);
        for n in needles {
            assert!(r.stderr.contains(n), "{what}: the message must name {n:?}:\n{}", r.stderr);
        }
    }
}

fn records(env: &Env) -> Vec<(String, String, String)> {
    let p = env.run(&["preview", "--format", "json"]).success().json();
    let mut rows: Vec<_> = p["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["state"] != "open")
        .map(|r| {
            (
                r["instance_id"].as_str().unwrap().to_string(),
                r["begin_time"].as_str().unwrap().to_string(),
                r["end_time"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn record_count(env: &Env) -> i64 {
    env.db().query_row("SELECT count(*) FROM records", [], |r| r.get(0)).unwrap()
}

/// The issue's example: `+08:00`, seal, then `+00:00`, seal gave two overlapping day records.
#[test]
fn a_changed_timezone_is_refused_by_every_command_until_changed_safely() {
    let env = Env::new();
    env.add_instance(DAY, "storage", "2026-11-23T00:00:00Z");
    env.add_instance(HOUR, "calls", "2026-11-23T00:00:00Z");
    ingest(
        &env,
        "2026-11-23T10:05:00Z",
        &[Ev::new("d1", DAY, "5", "2026-11-23T10:00:00Z"), Ev::new("h1", HOUR, "1", "2026-11-23T10:00:00Z")],
    );
    env.run(&["seal", "--now", "2026-11-23T16:06:00Z"]).success();
    let sealed = record_count(&env);
    assert_eq!(records(&env).iter().filter(|r| r.0 == DAY).count(), 1);

    set_config(&env, &example_config_with(&[("timezone = \"+08:00\"", "timezone = \"+00:00\"")]));
    assert_refused(&env, "2026-11-24T00:06:00Z", &["`timezone`", "+08:00", "+00:00", "set-timezone"]);
    assert_eq!(record_count(&env), sealed, "nothing was sealed under the other zone");
    // The safe path is refused while a day-period instance is live, naming it.
    let r = env.run(&["store", "set-timezone", "+00:00", "--now", "2026-11-24T00:06:00Z"]);
    r.code(2);
    assert!(r.stderr.contains(DAY) && !r.stderr.contains(HOUR), "{}", r.stderr);

    // Put it back: everything works again and no day record overlaps another.
    set_config(&env, EXAMPLE_CONFIG);
    env.run(&["seal", "--now", "2026-11-24T16:06:00Z"]).success();
    let days: Vec<_> = records(&env).into_iter().filter(|r| r.0 == DAY).collect();
    assert!(days.windows(2).all(|w| w[0].2 <= w[1].1), "overlapping day records: {days:?}");
}

#[test]
fn set_timezone_changes_a_store_whose_day_windows_are_not_live() {
    let env = Env::new();
    env.add_instance(HOUR, "calls", "2026-11-23T00:00:00Z");
    ingest(&env, "2026-11-23T10:05:00Z", &[Ev::new("h1", HOUR, "1", "2026-11-23T10:00:00Z")]);
    env.run(&["seal", "--now", "2026-11-23T11:06:00Z"]).success();
    set_config(&env, &example_config_with(&[("timezone = \"+08:00\"", "timezone = \"+00:00\"")]));
    env.run(&["seal", "--now", "2026-11-23T12:06:00Z"]).code(2);
    env.run(&["store", "set-timezone", "+00:00"]).success();
    env.run(&["seal", "--now", "2026-11-23T12:06:00Z"]).success();
    env.run(&["status", "--now", "2026-11-23T12:06:00Z"]).success();
}

#[test]
fn a_fresh_store_adopts_an_edited_timezone() {
    let env = Env::new();
    env.run(&["status"]).success(); // first open records +08:00
    set_config(&env, &example_config_with(&[("timezone = \"+08:00\"", "timezone = \"+00:00\"")]));
    let r = env.run(&["status"]);
    r.success();
    assert!(r.stderr.contains("adopts"), "{}", r.stderr);
}

#[test]
fn a_changed_plan_period_is_refused_by_every_command() {
    let env = Env::new();
    env.add_instance(HOUR, "calls", "2026-11-23T00:00:00Z");
    ingest(&env, "2026-11-23T10:05:00Z", &[Ev::new("h1", HOUR, "1", "2026-11-23T10:00:00Z")]);
    // `seats` has no instance: its period may change freely; `calls` may not.
    let calls_daily = EXAMPLE_CONFIG.replacen("period = \"hour\"", "period = \"day\"", 1);
    assert!(calls_daily.contains("name = \"calls\""));
    set_config(&env, &calls_daily);
    assert_refused(&env, "2026-11-23T12:06:00Z", &["plan \"calls\"", "period", "\"hour\"", HOUR, "instance move"]);
    set_config(&env, EXAMPLE_CONFIG);
    env.run(&["seal", "--now", "2026-11-23T12:06:00Z"]).success();
}

#[test]
fn a_missing_plan_in_use_is_a_configuration_error_for_every_command() {
    let env = Env::new();
    env.add_instance(HOUR, "calls", "2026-11-23T00:00:00Z");
    ingest(&env, "2026-11-23T10:05:00Z", &[Ev::new("h1", HOUR, "2", "2026-11-23T10:00:00Z")]);
    let renamed = example_config_with(&[("name = \"calls\"", "name = \"api-calls\"")]);
    set_config(&env, &renamed);
    assert_refused(&env, "2026-11-23T12:06:00Z", &["plan \"calls\"", HOUR, "1 instance", "instance move"]);
    assert_eq!(record_count(&env), 0);

    // The safe rename: both plans defined, the instance moved at its next unsealed boundary.
    let both = format!("{EXAMPLE_CONFIG}\n{}", calls_block().replace("name = \"calls\"", "name = \"api-calls\""));
    set_config(&env, &both);
    let r = env.run(&["instance", "move", HOUR, "--plan", "api-calls", "--at", "2026-11-23T11:00:00Z"]);
    r.code(2);
    assert!(r.stderr.contains("2026-11-23T00:00:00Z"), "the refusal names the boundary to use: {}", r.stderr);
    env.run(&["instance", "move", HOUR, "--plan", "api-calls", "--at", "2026-11-23T00:00:00Z"]).success();
    set_config(&env, &renamed);
    env.run(&["seal", "--now", "2026-11-23T12:06:00Z"]).success();
    let p = env.run(&["preview", "--format", "json"]).success().json();
    assert_eq!(p["rows"][0]["plan"], "api-calls", "{p}");
    assert_eq!(p["rows"][0]["usage"], "2", "{p}");
}

/// The `[[plan]]` block of `calls` in the example config.
fn calls_block() -> String {
    let start = EXAMPLE_CONFIG.find("[[plan]]\nname = \"calls\"").expect("calls plan");
    let rest = &EXAMPLE_CONFIG[start + 8..];
    let end = rest.find("[[plan]]").map(|e| start + 8 + e).unwrap_or(EXAMPLE_CONFIG.len());
    EXAMPLE_CONFIG[start..end].to_string()
}

#[test]
fn move_changes_the_period_at_a_common_boundary_without_overlap_or_early_days() {
    // A move between two `sum` plans: the example's storage plan sums here (moves into or out
    // of weighted_sum are refused; see the next test).
    let env = Env::with_config(&util::example_config_storage_sum());
    let busy = "inst-busy";
    env.add_instance(HOUR, "calls", "2026-11-23T00:00:00Z");
    env.add_instance(busy, "calls", "2026-11-23T00:00:00Z");
    ingest(
        &env,
        "2026-11-23T10:35:00Z",
        &[Ev::new("a", HOUR, "2", "2026-11-23T10:30:00Z"), Ev::new("b", busy, "2", "2026-11-23T10:30:00Z")],
    );
    env.run(&["seal", "--now", "2026-11-23T16:06:00Z"]).success(); // both cursors at 16:00Z = 00:00 +08:00
    ingest(&env, "2026-11-23T16:35:00Z", &[Ev::new("c", busy, "1", "2026-11-23T16:30:00Z")]);

    let mv = |id: &str, at: &str| env.run(&["instance", "move", id, "--plan", "storage", "--at", at]);
    let r = mv(HOUR, "2026-11-23T17:00:00Z");
    r.code(2);
    assert!(r.stderr.contains("boundary"), "{}", r.stderr);
    let r = mv(busy, "2026-11-23T16:00:00Z");
    r.code(2);
    assert!(r.stderr.contains("already stored"), "usage cut hourly past the cursor: {}", r.stderr);
    mv(HOUR, "2026-11-23T16:00:00Z").success();

    // A late event (carried into the first day window) and one in the day.
    ingest(
        &env,
        "2026-11-24T01:05:00Z",
        &[Ev::new("d", HOUR, "3", "2026-11-23T15:30:00Z"), Ev::new("e", HOUR, "4", "2026-11-24T01:00:00Z")],
    );
    env.run(&["seal", "--now", "2026-11-24T10:06:00Z"]).success();
    let mine = |env: &Env| records(env).into_iter().filter(|r| r.0 == HOUR).collect::<Vec<_>>();
    assert!(mine(&env).iter().all(|r| r.2.as_str() <= "2026-11-23T16:00:00Z"), "a day not yet ended was sealed: {:?}", mine(&env));
    env.run(&["seal", "--now", "2026-11-24T16:06:00Z"]).success();
    let recs = mine(&env);
    assert!(recs.windows(2).all(|w| w[0].2 <= w[1].1), "overlapping records: {recs:?}");
    let last = recs.last().expect("a day record");
    assert_eq!((last.1.as_str(), last.2.as_str()), ("2026-11-23T16:00:00Z", "2026-11-24T16:00:00Z"));
    let p = env.run(&["preview", "--instance", HOUR, "--format", "json"]).success().json();
    assert_eq!(p["instances"][0]["usage"], "9", "2 hourly + 7 in the day: {p}");
}

/// An instance never moves between a weighted_sum plan and a plan of another aggregation: its
/// level spans windows and its carry is unit·seconds.
#[test]
fn a_move_into_or_out_of_weighted_sum_is_refused() {
    let env = Env::new();
    env.add_instance(HOUR, "calls", "2026-11-23T00:00:00Z");
    env.add_instance("inst-gb", "storage", "2026-11-22T16:00:00Z");
    env.run(&["seal", "--now", "2026-11-23T16:06:00Z"]).success();
    for (id, plan) in [(HOUR, "storage"), ("inst-gb", "calls")] {
        let r = env.run(&["instance", "move", id, "--plan", plan, "--at", "2026-11-23T16:00:00Z"]);
        r.code(2);
        assert!(r.stderr.contains("weighted_sum") && r.stderr.contains("new instance"), "{}", r.stderr);
    }
}

/// `80`, not `80.0`; `0`, not `0.0` — in every output format. `charge_2dp` is the cent amount
/// and keeps two decimals by design.
#[test]
fn decimals_are_normalised_in_every_output() {
    let toml = r#"
[[plan]]
name = "h"
factor = "f"
unit = "u"
period = "hour"
pricing = "fixed"
price = "1.0"

[[plan]]
name = "stop"
factor = "f"
unit = "u"
period = "hour"
pricing = "fixed"
price = "1.00"
package = "stop"

[[plan]]
name = "tier"
factor = "f"
unit = "u"
period = "hour"
pricing = "tier"
tiers = [ { up_to = "10.0", price = "0.50" }, { price = "0.250" } ]
"#;
    let env = Env::with_config(toml);
    for (id, plan) in [("i-h", "h"), ("i-s", "stop"), ("i-t", "tier")] {
        env.add_instance(id, plan, "2026-11-23T00:00:00Z");
        ingest(
            &env,
            "2026-11-23T09:50:00Z",
            &[Ev::new("a", id, "80.0", "2026-11-23T09:30:00Z"), Ev::new("b", id, "0.50", "2026-11-23T09:40:00Z")],
        );
    }
    env.run(&["package", "add", "i-s", "pkg-1", "--quota", "100.0", "--from", "2026-11-24T00:00:00Z", "--to", "2026-12-24T00:00:00Z"])
        .success();
    env.run(&["seal", "--now", "2026-11-23T10:06:00Z"]).success();
    let now = "2026-11-24T10:06:00Z";
    let bad = |d: &str| d.contains('.') && (d.ends_with('0') || d.ends_with('.'));

    let mut outputs = Vec::new();
    let p = env.run(&["preview", "--format", "json"]).success().json();
    assert_eq!(p["rows"][0]["charge"], "80.5", "{p}");
    outputs.push(("preview json", p));
    outputs.push(("status json", env.run(&["status", "--format", "json", "--now", now]).success().json()));
    outputs.push(("package list json", env.run(&["package", "list", "--format", "json", "--now", now]).success().json()));
    for (what, v) in &outputs {
        let mut strings = Vec::new();
        collect_strings(v, "", &mut strings);
        for (key, s) in strings {
            if key != "charge_2dp" && s.parse::<rust_decimal::Decimal>().is_ok() {
                assert!(!bad(&s), "{what}: {key} = {s:?} is not normalised");
            }
        }
    }
    let csv = env.run(&["preview", "--format", "csv"]).success().stdout.clone();
    for line in csv.lines().skip(1).filter(|l| !l.is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        assert!(!bad(cells[5]) && !bad(cells[6]), "csv usage/charge not normalised: {line}");
    }
    let table = env.run(&["preview"]).success().stdout.clone();
    assert!(table.lines().any(|l| l.starts_with("i-h") && l.contains(" 80.5 ")), "{table}");
    let html = env.run(&["preview", "--format", "html"]).success().stdout.clone();
    assert!(html.contains("exact: 80.5") && !html.contains("exact: 80.50"), "html exact values not normalised");
    for text in
        [env.run(&["status", "--now", now]).success().stdout.clone(), env.run(&["package", "list", "--now", now]).success().stdout.clone()]
    {
        for word in text.split(|c: char| c.is_whitespace() || c == ',') {
            assert!(!(word.parse::<rust_decimal::Decimal>().is_ok() && bad(word)), "{word:?} in:\n{text}");
        }
    }
}

fn collect_strings(v: &Value, key: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((key.to_string(), s.clone())),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, key, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| collect_strings(x, k, out)),
        _ => {}
    }
}

#[test]
fn a_timezone_other_than_beijing_is_warned_at_start_and_in_status() {
    let env = Env::with_config(&example_config_with(&[("timezone = \"+08:00\"", "timezone = \"+00:00\"")]));
    let r = env.run(&["status"]);
    r.success();
    assert_eq!(r.stderr.matches("Beijing").count(), 1, "one WARN per command: {}", r.stderr);
    assert!(r.stdout.contains("WARNING") && r.stdout.contains("Beijing") && r.stdout.contains("step"), "{}", r.stdout);
    let j = env.run(&["status", "--format", "json"]).success().json();
    assert!(j["timezone_warning"].as_str().is_some_and(|w| w.contains("+08:00")), "{j}");
    env.run(&["preview"]).success();

    let beijing = Env::new();
    let r = beijing.run(&["status"]);
    assert!(!r.stderr.contains("Beijing") && !r.stdout.contains("WARNING"), "{}{}", r.stdout, r.stderr);
    assert!(beijing.run(&["status", "--format", "json"]).success().json().get("timezone_warning").is_none());
}

/// The plan of a finished instance (released, sealed through its release) may leave the config
/// (the settings check allows it): everyone else's preview still answers (CLI and HTTP), `seal`
/// has nothing to log for it, and an identical resend of one of its stored events is still a
/// duplicate (kind 3) while a new event is refused naming the plan.
#[test]
fn a_finished_instance_may_lose_its_plan_without_breaking_preview_seal_or_resends() {
    const GONE: &str = "inst-gone";
    let with_old = format!("{EXAMPLE_CONFIG}\n{}", calls_block().replace("name = \"calls\"", "name = \"old\""));
    let env = Env::with_config(&with_old);
    env.add_instance(HOUR, "calls", "2026-11-23T00:00:00Z");
    env.add_instance(GONE, "old", "2026-11-23T00:00:00Z");
    let stored = Ev::new("g1", GONE, "1", "2026-11-23T09:30:00Z");
    ingest(&env, "2026-11-23T09:31:00Z", &[stored.clone(), Ev::new("h1", HOUR, "2", "2026-11-23T09:30:00Z")]);
    env.release_instance(GONE, "2026-11-23T10:00:00Z");
    env.run(&["seal", "--now", "2026-11-23T10:06:00Z"]).success();
    set_config(&env, EXAMPLE_CONFIG);

    let p = env.run(&["preview", "--format", "json"]).success().json();
    let ids: Vec<&str> = p["rows"].as_array().expect("rows").iter().map(|r| r["instance_id"].as_str().expect("id")).collect();
    assert_eq!(ids, [HOUR], "the finished instance without a plan is left out, the rest is shown: {p}");
    let one = env.run(&["preview", "--instance", GONE]);
    one.code(2);
    assert!(one.stderr.contains("plan \"old\""), "{}", one.stderr);
    let s = env.run(&["seal", "--now", "2026-11-23T11:06:00Z"]);
    s.success();
    assert!(!s.stderr.contains("missing from the config"), "nothing to seal, nothing to log: {}", s.stderr);

    let st = env.run(&["status", "--format", "json", "--now", "2026-11-23T11:07:00Z"]).success().json();
    assert!(st.get("missing_plans").is_none(), "a finished instance's retired plan is not a missing plan: {st}");

    let resend = env.run_stdin(&["ingest", "--now", "2026-11-23T11:07:00Z", "-"], stored.json().as_bytes());
    resend.success();
    assert_eq!(resend.json()["duplicates"], 1, "{}", resend.stdout);
    let new = env
        .run_stdin(&["ingest", "--now", "2026-11-23T11:07:00Z", "-"], Ev::new("g2", GONE, "1", "2026-11-23T09:40:00Z").json().as_bytes());
    new.code(1);
    assert!(new.stdout.contains("plan \\\"old\\\""), "{}", new.stdout);

    let d = env.daemon_at("2026-11-23T11:07:00Z", &[], &[]);
    let http = d.http();
    let p = http.get("/v1/preview").ok();
    assert_eq!(p["rows"].as_array().map(Vec::len), Some(1), "{p}");
    assert_eq!(http.events(stored.json()).ok()["duplicates"], 1);
}

#[test]
fn a_changed_plan_aggregation_is_refused_by_every_command() {
    let env = Env::new();
    env.add_instance(HOUR, "calls", "2026-11-23T00:00:00Z");
    ingest(&env, "2026-11-23T10:05:00Z", &[Ev::new("h1", HOUR, "1", "2026-11-23T10:00:00Z")]);
    // `calls` (sum) holds usage: billing its stored windows by max would use the wrong facts.
    let calls_max = EXAMPLE_CONFIG.replacen("name = \"calls\"", "name = \"calls\"\naggregation = \"max\"", 1);
    assert_ne!(calls_max, EXAMPLE_CONFIG);
    set_config(&env, &calls_max);
    assert_refused(&env, "2026-11-23T12:06:00Z", &["plan \"calls\"", "aggregation", "\"sum\"", HOUR, "instance move"]);
    // A plan with no instance (`logins`) may change its aggregation: the store adopts it.
    let logins_sum = EXAMPLE_CONFIG.replacen("aggregation = \"count\"", "aggregation = \"sum\"", 1);
    assert_ne!(logins_sum, EXAMPLE_CONFIG);
    set_config(&env, &logins_sum);
    let r = env.run(&["seal", "--now", "2026-11-23T12:06:00Z"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("`aggregation` changed"), "{}", r.stderr);
    // Moving the instance to a plan of another aggregation (`seats`, max, also hourly) at a
    // boundary with usage stored past it is refused too (without that usage it is allowed).
    ingest(&env, "2026-11-23T12:15:00Z", &[Ev::new("h2", HOUR, "1", "2026-11-23T12:10:00Z")]);
    let r = env.run(&["instance", "move", HOUR, "--plan", "seats", "--at", "2026-11-23T12:00:00Z"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("aggregation"), "{}", r.stderr);
}
