//! End-to-end pipeline benchmark (issue 6): prints one table with the eight figures, and the
//! PostgreSQL backend's rows (issue 13, `P…`; see `pipeline/pg_rows.rs`) in the same table.
//!
//! Run it:
//!
//! ```text
//! cargo bench --bench pipeline                      # full sizes (10M-event ingest, ~10+ min)
//! METERD_BENCH_QUICK=1 cargo bench --bench pipeline # small sizes, about a minute
//! cargo bench --bench pipeline -- --quick           # the same
//! METERD_BENCH_EVENTS=2000000 cargo bench --bench pipeline -- --quick  # quick, but ingest 2M
//! METERD_BENCH_ONLY=ingest …                        # only figure 1 and 8 (for profiling)
//! METERD_BENCH_INSTANCES=1000 …                     # ingest over fewer instances
//! METERD_BENCH_ONLY=upload …                        # only figure 7
//! METERD_BENCH_ONLY=seal …                          # only figures 5 and 6
//! METERD_BENCH_ONLY=baseline …                      # only figure 2
//! METERD_BENCH_ONLY=agg …                           # only the per-aggregation rows (issue 14)
//! METERD_BENCH_ONLY=pg …                            # only the PostgreSQL rows
//! METERD_BENCH_ONLY=pg-ingest …                     # one PostgreSQL row (also pg-plain,
//!                                                   #   pg-seal, pg-upload), for profiling
//! METERD_BENCH_PG_EVENTS=200000 …                   # PostgreSQL ingest of 200k events
//! ```
//!
//! After the eight figures, a sub-table gives one row per plan `aggregation` (ingest and seal
//! of 1M events over 1000 instances; `pipeline/agg.rs`) and what sealing a `unique_count`
//! window holds in memory.
//!
//! The PostgreSQL rows run on a private durable cluster the bench starts (`initdb` from the
//! OS package's server binaries, fsync and `synchronous_commit` on); without the binaries they
//! print `PostgreSQL rows skipped: <why>` and the SQLite rows are unaffected.
//!
//! Databases live in a temporary directory on the same filesystem as `$TMPDIR` (set
//! `METERD_BENCH_DIR` to choose): it must be a real disk, since `synchronous=FULL` is what is
//! measured and fsync on tmpfs is free. Every phase starts from a fresh database, uses the
//! public library API exactly as the daemon does, and generates its data deterministically.
//! Events carry UUID-shaped ids derived from a hash of their sequence number, so the dedupe
//! key is in random order — the case where a naive unique index collapses.
//!
//! This is a `harness = false` bench: `cargo test` never builds or runs it.

use meterd::collector::{Collector, EventInput};
use meterd::config::{Config, Secret};
use meterd::mockstore::{MockConfig, MockStore};
use meterd::model::{Quantity, Timestamp};
use meterd::preview::{preview, PreviewQuery};
use meterd::server::AppState;
use meterd::store::{instances, Store};
use rust_decimal::Decimal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[path = "pipeline/agg.rs"]
mod agg;
#[path = "../tests/util/pg.rs"]
mod pg_cluster;
#[path = "pipeline/pg_rows.rs"]
mod pg_rows;

const NS: i64 = 1_000_000_000;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
/// Events per library call and per HTTP NDJSON request (issue 6: "batches of 1000").
const BATCH: u64 = 1000;

/// Sizes of one run. Full sizes are the issue's; quick sizes keep every phase's shape (same
/// instance counts where the figure is about instances) at a fraction of the volume.
struct Sizes {
    quick: bool,
    /// Library ingest: 10M events is ~1 month of a busy seller's traffic (10k instances × 1k
    /// events/day × 31 days), big enough that the dedupe index outgrows the page cache SQLite
    /// keeps (32 MiB) — the regime where random-order indexes collapse.
    ingest_events: u64,
    /// 10k instances: a large KooGallery seller.
    ingest_instances: u64,
    /// Concurrent callers of `ingest_events`: an embedding service calls from several threads;
    /// the writer group-commits whatever is queued.
    ingest_callers: usize,
    /// HTTP NDJSON: 1M events in requests of 1000 is long enough (several seconds) to be stable.
    http_batch_events: u64,
    /// Concurrent NDJSON senders (a handful of app servers).
    http_batch_clients: usize,
    /// HTTP single events from 64 connections: the worst case of many small senders.
    http_single_events: u64,
    /// Seal: 1000 instances × 24 hourly windows = 24k records from `seal_events` events.
    seal_instances: u64,
    seal_events: u64,
    /// Days of sealed hourly history before the sealed day (1 event per instance-hour), so that
    /// the preview over 31 days reads a month of records.
    history_days: i64,
    /// Upload: 100k records = 100 batches of 1000, a day of records for ~4k hourly instances.
    upload_records: u64,
    /// PostgreSQL ingest (issue 13): 1M events over 1000 instances, the size the issue's
    /// figures for PostgreSQL's own insert paths were measured at.
    pg_ingest_events: u64,
    pg_ingest_instances: u64,
}

impl Sizes {
    fn from_env() -> Sizes {
        let quick =
            std::env::var_os("METERD_BENCH_QUICK").is_some_and(|v| v != "0") || std::env::args().any(|a| a == "--quick" || a == "quick");
        let mut s = if quick {
            Sizes {
                quick,
                ingest_events: 200_000,
                ingest_instances: 10_000,
                ingest_callers: 4,
                http_batch_events: 100_000,
                http_batch_clients: 4,
                http_single_events: 10_000,
                seal_instances: 1000,
                seal_events: 100_000,
                history_days: 2,
                upload_records: 10_000,
                pg_ingest_events: 100_000,
                pg_ingest_instances: 1000,
            }
        } else {
            Sizes {
                quick,
                ingest_events: 10_000_000,
                ingest_instances: 10_000,
                ingest_callers: 4,
                http_batch_events: 1_000_000,
                http_batch_clients: 4,
                http_single_events: 100_000,
                seal_instances: 1000,
                seal_events: 1_000_000,
                history_days: 30,
                upload_records: 100_000,
                pg_ingest_events: 1_000_000,
                pg_ingest_instances: 1000,
            }
        };
        if let Some(n) = std::env::var("METERD_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()) {
            s.ingest_events = n;
        }
        if let Some(n) = std::env::var("METERD_BENCH_PG_EVENTS").ok().and_then(|v| v.parse().ok()) {
            s.pg_ingest_events = n;
        }
        // For profiling a small run with the full run's events per instance and window.
        if let Some(n) = std::env::var("METERD_BENCH_INSTANCES").ok().and_then(|v| v.parse().ok()) {
            s.ingest_instances = n;
        }
        s
    }
}

/// Deterministic 64-bit mix (splitmix64): ids look random but every run is the same.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A UUID-shaped (36 characters) id from a number.
fn uuid(n: u64, salt: u64) -> String {
    let (a, b) = (mix(n ^ salt), mix(n.wrapping_add(salt).rotate_left(17)));
    format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xfff, b >> 52, b & 0xffff_ffff_ffff)
}

fn instance_id(k: u64) -> String {
    uuid(k, 0x1234_5678)
}

/// Event number `i`: instance `i % instances`, time spread evenly over `[t0, t0 + span)`.
fn event(i: u64, n: u64, instances: u64, t0: i64, span_s: i64) -> EventInput {
    let off = (i as i128 * span_s as i128 * NS as i128 / n as i128) as i64;
    EventInput {
        id: uuid(i, 0xabcd),
        instance_id: instance_id(i % instances),
        quantity: Quantity(Decimal::new((mix(i) % 10_000) as i64 + 1, 2).normalize()),
        time: Timestamp(t0 * NS + off),
        metric: None,
        properties: None,
        quantity_omitted: false,
    }
}

fn ndjson_line(ev: &EventInput, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        r#"{{"id":"{}","instance_id":"{}","quantity":"{}","time":"{}"}}"#,
        ev.id,
        ev.instance_id,
        ev.quantity,
        ev.time.to_rfc3339()
    );
}

const CONFIG: &str = r#"
timezone = "+00:00"
[collector]
max_age = "20d"
[[plan]]
name = "calls"
factor = "api_calls"
unit = "call"
period = "hour"
pricing = "step"
accumulation = "month"
tiers = [ { up_to = "1000", price = "0.003" }, { price = "0.002" } ]
currency = "CNY"
"#;

fn config() -> Config {
    Config::from_toml_str(CONFIG).expect("bench config parses")
}

/// A fixed, hour-aligned "end of data" instant, so every run sees the same windows.
const T_END: i64 = 1_795_000_000 / HOUR * HOUR;

fn register(db: &Path, instances: u64, start_s: i64) {
    let mut store = Store::open(db).unwrap();
    store
        .write(|tx| {
            for k in 0..instances {
                instances::add(tx, &instance_id(k), "calls", Timestamp::from_secs(start_s), Timestamp::from_secs(start_s))?;
            }
            Ok(())
        })
        .unwrap();
}

fn collector(db: &Path) -> Collector {
    Collector::start(db, Arc::new(config()), Box::new(|_, _| {})).unwrap()
}

/// Ingests events `[0, n)` (built by `make`) through `callers` threads in calls of `BATCH`.
fn ingest_all(c: &Collector, n: u64, callers: usize, now: Timestamp, make: &(dyn Fn(u64) -> EventInput + Sync)) {
    let next = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..callers {
            s.spawn(|| loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                let from = b * BATCH;
                if from >= n {
                    break;
                }
                let evs: Vec<EventInput> = (from..(from + BATCH).min(n)).map(make).collect();
                let len = evs.len() as u64;
                let r = c.ingest_events(evs, now).unwrap();
                assert_eq!(r.accepted, len, "every generated event is new and valid: {:?}", r.rejected.first());
            });
        }
    });
}

fn vm_hwm_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Database bytes after a full checkpoint (main file only; the WAL is truncated).
fn db_bytes(db: &Path) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    drop(conn);
    std::fs::metadata(db).unwrap().len()
}

/// CPU seconds (user + system) used so far by this process's thread named `name`, from
/// `/proc/self/task/*/stat`: unlike wall time, barely moved by other load on the machine.
fn thread_cpu_s(name: &str) -> f64 {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    let mut total = 0.0;
    // `name`, or `name-N` (the ingest writers of a PostgreSQL store's lanes): summed.
    let lane = format!("{name}-");
    for t in tasks.flatten() {
        if std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name || c.trim().starts_with(&lane)) {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            // Fields after the ")" that closes the name: state is 3rd, utime 14th, stime 15th.
            let rest = stat.rsplit_once(')').map_or("", |r| r.1);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let (u, s) = (f.get(11).and_then(|v| v.parse::<f64>().ok()), f.get(12).and_then(|v| v.parse::<f64>().ok()));
            total += (u.unwrap_or(0.0) + s.unwrap_or(0.0)) / ticks;
        }
    }
    total
}

/// CPU seconds used so far by the calling thread.
fn own_cpu_s() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

struct IngestFigures {
    /// CPU seconds of the writer thread (the bottleneck), for comparing runs on a busy machine.
    writer_cpu_s: f64,
    events_per_s: f64,
    rss: u64,
    bytes_per_event: f64,
}

/// Figure 1 and 8: library ingest, durable, exact dedupe.
fn lib_ingest(dir: &Path, s: &Sizes) -> IngestFigures {
    let db = dir.join("ingest.db");
    let t0 = T_END - DAY;
    register(&db, s.ingest_instances, t0 - DAY);
    let now = Timestamp::from_secs(T_END + 60);
    let c = collector(&db);
    let (n, inst) = (s.ingest_events, s.ingest_instances);
    let started = Instant::now();
    ingest_all(&c, n, s.ingest_callers, now, &|i| event(i, n, inst, t0, DAY));
    let secs = started.elapsed().as_secs_f64();
    let writer_cpu_s = thread_cpu_s("meterd-writer");
    drop(c);
    let rss = vm_hwm_bytes();
    let bytes = db_bytes(&db);
    let _ = std::fs::remove_file(&db);
    IngestFigures { writer_cpu_s, events_per_s: n as f64 / secs, rss, bytes_per_event: bytes as f64 / n as f64 }
}

/// Figure 2: plain SQLite append of the same rows (rowid table, no index, WAL, FULL, 1000 per
/// transaction). Rows are generated on another thread, as the library ingest's callers do.
fn baseline(dir: &Path, s: &Sizes) -> (f64, f64) {
    let db = dir.join("baseline.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).unwrap();
    conn.execute_batch(
        "PRAGMA synchronous=FULL;
         CREATE TABLE events (instance_id TEXT NOT NULL, event_id TEXT NOT NULL, time_ns INTEGER NOT NULL, qty TEXT NOT NULL) STRICT;",
    )
    .unwrap();
    let (n, inst, t0) = (s.ingest_events, s.ingest_instances, T_END - DAY);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<EventInput>>(8);
    let started = Instant::now();
    let cpu0 = own_cpu_s();
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
    for batch in rx {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        {
            let mut stmt = conn.prepare_cached("INSERT INTO events VALUES (?1, ?2, ?3, ?4)").unwrap();
            for ev in &batch {
                stmt.execute(rusqlite::params![ev.instance_id, ev.id, ev.time.0, ev.quantity.to_string()]).unwrap();
            }
        }
        conn.execute_batch("COMMIT").unwrap();
    }
    let cpu = own_cpu_s() - cpu0;
    producer.join().unwrap();
    let secs = started.elapsed().as_secs_f64();
    drop(conn);
    let _ = std::fs::remove_file(&db);
    (n as f64 / secs, cpu)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Starts the real HTTP server on loopback over a fresh database; returns its base URL.
async fn start_server(db: &Path, now: Timestamp) -> (String, tokio_util::sync::CancellationToken) {
    let cfg = Arc::new(config());
    let state = Arc::new(AppState {
        collector: collector(db),
        cfg: cfg.clone(),
        admin: Mutex::new(Store::open(db).unwrap()),
        token: None,
        fixed_now: Some(now),
        metrics: Arc::new(meterd::metrics::Metrics::default()),
        live: Arc::new(meterd::health::Live::default()),
        node: "bench".into(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/events", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let wait = stop.clone();
    tokio::spawn(meterd::server::serve(listener, state, async move { wait.cancelled().await }));
    (url, stop)
}

/// Figure 3: NDJSON requests of 1000 events over loopback.
fn http_batches(dir: &Path, s: &Sizes) -> f64 {
    let db = dir.join("http-batch.db");
    let (t0, inst) = (T_END - DAY, 1000);
    register(&db, inst, t0 - DAY);
    let now = Timestamp::from_secs(T_END + 60);
    let n = s.http_batch_events;
    let rt = runtime();
    let secs = rt.block_on(async {
        let (url, stop) = start_server(&db, now).await;
        let client = reqwest::Client::new();
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..s.http_batch_clients {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let from = next.fetch_add(1, Ordering::Relaxed) * BATCH;
                    if from >= n {
                        break;
                    }
                    let mut body = String::with_capacity(160 * BATCH as usize);
                    for i in from..(from + BATCH).min(n) {
                        ndjson_line(&event(i, n, inst, t0, DAY), &mut body);
                    }
                    let r = client.post(&url).body(body).send().await.unwrap();
                    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
                    let _ = r.bytes().await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        stop.cancel();
        secs
    });
    drop(rt);
    n as f64 / secs
}

/// Figure 4: single-event requests from 64 concurrent connections; (events/s, p50 ms, p99 ms).
fn http_single(dir: &Path, s: &Sizes) -> (f64, f64, f64) {
    let db = dir.join("http-single.db");
    let (t0, inst) = (T_END - DAY, 1000);
    register(&db, inst, t0 - DAY);
    let now = Timestamp::from_secs(T_END + 60);
    let n = s.http_single_events;
    let rt = runtime();
    let (secs, hist) = rt.block_on(async {
        let (url, stop) = start_server(&db, now).await;
        let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break h;
                    }
                    let mut body = String::with_capacity(200);
                    ndjson_line(&event(i, n, inst, t0, DAY), &mut body);
                    let sent = Instant::now();
                    let r = client.post(&url).body(body).send().await.unwrap();
                    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
                    let _ = r.bytes().await;
                    h.saturating_record(sent.elapsed().as_micros() as u64);
                }
            }));
        }
        let mut all = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for t in tasks {
            all.add(t.await.unwrap()).unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        stop.cancel();
        (secs, all)
    });
    drop(rt);
    (n as f64 / secs, hist.value_at_quantile(0.5) as f64 / 1000.0, hist.value_at_quantile(0.99) as f64 / 1000.0)
}

struct SealFigures {
    seal_s: f64,
    /// What the timed seal cost besides wall time.
    seal_cost: StoreCost,
    records: usize,
    preview_one_ms: f64,
    preview_all_ms: f64,
    preview_rows: usize,
}

/// CPU and round trips of one timed phase: wall time on a shared machine is noisy, these are
/// not (much).
#[derive(Clone, Copy, Default)]
struct StoreCost {
    /// CPU seconds of this process's side: the sealing thread for a seal; the whole process
    /// (uploader and the in-process mock store) for an upload.
    client_cpu_s: f64,
    /// CPU seconds of the PostgreSQL server (0 on SQLite).
    server_cpu_s: f64,
    /// Requests that waited for PostgreSQL's answer (`PgConn::round_trips`); `None` on SQLite.
    round_trips: Option<u64>,
}

/// The store's round-trip counter (see [`StoreCost::round_trips`]), read inside a read
/// transaction: two readings around a phase differ by the phase's round trips plus 2 (the
/// first reading's `COMMIT`, the second's `BEGIN`).
fn round_trips(store: &mut Store) -> Option<u64> {
    store.read(|tx| Ok(tx.pg().map(|c| c.round_trips()))).unwrap()
}

/// CPU seconds used so far by this whole process.
fn process_cpu_s() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Figures 5 and 6: `history_days` of sealed hourly history (1 event per instance-hour), then
/// one day of `seal_events` events, sealed in one timed `seal`; then previews over 31 days.
/// `db`: a fresh SQLite path or PostgreSQL URL.
fn seal_and_preview(db: &Path, s: &Sizes) -> SealFigures {
    let inst = s.seal_instances;
    let first_day = T_END - (s.history_days + 1) * DAY;
    register(db, inst, first_day);
    let cfg = config();
    let grace = cfg.seal.grace.as_secs_i64();
    let c = collector(db);
    let mut store = Store::open(db).unwrap();
    for d in 0..s.history_days {
        let day = first_day + d * DAY;
        let now = Timestamp::from_secs(day + DAY + grace + 1);
        let per_day = inst * 24;
        ingest_all(&c, per_day, 2, now, &|i| {
            let mut ev = event(i, per_day, inst, day, DAY);
            ev.id = format!("h{d}-{i}");
            ev
        });
        meterd::seal::seal(&mut store, &cfg, now).unwrap();
    }
    let day = T_END - DAY;
    let now = Timestamp::from_secs(T_END + grace + 1);
    let n = s.seal_events;
    ingest_all(&c, n, s.ingest_callers, now, &|i| event(i, n, inst, day, DAY));
    drop(c);
    let (trips0, cpu0, server0) = (round_trips(&mut store), own_cpu_s(), pg_rows::server_cpu_now());
    let started = Instant::now();
    let report = meterd::seal::seal(&mut store, &cfg, now).unwrap();
    let seal_s = started.elapsed().as_secs_f64();
    let seal_cost = StoreCost {
        client_cpu_s: own_cpu_s() - cpu0,
        server_cpu_s: pg_rows::server_cpu_now() - server0,
        round_trips: round_trips(&mut store).zip(trips0).map(|(a, b)| a.saturating_sub(b + 2)),
    };
    let q = |instance: Option<String>| PreviewQuery {
        instance,
        from: Some(Timestamp::from_secs(T_END - 31 * DAY)),
        to: Some(Timestamp::from_secs(T_END)),
        now: Some(now),
    };
    let one = median_ms(7, || {
        preview(&mut store, &cfg, &q(Some(instance_id(inst / 2)))).unwrap();
    });
    let mut rows = 0;
    let all = median_ms(3, || {
        rows = preview(&mut store, &cfg, &q(None)).unwrap().rows.len();
    });
    SealFigures { seal_s, seal_cost, records: report.records, preview_one_ms: one, preview_all_ms: all, preview_rows: rows }
}

fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[reps / 2]
}

/// Figure 7: upload of `upload_records` pending records to the mock store on loopback.
/// `db`: a fresh SQLite path or PostgreSQL URL.
fn upload(db: &Path, s: &Sizes) -> (f64, u64, StoreCost) {
    let inst = 1000;
    let hours = (s.upload_records / inst) as i64;
    let t0 = T_END - hours * HOUR;
    register(db, inst, t0);
    let mut cfg = config();
    let now = Timestamp::from_secs(T_END + cfg.seal.grace.as_secs_i64() + 1);
    let c = collector(db);
    let n = inst * hours as u64;
    ingest_all(&c, n, 2, now, &|i| {
        // one event per instance and hour: instance i % inst, hour i / inst
        let mut ev = event(i, n, inst, t0, hours * HOUR);
        ev.time = Timestamp::from_secs(t0 + (i / inst) as i64 * HOUR + 7);
        ev
    });
    drop(c);
    let mut store = Store::open(db).unwrap();
    let sealed = meterd::seal::seal(&mut store, &cfg, now).unwrap();
    assert_eq!(sealed.records as u64, n);
    // METERD_BENCH_PGSS=1 on PostgreSQL: the upload's statements by time (not the setup's).
    let pgss = if db.to_string_lossy().starts_with("postgres") { pg_rows::statements_begin(db) } else { None };
    // Every connection's round trips: PostgreSQL's upload applies on a second one.
    let is_pg = round_trips(&mut store).is_some();
    let (trips0, cpu0, server0) = (meterd::store::sql::round_trips_all(), process_cpu_s(), pg_rows::server_cpu_now());
    let rt = runtime();
    // Dropped here, off the runtime: a PostgreSQL connection's drop must not run on it.
    let store = Arc::new(Mutex::new(store));
    let shared = store.clone();
    let (secs, delivered) = rt.block_on(async {
        let key = Secret::new(b"bench-key-0123456789abcdef".to_vec());
        let mut mock_cfg = MockConfig::new(key.clone());
        mock_cfg.now = Some(now);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock = MockStore::start(mock_cfg, listener).await.unwrap();
        cfg.upload.endpoint = mock.endpoint();
        cfg.upload.fallback = None;
        let started = Instant::now();
        let report = meterd::upload::run::upload(shared, &cfg.upload, &key, now).await.unwrap();
        let secs = started.elapsed().as_secs_f64();
        mock.shutdown().await;
        (secs, report.delivered)
    });
    let (client_cpu_s, server_cpu_s) = (process_cpu_s() - cpu0, pg_rows::server_cpu_now() - server0);
    if let Some(admin) = pgss {
        pg_rows::statements_print(admin, n);
    }
    let round_trips = is_pg.then(|| meterd::store::sql::round_trips_all().saturating_sub(trips0));
    drop(Arc::try_unwrap(store).unwrap_or_else(|_| panic!("the upload run is over")));
    assert_eq!(delivered, n, "every record is delivered");
    (n as f64 / secs, n, StoreCost { client_cpu_s, server_cpu_s, round_trips })
}

fn bench_dir() -> tempfile::TempDir {
    let base: PathBuf = std::env::var_os("METERD_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new().prefix("meterd-bench-").tempdir_in(base).unwrap()
}

fn fmt_n(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn main() {
    let s = Sizes::from_env();
    let dir = bench_dir();
    let only = std::env::var("METERD_BENCH_ONLY").ok();
    if only.as_deref().is_some_and(|o| o.starts_with("pg")) {
        let run = pg_rows::run(&s, &pg_rows::Phases::from_only(only.as_deref()));
        print_header(&s, dir.path());
        pg_rows::print_rows(&run, &s);
        if matches!(run, pg_rows::PgRun::Failed(_)) {
            drop(dir);
            std::process::exit(1);
        }
        return;
    }
    if std::env::var("METERD_BENCH_ONLY").is_ok_and(|v| v == "seal") {
        let sp = seal_and_preview(&dir.path().join("seal.db"), &s);
        println!(
            "seal: {:.3} s ({} records); preview one {:.1} ms / all {:.0} ms ({} rows)",
            sp.seal_s, sp.records, sp.preview_one_ms, sp.preview_all_ms, sp.preview_rows
        );
        return;
    }
    if std::env::var("METERD_BENCH_ONLY").is_ok_and(|v| v == "upload") {
        let (up, n, _) = upload(&dir.path().join("upload.db"), &s);
        println!("upload: {} records/s ({} records)", fmt_n(up), fmt_n(n as f64));
        return;
    }
    if std::env::var("METERD_BENCH_ONLY").is_ok_and(|v| v == "baseline") {
        let (rate, cpu) = baseline(dir.path(), &s);
        println!("baseline: {} rows/s; inserting thread {:.2} µs CPU/row", fmt_n(rate), cpu * 1e6 / s.ingest_events as f64);
        return;
    }
    let total = Instant::now();
    let phase = |name: &str| eprintln!("[{:>6.1}s] {name}", total.elapsed().as_secs_f64());
    // ---- per-aggregation rows (issue 14), alone ----
    if std::env::var("METERD_BENCH_ONLY").is_ok_and(|v| v == "agg") {
        let figures = agg::run(dir.path(), &s, &phase);
        agg::print(&figures);
        eprintln!("total {:.1}s", total.elapsed().as_secs_f64());
        return;
    }
    phase(&format!("library ingest of {} events", s.ingest_events));
    // First, so VmHWM is the ingest's peak and nothing else's.
    let ing = lib_ingest(dir.path(), &s);
    if std::env::var("METERD_BENCH_ONLY").is_ok_and(|v| v == "ingest") {
        // For profiling the hot path: `METERD_BENCH_ONLY=ingest perf record …`.
        println!(
            "library ingest: {} ev/s, peak RSS {} MiB, {:.0} B/event; writer thread {:.2} µs CPU/event",
            fmt_n(ing.events_per_s),
            ing.rss >> 20,
            ing.bytes_per_event,
            ing.writer_cpu_s * 1e6 / s.ingest_events as f64
        );
        return;
    }
    phase("baseline plain append");
    let (base, _) = baseline(dir.path(), &s);
    phase("HTTP NDJSON batches");
    let hb = http_batches(dir.path(), &s);
    phase("HTTP single events, 64 connections");
    let (hs, p50, p99) = http_single(dir.path(), &s);
    phase("seal and preview");
    let sp = seal_and_preview(&dir.path().join("seal.db"), &s);
    phase("upload");
    let (up, up_n, _) = upload(&dir.path().join("upload.db"), &s);
    // ---- per-aggregation rows (issue 14) ----
    let per_aggregation = agg::run(dir.path(), &s, &phase);
    phase("PostgreSQL rows");
    let pg = pg_rows::run(&s, &pg_rows::Phases::from_only(None));
    phase("done");

    print_header(&s, dir.path());
    let row = |n: &str, f: &str, size: String, res: String, tgt: &str| println!("| {n} | {f} | {size} | {res} | {tgt} |");
    row(
        "1",
        "library ingest, durable, exact dedupe",
        format!("{} ev, {} inst, {} callers × {BATCH}", fmt_n(s.ingest_events as f64), s.ingest_instances, s.ingest_callers),
        format!("{} ev/s", fmt_n(ing.events_per_s)),
        "≥ 250,000 ev/s",
    );
    row("2", "baseline plain SQLite append", format!("same rows, {BATCH}/commit"), format!("{} rows/s", fmt_n(base)), "—");
    row("1÷2", "ratio", String::new(), format!("{:.2}", ing.events_per_s / base), "≥ 0.6");
    row(
        "3",
        "HTTP NDJSON batches of 1000",
        format!("{} ev, {} clients", fmt_n(s.http_batch_events as f64), s.http_batch_clients),
        format!("{} ev/s", fmt_n(hb)),
        "≥ 150,000 ev/s",
    );
    row(
        "4",
        "HTTP single events, 64 connections",
        format!("{} requests", fmt_n(s.http_single_events as f64)),
        format!("{} ev/s, p50 {p50:.1} ms, p99 {p99:.1} ms", fmt_n(hs)),
        "≥ 20,000 ev/s, p99 ≤ 25 ms",
    );
    row(
        "5",
        "seal",
        format!("{} ev, {} inst × 24 h → {} records", fmt_n(s.seal_events as f64), s.seal_instances, sp.records),
        format!("{:.3} s", sp.seal_s),
        "≤ 1 s",
    );
    row(
        "6",
        "preview over 31 days: one instance / all",
        format!("{} days of data, {} inst, {} rows", s.history_days + 1, s.seal_instances, sp.preview_rows),
        format!("{:.1} ms / {:.0} ms", sp.preview_one_ms, sp.preview_all_ms),
        "≤ 10 ms / ≤ 1 s",
    );
    row("7", "upload to loopback mock store", format!("{} records", fmt_n(up_n as f64)), format!("{} rec/s", fmt_n(up)), "≥ 50,000 rec/s");
    row(
        "8",
        "peak RSS of ingest (VmHWM) / DB bytes per event",
        format!("{} ev", fmt_n(s.ingest_events as f64)),
        format!("{:.0} MiB / {:.0} B", ing.rss as f64 / (1024.0 * 1024.0), ing.bytes_per_event),
        "≤ 150 MiB / ≤ 100 B",
    );
    // ---- per-aggregation rows (issue 14) ----
    agg::print(&per_aggregation);
    pg_rows::print_rows(&pg, &s);
    eprintln!("total {:.1}s", total.elapsed().as_secs_f64());
    if matches!(pg, pg_rows::PgRun::Failed(_)) {
        drop(dir);
        std::process::exit(1);
    }
}

fn print_header(s: &Sizes, dir: &Path) {
    let mode = if s.quick { "QUICK (sizes reduced; see Sizes)" } else { "FULL" };
    println!("\nmeterd pipeline benchmark — {mode}; {} cores; dir {}", num_cpus(), dir.display());
    println!("| # | figure | size | result | target |");
    println!("|---|---|---|---|---|");
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
