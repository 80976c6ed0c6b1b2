//! Several `meterd run` nodes on one shared PostgreSQL store (issue 13, multi-node tests 1–4):
//! real processes (the built binary) with `--db postgres://…`, distinct `--node` names and
//! ports, one mock cloud store over loopback, `[store] lease = "3s"` and schedules that fire
//! every second, so each scenario runs in seconds.
//!
//! 1. three nodes ingest overlapping batches at once (each event posted to two nodes) → every
//!    event stored once, window totals (folded and unfolded) exact, conservation holds;
//! 2. the lease holder is SIGKILLed while uploading a backlog to a slow store → another node
//!    takes the lease within 2 × lease, every record billed once, every body sent is a stored
//!    batch body (resends byte-identical);
//! 3. the lease holder is SIGSTOPped mid-upload past its lease; another takes over, seals and
//!    uploads; after SIGCONT the old holder is fenced and writes nothing;
//! 4. the PostgreSQL server is stopped and restarted during ingest → 503 with `Retry-After`
//!    while it is down, nothing acknowledged that was not committed, nodes reconnect alone;
//!    a holder whose seal failed in the outage and woke as a standby is ready again (its
//!    lease loop's writes clear `database_writable`);
//! 5. a node without an upload key holds the lease only while no keyed node is alive, then
//!    hands it over, and the keyed node seals and uploads.
//! 6. a node seals and uploads the backlog as soon as it takes the lease at start, not at its
//!    next scheduled seal (its first tick came before it held the lease).
//! 7. a node running when a newer meterd migrates the store gives the lease up at its next
//!    renewal and takes it no more.
//!
//! The mock store runs in this process on its own runtime (real loopback HTTP, like `meterd
//! mock-store`) because it keeps every request body, which the byte-identity checks need.
//! Every wait polls a condition with a bound ([`PATIENCE`]); children are killed on drop
//! (`Daemon`), a stopped one is continued first so it can die.

mod util;

use meterd::mockstore::Faults;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};
use util::mock::{mock_config, Mock};
use util::pg::PgCluster;
use util::{assert_billed_once, example_config_with, wait_for, Daemon, Env, Ev, NOW, PATIENCE};

/// The interconnection key of the mock store.
const KEY: &str = "multinode-key-3c9e1a7f5d";
/// `[store] lease` of every node.
const LEASE: Duration = Duration::from_secs(3);
/// [`util::wait_for`] with [`PATIENCE`], showing the logs of `nodes` when it gives up.
fn wait_logged(what: &str, nodes: &[&Daemon], cond: impl FnMut() -> bool) {
    let logs = || nodes.iter().map(|d| d.stderr()).collect::<Vec<String>>().join("\n----\n");
    util::wait_for_showing(what, PATIENCE, || format!("node logs:\n{}", logs()), cond)
}

/// The mock cloud store answering each request after `latency`, keeping every request body.
fn mock(latency: Duration) -> Mock {
    let mut cfg = mock_config(KEY, NOW);
    cfg.faults = Faults { latency, ..Faults::default() };
    Mock::start(cfg)
}

/// The example config on `db` with a 3 s lease, seal and upload every second, the store at
/// `endpoint` with fast backoff and `batch_size` records per request.
fn shared_env(db: &str, endpoint: &str, batch_size: usize) -> Env {
    let (e, f, b) = (format!("endpoint = {endpoint:?}"), format!("fallback = {endpoint:?}"), format!("batch_size = {batch_size}"));
    let lease = format!("lease = \"{}s\"", LEASE.as_secs());
    let text = example_config_with(&[
        ("endpoint = \"https://mkt.myhuaweicloud.com\"", &e),
        ("# fallback = \"https://mkt.myhuaweicloud.cn\"", &f),
        ("batch_size = 1000", &b),
        ("backoff_base = \"200ms\"", "backoff_base = \"5ms\""),
        ("backoff_cap = \"30s\"", "backoff_cap = \"40ms\""),
        ("seal = \"0 */5 * * * *\"", "seal = \"* * * * * *\""),
        ("upload = \"30 */5 * * * *\"", "upload = \"* * * * * *\""),
        ("lease = \"15s\"", &lease),
    ]);
    let mut env = Env::with_config(&text);
    env.db = db.into();
    env
}

/// `meterd run --node NAME` on the shared store, uploading with the mock's key.
fn node(env: &Env, name: &str) -> Daemon {
    env.daemon_with(&["--node", name], &[("METERD_ISV_KEY", KEY)])
}

/// The sealer lease as stored: (holder, epoch), if any node ever took it.
fn lease(db: &mut postgres::Client) -> Option<(String, i64)> {
    db.query_opt("SELECT holder, epoch FROM lease WHERE name = 'sealer'", &[]).expect("read lease").map(|r| (r.get(0), r.get(1)))
}

/// Records as stored: (metering_sn, instance, begin_s, end_s, state, usage_value text).
fn records(db: &mut postgres::Client) -> Vec<(String, String, i64, i64, String, String)> {
    db.query(
        "SELECT r.metering_sn, i.instance_id, r.begin_s, r.end_s, r.state, r.usage_value::text FROM records r
         JOIN instances i ON i.ref = r.instance_ref ORDER BY r.metering_sn",
        &[],
    )
    .expect("read records")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
    .collect()
}

/// Non-zero records (the ones the store is sent).
fn billable(db: &mut postgres::Client) -> usize {
    records(db).iter().filter(|r| r.4 != "zero").count()
}

/// Every stored batch body.
fn batch_bodies(db: &mut postgres::Client) -> Vec<Vec<u8>> {
    db.query("SELECT body FROM batches ORDER BY id", &[]).expect("read batches").iter().map(|r| r.get(0)).collect()
}

/// No (instance, period) has two records in the store.
fn assert_one_record_per_period(db: &mut postgres::Client) {
    let twice: i64 = db
        .query_one("SELECT count(*) FROM (SELECT instance_ref, begin_s, end_s FROM records GROUP BY 1, 2, 3 HAVING count(*) > 1) t", &[])
        .expect("count periods")
        .get(0);
    assert_eq!(twice, 0, "some period has two records");
}

/// Usage per instance id: `windows` plus the unfolded tail (`store::windows`: events after
/// `ingest_state.windows_through` are summed on demand, and folded only every
/// `util::FOLD_EVENTS` events or at a seal).
fn window_totals(db: &mut postgres::Client) -> BTreeMap<String, Decimal> {
    db.query(
        "SELECT i.instance_id, sum(u.usage)::text FROM (
             SELECT instance_ref, usage FROM windows
             UNION ALL
             SELECT instance_ref, coalesce(billed_qty, qty) FROM events
             WHERE billed_window IS NOT NULL AND seq > (SELECT windows_through FROM ingest_state WHERE id = 1)
         ) u JOIN instances i ON i.ref = u.instance_ref GROUP BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1).parse::<Decimal>().unwrap()))
    .collect()
}

/// The conservation audit of the library on the shared store: every instance balances.
fn assert_conserved(url: &str) -> Vec<meterd::audit::Balance> {
    let mut store = meterd::store::Store::open(std::path::Path::new(url)).expect("open the shared store");
    let balances = meterd::audit::balances(&mut store).expect("audit");
    for b in &balances {
        assert!(b.holds(), "conservation violated: {b:?}");
    }
    balances
}

/// `meterd status --format json` on the shared store: no conservation violation.
fn assert_status_clean(env: &Env) -> serde_json::Value {
    let v = env.run(&["status", "--format", "json", "--now", NOW]).success().json();
    assert_eq!(v["conservation_violations"], serde_json::json!([]), "{v}");
    v
}

/// `per_instance` events for each of `instances` in each closed hour of `hours` (before NOW),
/// ingested through `meterd ingest` on the shared store; returns how many.
fn backlog(env: &Env, instances: &[String], hours: &[u32]) -> usize {
    let mut lines = Vec::new();
    for (i, inst) in instances.iter().enumerate() {
        env.add_instance(inst, "calls", "2026-11-01T00:00:00Z");
        for h in hours {
            lines.push(Ev::new(&format!("{inst}-{h}"), inst, &format!("{}.25", i + 1), &format!("2026-11-23T{h:02}:10:00Z")).json());
        }
    }
    env.ingest_file("backlog.ndjson", &util::ndjson(&lines)).success();
    lines.len()
}

// ---------------------------------------------------------------------------------------------
// 1. Overlapping ingest on three nodes.

#[test]
fn three_nodes_ingesting_overlapping_batches_store_every_event_once() {
    let Some(pg) = PgCluster::shared() else { return };
    let url = pg.fresh_db();
    let env = shared_env(&url, "http://127.0.0.1:9", 1000);
    let instances: Vec<String> = (0..4).map(|i| format!("inst-{i}")).collect();
    for inst in &instances {
        env.add_instance(inst, "calls", "2026-11-01T00:00:00Z");
    }
    let nodes: Vec<Daemon> = ["n1", "n2", "n3"].iter().map(|n| node(&env, n)).collect();

    // 60 batches of 20 events in the open hour (12:00–12:04, within max_future); batch b goes
    // to nodes b % 3 and (b + 1) % 3, each from its own thread, all at once.
    const BATCHES: usize = 60;
    let mut expected: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut bodies = Vec::new();
    for b in 0..BATCHES {
        let mut events = Vec::new();
        for k in 0..20 {
            let n = b * 20 + k;
            let inst = &instances[n % instances.len()];
            let qty = format!("{}.{:03}", 1 + n % 7, n % 1000);
            *expected.entry(inst.clone()).or_default() += qty.parse::<Decimal>().unwrap();
            events.push(Ev::new(&format!("ev-{n}"), inst, &qty, &format!("2026-11-23T12:0{}:{:02}Z", n % 4, n % 60)).json());
        }
        bodies.push(util::array(&events));
    }
    let mut per_node: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
    for (b, body) in bodies.iter().enumerate() {
        per_node[b % 3].push(body.clone());
        per_node[(b + 1) % 3].push(body.clone());
    }
    let answers: Vec<(u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = per_node
            .iter()
            .zip(&nodes)
            .map(|(batches, d)| {
                let addr = d.addr.clone();
                s.spawn(move || {
                    let http = util::Http::new(&addr, None);
                    batches
                        .iter()
                        .map(|body| {
                            let v = http.events(body.clone()).ok();
                            assert_eq!(v["rejected"], serde_json::json!([]), "{v}");
                            (v["accepted"].as_u64().unwrap(), v["duplicates"].as_u64().unwrap())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("poster")).collect()
    });
    let accepted: u64 = answers.iter().map(|a| a.0).sum();
    let duplicates: u64 = answers.iter().map(|a| a.1).sum();
    let total = (BATCHES * 20) as u64;
    assert_eq!(accepted, total, "every event accepted exactly once across the nodes");
    assert_eq!(duplicates, total, "its second copy was answered as a duplicate");

    let mut db = util::pg::connect(&url);
    let stored: i64 = db.query_one("SELECT count(*) FROM events", &[]).unwrap().get(0);
    assert_eq!(stored, total as i64, "every event stored once");
    // `windows` plus the unfolded tail (`store::windows`): every node folds its tail every
    // 37 events (`util::FOLD_EVENTS`) while the others append, so a fold that missed another
    // node's events, or counted them twice, shows here.
    assert_eq!(window_totals(&mut db), expected, "window totals equal the events, exactly");
    let balances = assert_conserved(&url);
    let audited: BTreeMap<String, Decimal> = balances.into_iter().map(|b| (b.instance_id, b.event_total)).collect();
    assert_eq!(audited, expected);
    assert_status_clean(&env);

    // A clean stop of every node: exit 0 (a store connection dropped on the runtime would
    // panic), and the lease holder released the lease on its way out.
    let mut nodes = nodes;
    for d in &nodes {
        d.terminate();
    }
    for (i, d) in nodes.iter_mut().enumerate() {
        let code = d.wait_exit(PATIENCE);
        assert_eq!(code, Some(0), "node n{} did not stop cleanly:\n{}", i + 1, d.stderr());
    }
    let held: Option<i64> =
        db.query_opt("SELECT expires_ns FROM lease WHERE name = 'sealer' AND expires_ns > 0", &[]).unwrap().map(|r| r.get(0));
    let now_ns: i64 = db.query_one("SELECT (extract(epoch from clock_timestamp()) * 1e9)::bigint", &[]).unwrap().get(0);
    assert!(held.is_none_or(|e| e <= now_ns), "the lease was released at shutdown");
}

// ---------------------------------------------------------------------------------------------
// 2. SIGKILL of the lease holder mid-upload.

#[test]
fn a_killed_uploader_is_replaced_within_two_leases_and_every_record_is_billed_once() {
    let Some(pg) = PgCluster::shared() else { return };
    let url = pg.fresh_db();
    let mock = mock(Duration::from_millis(400));
    let env = shared_env(&url, &mock.endpoint(), 4);
    let instances: Vec<String> = (0..4).map(|i| format!("kill-{i}")).collect();
    backlog(&env, &instances, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    let mut db = util::pg::connect(&url);

    let mut a = node(&env, "node-a");
    wait_logged("node-a to take the lease", &[&a], || lease(&mut db).is_some_and(|l| l.0 == "node-a"));
    let b = node(&env, "node-b");
    // node-a seals the backlog and is uploading it, 4 records a request, 400 ms each.
    wait_logged("node-a to be mid-upload", &[&a, &b], || mock.received().len() >= 3);
    let epoch_a = lease(&mut db).expect("lease").1;
    a.kill();
    let killed = Instant::now();
    wait_logged("node-b to take the lease", &[&b], || lease(&mut db).is_some_and(|l| l.0 == "node-b"));
    let takeover = killed.elapsed();
    assert!(takeover <= 2 * LEASE, "took over after {takeover:?}, more than 2 × lease");
    assert!(lease(&mut db).expect("lease").1 > epoch_a, "the takeover raised the epoch");

    let total = billable(&mut db);
    assert_eq!(total, 40, "10 hours × 4 instances sealed once");
    wait_logged("every record billed", &[&b], || mock.ledger().len() >= total);
    wait_for("every record delivered in the store", PATIENCE, || records(&mut db).iter().all(|r| r.4 == "delivered"));
    let ledger = mock.ledger();
    assert_billed_once(&ledger);
    assert_eq!(ledger.len(), total);
    let billed: BTreeSet<(String, String)> = ledger.iter().map(|e| (e.record.metering_sn.clone(), e.record.usage_value.clone())).collect();
    let sealed: BTreeSet<(String, String)> = records(&mut db).into_iter().map(|r| (r.0, r.5)).collect();
    assert_eq!(billed, sealed, "the store billed exactly the sealed records, with their sealed values");

    // Byte-identity: every body the store received is one stored batch, whoever sent it.
    let stored = batch_bodies(&mut db);
    let received = mock.received();
    for (n, body) in received.iter().enumerate() {
        assert!(stored.contains(body), "request {n} sent bytes that are no stored batch body");
    }
    let distinct: HashSet<&Vec<u8>> = received.iter().collect();
    assert_eq!(distinct.len(), stored.len(), "every batch was sent, none was rebuilt");
    eprintln!(
        "multinode kill: takeover after {takeover:?}; {} requests for {} batches ({} resent); {} records answered duplicate",
        received.len(),
        stored.len(),
        received.len() - distinct.len(),
        mock.counters().duplicates
    );
    assert_one_record_per_period(&mut db);
    assert_conserved(&url);
    drop(b);
}

// ---------------------------------------------------------------------------------------------
// 3. SIGSTOP past the lease: the old holder is fenced.

/// A stopped daemon continued before it is dropped (a stopped process cannot die of SIGKILL
/// until continued on some systems' tooling; continuing first is harmless).
struct Stopped<'a>(&'a Daemon);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.pid().to_string()]).status();
    }
}

/// What the old holder could change: records and batches, every column that moves.
fn snapshot(db: &mut postgres::Client) -> (Vec<String>, Vec<String>) {
    let recs = db
        .query("SELECT metering_sn, state, coalesce(batch_id, -1), attempts, updated_ns FROM records ORDER BY metering_sn", &[])
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, i64>(2),
                r.get::<_, i64>(3),
                r.get::<_, i64>(4)
            )
        })
        .collect();
    let batches = db
        .query("SELECT id, state, attempts, md5(body) FROM batches ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| format!("{} {} {} {}", r.get::<_, i64>(0), r.get::<_, String>(1), r.get::<_, i64>(2), r.get::<_, String>(3)))
        .collect();
    (recs, batches)
}

#[test]
fn a_holder_paused_past_its_lease_is_fenced_and_writes_nothing_when_it_wakes() {
    let Some(pg) = PgCluster::shared() else { return };
    let url = pg.fresh_db();
    let mock = mock(Duration::from_millis(1500));
    let env = shared_env(&url, &mock.endpoint(), 4);
    let instances: Vec<String> = (0..2).map(|i| format!("stop-{i}")).collect();
    backlog(&env, &instances, &[6, 7, 8, 9]);
    let mut db = util::pg::connect(&url);

    let a = node(&env, "node-a");
    wait_logged("node-a to take the lease", &[&a], || lease(&mut db).is_some_and(|l| l.0 == "node-a"));
    let b = node(&env, "node-b");
    wait_logged("node-a to be mid-upload", &[&a, &b], || !mock.received().is_empty());
    a.signal("-STOP");
    let stopped = Stopped(&a);
    let paused = Instant::now();
    wait_logged("node-b to take the lease", &[&b], || lease(&mut db).is_some_and(|l| l.0 == "node-b"));
    let takeover = paused.elapsed();

    // New usage in a closed hour of a new instance: only the new holder can seal it.
    env.add_instance("stop-late", "calls", "2026-11-01T00:00:00Z");
    let body = util::array(&[Ev::new("late-1", "stop-late", "2.5", "2026-11-23T10:30:00Z").json()]);
    assert_eq!(b.http().events(body).ok()["accepted"], 1);
    wait_logged("node-b to seal the new usage", &[&b], || records(&mut db).iter().any(|r| r.1 == "stop-late"));
    let total = billable(&mut db);
    wait_logged("node-b to deliver everything", &[&b], || {
        mock.ledger().len() >= total && records(&mut db).iter().all(|r| r.4 == "delivered")
    });
    let before = snapshot(&mut db);
    let ledger_before = mock.ledger().len();

    a.signal("-CONT");
    drop(stopped);
    wait_for("node-a to notice it lost the lease", PATIENCE, || a.stderr().contains("lost the sealer lease"));
    // Its interrupted upload finishes with a fenced write, or its next turn is skipped; either
    // way give it two more seal/upload ticks to try. The sleep is the test: in this time the
    // woken node may change nothing (there is no event to await for "nothing happened").
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(snapshot(&mut db), before, "the paused node changed records or batches after waking");
    assert_eq!(mock.ledger().len(), ledger_before, "nothing was billed after the takeover settled");
    let log = a.stderr();
    assert!(log.contains("was taken over by node-b"), "the woken node's interrupted upload must end in the fenced error:\n{log}");
    assert!(!log.contains("records stay queued"), "being fenced is logged as standing by, not as a failed run with records queued:\n{log}");
    assert_eq!(lease(&mut db).expect("lease").0, "node-b", "the woken node did not take the lease back");
    assert_one_record_per_period(&mut db);
    assert_billed_once(&mock.ledger());
    assert_conserved(&url);
    eprintln!("multinode stop: takeover after {takeover:?} of pause; node-a fenced after SIGCONT");
    drop(b);
}

// ---------------------------------------------------------------------------------------------
// 4. PostgreSQL restarted during ingest.

#[test]
fn a_restarted_postgres_gets_503_while_down_and_nodes_reconnect_without_losing_anything() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.fresh_db();
    let env = shared_env(&url, "http://127.0.0.1:9", 1000);
    env.add_instance("pg-0", "calls", "2026-11-01T00:00:00Z");
    let nodes = [node(&env, "node-a"), node(&env, "node-b")];
    let https: Vec<util::Http> = nodes.iter().map(|d| d.http()).collect();

    // One batch of 5 events at a time, alternating nodes; an answer is kept per batch.
    let mut next = 0usize;
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let mut batch = |http: &util::Http| -> (Vec<String>, util::Reply) {
        let ids: Vec<String> = (0..5).map(|k| format!("pg-ev-{}", next + k)).collect();
        next += 5;
        let events: Vec<String> = ids.iter().map(|id| Ev::new(id, "pg-0", "1.5", "2026-11-23T12:01:00Z").json()).collect();
        let reply = http.try_post("/v1/events", util::array(&events)).expect("the node answers");
        (ids, reply)
    };
    for i in 0..10 {
        let (ids, r) = batch(&https[i % 2]);
        assert_eq!(r.ok()["accepted"], 5);
        acked.extend(ids);
    }

    pg.stop();
    let mut refused: Vec<Vec<String>> = Vec::new();
    for (i, http) in https.iter().enumerate() {
        let (ids, r) = batch(http);
        assert_eq!(r.status, 503, "node {i} while PostgreSQL is down: {}", r.text());
        assert_eq!(r.headers.get("retry-after").map(|v| v.to_str().unwrap_or_default()), Some("1"), "{:?}", r.headers);
        refused.push(ids);
        let ready = http.get("/readyz");
        assert_eq!(ready.status, 503, "/readyz while PostgreSQL is down: {}", ready.text());
    }
    pg.restart();
    let mut db = util::pg::connect(&url);
    let early: i64 = db.query_one("SELECT count(*) FROM events", &[]).unwrap().get(0);
    assert_eq!(early, acked.len() as i64, "nothing refused with 503 was stored while the server was down");

    // The refused batches, retried as a client would, and new ones: both nodes reconnect alone.
    for (i, ids) in refused.iter().enumerate() {
        let events: Vec<String> = ids.iter().map(|id| Ev::new(id, "pg-0", "1.5", "2026-11-23T12:01:00Z").json()).collect();
        let mut reply = https[i].post("/v1/events", util::array(&events));
        let started = Instant::now();
        while reply.status == 503 && started.elapsed() < PATIENCE {
            std::thread::sleep(Duration::from_millis(100));
            reply = https[i].post("/v1/events", util::array(&events));
        }
        assert_eq!(reply.ok()["accepted"], 5, "node {i} after the restart");
        acked.extend(ids.iter().cloned());
    }
    for i in 0..4 {
        let (ids, r) = batch(&https[i % 2]);
        assert_eq!(r.ok()["accepted"], 5, "node {} after the restart", i % 2);
        acked.extend(ids);
    }
    for http in &https {
        wait_for("/readyz after the restart", PATIENCE, || http.get("/readyz").status == 200);
    }

    let stored: BTreeSet<String> = db.query("SELECT event_id FROM events", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(stored, acked, "every acknowledged event stored, once, and nothing else");
    // `windows` alone holds only what a fold (the lease holder's seal ticks) reached; the
    // unfolded tail is summed too, as every reader of the store does.
    let usage = window_totals(&mut db);
    assert_eq!(usage, BTreeMap::from([("pg-0".to_owned(), Decimal::from(acked.len()) * Decimal::new(15, 1))]));
    assert_conserved(&url);

    // The holder's seal fails while the server is down (`database_writable` fails); it is
    // paused, the other node takes the lease, and it wakes as a standby, which never seals:
    // its check must clear at its next successful write (the lease loop's heartbeat), not
    // stay failed for ever (new-user trial: /readyz stayed 503 for minutes on a healthy node).
    let holder = lease(&mut db).expect("a node holds the lease").0;
    let (h, other) = if holder == "node-a" { (0, 1) } else { (1, 0) };
    pg.stop();
    wait_logged("the holder's seal to fail on the stopped server", &[&nodes[h]], || {
        https[h].get("/readyz").json()["failing"].as_array().is_some_and(|f| f.iter().any(|c| c == "database_writable"))
    });
    nodes[h].signal("-STOP");
    let paused = Stopped(&nodes[h]);
    pg.restart();
    let mut db = util::pg::connect(&url);
    let other_name = ["node-a", "node-b"][other];
    wait_logged("the other node to take the lease", &[&nodes[other]], || lease(&mut db).is_some_and(|l| l.0 == other_name));
    drop(paused);
    wait_logged("the old holder, now a standby, to be ready again", &[&nodes[h]], || https[h].get("/readyz").status == 200);
    drop(nodes);
}

// ---------------------------------------------------------------------------------------------
// 5. A node without an upload key (new-user trial): as holder it would seal and never upload.

#[test]
fn a_node_without_an_upload_key_gives_the_lease_up_to_a_node_with_one_which_uploads() {
    let Some(pg) = PgCluster::shared() else { return };
    let url = pg.fresh_db();
    let mock = mock(Duration::ZERO);
    let env = shared_env(&url, &mock.endpoint(), 10);
    let instances = vec!["keyless-0".to_owned()];
    backlog(&env, &instances, &[1, 2, 3]);
    let mut db = util::pg::connect(&url);

    // Alone, the keyless node takes the lease (a fleet without any key still seals) …
    let keyless = env.daemon_with(&["--node", "node-keyless"], &[]);
    wait_logged("node-keyless to take the free lease", &[&keyless], || lease(&mut db).is_some_and(|l| l.0 == "node-keyless"));
    assert!(keyless.stderr().contains("only while no node with a key is alive"), "{}", keyless.stderr());

    // … and gives it up once a node with a key is alive, which then seals and uploads.
    let keyed = node(&env, "node-keyed");
    wait_logged("node-keyed to be handed the lease", &[&keyless, &keyed], || lease(&mut db).is_some_and(|l| l.0 == "node-keyed"));
    wait_logged("node-keyed to seal the 3 hours", &[&keyless, &keyed], || billable(&mut db) == 3);
    wait_logged("every record billed", &[&keyless, &keyed], || mock.ledger().len() >= 3);
    assert_billed_once(&mock.ledger());
    assert_eq!(lease(&mut db).expect("lease").0, "node-keyed", "the keyless node never took the lease over");
    drop((keyless, keyed));
}

// ---------------------------------------------------------------------------------------------
// 6. The seal at start, which on a shared store waits for the lease.

/// A daemon seals closed windows at start. On a shared store its first seal tick comes before
/// it holds the sealer lease (the lease loop bids concurrently), so taking the lease must start
/// the seal rather than leave the backlog to the next scheduled one — here a year away.
#[test]
fn a_node_seals_the_backlog_as_soon_as_it_takes_the_lease_not_at_its_next_scheduled_seal() {
    let Some(pg) = PgCluster::shared() else { return };
    let url = pg.fresh_db();
    let mock = mock(Duration::ZERO);
    let env = shared_env(&url, &mock.endpoint(), 10);
    // Seal and upload once a year (1 January, 00:00:00 UTC): only the start can seal.
    let text = std::fs::read_to_string(&env.config).expect("read config");
    let yearly =
        text.replace("seal = \"* * * * * *\"", "seal = \"0 0 0 1 1 *\"").replace("upload = \"* * * * * *\"", "upload = \"0 0 0 1 1 *\"");
    assert!(yearly.contains("seal = \"0 0 0 1 1 *\"") && yearly.contains("upload = \"0 0 0 1 1 *\""), "{yearly}");
    std::fs::write(&env.config, yearly).expect("write config");
    let instances = vec!["start-0".to_owned(), "start-1".to_owned()];
    let sent = backlog(&env, &instances, &[1, 2, 3]);
    let mut db = util::pg::connect(&url);
    let n = node(&env, "node-start");
    wait_logged("node-start to take the lease", &[&n], || lease(&mut db).is_some_and(|l| l.0 == "node-start"));
    wait_logged("node-start to seal the backlog at once", &[&n], || billable(&mut db) == sent);
    wait_logged("every record billed", &[&n], || mock.ledger().len() >= sent);
    assert_billed_once(&mock.ledger());
    drop(n);
}

// ---------------------------------------------------------------------------------------------
// 7. A rolling upgrade: the store migrated by a newer meterd under a running holder.

/// The holder's renewal finds the store's schema newer than its own (here the row a newer
/// meterd's migration writes into `meterd_schema`), releases the lease at once (expiry 0, so
/// an upgraded node takes it without waiting) and says why; over the next lease period it does
/// not take it back. Before, such a holder kept the lease while its seals were refused, and
/// sealing stopped store-wide.
#[test]
fn a_holder_running_when_a_newer_meterd_migrates_the_store_gives_the_lease_up() {
    let Some(pg) = PgCluster::shared() else { return };
    let url = pg.fresh_db();
    let mock = mock(Duration::ZERO);
    let env = shared_env(&url, &mock.endpoint(), 10);
    let mut db = util::pg::connect(&url);
    let expiry =
        |db: &mut postgres::Client| -> i64 { db.query_one("SELECT expires_ns FROM lease WHERE name = 'sealer'", &[]).unwrap().get(0) };
    let a = node(&env, "node-a");
    wait_logged("node-a to take the lease", &[&a], || lease(&mut db).is_some_and(|l| l.0 == "node-a"));
    assert!(expiry(&mut db) > 0);
    let ours: i32 = db.query_one("SELECT max(version) FROM meterd_schema", &[]).unwrap().get(0);
    db.execute("INSERT INTO meterd_schema (version, applied_ns, meterd) VALUES ($1, 0, 'newer')", &[&(ours + 1)]).unwrap();
    wait_logged("node-a to give the lease up", &[&a], || expiry(&mut db) == 0);
    assert!(a.stderr().contains("a newer meterd migrated this store"), "{}", a.stderr());
    std::thread::sleep(LEASE);
    assert_eq!((lease(&mut db).expect("lease").0, expiry(&mut db)), ("node-a".to_owned(), 0), "not taken back: {}", a.stderr());
    drop(a);
}
