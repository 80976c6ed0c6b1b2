//! `weighted_sum` (issue 14) through the real `meterd` binary on a real SQLite file: golden
//! windows in GB·h (an event at a window's start, a level change at a boundary, a window
//! without events billing the held level, a level of 0), day windows in `+08:00`, a freeze and
//! a release inside a window, a freeze reported after the seal, the unit·seconds carry, late
//! events (stored, setting the level of the windows not sealed yet, the sealed change reported
//! by ingest, status, preview and `/metrics`), `late = "reject"`, open windows in preview, and
//! the chained audit — including tampered records it must catch.

mod util;

use serde_json::Value;
use util::{schema_valid, Env, Ev};

const CONFIG: &str = r#"timezone = "+08:00"

[[plan]]
name = "disk"
factor = "gb"
unit = "GB·h"
period = "hour"
pricing = "fixed"
price = "1"
aggregation = "weighted_sum"

[[plan]]
name = "storage"
factor = "gb"
unit = "GB·h"
period = "day"
pricing = "fixed"
price = "0.0125"
aggregation = "weighted_sum"
"#;

const I: &str = "inst-ws";

fn t(hms: &str) -> String {
    format!("2026-11-23T{hms}Z")
}

fn ingest(env: &Env, now: &str, events: &[Ev]) -> Value {
    let body: Vec<String> = events.iter().map(|e| e.json()).collect();
    env.run_stdin(&["ingest", "--now", now, "-"], body.join("\n").as_bytes()).json()
}

/// Records as (begin UTC, end UTC, value, carry_out in unit·seconds).
fn records(env: &Env) -> Vec<(String, String, String, String)> {
    let db = env.db();
    let mut stmt = db.prepare("SELECT begin_s, end_s, usage_value, carry_out FROM records ORDER BY begin_s").expect("prepare");
    let at = |s: i64| meterd::model::Timestamp::from_secs(s).to_string();
    stmt.query_map([], |r| Ok((at(r.get(0)?), at(r.get(1)?), r.get::<_, String>(2)?, r.get::<_, String>(3)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

fn rec(b: &str, e: &str, v: &str, carry: &str) -> (String, String, String, String) {
    (t(b), t(e), v.into(), carry.into())
}

/// The chained audit holds, and `status` says so for every plan.
fn audit_holds(env: &Env, now: &str) -> Value {
    let cfg = env.cfg();
    let mut store = meterd::store::Store::open(&env.db).expect("open store");
    let balances = meterd::audit::balances_with(&mut store, &|p| {
        cfg.plan(p).map_or((Default::default(), None), |p| (p.aggregation, p.unique_by.clone()))
    })
    .expect("audit");
    for b in balances {
        assert!(b.holds(), "audit broken: {b:?}");
    }
    let status = env.run(&["status", "--format", "json", "--now", now]).json();
    assert_eq!(status["conservation_violations"], serde_json::json!([]), "{status}");
    status
}

#[test]
fn hour_windows_bill_the_level_held_through_them() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "disk", &t("00:00:00"));
    let evs = [
        Ev::new("a", I, "20", &t("10:00:00")), // exactly at a window's start
        Ev::new("b", I, "10", &t("10:30:00")),
        Ev::new("c", I, "0", &t("13:00:00")), // a change exactly at a boundary
        Ev::new("d", I, "0.001", &t("14:00:01")),
    ];
    assert_eq!(ingest(&env, &t("14:10:00"), &evs)["accepted"], 4);
    let report = env.run(&["seal", "--now", &t("15:06:00")]).json();
    assert_eq!((report["records"].as_u64(), report["zero"].as_u64(), report["capped"].as_u64()), (Some(5), Some(1), Some(0)), "{report}");
    assert_eq!(
        records(&env),
        vec![
            rec("10:00:00", "11:00:00", "15", "0"),
            rec("11:00:00", "12:00:00", "10", "0"), // no events: the held level bills
            rec("12:00:00", "13:00:00", "10", "0"), // …in every window until the next event
            rec("13:00:00", "14:00:00", "0", "0"),  // an event of 0: a zero record, never uploaded
            // 0.001 GB × 3599 s = 3.599 GB·s = 0.0009997… GB·h: 0.0009 billed, 0.359 GB·s carried.
            rec("14:00:00", "15:00:00", "0.0009", "0.359"),
        ]
    );
    // The next seal reads the level from the stored events; the carry is unit·seconds:
    // 0.359 + 3.6 GB·s of the next hour = 3.959 → 0.0010, 0.359 carried.
    env.run(&["seal", "--now", &t("16:06:00")]).success();
    assert_eq!(records(&env).last().unwrap(), &rec("15:00:00", "16:00:00", "0.001", "0.359"));
    // Preview shows the carry in the plan's unit (GB·h), not the store's GB·s.
    let p = env.run(&["preview", "--format", "json", "--now", &t("16:10:00")]).json();
    assert_eq!(p["instances"][0]["carried"], "0.000099722", "{p}");
    let status = audit_holds(&env, &t("16:10:00"));
    let check = status["audit_checks"]["disk"]["check"].as_str().unwrap_or_default();
    assert!(check.contains("level integral") && check.contains("unit·seconds"), "{status}");
    assert_eq!(status["audit_checks"]["disk"]["holds"], true, "{status}");
}

#[test]
fn day_windows_follow_the_timezone() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "storage", "2026-11-20T16:00:00Z");
    // 23:30 local on the 23rd (15:30Z), then 02:00 local on the 24th (18:00Z).
    let evs = [Ev::new("a", I, "20", "2026-11-23T15:30:00Z"), Ev::new("b", I, "10", "2026-11-23T18:00:00Z")];
    assert_eq!(ingest(&env, "2026-11-23T18:10:00Z", &evs)["accepted"], 2);
    env.run(&["seal", "--now", "2026-11-24T16:30:00Z"]).success();
    assert_eq!(
        records(&env),
        vec![
            ("2026-11-22T16:00:00Z".into(), "2026-11-23T16:00:00Z".into(), "10".into(), "0".into()),
            ("2026-11-23T16:00:00Z".into(), "2026-11-24T16:00:00Z".into(), "260".into(), "0".into()),
        ]
    );
    audit_holds(&env, "2026-11-24T16:30:00Z");
}

#[test]
fn a_freeze_and_a_release_inside_a_window() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "disk", &t("00:00:00"));
    assert_eq!(ingest(&env, &t("10:05:00"), &[Ev::new("a", I, "12", &t("10:00:00"))])["accepted"], 1);
    env.run(&["instance", "freeze", I, "--at", &t("10:15:00")]).success();
    env.run(&["instance", "unfreeze", I, "--at", &t("10:45:00")]).success();
    env.release_instance(I, &t("10:50:00"));
    env.run(&["seal", "--now", &t("12:06:00")]).success();
    // Billed: 10:00–10:15 and 10:45–10:50, 20 minutes of 12 GB; nothing after the release.
    assert_eq!(records(&env), vec![rec("10:00:00", "10:50:00", "4", "0")]);
    audit_holds(&env, &t("12:10:00"));
}

/// A level reported while the instance is frozen is kept (issue 14: the level holds through a
/// freeze): the frozen time is not billed, and the new level bills from the unfreeze on —
/// not the stale one.
#[test]
fn a_level_reported_during_a_freeze_bills_from_the_unfreeze() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "disk", &t("00:00:00"));
    assert_eq!(ingest(&env, &t("10:05:00"), &[Ev::new("a", I, "4", &t("10:00:00"))])["accepted"], 1);
    env.run(&["instance", "freeze", I, "--at", &t("10:30:00")]).success();
    let r = ingest(&env, &t("10:41:00"), &[Ev::new("b", I, "0", &t("10:40:00"))]);
    assert_eq!(r["accepted"], 1, "a level change during a freeze is kept: {r}");
    env.run(&["instance", "unfreeze", I, "--at", &t("10:50:00")]).success();
    env.run(&["seal", "--now", &t("12:06:00")]).success();
    // 10:00–10:30 at 4 GB = 2 GB·h; frozen 10:30–10:50; the level 0 from 10:50: nothing more
    // (with the change refused, 11:00–12:00 would bill the stale 4 GB·h).
    assert_eq!(records(&env), vec![rec("10:00:00", "11:00:00", "2", "0")]);
    audit_holds(&env, &t("12:10:00"));
}

/// A freeze reported after its window was sealed: the sealed record stays, later windows skip
/// the frozen time, and the audit recomputes each record with the status changes its seal saw.
#[test]
fn a_freeze_reported_after_the_seal() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "disk", &t("00:00:00"));
    assert_eq!(ingest(&env, &t("10:05:00"), &[Ev::new("a", I, "10", &t("10:00:00"))])["accepted"], 1);
    env.run(&["seal", "--now", &t("11:06:00")]).success();
    env.run(&["instance", "freeze", I, "--at", &t("10:30:00")]).success();
    env.run(&["instance", "unfreeze", I, "--at", &t("12:30:00")]).success();
    env.run(&["seal", "--now", &t("13:06:00")]).success();
    // 11:00–12:00 wholly frozen: no record; 12:00–13:00 billed from the unfreeze.
    assert_eq!(records(&env), vec![rec("10:00:00", "11:00:00", "10", "0"), rec("12:00:00", "13:00:00", "5", "0")]);
    audit_holds(&env, &t("13:10:00"));
}

#[test]
fn late_events_set_the_level_of_open_windows_and_report_the_sealed_change() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "disk", &t("00:00:00"));
    assert_eq!(ingest(&env, &t("09:31:00"), &[Ev::new("a", I, "5", &t("09:30:00"))])["accepted"], 1);
    env.run(&["seal", "--now", &t("10:06:00")]).success();
    // 8 GB from 09:40 instead of 5: 3 GB × 20 min = 1 GB·h more in the sealed 09:00 window.
    let r = ingest(&env, &t("10:20:00"), &[Ev::new("late", I, "8", &t("09:40:00"))]);
    assert_eq!(r["accepted"], 1, "{r}");
    assert_eq!(r["late_unbilled"], serde_json::json!([{"index": 0, "id": "late", "instance_id": I, "unbilled_change": "1"}]), "{r}");
    schema_valid("ingest-result.schema.json", &r);
    let r = ingest(&env, &t("10:21:00"), &[Ev::new("late", I, "8", &t("09:40:00"))]);
    assert_eq!((r["duplicates"].as_u64(), r.get("late_unbilled")), (Some(1), None), "a resend is a duplicate: {r}");
    env.run(&["seal", "--now", &t("11:06:00")]).success();
    // The sealed record never changes; the next window bills the late level.
    assert_eq!(records(&env), vec![rec("09:00:00", "10:00:00", "2.5", "0"), rec("10:00:00", "11:00:00", "8", "0")]);
    let status = audit_holds(&env, &t("11:10:00"));
    assert_eq!(status["late_unbilled_change"][I], "1", "{status}");
    let p = env.run(&["preview", "--format", "json", "--now", &t("11:10:00")]).json();
    assert_eq!(p["instances"][0]["late_unbilled_change"], "1", "{p}");
    schema_valid("preview.schema.json", &p);
    let daemon = env.daemon_at(&t("11:10:00"), &[], &[]);
    let metrics = daemon.http().get("/metrics").text();
    assert!(metrics.contains(&format!("meterd_late_unbilled_change{{instance=\"{I}\"}} 1")), "{metrics}");
    drop(daemon);
    // A lower late level reports a negative change: 0 GB instead of 8 from 09:50 to the cursor
    // (11:00), −8 GB × 70 min.
    let r = ingest(&env, &t("11:20:00"), &[Ev::new("late2", I, "0", &t("09:50:00"))]);
    assert_eq!(r["late_unbilled"][0]["unbilled_change"], "-9.3333", "{r}");
}

#[test]
fn late_reject_refuses_late_weighted_events() {
    let env = Env::with_config(&format!("[collector]\nlate = \"reject\"\n\n{}", CONFIG.replace("timezone = \"+08:00\"\n", "")));
    env.add_instance(I, "disk", &t("00:00:00"));
    assert_eq!(ingest(&env, &t("09:31:00"), &[Ev::new("a", I, "5", &t("09:30:00"))])["accepted"], 1);
    env.run(&["seal", "--now", &t("10:06:00")]).success();
    let r = ingest(&env, &t("10:20:00"), &[Ev::new("late", I, "8", &t("09:40:00"))]);
    let err = r["rejected"][0]["error"].as_str().unwrap_or_default();
    assert!(err.contains("already sealed") && err.contains("collector.late"), "{r}");
    env.run(&["seal", "--now", &t("11:06:00")]).success();
    assert_eq!(records(&env)[1], rec("10:00:00", "11:00:00", "5", "0"), "a refused event sets no level");
}

#[test]
fn preview_shows_open_windows_up_to_now() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "disk", &t("00:00:00"));
    assert_eq!(ingest(&env, &t("10:05:00"), &[Ev::new("a", I, "20", &t("10:00:00"))])["accepted"], 1);
    let p = env.run(&["preview", "--format", "json", "--now", &t("11:30:00")]).json();
    let rows: Vec<(String, String)> = p["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["state"].as_str().unwrap_or_default().to_string(), r["usage"].as_str().unwrap_or_default().to_string()))
        .collect();
    assert_eq!(rows, vec![("open".into(), "20".into()), ("open".into(), "10".into())], "{p}");
}

/// The chained audit is not vacuous: a record changed behind meterd's back is caught, and so is
/// a carry that does not chain.
#[test]
fn the_level_audit_catches_tampered_records() {
    for tamper in ["UPDATE records SET usage_value = '15.0001'", "UPDATE records SET carry_out = '0.1'"] {
        let env = Env::with_config(CONFIG);
        env.add_instance(I, "disk", &t("00:00:00"));
        assert_eq!(ingest(&env, &t("10:05:00"), &[Ev::new("a", I, "15", &t("10:00:00"))])["accepted"], 1);
        env.run(&["seal", "--now", &t("11:06:00")]).success();
        audit_holds(&env, &t("11:10:00"));
        rusqlite::Connection::open(&env.db).unwrap().execute(tamper, []).unwrap();
        let run = env.run(&["status", "--format", "json", "--now", &t("11:10:00")]);
        run.code(3);
        assert_eq!(run.json()["audit_checks"]["disk"]["holds"], false, "{tamper}: {}", run.stdout);
    }
}
