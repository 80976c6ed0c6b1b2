//! Carried usage at the edges (issue 12, kinds 1 and 2), through the real `meterd` binary on a
//! real SQLite file: late usage × freeze, × release, × package expiry, remainders and capped
//! excess × release and × freeze. Each case is a script of commands (every one with `--now`
//! where it takes one) and what must hold after it: the records sealed, `unbillable`, nothing
//! left carried where no record can come, conservation, and `status` naming the instance.

mod util;

use util::{Env, Ev};

const CONFIG: &str = r#"timezone = "+08:00"

[[plan]]
name = "hourly"
factor = "units"
period = "hour"
pricing = "fixed"
price = "1"

[[plan]]
name = "stop"
factor = "units"
period = "hour"
pricing = "fixed"
price = "1"
package = "stop"
"#;

const I: &str = "inst-c";
const DAY: &str = "2026-11-23T";

/// One command of a script; times are `HH:MM` on 2026-11-23 (UTC).
#[derive(Clone, Copy)]
enum Do {
    /// An event: id, quantity, event time, arrival time.
    Ev(&'static str, &'static str, &'static str, &'static str),
    Seal(&'static str),
    Freeze(&'static str),
    Unfreeze(&'static str),
    Release(&'static str),
    /// A package: id, quota, valid from, valid to.
    Pkg(&'static str, &'static str, &'static str, &'static str),
}

struct Case {
    name: &'static str,
    plan: &'static str,
    script: &'static [Do],
    /// Records as (begin HH:MM, end HH:MM, value, package).
    records: &'static [(&'static str, &'static str, &'static str, Option<&'static str>)],
    unbillable: &'static str,
    /// Carried on the instance and its packages at the end.
    carried: &'static str,
}

fn t(hm: &str) -> String {
    format!("{DAY}{hm}:00Z")
}

fn hm(secs: i64) -> String {
    meterd::model::Timestamp::from_secs(secs).to_string()[11..16].to_string()
}

use Do::*;

const CASES: &[Case] = &[
    Case {
        // Issue 12, kind 1: the carried 2 units go to the first active window, not the frozen one.
        name: "late x freeze: a wholly frozen window is skipped",
        plan: "hourly",
        script: &[
            Ev("a", "5", "09:30", "09:31"),
            Seal("10:06"),
            Freeze("10:00"),
            Ev("late", "2", "09:40", "10:20"),
            Seal("11:06"),
            Unfreeze("12:00"),
            Seal("13:06"),
        ],
        records: &[("09:00", "10:00", "5", None), ("12:00", "13:00", "2", None)],
        unbillable: "0",
        carried: "0",
    },
    Case {
        name: "late x freeze: the freeze and unfreeze both known before sealing",
        plan: "hourly",
        script: &[
            Ev("a", "5", "09:30", "09:31"),
            Seal("10:06"),
            Freeze("10:00"),
            Ev("late", "2", "09:40", "10:20"),
            Unfreeze("12:00"),
            Seal("13:06"),
        ],
        records: &[("09:00", "10:00", "5", None), ("12:00", "13:00", "2", None)],
        unbillable: "0",
        carried: "0",
    },
    Case {
        name: "late x freeze: frozen, never unfrozen, then released -> unbillable",
        plan: "hourly",
        script: &[
            Ev("a", "5", "09:30", "09:31"),
            Seal("10:06"),
            Freeze("10:00"),
            Ev("late", "2", "09:40", "10:20"),
            Seal("11:06"),
            Release("12:00"),
            Seal("13:06"),
        ],
        records: &[("09:00", "10:00", "5", None)],
        unbillable: "2",
        carried: "0",
    },
    Case {
        // Documented choice: active for part of the window is enough for a record.
        name: "late x freeze: a partially frozen window is billed",
        plan: "hourly",
        script: &[Ev("a", "5", "09:30", "09:31"), Seal("10:06"), Ev("late", "2", "09:40", "10:20"), Freeze("10:30"), Seal("11:06")],
        records: &[("09:00", "10:00", "5", None), ("10:00", "11:00", "2", None)],
        unbillable: "0",
        carried: "0",
    },
    Case {
        // Issue 12, kind 2: unbillable 6, carried 0.
        name: "late x release: the carry of a released instance becomes unbillable",
        plan: "hourly",
        script: &[
            Ev("a", "5", "09:30", "09:31"),
            Seal("10:06"),
            Ev("late", "2", "09:40", "10:20"),
            Release("10:00"),
            Seal("11:06"),
            Ev("later", "4", "09:50", "11:10"),
        ],
        records: &[("09:00", "10:00", "5", None)],
        unbillable: "6",
        carried: "0",
    },
    Case {
        name: "late x release inside the carry window: billed up to the release",
        plan: "hourly",
        script: &[Ev("a", "5", "09:30", "09:31"), Seal("10:06"), Ev("late", "2", "09:40", "10:20"), Release("10:30"), Seal("11:06")],
        records: &[("09:00", "10:00", "5", None), ("10:00", "10:30", "2", None)],
        unbillable: "0",
        carried: "0",
    },
    Case {
        // A release reported after the cursor passed it (issue 12, kind 4) still ends the carry.
        name: "late x release reported late: the carried usage of the open window becomes unbillable",
        plan: "hourly",
        script: &[Ev("a", "5", "09:30", "09:31"), Seal("10:06"), Ev("late", "2", "09:40", "10:20"), Release("09:45"), Seal("11:06")],
        records: &[("09:00", "10:00", "5", None)],
        unbillable: "2",
        carried: "0",
    },
    Case {
        name: "remainder x release reported late: settled by the release itself",
        plan: "hourly",
        script: &[Ev("a", "1.00005", "09:10", "09:11"), Seal("10:06"), Release("09:30")],
        records: &[("09:00", "10:00", "1", None)],
        unbillable: "0.00005",
        carried: "0",
    },
    Case {
        name: "remainder x release at the cursor: settled by the release itself",
        plan: "hourly",
        script: &[Ev("a", "1.00005", "09:10", "09:11"), Seal("10:06"), Release("10:00")],
        records: &[("09:00", "10:00", "1", None)],
        unbillable: "0.00005",
        carried: "0",
    },
    Case {
        name: "remainder x release inside the window: settled by the seal",
        plan: "hourly",
        script: &[Ev("a", "1.00005", "09:10", "09:11"), Release("09:40"), Seal("10:06")],
        records: &[("09:00", "09:40", "1", None)],
        unbillable: "0.00005",
        carried: "0",
    },
    Case {
        name: "cap excess x release: the excess becomes unbillable",
        plan: "hourly",
        script: &[Ev("a", "150000000", "09:10", "09:11"), Release("09:40"), Seal("10:06")],
        records: &[("09:00", "09:40", "99999999.9999", None)],
        unbillable: "50000000.0001",
        carried: "0",
    },
    Case {
        name: "cap excess x freeze: the excess reaches the next active window without events",
        plan: "hourly",
        script: &[Ev("a", "150000000", "09:10", "09:11"), Freeze("10:00"), Unfreeze("12:00"), Seal("13:06")],
        records: &[("09:00", "10:00", "99999999.9999", None), ("12:00", "13:00", "50000000.0001", None)],
        unbillable: "0",
        carried: "0",
    },
    Case {
        name: "cap excess x release later: billed in the next window before the release",
        plan: "hourly",
        script: &[Ev("a", "150000000", "09:10", "09:11"), Release("10:30"), Seal("11:06")],
        records: &[("09:00", "10:00", "99999999.9999", None), ("10:00", "10:30", "50000000.0001", None)],
        unbillable: "0",
        carried: "0",
    },
    Case {
        name: "late x package expiry: usage of an expired package is not reported against it",
        plan: "stop",
        script: &[
            Pkg("pkg-a", "100", "08:00", "10:00"),
            Ev("a", "5", "09:30", "09:31"),
            Seal("10:06"),
            Ev("late", "2", "09:40", "10:20"),
            Seal("11:06"),
        ],
        records: &[("09:00", "10:00", "5", Some("pkg-a"))],
        unbillable: "2",
        carried: "0",
    },
    Case {
        name: "late x package still valid in the carry window: reported against it",
        plan: "stop",
        script: &[
            Pkg("pkg-a", "100", "08:00", "10:30"),
            Ev("a", "5", "09:30", "09:31"),
            Seal("10:06"),
            Ev("late", "2", "09:40", "10:20"),
            Seal("11:06"),
        ],
        records: &[("09:00", "10:00", "5", Some("pkg-a")), ("10:00", "11:00", "2", Some("pkg-a"))],
        unbillable: "0",
        carried: "0",
    },
    Case {
        name: "late x freeze on a stop package: the next active window, against the package",
        plan: "stop",
        script: &[
            Pkg("pkg-a", "100", "08:00", "20:00"),
            Ev("a", "5", "09:30", "09:31"),
            Seal("10:06"),
            Freeze("10:00"),
            Ev("late", "2", "09:40", "10:20"),
            Seal("11:06"),
            Unfreeze("12:00"),
            Seal("13:06"),
        ],
        records: &[("09:00", "10:00", "5", Some("pkg-a")), ("12:00", "13:00", "2", Some("pkg-a"))],
        unbillable: "0",
        carried: "0",
    },
    Case {
        // pkg-a (earliest expiry) is used up by the late event; the next active window draws
        // from pkg-b only, and still reports pkg-a's carried 2 units in a segment of their own.
        name: "late x freeze on a stop package: reported beside another package's usage",
        plan: "stop",
        script: &[
            Pkg("pkg-a", "7", "08:00", "20:00"),
            Pkg("pkg-b", "100", "08:00", "22:00"),
            Ev("a", "5", "09:30", "09:31"),
            Seal("10:06"),
            Freeze("10:00"),
            Ev("late", "2", "09:40", "10:20"),
            Unfreeze("12:00"),
            Ev("b", "3", "12:10", "12:11"),
            Seal("13:06"),
        ],
        records: &[("09:00", "10:00", "5", Some("pkg-a")), ("12:00", "12:59", "3", Some("pkg-b")), ("12:59", "13:00", "2", Some("pkg-a"))],
        unbillable: "0",
        carried: "0",
    },
    Case {
        name: "late x freeze on a stop package that expires while frozen -> unbillable",
        plan: "stop",
        script: &[
            Pkg("pkg-a", "100", "08:00", "11:30"),
            Ev("a", "5", "09:30", "09:31"),
            Seal("10:06"),
            Freeze("10:00"),
            Ev("late", "2", "09:40", "10:20"),
            Unfreeze("12:00"),
            Seal("13:06"),
        ],
        records: &[("09:00", "10:00", "5", Some("pkg-a"))],
        unbillable: "2",
        carried: "0",
    },
    Case {
        name: "late x release on a stop package: unbillable, package carry too",
        plan: "stop",
        script: &[
            Pkg("pkg-a", "100", "08:00", "20:00"),
            Ev("a", "5.00003", "09:30", "09:31"),
            Seal("10:06"),
            Ev("late", "2", "09:40", "10:20"),
            Release("10:00"),
            Seal("11:06"),
        ],
        records: &[("09:00", "10:00", "5", Some("pkg-a"))],
        unbillable: "2.00003",
        carried: "0",
    },
];

fn run_script(env: &Env, script: &[Do]) {
    for step in script {
        match *step {
            Ev(id, q, at, now) => {
                let r = env.run_stdin(&["ingest", "--now", &t(now), "-"], Ev::new(id, I, q, &t(at)).json().as_bytes()).json();
                assert_eq!(r["accepted"], 1, "event {id}: {r}");
            }
            Seal(now) => {
                env.run(&["seal", "--now", &t(now)]).success();
            }
            Freeze(at) => {
                env.run(&["instance", "freeze", I, "--at", &t(at)]).success();
            }
            Unfreeze(at) => {
                env.run(&["instance", "unfreeze", I, "--at", &t(at)]).success();
            }
            Release(at) => env.release_instance(I, &t(at)),
            Pkg(id, quota, from, to) => {
                env.run(&["package", "add", I, id, "--quota", quota, "--from", &t(from), "--to", &t(to)]).success();
            }
        }
    }
}

#[test]
fn carried_usage_lands_only_where_it_can_be_billed() {
    let mut failures = Vec::new();
    for case in CASES {
        let env = Env::with_config(CONFIG);
        env.add_instance(I, case.plan, &t("00:00"));
        run_script(&env, case.script);
        let db = env.db();
        let mut stmt = db
            .prepare("SELECT r.begin_s, r.end_s, r.usage_value, r.relate_pkg FROM records r ORDER BY r.begin_s")
            .expect("prepare records");
        let records: Vec<(String, String, String, Option<String>)> = stmt
            .query_map([], |r| Ok((hm(r.get(0)?), hm(r.get(1)?), r.get::<_, String>(2)?, r.get(3)?)))
            .expect("query records")
            .map(|r| r.expect("record row"))
            .collect();
        let want: Vec<(String, String, String, Option<String>)> =
            case.records.iter().map(|(b, e, v, p)| (b.to_string(), e.to_string(), v.to_string(), p.map(str::to_string))).collect();
        let mut store = meterd::store::Store::open(&env.db).expect("open store");
        let balances = meterd::audit::balances(&mut store).expect("audit");
        let b = &balances[0];
        let got = (records, b.unbillable.normalize().to_string(), b.carried.normalize().to_string());
        let expected = (want, case.unbillable.to_string(), case.carried.to_string());
        if got != expected {
            failures.push(format!("{}:\n  got      {:?}\n  expected {:?}", case.name, got, expected));
            continue;
        }
        assert!(b.holds(), "{}: conservation broken: {b:?}", case.name);
        assert!(b.settled(), "{}: stranded carry: {b:?}", case.name);
        let status = env.run(&["status", "--format", "json", "--now", &t("14:00")]).json();
        assert_eq!(status["conservation_violations"], serde_json::json!([]), "{}: {status}", case.name);
        assert!(status.get("stranded_carry").is_none(), "{}: {status}", case.name);
        if case.unbillable != "0" {
            assert_eq!(status["unbillable"][I], case.unbillable, "{}: status lists the instance: {status}", case.name);
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

/// A database where a released instance was sealed through its release with something still
/// carried (as meterd before issue 12 left it): `status` names the stranded carry beside the
/// conservation line, and the next `seal` moves it to `unbillable`.
#[test]
fn a_stranded_carry_is_reported_and_settled_by_the_next_seal() {
    let env = Env::with_config(CONFIG);
    env.add_instance(I, "hourly", &t("00:00"));
    run_script(&env, &[Ev("a", "5", "09:30", "09:31"), Seal("10:06"), Release("10:00")]);
    // Plant the state the old code left: a carry on the released, sealed-through instance.
    let rw = rusqlite::Connection::open(&env.db).expect("open rw");
    rw.execute("UPDATE instances SET carry = '2'", []).expect("plant carry");
    rw.execute("UPDATE events SET qty = '7'", []).expect("keep the balance");
    drop(rw);
    let table = env.run(&["status", "--now", &t("11:00")]);
    assert!(table.stdout.contains("stranded carry      inst-c: 2 can never be billed"), "{}", table.stdout);
    let json = env.run(&["status", "--format", "json", "--now", &t("11:00")]).json();
    assert_eq!(json["stranded_carry"][I], "2", "{json}");
    env.run(&["seal", "--now", &t("11:06")]).success();
    let json = env.run(&["status", "--format", "json", "--now", &t("11:10")]).json();
    assert!(json.get("stranded_carry").is_none(), "{json}");
    assert_eq!(json["unbillable"][I], "2", "{json}");
    assert_eq!(json["conservation_violations"], serde_json::json!([]), "{json}");
}
