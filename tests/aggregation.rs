//! Plan aggregations (issue 14) through the real `meterd` binary on a real SQLite file: the
//! `aggregation` key's validation at config load (exit 2, a message naming the plan and the key
//! and saying why); `count` — golden windows (events exactly at a window's start and end,
//! duplicates never counted twice, a conflict), late events carried as `sum` carries them,
//! stop-before-excess packages drawing 1 per event; event properties as part of the identity;
//! `max`, `latest`, `unique_count` — golden windows (the seats example, ties, day windows in
//! +08:00, the 4-decimal floor shown, never carried), late events stored and billed nowhere
//! (ingest result, status, preview, /metrics), open windows in preview; and the audit and
//! `status` after each, including a tampered record the per-window audit must catch.

mod util;

use serde_json::Value;
use util::{schema_valid, Env, Ev};

const CONFIG: &str = r#"timezone = "+08:00"

[[plan]]
name = "logins"
factor = "logins"
unit = "login"
period = "hour"
pricing = "fixed"
price = "0.5"
aggregation = "count"

[[plan]]
name = "daily_logins"
factor = "logins"
unit = "login"
period = "day"
pricing = "fixed"
price = "1"
aggregation = "count"

[[plan]]
name = "stop_logins"
factor = "logins"
unit = "login"
period = "hour"
pricing = "fixed"
price = "1"
aggregation = "count"
package = "stop"

[[plan]]
name = "calls"
factor = "calls"
period = "hour"
pricing = "fixed"
price = "1"

[[plan]]
name = "seats"
factor = "seats"
unit = "seat"
period = "hour"
pricing = "tier"
tiers = [ { up_to = "10", price = "1" }, { up_to = "100", price = "0.8" }, { price = "0.5" } ]
aggregation = "max"

[[plan]]
name = "daily_peak"
factor = "users"
period = "day"
pricing = "fixed"
price = "1"
aggregation = "max"

[[plan]]
name = "licences"
factor = "licences"
period = "hour"
pricing = "fixed"
price = "1"
aggregation = "latest"

[[plan]]
name = "active_users"
factor = "users"
period = "hour"
pricing = "fixed"
price = "2"
aggregation = "unique_count"
unique_by = "user"
package = "payg"
"#;

const I: &str = "inst-agg";
const DAY: &str = "2026-11-23T";

fn t(hms: &str) -> String {
    format!("{DAY}{hms}Z")
}

fn ingest(env: &Env, now: &str, events: &[Ev]) -> Value {
    let body: Vec<String> = events.iter().map(|e| e.json()).collect();
    env.run_stdin(&["ingest", "--now", &t(now), "-"], body.join("\n").as_bytes()).json()
}

/// Records as (begin HH:MM:SS UTC, end, value, package).
fn records(env: &Env) -> Vec<(String, String, String, Option<String>)> {
    let db = env.db();
    let mut stmt = db.prepare("SELECT begin_s, end_s, usage_value, relate_pkg FROM records ORDER BY begin_s, end_s").expect("prepare");
    let hms = |s: i64| meterd::model::Timestamp::from_secs(s).to_string()[11..19].to_string();
    stmt.query_map([], |r| Ok((hms(r.get(0)?), hms(r.get(1)?), r.get::<_, String>(2)?, r.get(3)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

fn rec(b: &str, e: &str, v: &str, p: Option<&str>) -> (String, String, String, Option<String>) {
    (b.into(), e.into(), v.into(), p.map(str::to_string))
}

/// The audit with the config's aggregations, and `status` saying the same.
fn audit_holds(env: &Env, now: &str) {
    let cfg = env.cfg();
    let mut store = meterd::store::Store::open(&env.db).expect("open store");
    let balances = meterd::audit::balances_with(&mut store, &meterd::audit::rule_of(&cfg)).expect("audit");
    for b in balances {
        assert!(b.holds(), "conservation broken: {b:?}");
    }
    drop(store);
    let status = env.run(&["status", "--format", "json", "--now", &t(now)]).json();
    assert_eq!(status["conservation_violations"], serde_json::json!([]), "{status}");
    // `meterd backup` checks its copy with the same audit (it once took every plan as `sum`).
    let dest = env.dir.path().join(format!("backup-{}.db", env.dir.path().read_dir().map_or(0, |d| d.count())));
    let backup = env.run(&["backup", dest.to_str().expect("utf-8 path")]);
    backup.success();
    assert!(backup.stdout.contains("conservation ok"), "{}", backup.stdout);
}

#[test]
fn the_aggregation_key_is_validated_when_the_config_loads() {
    let base = "[[plan]]\nname = \"p1\"\nfactor = \"f\"\nperiod = \"hour\"\npricing = \"fixed\"\nprice = \"1\"\n";
    let cases = [
        ("aggregation = \"avg\"\n", vec!["\"p1\"", "`aggregation`", "unknown aggregation \"avg\"", "\"unique_count\""]),
        ("aggregation = \"unique_count\"\n", vec!["\"p1\"", "`unique_by`", "unique_by = \"user\""]),
        ("aggregation = \"count\"\nunique_by = \"user\"\n", vec!["\"p1\"", "`unique_by`", "only aggregation = \"unique_count\""]),
        ("unique_by = \"user\"\n", vec!["\"p1\"", "`unique_by`", "it is \"sum\""]),
        ("aggregation = \"unique_count\"\nunique_by = \"user id\"\n", vec!["`unique_by`", "not a property name"]),
        (
            "aggregation = \"max\"\npackage = \"stop\"\n",
            vec!["\"p1\"", "`package`", "\"sum\" or \"count\" only", "only known when the window closes", "payg"],
        ),
        (
            "aggregation = \"weighted_sum\"\npackage = \"stop\"\n",
            vec!["`package`", "a weighted_sum value is only known when the window closes"],
        ),
    ];
    for (extra, needles) in cases {
        let env = Env::with_config(&format!("{base}{extra}"));
        let run = env.run(&["instance", "list"]);
        run.code(2);
        let err = run.stderr.clone();
        for n in needles {
            assert!(err.contains(n), "{extra:?}: stderr lacks {n:?}: {err}");
        }
    }
    // Accepted: count with and without a stop package, payg with count, sum written out.
    for extra in [
        "aggregation = \"count\"\n",
        "aggregation = \"count\"\npackage = \"stop\"\n",
        "aggregation = \"count\"\npackage = \"payg\"\n",
        "aggregation = \"sum\"\n",
        "aggregation = \"weighted_sum\"\n",
        "aggregation = \"weighted_sum\"\npackage = \"payg\"\n",
    ] {
        let env = Env::with_config(&format!("{base}{extra}"));
        env.run(&["instance", "list"]).success();
    }
}

/// Events at a window's very start, its last nanosecond and the next window's start; quantities
/// that do not matter to a count (0, 12.5, 1e12); a resend and a duplicate in one request; a
/// conflicting resend refused.
#[test]
fn count_bills_one_per_stored_event_per_window() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "logins", &t("00:00:00"));
    let r = ingest(
        &env,
        "11:00:00",
        &[
            Ev::new("a", I, "0", &t("09:00:00")),
            Ev::new("b", I, "12.5", &t("09:59:59.999999999")),
            Ev::new("c", I, "1000000000000", &t("09:30:00")),
            Ev::new("a", I, "0", &t("09:00:00")),
            Ev::new("d", I, "3", &t("10:00:00")),
        ],
    );
    assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(4), Some(1)), "{r}");
    let r = ingest(&env, "11:01:00", &[Ev::new("b", I, "12.5", &t("09:59:59.999999999")), Ev::new("c", I, "7", &t("09:30:00"))]);
    assert_eq!((r["duplicates"].as_u64(), r["rejected"].as_array().map(Vec::len)), (Some(1), Some(1)), "{r}");
    assert!(r.to_string().contains("already stored with quantity 1000000000000"), "{r}");
    env.run(&["seal", "--now", &t("11:06:00")]).success();
    assert_eq!(records(&env), vec![rec("09:00:00", "10:00:00", "3", None), rec("10:00:00", "11:00:00", "1", None)]);
    // Preview prices the counts: 3 × 0.5 and 1 × 0.5.
    let p = env.run(&["preview", "--format", "json", "--now", &t("11:10:00"), "--from", &t("09:00:00"), "--to", &t("11:00:00")]).json();
    let text = p.to_string();
    assert!(text.contains("\"1.5\"") && text.contains("\"0.5\""), "preview prices counts: {p}");
    audit_holds(&env, "11:10:00");
}

/// Day windows in +08:00: an event at 16:00 UTC is the next local day's first instant.
#[test]
fn count_day_windows_follow_the_timezone() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "daily_logins", "2026-11-21T16:00:00Z");
    let r = ingest(
        &env,
        "11:00:00",
        &[
            Ev::new("a", I, "4", "2026-11-22T15:59:59Z"),
            Ev::new("b", I, "4", "2026-11-22T16:00:00Z"),
            Ev::new("c", I, "4", "2026-11-23T10:00:00Z"),
        ],
    );
    assert_eq!(r["accepted"], 3, "{r}");
    env.run(&["seal", "--now", "2026-11-23T16:06:00Z"]).success();
    let days: Vec<(String, String)> = records(&env).into_iter().map(|r| (r.0, r.2)).collect();
    assert_eq!(days, vec![("16:00:00".into(), "1".into()), ("16:00:00".into(), "2".into())]);
    audit_holds(&env, "16:10:00");
}

/// A late event of a count plan is carried like sum's: it counts 1 in the next open window.
#[test]
fn count_late_events_are_carried_as_one() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "logins", &t("00:00:00"));
    assert_eq!(ingest(&env, "09:31:00", &[Ev::new("a", I, "9", &t("09:30:00"))])["accepted"], 1);
    env.run(&["seal", "--now", &t("10:06:00")]).success();
    let r = ingest(&env, "10:20:00", &[Ev::new("late", I, "9", &t("09:40:00")), Ev::new("b", I, "9", &t("10:10:00"))]);
    assert_eq!(r["accepted"], 2, "{r}");
    env.run(&["seal", "--now", &t("11:06:00")]).success();
    assert_eq!(records(&env), vec![rec("09:00:00", "10:00:00", "1", None), rec("10:00:00", "11:00:00", "2", None)]);
    audit_holds(&env, "11:10:00");
}

/// A stop package of quota 2 on a count plan: each event draws 1 whatever its quantity; the
/// third is over quota (kept, never billed) and ingest says the quota is exhausted.
#[test]
fn count_draws_one_per_event_from_stop_packages() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "stop_logins", &t("00:00:00"));
    env.run(&["package", "add", I, "pkg-a", "--quota", "2", "--from", &t("00:00:00"), "--to", "2026-12-23T00:00:00Z"]).success();
    let r = ingest(&env, "09:50:00", &[Ev::new("a", I, "40", &t("09:10:00")), Ev::new("b", I, "0", &t("09:20:00"))]);
    assert_eq!(r["accepted"], 2, "{r}");
    assert_eq!(r["quota_exhausted"], serde_json::json!([I]), "{r}");
    let r = ingest(&env, "09:51:00", &[Ev::new("c", I, "1", &t("09:30:00"))]);
    assert_eq!(r["accepted"], 1, "{r}");
    env.run(&["seal", "--now", &t("10:06:00")]).success();
    assert_eq!(records(&env), vec![rec("09:00:00", "10:00:00", "2", Some("pkg-a"))]);
    let status = env.run(&["status", "--format", "json", "--now", &t("10:10:00")]).json();
    assert_eq!(status["over_quota"][I], "1", "{status}");
    audit_holds(&env, "10:10:00");
}

/// A plan without `aggregation` is a sum plan: the same events bill their quantities.
#[test]
fn sum_stays_the_default() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "calls", &t("00:00:00"));
    let r = ingest(&env, "09:50:00", &[Ev::new("a", I, "40", &t("09:10:00")), Ev::new("b", I, "2.5", &t("09:20:00"))]);
    assert_eq!(r["accepted"], 2, "{r}");
    env.run(&["seal", "--now", &t("10:06:00")]).success();
    assert_eq!(records(&env), vec![rec("09:00:00", "10:00:00", "42.5", None)]);
    audit_holds(&env, "10:10:00");
}

/// `quantity` may be left out of a count plan's events (stored as 0), not a sum plan's;
/// properties are stored in canonical form and are part of the identity check — key order
/// does not matter, another value or another set is a conflict naming both. Through the CLI,
/// HTTP and the library doors.
#[test]
fn properties_are_part_of_an_events_identity_at_every_door() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "logins", &t("00:00:00"));
    env.add_instance("inst-sum", "calls", &t("00:00:00"));
    let ev = |id: &str, props: &str| Ev::new(id, I, "0", &t("09:10:00")).without("quantity").set("properties", props);
    let r = ingest(
        &env,
        "09:50:00",
        &[
            ev("a", r#"{"user":"u-1","region":"eu"}"#),
            ev("b", r#"{"user":"u-2"}"#),
            Ev::new("c", "inst-sum", "1", &t("09:10:00")).without("quantity"),
            Ev::new("d", I, "1", &t("09:11:00")),
        ],
    );
    assert_eq!(r["accepted"], 3, "{r}");
    let rejected = r["rejected"].to_string();
    assert!(rejected.contains("missing field `quantity`") && rejected.contains("plan \\\"calls\\\" aggregates by sum"), "{r}");
    let stored: Vec<(String, String)> = {
        let db = env.db();
        let mut stmt =
            db.prepare("SELECT e.event_id, p.props FROM event_props p JOIN events e ON e.seq = p.seq ORDER BY e.event_id").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(stored, vec![("a".into(), r#"{"region":"eu","user":"u-1"}"#.into()), ("b".into(), r#"{"user":"u-2"}"#.into())]);
    assert_eq!(util::db::event(&env.db(), I, "a").map(|e| e.0), Some("0".to_string()), "an omitted quantity is stored as 0");

    // CLI: keys reordered → duplicate; another value → conflict naming both sets.
    let r = ingest(&env, "09:51:00", &[ev("a", r#"{"region":"eu","user":"u-1"}"#), ev("b", r#"{"user":"u-3"}"#)]);
    assert_eq!(r["duplicates"], 1, "{r}");
    let err = r["rejected"][0]["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains(r#"properties {"user":"u-2"}"#) && err.contains(r#"properties {"user":"u-3"}"#), "{r}");
    // A resend without the properties, or with properties an event stored without has, conflicts.
    let r = ingest(
        &env,
        "09:52:00",
        &[Ev::new("b", I, "0", &t("09:10:00")), Ev::new("d", I, "1", &t("09:11:00")).set("properties", r#"{"u":"x"}"#)],
    );
    assert_eq!(r["rejected"].as_array().map(Vec::len), Some(2), "{r}");
    assert!(r.to_string().contains("and properties none"), "{r}");

    // HTTP: the same answers.
    let daemon = env.daemon_at(&t("09:53:00"), &[], &[]);
    let http = daemon.http();
    let body = [ev("a", r#"{"user":"u-1","region":"eu"}"#).json(), ev("a", r#"{"user":"u-9","region":"eu"}"#).json()].join("\n");
    let reply = http.events(body).json();
    assert_eq!(reply["duplicates"], 1, "{reply}");
    assert!(reply["rejected"][0]["error"].as_str().unwrap_or_default().contains(r#"{"region":"eu","user":"u-9"}"#), "{reply}");
    drop(daemon);

    // Library: the same.
    let collector = env.collector();
    let now = meterd::model::parse_rfc3339(&t("09:54:00")).unwrap();
    let evs = meterd::collector::parse::parse_body(ev("b", r#"{"user":"u-4"}"#).json().as_bytes())
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let res = collector.ingest_events(evs, now).expect("ingest");
    assert_eq!(serde_json::to_value(&res).unwrap()["rejected"].as_array().map(Vec::len), Some(1), "{:?}", res);

    env.run(&["seal", "--now", &t("10:06:00")]).success();
    assert_eq!(records(&env), vec![rec("09:00:00", "10:00:00", "3", None)]);
    audit_holds(&env, "10:10:00");
}

/// The issue's example: six reports of "5 seats in use" in one hour bill 5 seats (5.00 at the
/// first tier), not 30 (24.00).
#[test]
fn max_bills_the_seats_example_as_five() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "seats", &t("00:00:00"));
    let evs: Vec<Ev> = (0..6).map(|i| Ev::new(&format!("s{i}"), I, "5", &t(&format!("09:{:02}:00", i * 10)))).collect();
    assert_eq!(ingest(&env, "09:55:00", &evs)["accepted"], 6);
    let status = env.run(&["status", "--format", "json", "--now", &t("10:06:00")]).json();
    assert_eq!(status["unsealed_windows"], 1, "a closed point window with events waits for its seal: {status}");
    env.run(&["seal", "--now", &t("10:06:00")]).success();
    assert_eq!(records(&env), vec![rec("09:00:00", "10:00:00", "5", None)]);
    let p = env.run(&["preview", "--format", "json", "--now", &t("10:10:00")]).json();
    assert_eq!(p["instances"][0]["charge_2dp"], "5.00", "5.00, not 24.00: {p}");
    audit_holds(&env, "10:10:00");
}

/// Events exactly at a window's start and its last instant and at the next window's start;
/// the value floored to 4 decimals with the dropped part shown by status and not carried.
#[test]
fn max_windows_floor_without_carrying() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "seats", &t("00:00:00"));
    let r = ingest(
        &env,
        "10:30:00",
        &[
            Ev::new("a", I, "3", &t("09:00:00")),
            Ev::new("b", I, "7.12345", &t("09:59:59.999999999")),
            Ev::new("c", I, "1", &t("10:00:00")),
            Ev::new("a", I, "3", &t("09:00:00")),
        ],
    );
    assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(3), Some(1)), "{r}");
    env.run(&["seal", "--now", &t("11:06:00")]).success();
    assert_eq!(records(&env), vec![rec("09:00:00", "10:00:00", "7.1234", None), rec("10:00:00", "11:00:00", "1", None)]);
    let status = env.run(&["status", "--format", "json", "--now", &t("11:10:00")]).json();
    assert_eq!(status["rounding_dropped"][I], "0.00005", "{status}");
    assert!(env.run(&["status", "--now", &t("11:10:00")]).stdout.contains("rounding dropped"), "the table says it too");
    assert_eq!(status["audit_checks"]["seats"]["check"], "every sealed window's record = its events recomputed", "{status}");
    assert_eq!(status["audit_checks"]["seats"]["holds"], true, "{status}");
    audit_holds(&env, "11:10:00");
}

/// Day windows in +08:00: 15:59:59Z and 16:00:00Z fall in different local days.
#[test]
fn max_day_windows_follow_the_timezone() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "daily_peak", "2026-11-21T16:00:00Z");
    let r = ingest(
        &env,
        "11:00:00",
        &[
            Ev::new("a", I, "4", "2026-11-22T15:59:59Z"),
            Ev::new("b", I, "2", "2026-11-22T16:00:00Z"),
            Ev::new("c", I, "3", "2026-11-23T10:00:00Z"),
            Ev::new("d", I, "9", "2026-11-22T01:00:00Z"),
        ],
    );
    assert_eq!(r["accepted"], 4, "{r}");
    env.run(&["seal", "--now", "2026-11-23T16:06:00Z"]).success();
    let days: Vec<(String, String)> = records(&env).into_iter().map(|r| (r.0, r.2)).collect();
    assert_eq!(days, vec![("16:00:00".into(), "9".into()), ("16:00:00".into(), "3".into())]);
    audit_holds(&env, "16:10:00");
}

/// `latest`: the greatest time wins whatever the arrival order; at equal times the greatest id
/// in byte order.
#[test]
fn latest_takes_the_last_event_in_time() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "licences", &t("00:00:00"));
    env.add_instance("inst-b", "licences", &t("00:00:00"));
    let r = ingest(
        &env,
        "09:59:00",
        &[
            Ev::new("z", I, "8", &t("09:55:00")),
            Ev::new("y", I, "4", &t("09:20:00")),
            Ev::new("b", "inst-b", "2", &t("09:50:00")),
            Ev::new("c", "inst-b", "6", &t("09:50:00")),
            Ev::new("B", "inst-b", "9", &t("09:50:00")),
            Ev::new("a", "inst-b", "1", &t("09:10:00")),
        ],
    );
    assert_eq!(r["accepted"], 6, "{r}");
    env.run(&["seal", "--now", &t("10:06:00")]).success();
    let db = env.db();
    let v = |inst: &str| -> String {
        db.query_row(
            "SELECT r.usage_value FROM records r JOIN instances i ON i.ref = r.instance_ref WHERE i.instance_id = ?1",
            [inst],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!((v(I), v("inst-b")), ("8".to_string(), "6".to_string()));
    audit_holds(&env, "10:10:00");
}

/// `unique_count`: distinct values of `properties.user`; a resent event is not counted twice;
/// the quantity may be left out; an event without the property is refused naming it.
#[test]
fn unique_count_counts_distinct_property_values() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "active_users", &t("00:00:00"));
    let u = |id: &str, user: &str, at: &str| {
        Ev::new(id, I, "0", &t(at)).without("quantity").set("properties", &format!(r#"{{"user":"{user}"}}"#))
    };
    let r = ingest(
        &env,
        "09:59:00",
        &[
            u("a", "u1", "09:00:00"),
            u("b", "u2", "09:10:00"),
            u("c", "u1", "09:20:00"),
            u("b", "u2", "09:10:00"),
            Ev::new("d", I, "1", &t("09:30:00")).set("properties", r#"{"usr":"u3"}"#),
            u("e", "u4", "10:00:00"),
        ],
    );
    assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(4), Some(1)), "{r}");
    let err = r["rejected"][0]["error"].as_str().unwrap_or_default();
    assert!(err.contains("missing property \"user\"") && err.contains("\"active_users\""), "{r}");
    // Open windows show the value so far.
    let p = env.run(&["preview", "--format", "json", "--now", &t("10:01:00")]).json();
    assert_eq!(p["instances"][0]["usage"], "3", "{p}");
    env.run(&["seal", "--now", &t("11:06:00")]).success();
    assert_eq!(records(&env), vec![rec("09:00:00", "10:00:00", "2", None), rec("10:00:00", "11:00:00", "1", None)]);
    audit_holds(&env, "11:10:00");
}

/// A late event of a point plan is stored and acknowledged, billed nowhere, listed by the ingest
/// result and counted by status, preview and /metrics; the sealed record never changes.
#[test]
fn late_point_events_are_kept_and_reported_not_billed() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "seats", &t("00:00:00"));
    assert_eq!(ingest(&env, "09:31:00", &[Ev::new("a", I, "5", &t("09:30:00"))])["accepted"], 1);
    env.run(&["seal", "--now", &t("10:06:00")]).success();
    let r = ingest(&env, "10:20:00", &[Ev::new("b", I, "10", &t("10:10:00")), Ev::new("late", I, "50", &t("09:40:00"))]);
    assert_eq!(r["accepted"], 2, "{r}");
    assert_eq!(r["late_unbilled"], serde_json::json!([{"index": 1, "id": "late", "instance_id": I}]), "{r}");
    schema_valid("ingest-result.schema.json", &r);
    // A resend is a duplicate, not a second late event.
    let r = ingest(&env, "10:21:00", &[Ev::new("late", I, "50", &t("09:40:00"))]);
    assert_eq!((r["duplicates"].as_u64(), r.get("late_unbilled")), (Some(1), None), "{r}");
    env.run(&["seal", "--now", &t("11:06:00")]).success();
    assert_eq!(records(&env), vec![rec("09:00:00", "10:00:00", "5", None), rec("10:00:00", "11:00:00", "10", None)]);
    assert_eq!(util::db::count_events_of(&env.db(), I), 3, "the late event is stored");
    let status = env.run(&["status", "--format", "json", "--now", &t("11:10:00")]).json();
    assert_eq!(status["late_unbilled"][I], 1, "{status}");
    let p = env.run(&["preview", "--format", "json", "--now", &t("11:10:00")]).json();
    assert_eq!(p["instances"][0]["late_unbilled"], 1, "{p}");
    schema_valid("preview.schema.json", &p);
    let daemon = env.daemon_at(&t("11:10:00"), &[], &[]);
    let metrics = daemon.http().get("/metrics").text();
    assert!(metrics.contains(&format!("meterd_late_unbilled_events{{instance=\"{I}\"}} 1")), "{metrics}");
    drop(daemon);
    audit_holds(&env, "11:10:00");
}

/// The per-window audit is not vacuous: a record changed behind meterd's back is caught.
#[test]
fn the_point_audit_catches_a_tampered_record() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "seats", &t("00:00:00"));
    assert_eq!(ingest(&env, "09:31:00", &[Ev::new("a", I, "5", &t("09:30:00"))])["accepted"], 1);
    env.run(&["seal", "--now", &t("10:06:00")]).success();
    audit_holds(&env, "10:10:00");
    rusqlite::Connection::open(&env.db).unwrap().execute("UPDATE records SET usage_value = '6'", []).unwrap();
    let run = env.run(&["status", "--format", "json", "--now", &t("10:10:00")]);
    run.code(3);
    assert_eq!(run.json()["conservation_violations"], serde_json::json!([I]), "{}", run.stdout);
    assert_eq!(run.json()["audit_checks"]["seats"]["holds"], false, "{}", run.stdout);
}

/// Plans of every aggregation meterd builds, for the property test.
const EVERY: &str = r#"timezone = "+08:00"

[[plan]]
name = "sum"
factor = "f"
period = "hour"
pricing = "fixed"
price = "1"

[[plan]]
name = "count"
factor = "f"
period = "hour"
pricing = "fixed"
price = "1"
aggregation = "count"

[[plan]]
name = "max"
factor = "f"
period = "hour"
pricing = "fixed"
price = "1"
aggregation = "max"

[[plan]]
name = "latest"
factor = "f"
period = "day"
pricing = "fixed"
price = "1"
aggregation = "latest"

[[plan]]
name = "unique"
factor = "f"
period = "hour"
pricing = "fixed"
price = "1"
aggregation = "unique_count"
unique_by = "user"

[[plan]]
name = "weighted"
factor = "f"
period = "hour"
pricing = "fixed"
price = "1"
aggregation = "weighted_sum"

[[plan]]
name = "weighted_day"
factor = "f"
period = "day"
pricing = "fixed"
price = "1"
aggregation = "weighted_sum"
"#;

#[derive(Debug, Clone)]
enum Step {
    /// An event: instance index, minute after the base, quantity in 1e-9, id, user.
    Event(usize, i64, u64, u32, u8),
    /// A seal at a minute after the base (also going backwards).
    Seal(i64),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        8 => (0usize..7, 0i64..(2 * 24 * 60), 0u64..5_000_000_000u64, 0u32..300, 0u8..6).prop_map(|(i, m, q, id, u)| Step::Event(i, m, q, id, u)),
        2 => (0i64..(3 * 24 * 60)).prop_map(Step::Seal),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

    /// Random event streams (late ones and repeated ids included) and random seal times, one
    /// instance per aggregation: the generalised audit holds after every step — additive plans
    /// balance, every sealed window of a point plan equals its recomputation, every weighted_sum
    /// record equals the integral of what its seal saw with the unit·second carry chained —
    /// and no period is sealed twice.
    #[test]
    fn the_generalised_audit_holds_for_every_aggregation(steps in proptest::collection::vec(step(), 1..50)) {
        let env = Env::with_config(EVERY);
        let cfg = env.cfg();
        let plans = ["sum", "count", "max", "latest", "unique", "weighted", "weighted_day"];
        let base = meterd::model::parse_rfc3339("2026-11-20T00:00:00Z").unwrap();
        {
            let mut store = meterd::store::Store::open(&env.db).unwrap();
            for p in plans {
                store.write(|tx| meterd::store::instances::add(tx, &format!("i-{p}"), p, base, base)).unwrap();
            }
        }
        let collector = env.collector();
        let clock = base.add_secs(4 * 24 * 3600);
        for s in steps {
            match s {
                Step::Event(i, minute, nanos, id, user) => {
                    let q = meterd::model::Quantity(rust_decimal::Decimal::new(nanos as i64, 9));
                    let text = format!(
                        r#"{{"id":"e{id}","instance_id":"i-{}","quantity":"{q}","time":"{}","properties":{{"user":"u{user}"}}}}"#,
                        plans[i],
                        base.add_secs(minute * 60 + 7)
                    );
                    collector.ingest_body(text.as_bytes(), clock).unwrap();
                }
                Step::Seal(minute) => {
                    let mut store = meterd::store::Store::open(&env.db).unwrap();
                    meterd::seal::seal(&mut store, &cfg, base.add_secs(minute * 60)).unwrap();
                }
            }
            let mut store = meterd::store::Store::open(&env.db).unwrap();
            let balances = meterd::audit::balances_with(&mut store, &|p| cfg.plan(p).map_or((Default::default(), None), |p| (p.aggregation, p.unique_by.clone()))).unwrap();
            for b in &balances {
                proptest::prop_assert!(b.holds(), "audit broken: {:?}", b);
            }
            let all = store.read(meterd::store::records::all).unwrap();
            let mut periods = std::collections::HashSet::new();
            for r in &all {
                proptest::prop_assert!(periods.insert((r.instance_key, r.begin, r.end)), "sealed twice: {:?}", r);
                proptest::prop_assert!(r.usage_value.scale() <= 4);
            }
        }
    }
}

/// Facts from Lago's own aggregation specs (getlago/lago-api,
/// `spec/services/billable_metrics/aggregations/{max,latest,unique_count}_service_spec.rb`),
/// replayed inside one meterd window where the semantics match:
/// - max: four values below 10 and one of 12 → 12; a 14.2 added → 14.2;
/// - latest: four events of 18, then one of 14 later → 14;
/// - unique_count (Lago's non-recurring metric): a value seen only before the period does not
///   count in it; one new value in the period → 1.
#[test]
fn peer_cases_from_lagos_specs() {
    let env = Env::with_config(CONFIG);
    env.add_instance("i-max", "daily_peak", "2026-11-21T16:00:00Z");
    env.add_instance("i-latest", "licences", &t("00:00:00"));
    env.add_instance("i-unique", "active_users", &t("00:00:00"));
    let day = |hm: &str| format!("2026-11-22T{hm}:00Z");
    let mut evs: Vec<Ev> = ["3", "7", "0", "9", "12"]
        .iter()
        .enumerate()
        .map(|(i, q)| Ev::new(&format!("m{i}"), "i-max", q, &day(&format!("0{i}:00"))))
        .collect();
    evs.extend((0..4).map(|i| Ev::new(&format!("l{i}"), "i-latest", "18", &t(&format!("08:0{i}:00")))));
    evs.push(Ev::new("l4", "i-latest", "14", &t("08:30:00")));
    let user = |id: &str, u: &str, at: &str| {
        Ev::new(id, "i-unique", "0", &t(at)).without("quantity").set("properties", &format!(r#"{{"unique_id":"x","user":"{u}"}}"#))
    };
    evs.push(user("u0", "persisted", "07:59:59"));
    evs.push(user("u1", "new", "08:40:00"));
    assert_eq!(ingest(&env, "09:00:00", &evs)["accepted"], 12);
    env.run(&["seal", "--now", &t("09:06:00")]).success();
    let value = |inst: &str, begin: &str| -> Option<String> {
        let db = env.db();
        let begin = util::ns(begin) / 1_000_000_000;
        db.query_row(
            "SELECT r.usage_value FROM records r JOIN instances i ON i.ref = r.instance_ref WHERE i.instance_id = ?1 AND r.window_start = ?2",
            rusqlite::params![inst, begin],
            |r| r.get(0),
        )
        .ok()
    };
    assert_eq!(value("i-latest", &t("08:00:00")).as_deref(), Some("14"));
    assert_eq!(value("i-unique", &t("08:00:00")).as_deref(), Some("1"));
    // The day window 2026-11-22T16:00Z… is still open; add the 14.2 there and look at max.
    assert_eq!(value("i-max", "2026-11-21T16:00:00Z").as_deref(), Some("12"));
    let later = [Ev::new("m9", "i-max", "14.2", "2026-11-23T01:00:00Z"), Ev::new("m10", "i-max", "12", "2026-11-23T02:00:00Z")];
    assert_eq!(ingest(&env, "09:10:00", &later)["accepted"], 2);
    env.run(&["seal", "--now", "2026-11-23T16:06:00Z"]).success();
    assert_eq!(value("i-max", "2026-11-22T16:00:00Z").as_deref(), Some("14.2"));
    audit_holds(&env, "16:10:00");
}

/// Facts from OpenMeter's own tests (openmeterio/openmeter), replayed in meterd's hourly
/// windows where the semantics match (facts only; the cases are re-expressed as meterd events):
/// - `openmeter/streaming/clickhouse/meter_cache_ch_test.go` (`TestGeneratedSQLRoundTrip`):
///   one hour holding a value of 2 (at :05) and one of 7 (at :10) → SUM 9, COUNT 2, MAX 7,
///   UNIQUE_COUNT 2 (of the values "2" and "7"), LATEST 7;
/// - `openmeter/streaming/testutils/streaming_test.go` ("LATEST when windowed", hour windows):
///   3 at +6 s and 2 at +2 s sent after it → 3 (the greatest time, not the last arrival); an
///   event at the next hour's first instant belongs to that hour, where 5 at −1 s beats 6 at
///   −2 s → 5; an event 2 s before the first hour is not in it;
/// - `e2e/e2e_test.go` (`TestDedupe`; its `dedupe` meter is a COUNT in `e2e/config.yaml`): one
///   event sent many times under one id counts 1. OpenMeter's resends also change the time,
///   which meterd refuses as a conflict: here the resends are unchanged, and a changed one is
///   refused without changing the count;
/// - `openmeter/meter/parse_test.go`: a COUNT event without data counts 1 (meterd: a `count`
///   event without `quantity`); an event without the meter's value property is refused
///   (meterd: a `unique_count` event without its `unique_by` property).
#[test]
fn peer_cases_from_openmeters_tests() {
    let env = Env::with_config(CONFIG);
    for (inst, plan) in [
        ("om-sum", "calls"),
        ("om-count", "logins"),
        ("om-max", "seats"),
        ("om-unique", "active_users"),
        ("om-latest", "licences"),
        ("om-latest-windowed", "licences"),
        ("om-dedupe", "logins"),
    ] {
        env.add_instance(inst, plan, &t("00:00:00"));
    }
    let mut evs = Vec::new();
    for (n, (q, at)) in [("2", "08:05:00"), ("7", "08:10:00")].into_iter().enumerate() {
        let id = format!("e{n}");
        evs.push(Ev::new(&id, "om-sum", q, &t(at)));
        evs.push(Ev::new(&id, "om-count", q, &t(at)).without("quantity"));
        evs.push(Ev::new(&id, "om-max", q, &t(at)));
        evs.push(Ev::new(&id, "om-unique", q, &t(at)).without("quantity").set("properties", &format!(r#"{{"user":"{q}"}}"#)));
        evs.push(Ev::new(&id, "om-latest", q, &t(at)));
    }
    // In OpenMeter's arrival order.
    for (n, (q, at)) in [
        ("1", "07:59:58"),
        ("3", "08:00:06"),
        ("2", "08:00:02"),
        ("4", "09:00:00"),
        ("5", "09:59:59"),
        ("6", "09:59:58"),
        ("7", "10:00:02"),
    ]
    .into_iter()
    .enumerate()
    {
        evs.push(Ev::new(&format!("w{n}"), "om-latest-windowed", q, &t(at)));
    }
    let once = Ev::new("52f44f66-020f-4fa9-a733-102a8ef6f515", "om-dedupe", "0", &t("08:30:00")).without("quantity");
    evs.extend([once.clone(), once.clone(), once.clone()]);
    evs.push(Ev::new("no-user", "om-unique", "0", &t("08:20:00")).without("quantity").set("properties", r#"{"trace_id":"x"}"#));
    let r = ingest(&env, "10:05:00", &evs);
    assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(18), Some(2)), "{r}");
    let rejected = r["rejected"].as_array().expect("rejected list");
    assert_eq!(rejected.len(), 1, "{r}");
    assert!(rejected[0].to_string().contains(r#"missing property \"user\""#), "{r}");
    let moved = ingest(&env, "10:05:30", &[once.set_str("time", &t("08:31:00"))]);
    assert_eq!(moved["rejected"].as_array().map(Vec::len), Some(1), "a resend at another time is a conflict: {moved}");
    env.run(&["seal", "--now", &t("10:06:00")]).success();
    let value = |inst: &str, begin: &str| -> Option<String> {
        env.db()
            .query_row(
                "SELECT r.usage_value FROM records r JOIN instances i ON i.ref = r.instance_ref WHERE i.instance_id = ?1 AND r.window_start = ?2",
                rusqlite::params![inst, util::ns(&t(begin)) / 1_000_000_000],
                |r| r.get(0),
            )
            .ok()
    };
    let hour8 = |inst: &str| value(inst, "08:00:00");
    assert_eq!(
        [hour8("om-sum"), hour8("om-count"), hour8("om-max"), hour8("om-unique"), hour8("om-latest"), hour8("om-dedupe")],
        [Some("9"), Some("2"), Some("7"), Some("2"), Some("7"), Some("1")].map(|v| v.map(str::to_string))
    );
    let windowed: Vec<Option<String>> = ["07:00:00", "08:00:00", "09:00:00"].iter().map(|h| value("om-latest-windowed", h)).collect();
    assert_eq!(
        windowed,
        [Some("1"), Some("3"), Some("5")].map(|v| v.map(str::to_string)),
        "07:00 is the window OpenMeter's query left out"
    );
    audit_holds(&env, "10:10:00");
}

/// The example configuration has one plan per aggregation, and `meterd demo` (the real binary,
/// its mock store on loopback) seals and prices records of every one of them.
#[test]
fn the_example_and_the_demo_show_each_aggregation_once() {
    use meterd::model::Aggregation::*;
    let cfg = meterd::config::Config::from_toml_str(util::EXAMPLE_CONFIG).expect("example parses");
    let mut by_aggregation: Vec<(String, String)> = cfg.plans.values().map(|p| (p.aggregation.to_string(), p.name.clone())).collect();
    by_aggregation.sort();
    let expected: Vec<String> = [Sum, Count, Max, Latest, UniqueCount, WeightedSum].iter().map(|a| a.to_string()).collect();
    let mut seen: Vec<String> = by_aggregation.iter().map(|(a, _)| a.clone()).collect();
    seen.dedup();
    assert_eq!(seen.len(), by_aggregation.len(), "one plan per aggregation: {by_aggregation:?}");
    let mut want = expected.clone();
    want.sort();
    assert_eq!(seen, want, "{by_aggregation:?}");
    // `demo` takes no store options (it refuses them): run it bare, in a directory of its own.
    let dir = tempfile::tempdir().unwrap();
    let out = util::Run::from(
        std::process::Command::new(util::bin())
            .arg("demo")
            .current_dir(dir.path())
            .env_remove("METERD_CONFIG")
            .env_remove("METERD_DB")
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("spawn meterd"),
    );
    out.success();
    for (agg, plan) in &by_aggregation {
        let sealed = out.stdout.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(1) == Some(&plan.as_str()) && cols.get(4).is_some_and(|s| *s != "open")
        });
        assert!(sealed, "the demo seals a record of plan {plan} ({agg}):\n{}", out.stdout);
    }
}

/// Graduated (`step`) pricing with a day's accumulation on a `max` plan prices the record
/// values, not the events: hour 09 peaks at 4 (events 2 and 4), hour 10 at 3 (events 3 and 1).
/// Accumulated over the day (+08:00), 09 is 4 × 1 = 4.00 and 10 crosses the first step at 5:
/// 1 × 1 + 2 × 0.5 = 2.00, so 6.00 in all (without the accumulation 7.00; the summed events,
/// 6 and 4 units, would give 7.50).
#[test]
fn graduated_pricing_accumulates_the_record_values_of_a_max_plan() {
    let config = r#"timezone = "+08:00"

[[plan]]
name = "peak_step"
factor = "seats"
unit = "seat"
period = "hour"
pricing = "step"
accumulation = "day"
tiers = [ { up_to = "5", price = "1" }, { price = "0.5" } ]
aggregation = "max"
"#;
    let env = Env::with_config(config);
    env.add_instance(I, "peak_step", &t("00:00:00"));
    let evs = [
        Ev::new("a", I, "2", &t("09:05:00")),
        Ev::new("b", I, "4", &t("09:35:00")),
        Ev::new("c", I, "3", &t("10:05:00")),
        Ev::new("d", I, "1", &t("10:35:00")),
    ];
    assert_eq!(ingest(&env, "10:40:00", &evs)["accepted"], 4);
    env.run(&["seal", "--now", &t("11:06:00")]).success();
    assert_eq!(records(&env), vec![rec("09:00:00", "10:00:00", "4", None), rec("10:00:00", "11:00:00", "3", None)]);
    let p = env.run(&["preview", "--format", "json", "--now", &t("11:10:00")]).json();
    assert_eq!(p["instances"][0]["charge_2dp"], "6.00", "{p}");
    audit_holds(&env, "11:10:00");
}
