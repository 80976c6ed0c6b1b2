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

// Issue 12, kind 4: a lifecycle change reported late is still recorded. The cloud store's
// release (and freeze) is the truth even when it reaches meterd after the windows around it
// were sealed: it is recorded, the answer names the records already sealed past it, `status`
// flags them, and events after it are refused from then on — through the CLI and HTTP alike.

/// An hourly `fixed` plan at price 1, as in the issue's examples (`sum`).
fn hourly_env() -> Env {
    hourly_env_by("sum")
}

fn at(hm: &str) -> String {
    format!("2026-11-23T{hm}:00Z")
}

fn accepted(env: &Env, now: &str, id: &str, qty: &str, time: &str) -> serde_json::Value {
    ingest(env, &at(now), &Ev::new(id, I, qty, &at(time)))
}

/// The serials of the instance's records, in time order, with their begin times.
fn records(env: &Env) -> Vec<(String, String)> {
    let rows =
        env.db().rows("SELECT metering_sn, begin_s FROM records ORDER BY begin_s", &[], |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)));
    rows.into_iter().map(|(sn, b)| (sn, meterd::model::Timestamp::from_secs(b).to_string())).collect()
}

/// A release reported late, after usage of a window wholly past it was stored: the preview
/// prices none of that window (the seal gives it no record and makes its usage unbillable) and
/// shows its usage as unbillable at once — not an `open` row ending before it begins and
/// charged (trial finding) — and the seal then agrees.
#[test]
fn an_open_window_after_a_late_release_is_shown_unbillable_not_charged() {
    let env = hourly_env();
    assert_eq!(accepted(&env, "09:11", "a", "5", "09:10")["accepted"], 1);
    env.run(&["seal", "--now", &at("10:06")]).success();
    assert_eq!(accepted(&env, "10:21", "b", "3", "10:20")["accepted"], 1);
    let (ok, warning, _) = report(&env, "cli", "10:30", "release", "09:30");
    assert!(ok, "{warning}");

    let preview = |now: &str| {
        let p = env.run(&["preview", "--format", "json", "--now", &at(now)]).json();
        let rows: Vec<(String, String, String)> = p["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (r["begin_time"].as_str().unwrap().into(), r["end_time"].as_str().unwrap().into(), r["usage"].as_str().unwrap().into())
            })
            .collect();
        let t = &p["instances"][0];
        (rows, t["charge"].as_str().unwrap().to_string(), t["unbillable"].as_str().unwrap().to_string())
    };
    // Sealed before the release was known: flagged, so charged 0 (the store refuses it).
    let sealed_row = (at("09:00"), at("10:00"), "5".to_string());
    let last_seal = env.run(&["status", "--format", "json", "--now", &at("10:40")]).json()["last_seal"].clone();
    assert!(last_seal.is_string(), "a seal by hand is the store's last seal too: {last_seal}");
    assert_eq!(preview("10:40"), (vec![sealed_row.clone()], "0".to_string(), "3".to_string()), "before the window closes");
    env.run(&["seal", "--now", &at("11:06")]).success();
    assert_eq!(records(&env).len(), 1, "the window after the release got no record");
    assert_eq!(preview("11:06"), (vec![sealed_row], "0".to_string(), "3".to_string()), "after its seal: the same bill");
    let status = env.run(&["status", "--format", "json", "--now", &at("11:06")]).json();
    assert_eq!(status["unbillable"][I], "3", "{status}");
    assert_eq!(status["conservation_violations"], serde_json::json!([]), "{status}");
}

/// Records (`POST` over HTTP with the daemon's clock at `now`, or the CLI) a release or a
/// status change; returns (success, warning text, the answer's JSON or `null`).
fn report(env: &Env, door: &str, now: &str, what: &str, time: &str) -> (bool, String, serde_json::Value) {
    if door == "cli" {
        let run = env.run(&["instance", what, I, "--at", &at(time)]);
        return (run.code == 0, run.stderr.clone(), serde_json::Value::Null);
    }
    let d = env.daemon_at(&at(now), &[], &[]);
    let h = d.http();
    let r = match what {
        "release" => h.post(&format!("/v1/instances/{I}/release"), format!(r#"{{"time":"{}"}}"#, at(time))),
        s => h.post(&format!("/v1/instances/{I}/status"), format!(r#"{{"status":"{}","time":"{}"}}"#, s.to_uppercase(), at(time))),
    };
    let v = r.json();
    (r.status == 200, v["warning"].as_str().unwrap_or_default().to_string(), v)
}

fn flagged(env: &Env, now: &str) -> Vec<(String, String)> {
    let s = env.run(&["status", "--format", "json", "--now", &at(now)]).json();
    let list = s["flagged_records"].as_array().cloned().unwrap_or_default();
    list.iter().map(|f| (f["metering_sn"].as_str().unwrap().to_string(), f["reason"].as_str().unwrap().to_string())).collect()
}

#[test]
fn a_release_reported_after_its_window_was_sealed_is_recorded_and_flags_the_record() {
    for door in ["cli", "http"] {
        // The issue's example: 5 units at 09:10, seal at 10:06; the store released the
        // instance at 09:30 and the app forwards it at 10:10.
        let env = hourly_env();
        assert_eq!(accepted(&env, "09:11", "a", "5", "09:10")["accepted"], 1);
        env.run(&["seal", "--now", &at("10:06")]).success();
        let recs = records(&env);
        assert_eq!(recs.len(), 1, "{door}");
        let sn = recs[0].0.clone();

        let (ok, warning, answer) = report(&env, door, "10:10", "release", "09:30");
        assert!(ok, "{door}: the late release is recorded: {warning} {answer}");
        assert!(
            warning.contains(&sn) && warning.contains(&at("09:00")) && warning.contains("end after it"),
            "{door}: names the record: {warning}"
        );
        if door == "http" {
            assert_eq!(answer["release"], at("09:30"), "{answer}");
            assert_eq!(answer["sealed_past_release"][0]["metering_sn"], sn.as_str(), "{answer}");
        }
        let list = env.run(&["instance", "list", "--format", "json"]).json();
        assert_eq!(list[0]["release"], at("09:30"), "{door}");

        // Events after the release are refused from now on (today: billed as a record of 7).
        let r = accepted(&env, "10:16", "b", "2", "10:15");
        let err = r["rejected"][0]["error"].as_str().unwrap_or_default();
        assert!(r["accepted"] == 0 && err.contains("release"), "{door}: {r}");
        env.run(&["seal", "--now", &at("11:06")]).success();
        assert_eq!(records(&env).len(), 1, "{door}: nothing is sealed past the release");

        // Status flags the record (JSON and table, and `/v1/status`).
        let flags = flagged(&env, "11:06");
        assert_eq!(flags.len(), 1, "{door}: {flags:?}");
        assert!(flags[0].0 == sn && flags[0].1.contains("release"), "{door}: {flags:?}");
        let table = env.run(&["status", "--now", &at("11:06")]);
        assert!(table.stdout.contains("flagged record") && table.stdout.contains(&sn), "{}", table.stdout);
        if door == "http" {
            let d = env.daemon_at(&at("11:07"), &[], &[]);
            assert_eq!(d.http().get("/v1/status").ok()["flagged_records"][0]["metering_sn"], sn.as_str());
            assert!(d.http().get("/metrics").text().contains("meterd_records_flagged 1"));
        }

        // A release is final: the same time again is a no-op, another time is refused.
        assert!(report(&env, door, "11:10", "release", "09:30").0, "{door}");
        let (ok, _, answer) = report(&env, door, "11:10", "release", "09:45");
        assert!(!ok, "{door}: a release cannot move: {answer}");
        let run = env.run(&["instance", "release", I, "--at", &at("09:40")]);
        assert!(run.code == 2 && run.stderr.contains("final"), "{}", run.stderr);
    }
}

#[test]
fn a_release_before_stored_events_is_recorded_and_counts_them() {
    // The store's release is the truth also when events after it were already acknowledged:
    // they stay stored, and the warning says how many.
    let env = hourly_env();
    assert_eq!(accepted(&env, "09:51", "a", "5", "09:50")["accepted"], 1);
    let run = env.run(&["instance", "release", I, "--at", &at("09:30")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("1 event(s)") && run.stderr.contains("stay stored"), "{}", run.stderr);
    assert_eq!(util::db::copies(&env.db(), I, "a"), 1);
    assert_eq!(accepted(&env, "09:52", "c", "1", "09:40")["accepted"], 0);
}

#[test]
fn a_freeze_reported_after_its_windows_were_sealed_is_recorded_and_flags_records_inside_it() {
    for door in ["cli", "http"] {
        let env = hourly_env();
        assert_eq!(accepted(&env, "09:31", "a", "5", "09:30")["accepted"], 1);
        assert_eq!(accepted(&env, "10:21", "b", "3", "10:20")["accepted"], 1);
        env.run(&["seal", "--now", &at("11:06")]).success();
        let recs = records(&env);
        assert_eq!(recs.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), [at("09:00"), at("10:00")], "{door}");
        let (inside, overlapping) = (recs[1].0.clone(), recs[0].0.clone());

        // The store froze the instance at 09:45; the app forwards it at 11:10. Only the record
        // lying wholly inside the frozen interval is named; the 09:00 hour began active.
        let (ok, warning, answer) = report(&env, door, "11:10", "freeze", "09:45");
        assert!(ok, "{door}: {warning} {answer}");
        assert!(warning.contains(&inside) && !warning.contains(&overlapping), "{door}: {warning}");
        assert!(warning.contains("1 events at or after"), "{door}: {warning}");
        if door == "http" {
            assert_eq!(answer["state"], "frozen", "{answer}");
            assert_eq!(answer["sealed_inside_frozen"][0]["metering_sn"], inside.as_str(), "{answer}");
        }
        // Events inside the interval are refused from now on, late or not.
        let r = accepted(&env, "11:12", "c", "1", "09:50");
        assert!(r["accepted"] == 0 && r["rejected"][0]["error"].as_str().unwrap_or_default().contains("frozen"), "{door}: {r}");

        let (ok, warning, _) = report(&env, door, "12:10", "unfreeze", "12:00");
        assert!(ok && warning.is_empty(), "{door}: {warning}");
        let flags = flagged(&env, "12:10");
        assert_eq!(flags.len(), 1, "{door}: {flags:?}");
        assert!(flags[0].0 == inside && flags[0].1.contains(&at("09:45")) && flags[0].1.contains(&at("12:00")), "{door}: {flags:?}");
    }
}

/// An hourly plan at price 1 aggregating by `aggregation` (`sum`, `count`, `max`, …).
fn hourly_env_by(aggregation: &str) -> Env {
    let toml = format!(
        "{}\n[[plan]]\nname = \"hourly\"\nfactor = \"units\"\nunit = \"unit\"\nperiod = \"hour\"\npricing = \"fixed\"\nprice = \"1\"\naggregation = \"{aggregation}\"\n",
        util::EXAMPLE_CONFIG
    );
    let env = Env::with_config(&toml);
    env.add_instance(I, "hourly", "2026-11-23T00:00:00Z");
    env
}

/// (charge, unbillable) of the instance in `preview --format json`, and its rows' (begin, end,
/// usage).
fn bill(env: &Env, now: &str) -> (String, String, Vec<(String, String, String)>) {
    let p = env.run(&["preview", "--format", "json", "--now", &at(now)]).json();
    let rows = p["rows"].as_array().unwrap().iter().map(|r| {
        (
            r["begin_time"].as_str().unwrap().to_string(),
            r["end_time"].as_str().unwrap().to_string(),
            r["usage"].as_str().unwrap().to_string(),
        )
    });
    let t = &p["instances"][0];
    (t["charge"].as_str().unwrap().to_string(), t["unbillable"].as_str().unwrap().to_string(), rows.collect())
}

/// Usage after a release reported late, inside the release's own window (final trial
/// finding): 4 units at 11:20 and 3 at 11:40, then the release at 11:30. The 3 units are
/// unbillable from the moment the release is recorded: status, preview and the audit say so
/// before the seal, and the seal bills [11:00, 11:30) with 4 — through the CLI and HTTP.
#[test]
fn usage_after_a_late_release_inside_its_window_is_unbillable_in_every_view() {
    for (door, agg) in [("cli", "sum"), ("http", "sum"), ("cli", "count")] {
        let env = hourly_env_by(agg);
        assert_eq!(accepted(&env, "11:21", "a", "4", "11:20")["accepted"], 1);
        assert_eq!(accepted(&env, "11:41", "b", "3", "11:40")["accepted"], 1);
        let (ok, warning, _) = report(&env, door, "11:45", "release", "11:30");
        assert!(ok, "{door}: {warning}");
        let (billed, after) = if agg == "count" { ("1", "1") } else { ("4", "3") };

        let status = |now: &str| env.run(&["status", "--format", "json", "--now", &at(now)]).json();
        for (when, now) in [("before the seal", "11:50"), ("after the seal", "12:06")] {
            if when == "after the seal" {
                env.run(&["seal", "--now", &at("12:06")]).success();
                let recs = env.db().rows("SELECT begin_s, end_s, usage_value FROM records", &[], |r| {
                    Ok((r.get::<i64>(0)?, r.get::<i64>(1)?, r.get::<String>(2)?))
                });
                let ts = |s: i64| meterd::model::Timestamp::from_secs(s).to_string();
                let recs: Vec<_> = recs.into_iter().map(|(b, e, v)| (ts(b), ts(e), v)).collect();
                assert_eq!(recs, vec![(at("11:00"), at("11:30"), billed.to_string())], "{door} {agg}");
            }
            let s = status(now);
            assert_eq!(s["unbillable"][I], after, "{door} {agg} {when}: {s}");
            assert_eq!(s["conservation_violations"], serde_json::json!([]), "{door} {agg} {when}: {s}");
            let (charge, unbillable, rows) = bill(&env, now);
            assert_eq!((charge.as_str(), unbillable.as_str()), (billed, after), "{door} {agg} {when}: {rows:?}");
            assert_eq!(rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(), [billed], "{door} {agg} {when}");
            let check = env.run(&["status", "--check", "--now", &at(now)]);
            assert_eq!(check.code, 0, "{door} {agg} {when}: {}{}", check.stdout, check.stderr);
        }
        assert!(warning.contains("1 event(s)") && warning.contains("unbillable now"), "{door}: {warning}");
    }
}

/// The same for a point plan (`max`): the 7 at 11:40, after the release, leaves the window;
/// the record is the max before the release, and the event is counted as billed nowhere.
#[test]
fn a_point_event_after_a_late_release_leaves_its_window() {
    let env = hourly_env_by("max");
    assert_eq!(accepted(&env, "11:21", "a", "4", "11:20")["accepted"], 1);
    assert_eq!(accepted(&env, "11:41", "b", "7", "11:40")["accepted"], 1);
    let (ok, warning, _) = report(&env, "cli", "11:45", "release", "11:30");
    assert!(ok, "{warning}");
    assert_eq!(bill(&env, "11:50").0, "4", "before the seal");
    env.run(&["seal", "--now", &at("12:06")]).success();
    let values = env.db().rows("SELECT usage_value FROM records", &[], |r| r.get::<String>(0));
    assert_eq!(values, ["4"]);
    assert_eq!(bill(&env, "12:06").0, "4", "after the seal");
    let s = env.run(&["status", "--format", "json", "--now", &at("12:06")]).json();
    assert_eq!(s["late_unbilled"][I], 1, "{s}");
    assert_eq!(s["conservation_violations"], serde_json::json!([]), "{s}");
    assert_eq!(env.run(&["status", "--check", "--now", &at("12:06")]).code, 0);
    assert!(warning.contains("billed nowhere now"), "{warning}");
}

/// A record sealed past a release reported later: `status` flags it as one the store will
/// refuse, and the preview shows it flagged, charged 0 (as a rejected record), in JSON, CSV
/// and the table.
#[test]
fn a_record_sealed_past_a_late_release_is_flagged_and_not_charged_in_the_preview() {
    let env = hourly_env();
    assert_eq!(accepted(&env, "09:11", "a", "5", "09:10")["accepted"], 1);
    env.run(&["seal", "--now", &at("10:06")]).success();
    assert_eq!(bill(&env, "10:07").0, "5", "charged before the release is known");
    assert!(report(&env, "cli", "10:10", "release", "09:30").0);
    let p = env.run(&["preview", "--format", "json", "--now", &at("10:20")]).json();
    let row = &p["rows"][0];
    assert_eq!((row["usage"].as_str(), row["charge"].as_str()), (Some("5"), Some("0")), "{p}");
    assert!(row["flagged"].as_str().unwrap_or_default().contains("release"), "{p}");
    assert_eq!(p["instances"][0]["charge"], "0", "{p}");
    let csv = env.run(&["preview", "--format", "csv", "--now", &at("10:20")]).stdout;
    assert!(csv.lines().nth(1).is_some_and(|l| l.contains("refuses it")), "{csv}");
    let table = env.run(&["preview", "--now", &at("10:20")]).stdout;
    assert!(table.contains("pending (flagged)"), "{table}");
    let html = env.run(&["preview", "--format", "html", "--now", &at("10:20")]).stdout;
    assert!(html.contains("pending (flagged: ") && html.contains("refuses it"), "the page gives the reason too: {html}");
    // A person is told before it is sent: the store will refuse it.
    let check = env.run(&["status", "--check", "--now", &at("10:20")]);
    assert_eq!(check.code, 1, "{}", check.stderr);
    assert!(check.stderr.contains("1 record a late release or freeze contradicts is waiting for upload"), "{}", check.stderr);
}

/// A `weighted_sum` plan needs nothing moved: a level holds until the release, so the level 100
/// set at 11:40, after the release at 11:30 reported at 11:45, adds nothing; the record is
/// level 6 over [11:00, 11:30) = 3 unit·hours.
#[test]
fn a_level_set_after_a_late_release_adds_nothing() {
    let env = hourly_env_by("weighted_sum");
    assert_eq!(accepted(&env, "11:01", "a", "6", "11:00")["accepted"], 1);
    assert_eq!(accepted(&env, "11:41", "b", "100", "11:40")["accepted"], 1);
    assert!(report(&env, "cli", "11:45", "release", "11:30").0);
    env.run(&["seal", "--now", &at("12:06")]).success();
    let values = env.db().rows("SELECT usage_value FROM records", &[], |r| r.get::<String>(0));
    assert_eq!(values, ["3"]);
    assert_eq!(bill(&env, "12:06").0, "3");
    assert_eq!(env.run(&["status", "--check", "--now", &at("12:06")]).code, 0);
}

/// Stop-before-excess: the draws of the usage after a late release go back to the packages.
/// pkg-a (5, earliest expiry) then pkg-b: 4 units at 11:20 draw 4 from pkg-a, 3 at 11:40 draw
/// 1 from pkg-a and 2 from pkg-b (a segment from 11:40). The release at 11:30 gives both
/// draws of the 3 back: pkg-a has used 4, pkg-b nothing, the 11:40 segment is gone, and the
/// seal reports [11:00, 11:30) = 4 against pkg-a; the 3 units are unbillable.
#[test]
fn a_late_release_gives_the_draws_after_it_back_to_the_packages() {
    let toml = format!(
        "{}\n[[plan]]\nname = \"hourly\"\nfactor = \"units\"\nunit = \"unit\"\nperiod = \"hour\"\npricing = \"fixed\"\nprice = \"1\"\npackage = \"stop\"\n",
        util::EXAMPLE_CONFIG
    );
    let env = Env::with_config(&toml);
    env.add_instance(I, "hourly", "2026-11-23T00:00:00Z");
    for (id, quota, to) in [("pkg-a", "5", "2026-12-01T00:00:00Z"), ("pkg-b", "100", "2027-01-01T00:00:00Z")] {
        env.run(&["package", "add", I, id, "--quota", quota, "--from", "2026-11-01T00:00:00Z", "--to", to]).success();
    }
    assert_eq!(accepted(&env, "11:21", "a", "4", "11:20")["accepted"], 1);
    assert_eq!(accepted(&env, "11:41", "b", "3", "11:40")["accepted"], 1);
    let used = || {
        let q = env.run(&["package", "list", I, "--format", "json"]).json();
        q[0]["packages"].as_array().unwrap().iter().map(|p| p["used"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(used(), ["5", "2"]);
    assert!(report(&env, "cli", "11:45", "release", "11:30").0);
    assert_eq!(used(), ["4", "0"], "the draws after the release are given back");
    let s = env.run(&["status", "--format", "json", "--now", &at("11:50")]).json();
    assert_eq!((&s["unbillable"][I], &s["conservation_violations"]), (&serde_json::json!("3"), &serde_json::json!([])), "{s}");
    env.run(&["seal", "--now", &at("12:06")]).success();
    let recs = env.db().rows("SELECT begin_s, end_s, usage_value, relate_pkg FROM records", &[], |r| {
        Ok((r.get::<i64>(0)?, r.get::<i64>(1)?, r.get::<String>(2)?, r.get::<Option<String>>(3)?))
    });
    let ts = |s: i64| meterd::model::Timestamp::from_secs(s).to_string();
    let recs: Vec<_> = recs.into_iter().map(|(b, e, v, p)| (ts(b), ts(e), v, p)).collect();
    assert_eq!(recs, vec![(at("11:00"), at("11:30"), "4".to_string(), Some("pkg-a".to_string()))]);
    let s = env.run(&["status", "--format", "json", "--now", &at("12:06")]).json();
    assert_eq!((&s["unbillable"][I], &s["conservation_violations"]), (&serde_json::json!("3"), &serde_json::json!([])), "{s}");
    assert_eq!(env.run(&["status", "--check", "--now", &at("12:06")]).code, 0);
}
