//! The instance side of the store — `store::instances`, `packages`, `lifecycle`,
//! `lifecycle_flags`, `meta`, `settings`, `windows` and `events` — on a real PostgreSQL server
//! from the test harness and on a SQLite file, through the same script: every function runs,
//! and both backends give the same transcript (rows, exact decimals as stored, errors, flags).
//! Catches SQL that only one engine accepts (SQLite's two-argument `max()`, `INSERT OR
//! REPLACE`, a bare column beside `excluded` in an upsert, a parameter PostgreSQL cannot type)
//! and a decimal that reads back differently.
//!
//! Where the backends differ on purpose the script says so: SQLite folds the events' tail into
//! `windows` ([`windows::fold`]) where the PostgreSQL ingest writes `windows` in the event's own
//! transaction (here: the script writes them); SQLite's writer keeps the event count in
//! `ingest_state`, PostgreSQL counts rows; PostgreSQL's `instances_gen` trigger runs per
//! statement, so the transcript says only that the generation moved.

#[path = "util/pg.rs"]
mod pg;
#[path = "util/pg_both.rs"]
mod pg_both;

use meterd::model::{Reset, Timestamp};
use meterd::store::lifecycle::Status;
use meterd::store::packages::{NewPackage, Segment};
use meterd::store::sql::{params, Tx};
use meterd::store::{events, instances, lifecycle, lifecycle_flags, meta, packages, settings, windows, StoreError};
use rust_decimal::Decimal;

type Result<T> = std::result::Result<T, StoreError>;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn secs(s: i64) -> Timestamp {
    Timestamp::from_secs(s)
}

/// Runs the script on `tx`; returns its transcript.
fn script(tx: &Tx<'_>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut log = |what: &str, v: String| out.push(format!("{what}: {v}"));
    let i1 = instances::add(tx, "i-1", "p", secs(0), Timestamp(1))?;
    let key = i1.key;
    log("added", format!("{i1:?}"));
    log("again", format!("{:?}", instances::add(tx, "i-1", "p", secs(0), Timestamp(1))?));
    log("other plan", instances::add(tx, "i-1", "q", secs(0), Timestamp(1)).unwrap_err().to_string());
    instances::add(tx, "i-2", "p", secs(3600), Timestamp(1))?;
    log("list", format!("{:?}", instances::list(tx)?.iter().map(|r| (r.key, &r.instance_id)).collect::<Vec<_>>()));

    let np = NewPackage { package_id: "pk-1".into(), quota: d("10.50"), from: secs(0), to: secs(86_400 * 40), reset: Reset::Monthly };
    log("package", format!("{:?}", packages::add(tx, "i-1", &np, Timestamp(2))?));
    log("package again", format!("{:?}", packages::add(tx, "i-1", &np, Timestamp(2))?));
    log("package as instance", instances::add(tx, "pk-1", "p", secs(0), Timestamp(1)).unwrap_err().to_string());
    log("package of", format!("{:?}", packages::of_instance(tx, key)?));
    let gen = instances::generation(tx)?;
    packages::set_used(tx, "pk-1", 0, d("1.5"))?;
    packages::set_used(tx, "pk-1", 0, d("2.2500"))?;
    log("generation moved", format!("{}", instances::generation(tx)? > gen));
    log("used", format!("{} {}", packages::used(tx, "pk-1", 0)?, packages::used(tx, "pk-1", 5)?));
    log("usage of instance", format!("{:?}", packages::usage_of_instance(tx, key)?));
    for (begin, usage) in [(10, "1"), (10, "1.25"), (20, "0.50")] {
        packages::put_segment(tx, key, 0, &Segment { begin, package_id: "pk-1".into(), usage: d(usage) })?;
    }
    log("segments", format!("{:?}", packages::segments(tx, key, 0)?));
    log("last segment", format!("{:?} {:?}", packages::last_segment(tx, key, 0)?, packages::last_segment(tx, key, 3600)?));
    packages::add_over_quota(tx, key, d("0.1"))?;
    packages::add_over_quota(tx, key, d("0.20"))?;
    log("over quota", packages::over_quota(tx, key)?.to_string());
    packages::set_carry(tx, "pk-1", d("0.000030"))?;
    let stored = |sql: &str| -> Result<String> { tx.one::<String>(sql, params![]) };
    log("stored package carry", stored("SELECT carry FROM packages WHERE package_id = 'pk-1'")?);
    log("stored used", stored("SELECT used FROM package_usage WHERE package_id = 'pk-1'")?);

    instances::set_sealed(tx, key, 7200, d("0.00005"))?;
    instances::set_sealed(tx, key, 3600, d("0.000010"))?;
    instances::add_unbillable(tx, key, d("0.3"))?;
    log("sealed", format!("{:?}", instances::get(tx, "i-1")?));
    log("stored carry", stored("SELECT carry FROM instances WHERE instance_id = 'i-1'")?);
    log("unknown", format!("{:?}", instances::get(tx, "nope")?));
    log("unfreeze first", lifecycle::set_status(tx, "i-1", Status::Unfreeze, secs(100), Timestamp(3)).unwrap_err().to_string());

    // Events as the ingest stores them, and their windows.
    for (id, t, q) in [("e1", 10_i64, "1.5"), ("e2", 5000, "2"), ("e3", 9000, "0.25")] {
        tx.execute(
            "INSERT INTO events (instance_ref, event_id, time_ns, qty, billed_window, received_s) VALUES (?1, ?2, ?3, ?4, ?5, 0)",
            params![key, id, secs(t).0, q, t / 3600 * 3600],
        )?;
    }
    // The writer keeps the count with every append; the tail is folded at the seal (both
    // backends keep one: `store::windows`).
    tx.execute("UPDATE ingest_state SET events = events + 3 WHERE id = 1", params![])?;
    log("tail before fold", format!("{}", settings::has_usage_from(tx, key, 7200)?));
    windows::fold(tx)?;
    log("windows", format!("{:?}", windows::of_instance(tx, key, 0, 100_000)?));
    log("one window", format!("{:?}", windows::of_instance(tx, key, 3600, 7200)?));
    log("inverted range", format!("{:?}", windows::of_instance(tx, key, 7200, 3600)?));
    let tail = windows::Unfolded::load(tx)?;
    log("with loaded tail", format!("{:?}", windows::of_instance_with(tx, &tail, key, 0, 7200)?));
    let mut sums = windows::TailSums::new(1);
    sums.sync(tx, true)?;
    log("maybe fold", format!("{}", sums.maybe_fold(tx, 3)?));
    log("event", format!("{:?}", events::get(tx, "i-1", "e2")?));
    log("no event", format!("{:?} {:?}", events::get(tx, "i-1", "zz")?, events::get(tx, "nope", "e2")?));
    log("totals", format!("{:?}", events::totals_all(tx)?));
    log("max seq, count", format!("{} {}", events::max_seq(tx)?, events::count(tx)?));

    log("cut", format!("{} {} {}", settings::is_cut(tx, key, 0)?, settings::is_cut(tx, 2, 0)?, settings::is_cut(tx, 2, 60)?));
    log("usage from", format!("{} {}", settings::has_usage_from(tx, key, 7200)?, settings::has_usage_from(tx, key, 7201)?));
    log("resetting", format!("{:?}", settings::resetting_packages(tx, Timestamp(5))?));
    settings::remember_timezone(tx, "+08:00")?;
    settings::remember_period(tx, "p", "hour")?;
    settings::remember_period(tx, "p", "day")?;
    settings::remember_aggregation(tx, "p", "sum")?;
    meta::set(tx, "setting.period-x", "not a plan's")?;
    log("remembered", format!("{:?}", settings::remembered(tx)?));
    meta::set(tx, "k", "v")?;
    let was = meta::get(tx, "k")?;
    meta::clear(tx, "k")?;
    log("meta", format!("{was:?} {:?}", meta::get(tx, "k")?));
    settings::set_plan(tx, 2, "q")?;
    log("moved", format!("{:?}", instances::get(tx, "i-2")?.map(|r| r.plan)));

    for (sn, begin, state) in [("sn-1", 3600_i64, "pending"), ("sn-2", 7200, "zero"), ("sn-3", 10800, "delivered")] {
        tx.execute(
            "INSERT INTO records (metering_sn, instance_ref, window_start, begin_s, end_s, usage_value, window_usage, carry_in, carry_out,
                                  record_time_s, body, state, updated_ns)
             VALUES (?1, ?2, ?3, ?3, ?4, '1.50', '1.50', '0', '0', 0, ?5, ?6, 0)",
            params![sn, key, begin, begin + 3600, vec![1_u8], state],
        )?;
    }
    log("freeze", format!("{:?}", lifecycle::set_status(tx, "i-1", Status::Freeze, secs(3600), Timestamp(4))?));
    log("freeze again", format!("{:?}", lifecycle::set_status(tx, "i-1", Status::Freeze, secs(3600), Timestamp(4))?.events_after));
    log("unfreeze", format!("{:?}", lifecycle::set_status(tx, "i-1", Status::Unfreeze, secs(9000), Timestamp(4))?));
    log("history", format!("{:?}", lifecycle::history(tx, key)?));
    log("release", format!("{:?}", instances::release(tx, "i-1", secs(5000), &|_| meterd::store::lifecycle_release::Billing::Additive)?));
    log(
        "release moved",
        instances::release(tx, "i-1", secs(5001), &|_| meterd::store::lifecycle_release::Billing::Additive).unwrap_err().to_string(),
    );
    log("settled", instances::settle_released(tx, "i-1")?.to_string());
    let inst = instances::get(tx, "i-1")?.unwrap();
    log("released", format!("{inst:?}"));
    log("flagged", format!("{:?}", lifecycle_flags::of_instance(tx, &inst, &lifecycle::history(tx, key)?)?));
    log("package carry", format!("{:?}", packages::get(tx, "pk-1")?.map(|p| p.carry)));
    Ok(out)
}

#[test]
fn the_instance_side_of_the_store_answers_the_same_on_postgresql_and_sqlite() {
    let Some((on_pg, on_sqlite)) = pg_both::on_both(script) else { return };
    for (a, b) in on_sqlite.iter().zip(&on_pg) {
        assert_eq!(a, b, "SQLite's line, then PostgreSQL's");
    }
    assert_eq!(on_pg.len(), on_sqlite.len());
    // The transcript says what it checked: a sample of it.
    for line in ["stored used: 2.25", "stored carry: 0.00001", "over quota: 0.3", "max seq, count: 3 3", "tail before fold: true"] {
        assert!(on_sqlite.iter().any(|l| l == line), "{line} in {on_sqlite:#?}");
    }
}
