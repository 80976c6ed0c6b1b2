//! `meterd status --check` and the checks `meterd status` shows.

use super::util::{self, Env, Ev};

#[test]
fn status_check_exits_1_when_something_needs_a_person_and_0_when_not() {
    let env = Env::new();
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    env.run(&["status", "--check", "--now", util::NOW]).code(0);

    // Usage of 08:00–09:00, never sealed: at 12:00 its record is past its deadline (11:00).
    let ev = Ev::new("e1", "inst-a", "3", "2026-11-23T08:10:00Z").json();
    env.ingest_file("e.ndjson", &util::ndjson(&[ev])).success();
    let r = env.run(&["status", "--check", "--now", util::NOW]);
    r.code(1);
    assert!(r.stderr.contains("closed windows with usage are unsealed past their reporting deadline"), "{}", r.stderr);
    let j = env.run(&["status", "--format", "json", "--now", util::NOW]).success().json();
    assert_eq!(j["unsealed_windows"], 1, "{j}");
    assert_eq!(j["unsealed_past_deadline"], 1, "{j}");
    assert_eq!(j["checks"][0]["name"], "deadline");
    assert_eq!(j["checks"][0]["ok"], false);

    // Sealed but not delivered: the record itself is past its deadline.
    env.run(&["seal", "--now", util::NOW]).success();
    let r = env.run(&["status", "--check", "--now", util::NOW]);
    r.code(1);
    assert!(r.stderr.contains("waiting records are past their reporting deadline"), "{}", r.stderr);
    let table = env.run(&["status", "--now", util::NOW]).success().stdout.clone();
    assert!(table.contains("check deadline") && table.contains("FAIL"), "{table}");

    // Without --check the same state exits 0 (only the audit can fail the plain command).
    env.run(&["status", "--now", util::NOW]).code(0);
}

#[test]
fn status_check_names_a_missing_plan() {
    let env = Env::new();
    env.add_instance("inst-s", "seats", "2026-11-01T00:00:00Z");
    let text = std::fs::read_to_string(&env.config).unwrap();
    let cut = text.find("[[plan]]\nname = \"seats\"").expect("the example config has a seats plan");
    let rest = &text[cut + 8..];
    let end = rest.find("[[plan]]").map(|i| cut + 8 + i).unwrap_or(text.len());
    std::fs::write(&env.config, format!("{}{}", &text[..cut], &text[end..])).unwrap();
    // The settings check (every command) refuses a config that lost a plan in use: exit 2,
    // naming the plan and its instances — non-zero, as `--check` promises.
    let r = env.run(&["status", "--check", "--now", util::NOW]);
    r.code(2);
    assert!(r.stderr.contains("inst-s") && r.stderr.contains("\"seats\""), "{}", r.stderr);
}
