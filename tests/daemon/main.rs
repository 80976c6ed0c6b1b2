//! The daemon end to end (issue 5): the real binary with `run`, a temporary store, and the mock
//! cloud store on loopback (in this test process). Events posted over HTTP for past hours are
//! sealed and delivered on the daemon's own schedule, a SIGTERM stops it with exit 0 within
//! 10 s, a simulated day of downtime is caught up once, and `/metrics` agrees with `status`.

#[path = "../util/mod.rs"]
mod util;

use std::collections::HashSet;
use std::time::{Duration, Instant};
use util::mock::{mock_config, Mock};
use util::{example_config_with, Env, Ev, NOW};

const KEY: &str = "daemon-test-key-0123456789";

/// A config with the mock as endpoint and schedules firing every second.
fn env_for(mock: &Mock) -> Env {
    Env::with_config(&config_for(mock, &[]))
}

/// The same with unknown instances registered (plan `calls`) by their first event: the
/// registration commits with the events, so no seal tick can pass their windows in between.
fn env_auto_register(mock: &Mock) -> Env {
    Env::with_config(&config_for(mock, &[("# auto_register = \"calls\"", "auto_register = \"calls\"")]))
}

fn config_for(mock: &Mock, extra: &[(&str, &str)]) -> String {
    let endpoint = mock.endpoint();
    let mut cfg = example_config_with(&[
        ("endpoint = \"https://mkt.myhuaweicloud.com\"", &format!("endpoint = {endpoint:?}")),
        ("# fallback = \"https://mkt.myhuaweicloud.cn\"", &format!("fallback = {endpoint:?}")),
        ("seal = \"0 */5 * * * *\"", "seal = \"* * * * * *\""),
        ("upload = \"30 */5 * * * *\"", "upload = \"* * * * * *\""),
        ("backoff_base = \"200ms\"", "backoff_base = \"10ms\""),
        ("backoff_cap = \"30s\"", "backoff_cap = \"100ms\""),
    ]);
    for (from, to) in extra {
        assert!(cfg.contains(from), "{from}");
        cfg = cfg.replace(from, to);
    }
    cfg
}

/// The store bills before the daemon commits "delivered": polls the daemon's status until `n`
/// records are delivered locally, and returns it.
fn delivered_locally(d: &util::Daemon, n: u64) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let status = d.http().get("/v1/status").ok();
        if status["records"]["delivered"] == n {
            return status;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "only {} delivered locally", status["records"]["delivered"]);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn post(d: &util::Daemon, events: &[Ev]) {
    let body: Vec<String> = events.iter().map(Ev::json).collect();
    let r = d.http().events(util::ndjson(&body)).ok();
    assert_eq!(r["rejected"], serde_json::json!([]), "{r}");
}

#[test]
fn daemon_seals_and_uploads_on_its_own_then_stops_on_sigterm() {
    let mock = Mock::start(mock_config(KEY, NOW));
    let env = env_auto_register(&mock);
    let mut d = env.daemon_with(&[], &[("METERD_ISV_KEY", KEY)]);
    // One request registers both instances (auto_register) and stores their usage.
    post(
        &d,
        &[
            Ev::new("a1", "inst-a", "2", "2026-11-23T08:10:00Z"),
            Ev::new("a2", "inst-a", "6", "2026-11-23T09:10:00Z"),
            Ev::new("b1", "inst-b", "4.5", "2026-11-23T09:59:59Z"),
            Ev::new("open", "inst-a", "1", "2026-11-23T11:59:00Z"),
        ],
    );
    // No command is run: the daemon's schedule seals the three closed windows and uploads them.
    mock.wait_ledger(3, Duration::from_secs(15));
    let billed: HashSet<(String, String, String)> =
        mock.ledger().iter().map(|e| (e.record.instance_id.clone(), e.record.begin_time.clone(), e.record.usage_value.clone())).collect();
    let want: HashSet<(String, String, String)> =
        [("inst-a", "20261123T080000Z", "2"), ("inst-a", "20261123T090000Z", "6"), ("inst-b", "20261123T090000Z", "4.5")]
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
    assert_eq!(billed, want);
    // The open window (11:00–12:00, still collecting at NOW) is not sealed.
    let status = delivered_locally(&d, 3);
    assert_eq!(status["records"]["delivered"], 3, "{status}");
    assert_eq!(status["backlog"], 0);

    let start = Instant::now();
    d.terminate();
    let code = d.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "SIGTERM must exit 0 within 10 s; stderr:\n{}", d.stderr());
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(mock.ledger().len(), 3, "nothing billed twice");
}

#[test]
fn a_day_of_downtime_is_caught_up_once() {
    let later = "2026-11-24T12:00:00Z";
    let mock = Mock::start(mock_config(KEY, later));
    let env = env_for(&mock);
    env.add_instance("inst-a", "calls", "2026-11-23T00:00:00Z");
    env.add_instance("inst-d", "storage", "2026-11-20T00:00:00Z");
    // Events stored before the daemon starts; its first seal (at start) closes 10:00–11:00.
    let early = [Ev::new("a1", "inst-a", "1", "2026-11-23T10:10:00Z").json(), Ev::new("d1", "inst-d", "3", "2026-11-23T01:00:00Z").json()];
    env.run_stdin(&["ingest", "--now", NOW, "-"], &util::ndjson(&early)).success();
    let mut first = env.daemon_with(&[], &[("METERD_ISV_KEY", KEY)]);
    mock.wait_ledger(1, Duration::from_secs(15));
    post(&first, &[Ev::new("a-open", "inst-a", "1", "2026-11-23T11:15:00Z")]);
    first.terminate();
    assert_eq!(first.wait_exit(Duration::from_secs(10)), Some(0));

    // While the daemon is down, the app's events keep arriving through the CLI (cron style).
    let late_events: Vec<String> =
        (0..20).map(|h| Ev::new(&format!("x{h}"), "inst-a", "2", &format!("2026-11-23T{:02}:30:00Z", (h + 11) % 24)).json()).collect();
    let day_one: Vec<String> = late_events.iter().filter(|e| e.contains("2026-11-23T1") || e.contains("2026-11-23T2")).cloned().collect();
    env.run_stdin(&["ingest", "--now", "2026-11-23T23:59:00Z", "-"], &util::ndjson(&day_one)).success();

    // A day later the daemon starts again: it seals and uploads every missed window once.
    let second = env.daemon_at(later, &[], &[("METERD_ISV_KEY", KEY)]);
    let expected_a = 1 + day_one.len(); // one record per hour with usage
    let expected = expected_a + 1; // plus the storage day 2026-11-22T16:00Z–11-23T16:00Z
    mock.wait_ledger(expected, Duration::from_secs(15));
    // The sleep is the test: two more schedule ticks, in which nothing new may be sent.
    std::thread::sleep(Duration::from_millis(1500));
    let ledger = mock.ledger();
    assert_eq!(ledger.len(), expected, "every missed window exactly once");
    let periods: HashSet<(String, String)> = ledger.iter().map(|e| (e.record.instance_id.clone(), e.record.begin_time.clone())).collect();
    assert_eq!(periods.len(), ledger.len(), "no period billed twice");
    let status = delivered_locally(&second, ledger.len() as u64);
    assert_eq!(status["backlog"], 0, "{status}");
}

/// Parses Prometheus text: every sample line is `name{labels} value` with a declared TYPE.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut typed = HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(["counter", "gauge", "summary", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad metric name {name:?}");
        let base = name.trim_end_matches("_sum").trim_end_matches("_count");
        assert!(typed.contains(name) || typed.contains(base), "no TYPE for {name}");
        if series.contains('{') {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
        }
        out.push((series.to_string(), value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {line:?}"))));
    }
    out
}

#[test]
fn metrics_parse_and_agree_with_status() {
    let mock = Mock::start(mock_config(KEY, NOW));
    let env = env_auto_register(&mock);
    let d = env.daemon_with(&[], &[("METERD_ISV_KEY", KEY)]);
    post(&d, &[Ev::new("a1", "inst-a", "2", "2026-11-23T08:10:00Z"), Ev::new("a2", "inst-a", "1", "2026-11-23T11:10:00Z")]);
    let bad = d.http().events(util::ndjson(&[Ev::new("bad", "inst-a", "-1", "2026-11-23T08:10:00Z").json()])).ok();
    assert_eq!(bad["rejected"].as_array().unwrap().len(), 1);
    mock.wait_ledger(1, Duration::from_secs(15));
    // Status showing the record delivered implies the counters already have it: the daemon
    // counts a seal, an attempt and a delivery before the commit that makes them visible.
    delivered_locally(&d, 1);
    let text = d.http().get("/metrics").text();
    let samples = parse_prometheus(&text);
    let get = |series: &str| samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    let status = d.http().get("/v1/status").ok();
    assert_eq!(get("meterd_events_accepted_total"), 2.0);
    assert_eq!(get("meterd_events_rejected_total{reason=\"quantity\"}"), 1.0);
    assert_eq!(get("meterd_events_stored"), status["events"].as_f64().unwrap());
    assert_eq!(get("meterd_records_pending"), status["backlog"].as_f64().unwrap());
    assert_eq!(get("meterd_records{state=\"delivered\"}"), status["records"]["delivered"].as_f64().unwrap());
    assert_eq!(get("meterd_records_delivered_total"), 1.0);
    assert_eq!(get("meterd_upload_attempts_total{outcome=\"delivered\"}"), 1.0);
    assert!(get("meterd_records_sealed_total") >= 1.0);
    assert!(get("meterd_ingest_commit_seconds_count") >= 1.0);
    // The store shown (issue 13): SQLite, one machine, no lease gauges to alarm on.
    assert_eq!(get("meterd_store_backend{backend=\"sqlite\"}"), 1.0);
    assert!(!text.contains("meterd_lease_held"), "{text}");
    assert_eq!(status["store"]["backend"], "sqlite", "{status}");
    assert_eq!(status["store"]["lease_state"], "no lease (one machine)", "{status}");
    assert!(status["store"]["lease"].is_null() && status["store"]["node"].as_str().is_some_and(|n| !n.is_empty()), "{status}");
    assert!(get("meterd_upload_request_seconds{quantile=\"0.99\"}") > 0.0);
}

/// A SIGTERM sent the moment the daemon has printed its address is a clean shutdown (exit 0),
/// never the signal's default action: the handlers are registered before the address is printed.
#[test]
fn sigterm_right_after_the_address_is_printed_exits_0() {
    let env = Env::new();
    for round in 0..20 {
        let mut d = env.daemon();
        d.terminate();
        let code = d.wait_exit(Duration::from_secs(10));
        assert_eq!(code, Some(0), "round {round}: SIGTERM at start-up must exit 0; stderr:\n{}", d.stderr());
    }
}
