//! Clock trouble (issue 7, test 6): a seeded random walk of `--now` that moves backwards by
//! minutes to days and jumps forwards by hours to days; at each step `meterd ingest`, `seal` and
//! `upload` run at that instant. Finally the clock jumps 25 days ahead of everything sealed.
//! After every step: the file is sound and conservation holds; every acknowledged event is
//! counted; no instance has two records for overlapping periods; the seal cursor never moves
//! back; the store billed every record once (by serial and by period), exactly the records
//! delivered locally, with their sealed values. Records that begin more than 21 days before
//! the upload's `--now` are expired locally and never sent.

use crate::common::{assert_billed_once, assert_sound, assert_status_clean, outcome, start_mock, upload, upload_config, Mock};
use crate::util::{db, ndjson, Env, Ev, NOW};
use meterd::mockstore::Faults;
use meterd::model::{parse_rfc3339, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashSet};

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
const INSTANCES: [(&str, &str); 2] = [("inst-h", "calls"), ("inst-d", "storage")];

/// A stored record: (begin, end, state, metering_sn, usage_value).
type LocalRecord = (i64, i64, String, String, String);

/// Per instance: every record.
fn local_records(env: &Env) -> BTreeMap<String, Vec<LocalRecord>> {
    let c = env.db();
    let rows = c.rows(
        "SELECT i.instance_id, r.begin_s, r.end_s, r.state, r.metering_sn, r.usage_value FROM records r
         JOIN instances i ON i.ref = r.instance_ref ORDER BY r.begin_s",
        &[],
        |r| Ok((r.get::<String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))),
    );
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (i, rec) in rows {
        out.entry(i).or_default().push(rec);
    }
    out
}

fn sealed_until(env: &Env) -> BTreeMap<String, i64> {
    env.db().rows("SELECT instance_id, sealed_until FROM instances", &[], |r| Ok((r.get(0)?, r.get(1)?))).into_iter().collect()
}

fn check(env: &Env, mock: &Mock, acked: &BTreeMap<String, i128>, cursor: &mut BTreeMap<String, i64>, when: &str) {
    let balances = assert_sound(env, when);
    for b in &balances {
        let want = acked.get(&b.instance_id).copied().unwrap_or(0);
        assert_eq!(db::nanos(&b.event_total.normalize().to_string()), want, "{when}: acknowledged usage of {} lost", b.instance_id);
    }
    let local = local_records(env);
    for (inst, recs) in &local {
        for w in recs.windows(2) {
            assert!(w[0].1 <= w[1].0, "{when}: {inst} has overlapping records {:?} and {:?}", w[0], w[1]);
        }
    }
    for (inst, until) in sealed_until(env) {
        let before = cursor.insert(inst.clone(), until).unwrap_or(0);
        assert!(until >= before, "{when}: the seal cursor of {inst} moved back from {before} to {until}");
    }
    let ledger = mock.ledger();
    assert_billed_once(&ledger);
    let delivered: HashSet<(String, String)> =
        local.values().flatten().filter(|r| r.2 == "delivered").map(|r| (r.3.clone(), r.4.clone())).collect();
    let billed: HashSet<(String, String)> = ledger.iter().map(|e| (e.record.metering_sn.clone(), e.record.usage_value.clone())).collect();
    assert_eq!(billed, delivered, "{when}: the store billed exactly what is delivered locally");
}

#[test]
fn now_moving_backwards_and_jumping_forwards_seals_and_bills_once() {
    let mut rng = StdRng::seed_from_u64(crate::common::seed("now_moving_backwards_and_jumping_forwards_seals_and_bills_once"));
    let start = parse_rfc3339(NOW).unwrap();
    let floor = start.add_secs(-5 * DAY);
    // The mock judges the 21-day rule at the earliest instant of the walk.
    let mock = start_mock(&floor.to_rfc3339(), Faults::default());
    let env = Env::with_config(&upload_config(&mock.endpoint(), &mock.endpoint(), &[]));
    for (inst, plan) in INSTANCES {
        env.add_instance(inst, plan, "2026-10-01T00:00:00Z");
    }
    let mut acked: BTreeMap<String, i128> = BTreeMap::new();
    let mut cursor = BTreeMap::new();
    let mut t = start;
    let mut latest = start;
    let mut seq = 0;
    let mut moves = Vec::new();
    for step in 0..24 {
        let delta = [-3 * DAY, -DAY, -2 * HOUR, -30 * 60, HOUR, 2 * HOUR, 5 * HOUR, DAY, DAY, 3 * DAY][rng.random_range(0..10)];
        t = Timestamp(t.add_secs(delta).0.max(floor.0));
        latest = Timestamp(latest.0.max(t.0));
        let now = t.to_rfc3339();
        moves.push(format!("{:+}m", delta / 60));

        let mut lines = Vec::new();
        for _ in 0..rng.random_range(1..=5) {
            let (inst, _) = INSTANCES[rng.random_range(0..INSTANCES.len())];
            let q = rng.random_range(1..100_000_000u64);
            let qty = format!("{}.{:04}", q / 10_000, q % 10_000);
            let time = t.add_secs(-rng.random_range(0..3 * DAY)).to_rfc3339();
            lines.push(Ev::new(&format!("e{seq}"), inst, &qty, &time).json());
            *acked.entry(inst.to_string()).or_default() += db::nanos(&qty);
            seq += 1;
        }
        let file = env.dir.path().join(format!("step-{step}.ndjson"));
        std::fs::write(&file, ndjson(&lines)).unwrap();
        env.run(&["ingest", "--now", &now, file.to_str().unwrap()]).success();
        env.run(&["seal", "--now", &now]).success();
        let o = upload(&env, &now, &[]);
        let report = o.json();
        assert!(matches!(o.code, Some(0) | Some(1)), "step {step}: {o:?}");
        assert_eq!(report["rejected"], 0, "step {step}: the store refused nothing: {report}");
        check(&env, &mock, &acked, &mut cursor, &format!("step {step} at {now}"));
    }

    // Records sealed but not sent, then a jump of 25 days: they are expired locally, not sent.
    let last = latest.to_rfc3339();
    let lines = vec![Ev::new("late-1", "inst-h", "3.5", &latest.add_secs(-2 * DAY).to_rfc3339()).json()];
    let file = env.dir.path().join("last.ndjson");
    std::fs::write(&file, ndjson(&lines)).unwrap();
    env.run(&["ingest", "--now", &last, file.to_str().unwrap()]).success();
    *acked.entry("inst-h".into()).or_default() += db::nanos("3.5");
    let later = latest.add_secs(DAY + HOUR).to_rfc3339();
    env.run(&["seal", "--now", &later]).success();
    let pending: Vec<(String, i64)> =
        local_records(&env).values().flatten().filter(|r| r.2 == "pending").map(|r| (r.3.clone(), r.0)).collect();
    assert!(!pending.is_empty(), "something waits for upload before the jump");
    let jump = latest.add_secs(25 * DAY);
    let o = upload(&env, &jump.to_rfc3339(), &[]);
    assert_eq!(o.code, Some(1), "expired records make the run exit 1: {o:?}");
    let report = o.json();
    let cutoff = jump.secs() - 21 * DAY;
    let should_expire: Vec<&(String, i64)> = pending.iter().filter(|(_, begin)| *begin < cutoff).collect();
    assert_eq!(report["expired"], should_expire.len(), "{report}");
    let c = env.db();
    let received = mock.received();
    for (sn, _) in &should_expire {
        let state: String = c.one("SELECT state FROM records WHERE metering_sn = ?1", meterd::sql_params![sn]);
        assert_eq!(state, "rejected", "{sn}");
        let code: String = c.one("SELECT code FROM rejected WHERE metering_sn = ?1", meterd::sql_params![sn]);
        assert_eq!(code, "EXPIRED");
        assert!(!received.iter().any(|b| b.windows(sn.len()).any(|w| w == sn.as_bytes())), "expired {sn} was sent");
    }
    check(&env, &mock, &acked, &mut cursor, "after the 25-day jump");
    let rejected = outcome({
        let mut c = env.cmd();
        c.args(["rejected", "--format", "json"]);
        c
    });
    assert!(rejected.stdout.contains("EXPIRED"), "{rejected:?}");
    assert_status_clean(&env, &jump.to_rfc3339());
    eprintln!(
        "clock: moves {}; {} records sealed, {} billed once, {} expired locally",
        moves.join(" "),
        local_records(&env).values().map(Vec::len).sum::<usize>(),
        mock.ledger().len(),
        should_expire.len()
    );
}
