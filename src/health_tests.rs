//! Table tests of the pure health decisions.

use super::*;

fn daemon_ok(now: i64) -> Inputs {
    Inputs {
        now,
        writer_alive: Some(true),
        file_moved: Some(None),
        ingest_error: Some(None),
        seal: Some(SealInputs {
            failures_in_row: 0,
            last_error: None,
            last_ok: Some(now - 10),
            started: now - 10_000,
            interval: 300,
            ..Default::default()
        }),
        upload_config_error: Some(None),
        unwritable: Some(None),
        records_past_deadline: 0,
        windows_past_deadline: 0,
    }
}

fn failing(checks: &[Check]) -> Vec<&'static str> {
    checks.iter().filter(|c| !c.ok).map(|c| c.name).collect()
}

#[test]
fn a_healthy_daemon_passes_every_check() {
    let checks = evaluate(&daemon_ok(1_000_000));
    let names: Vec<_> = checks.iter().map(|c| c.name).collect();
    assert_eq!(names, ["writer", "database_file", "ingest", "seal", "upload", "database_writable", "deadline"]);
    assert!(live(&checks) && ready(&checks), "{checks:?}");
}

#[test]
fn each_fault_fails_its_own_check_and_only_liveness_faults_fail_liveness() {
    let now = 1_000_000;
    type Fault = fn(&mut Inputs);
    let table: [(&str, Fault, bool); 9] = [
        ("writer", |i| i.writer_alive = Some(false), false),
        ("database_file", |i| i.file_moved = Some(Some("gone".into())), false),
        ("ingest", |i| i.ingest_error = Some(Some(("full".into(), "disk full".into()))), true),
        ("seal", |i| i.seal.as_mut().unwrap().failures_in_row = SEAL_FAILURES, true),
        ("seal", |i| i.seal.as_mut().unwrap().last_ok = Some(i.now - 2 * 300 - SEAL_SLACK_SECS - 1), true),
        ("upload", |i| i.upload_config_error = Some(Some("MKT.0102".into())), true),
        ("database_writable", |i| i.unwritable = Some(Some(("readonly".into(), "attempt to write a readonly database".into()))), true),
        ("deadline", |i| i.records_past_deadline = 1, true),
        ("deadline", |i| i.windows_past_deadline = 2, true),
    ];
    for (name, fault, still_live) in table {
        let mut i = daemon_ok(now);
        fault(&mut i);
        let checks = evaluate(&i);
        assert_eq!(failing(&checks), [name], "{checks:?}");
        assert!(!ready(&checks));
        assert_eq!(live(&checks), still_live, "{name}");
    }
}

#[test]
fn seal_tolerates_fewer_failures_and_a_fresh_start() {
    let now = 1_000_000;
    let mut i = daemon_ok(now);
    let s = i.seal.as_mut().unwrap();
    s.failures_in_row = SEAL_FAILURES - 1;
    s.last_ok = None;
    s.started = now - 2 * 300 - SEAL_SLACK_SECS;
    assert!(ready(&evaluate(&i)), "{:?}", evaluate(&i));
    i.seal.as_mut().unwrap().started -= 1;
    assert_eq!(failing(&evaluate(&i)), ["seal"]);
}

#[test]
fn a_one_shot_command_gets_only_the_store_checks() {
    let checks = evaluate(&Inputs { now: 5, records_past_deadline: 3, ..Inputs::default() });
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].name, "deadline");
    assert!(!checks[0].ok && checks[0].detail.contains("3 waiting records"), "{checks:?}");
}

#[test]
fn live_state_clears_when_the_cause_is_gone() {
    let l = Live::default();
    l.seal_failed("readonly", "attempt to write a readonly database".into(), true);
    assert_eq!(l.seal_inputs(0, 60).failures_in_row, 1);
    assert!(l.unwritable().is_some());
    l.seal_ok(100);
    let s = l.seal_inputs(0, 60);
    assert_eq!((s.failures_in_row, s.last_ok, s.last_error), (0, Some(100), None));
    assert!(l.unwritable().is_none());
    assert_eq!(l.seal_failures.lock().unwrap().get("readonly"), Some(&1));
    l.upload_failed("config_error", Some("MKT.0102".into()));
    assert!(l.upload_config_error().is_some());
    l.upload_ok(5);
    assert!(l.upload_config_error().is_none());
}

#[test]
fn a_standby_reports_the_stores_last_seal_and_never_fails_seal() {
    let now = 1_000_000;
    let mut i = daemon_ok(now);
    let s = i.seal.as_mut().unwrap();
    // No seal of its own for hours: as a standby that is not a fault.
    (s.last_ok, s.standby, s.store_last_ok) = (None, Some("node-a holds the sealer lease (epoch 3)".into()), Some(now - 40));
    let checks = evaluate(&i);
    let seal = checks.iter().find(|c| c.name == "seal").unwrap();
    assert!(seal.ok, "{seal:?}");
    assert_eq!(seal.detail, "standby: node-a holds the sealer lease (epoch 3); last seal on the store 40 s ago");
    i.seal.as_mut().unwrap().store_last_ok = None;
    assert!(evaluate(&i).iter().any(|c| c.detail == "standby: node-a holds the sealer lease (epoch 3); no seal recorded on the store yet"));
    // Having taken the lease over, it is judged from its last standby tick, not its start.
    let s = i.seal.as_mut().unwrap();
    (s.standby, s.last_standby) = (None, Some(now - 30));
    assert!(failing(&evaluate(&i)).is_empty());
    i.seal.as_mut().unwrap().last_standby = None;
    assert_eq!(failing(&evaluate(&i)), ["seal"]);
}

#[test]
fn a_same_name_lease_clash_is_logged_when_it_starts_and_clears_only() {
    let ticks = [0, 0, 4, 4, 4, 5, 5, 0, 0];
    let changes: Vec<_> = ticks.windows(2).filter_map(|w| name_clash_change(w[0], w[1])).collect();
    assert_eq!(changes, [Change::Started, Change::Started, Change::Cleared]);
}

#[test]
fn a_write_failure_clears_at_the_next_write_of_any_loop_not_only_a_seal() {
    let live = Live::new(0, 300);
    live.seal_failed("unreachable", "connection refused".into(), true);
    assert!(live.unwritable().is_some());
    // A standby: it never seals again, but its lease loop writes.
    live.seal_standing_by(10);
    assert!(live.unwritable().is_some(), "standing by proves nothing about writes");
    live.write_ok();
    assert_eq!(live.unwritable(), None);
}
