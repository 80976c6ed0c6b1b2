//! The PostgreSQL rows of the pipeline bench (issue 13, "Performance"): the same phases as the
//! SQLite rows, run on a private durable PostgreSQL cluster the bench starts itself.
//!
//! The cluster comes from the tests' harness (`tests/util/pg.rs`, included by `#[path]`):
//! `initdb` into `$TMPDIR/meterd-pgtest/…`, the OS package's server binaries, fsync and
//! `synchronous_commit` at their defaults (on), stopped and removed when the rows are done.
//! `METERD_BENCH_PG_SETTINGS="name=value …"` adds server settings (e.g. `shared_buffers=1GB`;
//! the durability settings are refused); the run prints the settings its cluster used
//! (default: none beyond PostgreSQL's own, which is what the README's figures use).
//! Every phase gets a fresh database in it. Without server binaries (or without a `postgres`
//! user to run them as root) the rows print `PostgreSQL rows skipped: <why>` and the SQLite
//! rows are unaffected; a PostgreSQL phase that fails is reported as such, after the SQLite rows.
//!
//! The rows (issue 13's list):
//! - **ingest**: `pg_ingest_events` events (UUID-shaped ids in random order, the bench's
//!   generator) over `pg_ingest_instances` instances, `ingest_callers` callers × batches of
//!   1000, through [`Collector`](meterd::collector::Collector) on the `postgres://` URL — what
//!   the daemon does;
//! - **plain insert**: the same rows by `INSERT … ON CONFLICT DO NOTHING` into a table keyed by
//!   (instance, id), one statement and one transaction per batch of 1000 (the rows as arrays,
//!   `INSERT … SELECT FROM unnest(…)`: one round trip per batch, as a careful hand-written
//!   loader does; rows generated on another thread, as the SQLite baseline); and the ratio of
//!   the two. Until session 25 this was one statement per row (a round trip each), about 20 ×
//!   slower, which made the ratio look met when it was not (`docs/performance-history.md`);
//! - **seal** and **preview**: the SQLite phase's shape (history, then a day of `seal_events`);
//! - **upload**: `upload_records` sealed records to the in-process mock store over loopback.
//!
//! CPU seconds are recorded beside the wall-clock figures (the machine is shared): the
//! writer thread's, and the PostgreSQL server's (postmaster and every child process: backends,
//! WAL writer, checkpointer) over the phase.

use super::pg_cluster::PgCluster;
use super::{collector, event, fmt_n, ingest_all, register, seal_and_preview, thread_cpu_s, upload, Sizes, BATCH, DAY, T_END};
use meterd::collector::EventInput;
use meterd::model::Timestamp;
use std::path::PathBuf;
use std::time::Instant;

/// What the PostgreSQL rows measured.
pub struct PgFigures {
    pub ingest_eps: f64,
    /// CPU seconds of the collector's writer thread over the ingest.
    pub ingest_writer_cpu_s: f64,
    /// CPU seconds of the PostgreSQL server over the ingest.
    pub ingest_server_cpu_s: f64,
    pub plain_eps: f64,
    /// CPU seconds of the inserting thread, and of the server, over the plain insert.
    pub plain_client_cpu_s: f64,
    pub plain_server_cpu_s: f64,
    pub seal: Option<super::SealFigures>,
    pub upload: Option<(f64, u64, super::StoreCost)>,
}

/// The running cluster's postmaster, for [`server_cpu_now`] (0: none).
static SERVER_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// CPU seconds used so far by the bench's PostgreSQL server; 0 when none runs (the SQLite
/// rows), so a difference of two readings is the server's share of what ran between them.
pub fn server_cpu_now() -> f64 {
    match SERVER_PID.load(std::sync::atomic::Ordering::Relaxed) {
        0 => 0.0,
        pid => server_cpu_s(pid),
    }
}

/// The outcome of the PostgreSQL part of a run.
pub enum PgRun {
    /// No usable server binaries: why.
    Skipped(String),
    /// A phase panicked: its message (the SQLite rows still print).
    Failed(String),
    Ran(PgFigures),
}

/// Which phases to run, from `METERD_BENCH_ONLY` (`pg`: all of them; `pg-ingest`, `pg-plain`,
/// `pg-seal`, `pg-upload`: one, for profiling).
pub struct Phases {
    pub ingest: bool,
    pub plain: bool,
    pub seal: bool,
    pub upload: bool,
}

impl Phases {
    pub fn from_only(only: Option<&str>) -> Phases {
        let one = |p: &str| only.is_none_or(|o| o == "pg" || o == p);
        Phases { ingest: one("pg-ingest"), plain: one("pg-plain"), seal: one("pg-seal"), upload: one("pg-upload") }
    }
}

/// Runs the PostgreSQL rows (see the module docs).
pub fn run(s: &Sizes, phases: &Phases) -> PgRun {
    if let Err(why) = super::pg_cluster::find_bin_dir() {
        return PgRun::Skipped(why);
    }
    let settings = server_settings();
    eprintln!("[pg] cluster settings beyond the defaults: {}", if settings.is_empty() { "none".to_string() } else { settings.join(" ") });
    let Some(cluster) = PgCluster::start_with(&settings) else {
        return PgRun::Skipped("the server binaries cannot be run here (see the line above)".into());
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_phases(&cluster, s, phases)));
    drop(cluster);
    match result {
        Ok(f) => PgRun::Ran(f),
        Err(panic) => PgRun::Failed(
            panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default(),
        ),
    }
}

/// The server settings of the bench's cluster beyond PostgreSQL's defaults:
/// `METERD_BENCH_PG_SETTINGS` (`name=value` separated by spaces; empty: none).
fn server_settings() -> Vec<String> {
    std::env::var("METERD_BENCH_PG_SETTINGS").unwrap_or_default().split_whitespace().map(str::to_string).collect()
}

fn run_phases(cluster: &PgCluster, s: &Sizes, phases: &Phases) -> PgFigures {
    let pid = cluster.server_pid().unwrap_or(0);
    SERVER_PID.store(pid, std::sync::atomic::Ordering::Relaxed);
    let phase = |name: &str| eprintln!("[pg] {name}");
    let mut f = PgFigures {
        ingest_eps: 0.0,
        ingest_writer_cpu_s: 0.0,
        ingest_server_cpu_s: 0.0,
        plain_eps: 0.0,
        plain_client_cpu_s: 0.0,
        plain_server_cpu_s: 0.0,
        seal: None,
        upload: None,
    };
    if phases.ingest {
        phase(&format!("library ingest of {} events", s.pg_ingest_events));
        let db = PathBuf::from(cluster.fresh_db());
        let t0 = T_END - DAY;
        register(&db, s.pg_ingest_instances, t0 - DAY);
        let now = Timestamp::from_secs(T_END + 60);
        let c = collector(&db);
        let (n, inst) = (s.pg_ingest_events, s.pg_ingest_instances);
        let pgss = statements_begin(&db);
        let cpu0 = server_cpu_s(pid);
        let started = Instant::now();
        ingest_all(&c, n, s.ingest_callers, now, &|i| event(i, n, inst, t0, DAY));
        f.ingest_eps = n as f64 / started.elapsed().as_secs_f64();
        f.ingest_server_cpu_s = server_cpu_s(pid) - cpu0;
        f.ingest_writer_cpu_s = thread_cpu_s("meterd-writer");
        eprintln!(
            "[pg] {} ev/s; writer {:.1} s CPU, server {:.1} s CPU",
            fmt_n(f.ingest_eps),
            f.ingest_writer_cpu_s,
            f.ingest_server_cpu_s
        );
        if let Some(admin) = pgss {
            statements_print(admin, n);
        }
        resend(&c, n.min(100_000), s.ingest_callers, now, &|i| event(i, n, inst, t0, DAY), pid);
        drop(c);
    }
    if phases.plain {
        phase("plain INSERT … ON CONFLICT DO NOTHING");
        let url = cluster.fresh_db();
        let cpu0 = server_cpu_s(pid);
        let (eps, client_cpu) = plain_insert(&url, s);
        f.plain_server_cpu_s = server_cpu_s(pid) - cpu0;
        f.plain_eps = eps;
        f.plain_client_cpu_s = client_cpu;
        eprintln!("[pg] {} rows/s; client {:.1} s CPU, server {:.1} s CPU", fmt_n(eps), client_cpu, f.plain_server_cpu_s);
    }
    if phases.seal {
        phase("seal and preview");
        let sp = seal_and_preview(&PathBuf::from(cluster.fresh_db()), s);
        eprintln!("[pg] seal {:.3} s ({} records); {}", sp.seal_s, sp.records, cost_line(&sp.seal_cost, sp.records as u64));
        f.seal = Some(sp);
    }
    if phases.upload {
        phase("upload");
        let (up, n, cost) = upload(&PathBuf::from(cluster.fresh_db()), s);
        eprintln!("[pg] upload {} rec/s ({n} records); {}", fmt_n(up), cost_line(&cost, n));
        f.upload = Some((up, n, cost));
    }
    f
}

/// Resends the first `m` events of the ingest, all duplicates now, in batches of 1000 (a
/// client retrying whole batches: the writer's slow path, `store::pg_events`), and prints what
/// it cost (not a row of the table).
fn resend(c: &meterd::collector::Collector, m: u64, callers: usize, now: Timestamp, make: &(dyn Fn(u64) -> EventInput + Sync), pid: u32) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let (cpu0, writer0, started) = (server_cpu_s(pid), thread_cpu_s("meterd-writer"), Instant::now());
    let next = AtomicU64::new(0);
    std::thread::scope(|sc| {
        for _ in 0..callers {
            sc.spawn(|| loop {
                let from = next.fetch_add(1, Ordering::Relaxed) * BATCH;
                if from >= m {
                    break;
                }
                let evs: Vec<EventInput> = (from..(from + BATCH).min(m)).map(make).collect();
                let len = evs.len() as u64;
                let r = c.ingest_events(evs, now).expect("resend");
                assert_eq!(r.duplicates, len, "every resent event is a duplicate: {:?}", r.rejected.first());
            });
        }
    });
    eprintln!(
        "[pg] resend of {m} duplicates: {} ev/s; writer {:.2} s CPU, server {:.2} s CPU",
        fmt_n(m as f64 / started.elapsed().as_secs_f64()),
        thread_cpu_s("meterd-writer") - writer0,
        server_cpu_s(pid) - cpu0
    );
}

/// A phase's CPU and round trips, per record.
fn cost_line(c: &super::StoreCost, records: u64) -> String {
    let per = |x: f64| x * 1e6 / records.max(1) as f64;
    let trips = c.round_trips.map_or("-".to_string(), |t| format!("{:.3}", t as f64 / records.max(1) as f64));
    format!(
        "CPU/record: client {:.1} µs, server {:.1} µs; round trips/record {trips} ({} in all)",
        per(c.client_cpu_s),
        per(c.server_cpu_s),
        c.round_trips.map_or("-".to_string(), |t| t.to_string())
    )
}

/// The plain `INSERT … ON CONFLICT DO NOTHING` of the ingest's rows: (rows/s, CPU seconds of
/// the inserting thread).
fn plain_insert(url: &str, s: &Sizes) -> (f64, f64) {
    let mut c = postgres::Client::connect(url, postgres::NoTls).expect("connect for the plain insert");
    c.batch_execute(
        "SET synchronous_commit = on;
         CREATE TABLE plain (instance_id text NOT NULL, event_id text NOT NULL, time_ns bigint NOT NULL, qty numeric NOT NULL,
                             PRIMARY KEY (instance_id, event_id))",
    )
    .expect("create the plain table");
    let stmt = c
        .prepare("INSERT INTO plain SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::numeric[]) ON CONFLICT DO NOTHING")
        .expect("prepare the plain insert");
    let (n, inst, t0) = (s.pg_ingest_events, s.pg_ingest_instances, T_END - DAY);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<EventInput>>(8);
    let started = Instant::now();
    let cpu0 = super::own_cpu_s();
    let producer = std::thread::spawn(move || {
        let mut from = 0;
        while from < n {
            let to = (from + BATCH).min(n);
            if tx.send((from..to).map(|i| event(i, n, inst, t0, DAY)).collect()).is_err() {
                break;
            }
            from = to;
        }
    });
    let mut stored = 0;
    for batch in rx {
        let instances: Vec<&str> = batch.iter().map(|e| e.instance_id.as_str()).collect();
        let ids: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();
        let times: Vec<i64> = batch.iter().map(|e| e.time.0).collect();
        let qtys: Vec<rust_decimal::Decimal> = batch.iter().map(|e| e.quantity.0).collect();
        let mut t = c.transaction().expect("BEGIN");
        stored += t.execute(&stmt, &[&instances, &ids, &times, &qtys]).expect("INSERT");
        t.commit().expect("COMMIT");
    }
    let cpu = super::own_cpu_s() - cpu0;
    producer.join().expect("the row producer");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(stored, n, "every generated row is new");
    (n as f64 / secs, cpu)
}

/// CPU seconds (user + system) used so far by the PostgreSQL server: the postmaster `pid`, its
/// live children, and the children it has reaped (the postmaster's `cutime` + `cstime`). An
/// exited backend's time moves from its own entry to its parent's reaped total, so a backend
/// that ends inside a phase (e.g. the ingest's connections, closing as the seal starts) is
/// counted once, not taken away from the phase — which made the seal row's figure negative.
fn server_cpu_s(pid: u32) -> f64 {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let Ok(procs) = std::fs::read_dir("/proc") else { return 0.0 };
    let mut total = 0.0;
    for p in procs.flatten() {
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else { continue };
        let rest = stat.rsplit_once(')').map_or("", |r| r.1);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let me = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok());
        let ppid = f.get(1).and_then(|v| v.parse::<u32>().ok());
        if me == Some(pid) || ppid == Some(pid) {
            let field = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            // utime, stime; for the postmaster also cutime, cstime (its reaped children).
            let reaped = if me == Some(pid) { field(13) + field(14) } else { 0.0 };
            total += (field(11) + field(12) + reaped) / ticks;
        }
    }
    total
}

/// Prints the PostgreSQL rows into the table (after the SQLite rows), or the skip line.
pub fn print_rows(run: &PgRun, s: &Sizes) {
    let f = match run {
        PgRun::Skipped(why) => {
            println!("\nPostgreSQL rows skipped: {why}");
            return;
        }
        PgRun::Failed(why) => {
            println!("\nPostgreSQL rows failed: {why}");
            return;
        }
        PgRun::Ran(f) => f,
    };
    let row = |n: &str, fig: &str, size: String, res: String, tgt: &str| println!("| {n} | {fig} | {size} | {res} | {tgt} |");
    let n = s.pg_ingest_events as f64;
    if f.ingest_eps > 0.0 {
        row(
            "P1",
            "PostgreSQL: library ingest, durable, exact dedupe",
            format!("{} ev, {} inst, {} callers × {BATCH}", fmt_n(n), s.pg_ingest_instances, s.ingest_callers),
            format!(
                "{} ev/s; CPU/event: writer {:.2} µs, server {:.2} µs",
                fmt_n(f.ingest_eps),
                f.ingest_writer_cpu_s * 1e6 / n,
                f.ingest_server_cpu_s * 1e6 / n
            ),
            "≥ 100,000 ev/s",
        );
    }
    if f.plain_eps > 0.0 {
        row(
            "P2",
            "PostgreSQL: plain INSERT … ON CONFLICT DO NOTHING, key (instance, id)",
            format!("same rows, {BATCH}/commit"),
            format!(
                "{} rows/s; CPU/row: client {:.2} µs, server {:.2} µs",
                fmt_n(f.plain_eps),
                f.plain_client_cpu_s * 1e6 / n,
                f.plain_server_cpu_s * 1e6 / n
            ),
            "—",
        );
    }
    if f.ingest_eps > 0.0 && f.plain_eps > 0.0 {
        row("P1÷P2", "ratio", String::new(), format!("{:.2}", f.ingest_eps / f.plain_eps), "≥ 1.5");
    }
    if let Some(sp) = &f.seal {
        row(
            "P5",
            "PostgreSQL: seal",
            format!("{} ev, {} inst × 24 h → {} records", fmt_n(s.seal_events as f64), s.seal_instances, sp.records),
            format!("{:.3} s; {}", sp.seal_s, cost_line(&sp.seal_cost, sp.records as u64)),
            "≤ 3 s",
        );
        row(
            "P6",
            "PostgreSQL: preview over 31 days: one instance / all",
            format!("{} days of data, {} inst, {} rows", s.history_days + 1, s.seal_instances, sp.preview_rows),
            format!("{:.1} ms / {:.0} ms", sp.preview_one_ms, sp.preview_all_ms),
            "—",
        );
    }
    if let Some((up, up_n, cost)) = &f.upload {
        let (up, up_n) = (*up, *up_n);
        row(
            "P7",
            "PostgreSQL: upload to loopback mock store",
            format!("{} records", fmt_n(up_n as f64)),
            format!("{} rec/s; {}", fmt_n(up), cost_line(cost, up_n)),
            "≥ 30,000 rec/s",
        );
    }
}

/// With `METERD_BENCH_PGSS=1` (the cluster then preloads `pg_stat_statements`): a connection
/// to the ingest's database with the statement counters reset, for [`statements_print`].
pub(super) fn statements_begin(db: &std::path::Path) -> Option<postgres::Client> {
    if std::env::var_os("METERD_BENCH_PGSS").is_none_or(|v| v == "0") {
        return None;
    }
    let mut c = postgres::Client::connect(&db.to_string_lossy(), postgres::NoTls).expect("connect for pg_stat_statements");
    c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()")
        .expect("reset pg_stat_statements");
    Some(c)
}

/// Prints the statements of the ingest by total execution time: calls, calls per 1000 events,
/// total and mean milliseconds, rows (the profile behind the P1 row).
pub(super) fn statements_print(mut c: postgres::Client, events: u64) {
    let rows = c
        .query(
            "SELECT calls, total_exec_time, mean_exec_time, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
             FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC LIMIT 25",
            &[],
        )
        .expect("read pg_stat_statements");
    eprintln!("[pg] statements by total time (calls/1000 ev, total ms, mean ms, rows):");
    for r in rows {
        let calls: i64 = r.get(0);
        eprintln!(
            "[pg] {:>8} {:>7.2} {:>10.1} {:>8.3} {:>9}  {}",
            calls,
            calls as f64 * 1000.0 / events as f64,
            r.get::<_, f64>(1),
            r.get::<_, f64>(2),
            r.get::<_, i64>(3),
            r.get::<_, String>(4)
        );
    }
}
