//! Idempotency comes first (issue 12, kind 3): an identical resend of a stored event is a
//! duplicate — exit 0, `duplicates: 1`, HTTP 200, library `Ok` — whatever rule changed since it
//! was stored: its window was sealed under `late = "reject"`, a freeze or a release covering it
//! was reported later, the plan's factor changed, the clock passed `max_age` or went back. Only
//! a different quantity or time is a conflict. Each case stores one event, changes one rule,
//! then resends through the three doors (CLI, HTTP, library) in turn.

use crate::util::{db, ns, Env, Ev};
use meterd::model::{parse_rfc3339, Quantity};
use serde_json::{json, Value};

const I: &str = "inst-r";
const ID: &str = "ev-1";

/// One rule change between the first send and the resend.
struct Case {
    name: &'static str,
    /// Config lines replaced before the first send.
    config: &'static [(&'static str, &'static str)],
    /// The stored event's (time, `--now` of its ingest).
    time: &'static str,
    stored_at: &'static str,
    /// With `"metric": "api_calls"`.
    metric: bool,
    /// The change: commands run (each must succeed) and config lines replaced afterwards.
    commands: &'static [&'static [&'static str]],
    config_after: &'static [(&'static str, &'static str)],
    /// `--now` of the resend.
    resend_at: &'static str,
}

fn cases() -> Vec<Case> {
    let base = Case {
        name: "",
        config: &[],
        time: "2026-11-23T08:15:00Z",
        stored_at: "2026-11-23T08:16:00Z",
        metric: false,
        commands: &[],
        config_after: &[],
        resend_at: "2026-11-23T08:20:00Z",
    };
    vec![
        Case {
            name: "window sealed under late = reject",
            config: &[(r#"late = "carry""#, r#"late = "reject""#)],
            commands: &[&["seal", "--now", "2026-11-23T09:06:00Z"]],
            resend_at: "2026-11-23T09:07:00Z",
            ..base
        },
        Case { name: "freeze covering it reported later", commands: &[&["instance", "freeze", I, "--at", "2026-11-23T08:00:00Z"]], ..base },
        Case {
            name: "freeze reported later, then unfrozen and sealed",
            commands: &[
                &["instance", "freeze", I, "--at", "2026-11-23T08:10:00Z"],
                &["instance", "unfreeze", I, "--at", "2026-11-23T08:30:00Z"],
                &["seal", "--now", "2026-11-23T09:06:00Z"],
            ],
            resend_at: "2026-11-23T09:07:00Z",
            ..base
        },
        Case {
            name: "released before the event (reported late)",
            commands: &[&["instance", "release", I, "--at", "2026-11-23T08:10:00Z"]],
            ..base
        },
        Case {
            name: "released after the event and sealed",
            commands: &[&["instance", "release", I, "--at", "2026-11-23T08:30:00Z"], &["seal", "--now", "2026-11-23T09:06:00Z"]],
            resend_at: "2026-11-23T09:07:00Z",
            ..base
        },
        Case {
            name: "the plan's factor (the metric sent) changed",
            metric: true,
            config_after: &[(r#"factor = "api_calls""#, r#"factor = "api_requests""#)],
            ..base
        },
        Case {
            name: "now older than max_age",
            time: "2026-11-03T08:15:00Z",
            stored_at: "2026-11-03T08:16:00Z",
            resend_at: "2026-11-23T12:00:00Z",
            ..base
        },
        Case { name: "max_age shortened", config_after: &[(r#"max_age = "20d""#, r#"max_age = "1m""#)], ..base },
        Case { name: "the sender's clock went back past max_future", resend_at: "2026-11-23T08:00:00Z", ..base },
    ]
}

fn event(case: &Case, qty: &str, time: &str) -> Ev {
    let ev = Ev::new(ID, I, qty, time);
    if case.metric {
        ev.metric("api_calls")
    } else {
        ev
    }
}

fn cli(env: &Env, now: &str, ev: &Ev) -> (i32, Value) {
    let run = env.run_stdin(&["ingest", "--now", now, "-"], ev.json().as_bytes());
    (run.code, run.json())
}

fn http(env: &Env, now: &str, ev: &Ev) -> (i32, Value) {
    let d = env.daemon_at(now, &[], &[]);
    let r = d.http().events(ev.json());
    (r.status as i32, r.json())
}

fn library(env: &Env, now: &str, case: &Case, qty: &str, time: &str) -> (i32, Value) {
    let ev = meterd::collector::EventInput {
        id: ID.into(),
        instance_id: I.into(),
        quantity: Quantity::parse_event(qty).unwrap(),
        time: parse_rfc3339(time).unwrap(),
        metric: case.metric.then(|| "api_calls".to_string()),
        properties: None,
        quantity_omitted: false,
    };
    let r = env.collector().ingest_events(vec![ev], parse_rfc3339(now).unwrap()).expect("library ingest");
    (0, serde_json::to_value(&r).unwrap())
}

#[test]
fn an_identical_resend_is_a_duplicate_after_every_rule_change() {
    // Every case runs (its panic message is printed); then the failing ones are named at once.
    let failed: Vec<&str> = cases().iter().filter(|c| std::panic::catch_unwind(|| resend_after(c)).is_err()).map(|c| c.name).collect();
    assert!(failed.is_empty(), "a resend was not a duplicate (or a changed one not a conflict) after: {failed:?}");
}

fn resend_after(case: &Case) {
    {
        let env = Env::with_config(&crate::util::example_config_with(case.config));
        env.add_instance(I, "calls", "2026-11-01T00:00:00Z");
        let (code, r) = cli(&env, case.stored_at, &event(case, "5", case.time));
        assert_eq!((code, r["accepted"].clone()), (0, json!(1)), "{}: first send {r}", case.name);
        for cmd in case.commands {
            let run = env.run(cmd);
            assert!(run.code == 0, "{}: {cmd:?}: {}", case.name, run.stderr);
        }
        let mut text = std::fs::read_to_string(&env.config).unwrap();
        for (from, to) in case.config_after {
            assert!(text.contains(from), "{}", case.name);
            text = text.replace(from, to);
        }
        std::fs::write(&env.config, text).unwrap();

        let dup = json!({"accepted": 0, "duplicates": 1, "rejected": []});
        let same = event(case, "5", case.time);
        assert_eq!(cli(&env, case.resend_at, &same), (0, dup.clone()), "{}: CLI", case.name);
        assert_eq!(http(&env, case.resend_at, &same), (200, dup.clone()), "{}: HTTP", case.name);
        let lib = library(&env, case.resend_at, case, "5", case.time);
        assert_eq!(
            (lib.0, lib.1["accepted"].clone(), lib.1["duplicates"].clone()),
            (0, json!(0), json!(1)),
            "{}: library {}",
            case.name,
            lib.1
        );

        // Another quantity or time under the same key is a conflict, named as such, through
        // every door; the stored event stays as it was.
        let other_time = case.time.replace("08:15", "08:14");
        for (qty, time) in [("6", case.time), ("5", other_time.as_str())] {
            let ev = event(case, qty, time);
            for (door, (code, r)) in [
                ("CLI", cli(&env, case.resend_at, &ev)),
                ("HTTP", http(&env, case.resend_at, &ev)),
                ("library", library(&env, case.resend_at, case, qty, time)),
            ] {
                let err = r["rejected"][0]["error"].as_str().unwrap_or_default();
                assert!(
                    err.contains("already stored with quantity 5 at") && err.contains(&format!("this one has quantity {qty} at {time}")),
                    "{}: {door} conflict {qty} at {time}: {r}",
                    case.name
                );
                let want = match door {
                    "CLI" => 1,
                    "HTTP" => 200,
                    _ => 0,
                };
                assert_eq!((code, r["duplicates"].clone()), (want, json!(0)), "{}: {door}", case.name);
            }
        }
        let c = env.db();
        assert_eq!(db::copies(&c, I, ID), 1, "{}", case.name);
        assert_eq!(db::event(&c, I, ID), Some(("5".into(), ns(case.time))), "{}: stored event unchanged", case.name);
    }
}

#[test]
fn a_new_event_refused_by_a_rule_after_the_lookup_leaves_no_trace() {
    // The key lookup now comes before the rules: a new key the rules then refuse must not be
    // stored, nor remembered as seen, so the same key with a valid time is later accepted.
    let env = Env::new();
    env.add_instance(I, "calls", "2026-11-23T00:00:00Z");
    env.run(&["instance", "freeze", I, "--at", "2026-11-23T09:00:00Z"]).success();
    let (code, r) = cli(&env, "2026-11-23T09:30:00Z", &Ev::new("n-1", I, "1", "2026-11-23T09:10:00Z"));
    assert_eq!((code, r["accepted"].clone()), (1, json!(0)), "{r}");
    let (code, r) = cli(&env, "2026-11-23T09:30:00Z", &Ev::new("n-1", I, "1", "2026-11-23T08:50:00Z"));
    assert_eq!((code, r), (0, json!({"accepted": 1, "duplicates": 0, "rejected": []})));
    assert_eq!(db::copies(&env.db(), I, "n-1"), 1);
}
