//! The command line: `init`, `instance add|release|list`, and `ingest`'s exit codes (design §7:
//! 0 success, 1 some input rejected, 2 bad usage or configuration).

use crate::util::{db, example_config_with, ndjson, Env, Ev, NOW};
use std::process::Command;

fn meterd_in(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meterd"));
    c.current_dir(dir).env_remove("METERD_CONFIG").env_remove("METERD_DB");
    c
}

#[test]
fn init_writes_a_config_that_parses_and_creates_the_db() {
    crate::sqlite_only!("`meterd init` creating ./meterd.db, its user_version and WAL journal mode are the SQLite file's");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meterd.toml");
    let out = meterd_in(dir.path()).arg("--config").arg(&config).arg("init").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let cfg = meterd::config::Config::load(&config).expect("the written config parses");
    assert!(cfg.plan("calls").is_some());
    let db_path = dir.path().join("meterd.db");
    let c = db::Db::open(&db_path);
    let c = c.sqlite();
    let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, meterd::store::MIGRATIONS.len() as i64);
    let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(c.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0)).unwrap(), 0);

    // Never overwrites silently.
    std::fs::write(&config, "# mine\n").unwrap();
    let out = meterd_in(dir.path()).arg("--config").arg(&config).arg("init").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "# mine\n");
    let out = meterd_in(dir.path()).arg("--config").arg(&config).args(["init", "--force"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    meterd::config::Config::load(&config).expect("parses after --force");

    // Without --config: ./meterd.toml and ./meterd.db, and later commands find them.
    let bare = tempfile::tempdir().unwrap();
    let out = meterd_in(bare.path()).arg("init").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(bare.path().join("meterd.toml").exists() && bare.path().join("meterd.db").exists());
    let out =
        meterd_in(bare.path()).args(["instance", "add", "i1", "--plan", "calls", "--start", "2026-11-01T00:00:00Z"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn instance_add_list_release() {
    let env = Env::new();
    let first = env.run(&["instance", "add", "inst-a", "--plan", "calls", "--start", "2026-11-01T08:00:00+08:00"]);
    assert_eq!(first.success().stdout, "instance inst-a registered: plan calls, start 2026-11-01T00:00:00Z\n");
    // Same values: a no-op (exit 0), and said to be one (new-user trial: it said "registered").
    let again = env.run(&["instance", "add", "inst-a", "--plan", "calls", "--start", "2026-11-01T00:00:00Z"]);
    assert_eq!(
        again.success().stdout,
        "instance inst-a is already registered with plan calls, start 2026-11-01T00:00:00Z; nothing changed\n"
    );
    env.add_instance("inst-b", "storage", "2026-11-02T00:00:00Z");
    let list = env.run(&["instance", "list", "--format", "json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!((list[0]["instance_id"].as_str(), list[0]["start"].as_str()), (Some("inst-a"), Some("2026-11-01T00:00:00Z")));
    let table = env.run(&["instance", "list"]);
    assert!(table.stdout.contains("inst-a") && table.stdout.contains("storage"), "{}", table.stdout);
    // Never sealed: said so, not shown as 1970.
    assert!(list[0]["sealed_until"].is_null(), "{list}");
    assert!(table.stdout.lines().nth(1).is_some_and(|l| l.ends_with(" not yet sealed")), "{}", table.stdout);
    assert!(!table.stdout.contains("1970") && !list.to_string().contains("1970"), "{}\n{list}", table.stdout);
    env.run(&["seal", "--now", "2026-11-01T02:00:00Z"]).success();
    let list = env.run(&["instance", "list", "--format", "json"]).json();
    assert_eq!(list[0]["sealed_until"], "2026-11-01T01:00:00Z", "{list}");

    env.release_instance("inst-b", "2026-11-03T00:00:00Z");
    let list = env.run(&["instance", "list", "--format", "json"]).json();
    assert_eq!(list[1]["release"], "2026-11-03T00:00:00Z");

    for (args, says) in [
        (vec!["instance", "add", "inst-c", "--plan", "nope", "--start", "2026-11-01T00:00:00Z"], "\"nope\""),
        (vec!["instance", "add", "inst-c", "--plan", "calls", "--start", "2026-11-01"], "--start"),
        (vec!["instance", "add", "inst/c", "--plan", "calls", "--start", "2026-11-01T00:00:00Z"], "`instance_id`"),
        (vec!["instance", "add", "inst-a", "--plan", "storage", "--start", "2026-11-01T00:00:00Z"], "already registered"),
        (vec!["instance", "release", "inst-a", "--at", "2026-10-31T00:00:00Z"], "not after the instance's start"),
        (vec!["instance", "release", "inst-a", "--at", "soon"], "--at"),
        (vec!["instance", "release", "inst-zz", "--at", "2026-11-05T00:00:00Z"], "not registered"),
        (vec!["instance", "release", "inst-b", "--at", "2026-11-04T00:00:00Z"], "already released"),
    ] {
        let run = env.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
    // A plan change is `instance move`: the refusal says so (new-user trial).
    let run = env.run(&["instance", "add", "inst-a", "--plan", "storage", "--start", "2026-11-01T00:00:00Z"]);
    assert!(run.stderr.contains("meterd instance move inst-a --plan storage --at TIME"), "{}", run.stderr);
    // Adding a released instance again changes nothing, and says it stays released.
    let again = env.run(&["instance", "add", "inst-b", "--plan", "storage", "--start", "2026-11-02T00:00:00Z"]);
    let out = &again.success().stdout;
    assert!(out.contains("already registered") && out.contains(", released at ") && out.ends_with("; nothing changed\n"), "{out}");
    let run = env.run(&["instance", "add", "inst-c", "--plan", "nope", "--start", "2026-11-01T00:00:00Z"]);
    assert!(run.stderr.contains("calls") && run.stderr.contains("storage"), "lists the known plans: {}", run.stderr);
    assert_eq!(env.run(&["instance", "list", "--format", "json"]).json().as_array().unwrap().len(), 2);

    // A release before stored usage is the store's truth: recorded, with a warning that counts
    // the events stored past it (they stay stored).
    env.ingest_file("e.json", Ev::new("e1", "inst-a", "1", "2026-11-23T08:00:00Z").json().as_bytes()).success();
    let run = env.run(&["instance", "release", "inst-a", "--at", "2026-11-23T08:00:00Z"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("1 event(s) of inst-a at or after 2026-11-23T08:00:00Z"), "{}", run.stderr);
}

#[test]
fn ingest_exit_codes() {
    let env = Env::new();
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    let good = Ev::new("g1", "inst-a", "1", "2026-11-23T08:00:00Z").json();
    let bad = Ev::new("b1", "inst-a", "-1", "2026-11-23T08:00:00Z").json();
    env.ingest_file("good.ndjson", good.as_bytes()).code(0);
    env.ingest_file("dup.ndjson", good.as_bytes()).code(0);
    env.ingest_file("mixed.ndjson", &ndjson(&[bad.clone(), good.clone()])).code(1);
    env.ingest_file("bad.ndjson", bad.as_bytes()).code(1);

    let run = env.ingest_file("garbage.txt", b"this is not json\n");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("not JSON"), "{}", run.stderr);
    assert_eq!(db::count_events(&env.db()), 1, "only g1");

    let run = env.run(&["ingest", "--now", NOW, "no-such-file.ndjson"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no-such-file.ndjson"), "{}", run.stderr);
    let run = env.run(&["ingest", "--now", "noon", "good.ndjson"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--now"), "{}", run.stderr);

    // Bad configuration: exit 2 with a message naming the key or the plan.
    let typo = Env::with_config(&example_config_with(&[("max_future = \"5m\"", "max_futur = \"5m\"")]));
    let run = typo.ingest_file("good.ndjson", good.as_bytes());
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("max_futur"), "{}", run.stderr);
    let bad_plan = Env::with_config(&example_config_with(&[("price = \"0.0125\"", "price = \"-1\"")]));
    let run = bad_plan.ingest_file("good.ndjson", good.as_bytes());
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("storage"), "names the plan: {}", run.stderr);
    assert!(!typo.store_created() && !bad_plan.store_created(), "nothing was created with a bad config");
}

#[test]
fn ingest_without_now_judges_times_by_the_wall_clock() {
    let env = Env::new();
    let now = chrono::Utc::now();
    let start = (now - chrono::Duration::days(2)).to_rfc3339();
    env.add_instance("inst-a", "calls", &start);
    let at = |d: chrono::Duration| (now + d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let events = [
        Ev::new("recent", "inst-a", "1", &at(chrono::Duration::minutes(-1))).json(),
        Ev::new("ahead", "inst-a", "1", &at(chrono::Duration::hours(1))).json(),
    ];
    let path = env.dir.path().join("wall.ndjson");
    std::fs::write(&path, ndjson(&events)).unwrap();
    let run = env.run(&["ingest", path.to_str().unwrap()]);
    run.code(1);
    let r = run.json();
    assert_eq!(r["accepted"], 1);
    assert_eq!(r["rejected"][0]["id"], "ahead");
    assert!(r["rejected"][0]["error"].as_str().unwrap().contains("ahead of now"));
}
