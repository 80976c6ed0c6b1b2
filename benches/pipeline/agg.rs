//! Per-aggregation rows of the pipeline benchmark (issue 14, "Performance"): for each plan
//! `aggregation` — `sum`, `count`, `max`, `latest`, `unique_count`, `weighted_sum` — the
//! library ingest of `events` events over `instances` instances (the generator of figure 1,
//! one day of hourly windows) and the one `seal` of those windows, printed as a sub-table
//! "per aggregation". `METERD_BENCH_ONLY=agg` runs only these; `METERD_BENCH_QUICK=1` shrinks
//! the event count (the instance count and the windows stay).
//!
//! **`sum` is figure 1's path**: its row registers the instances on the very plan figures 1–8
//! use (`calls`), so it shows the same ingest at this size; the other rows differ only by the
//! plan their instances are registered on. `count` and `unique_count` events leave the
//! quantity out (stored as 0), as an app reporting logins or users would; `unique_count`
//! events carry `properties.user`, drawn from 1000 values per instance, so almost every event
//! of a window (≈ 42 at full size) is a distinct value — the case where the distinct set is
//! largest.
//!
//! **Memory.** A counting global allocator ([`Counting`]) measures Rust heap bytes and
//! allocations, only while switched on (the rest of the bench pays one relaxed load per
//! allocation): each row prints the peak heap growth of its seal. A probe then seals one
//! window holding `probe_events` events of one instance three ways — `sum`; `unique_count`
//! with one value; `unique_count` with every value distinct — and prints what the seal of a
//! `unique_count` window holds per event of the window and per distinct value. At ingest
//! nothing is held per open window for any aggregation (the values live in the database); see
//! `meterd::model::Aggregation`'s docs and the README's aggregation section. SQLite's own page
//! cache (its `malloc`, bounded by `cache_size`) is not in these counts; the rows' peak RSS is.

use super::{db_bytes, event, fmt_n, ingest_all, instance_id, mix, thread_cpu_s, uuid, Sizes, CONFIG, DAY, HOUR, T_END};
use meterd::collector::{Collector, EventInput};
use meterd::config::Config;
use meterd::model::{Properties, Quantity, Timestamp};
use meterd::store::{instances, Store};
use rust_decimal::Decimal;
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// One plan per aggregation besides `sum` (whose row uses figure 1's `calls` plan), all
/// hourly, fixed-priced: the pricing is not what is measured.
const AGG_PLANS: &str = r#"
[[plan]]
name = "agg_count"
factor = "logins"
period = "hour"
pricing = "fixed"
price = "0.01"
aggregation = "count"
[[plan]]
name = "agg_max"
factor = "seats"
period = "hour"
pricing = "fixed"
price = "1"
aggregation = "max"
[[plan]]
name = "agg_latest"
factor = "licences"
period = "hour"
pricing = "fixed"
price = "1"
aggregation = "latest"
[[plan]]
name = "agg_unique_count"
factor = "users"
period = "hour"
pricing = "fixed"
price = "0.1"
aggregation = "unique_count"
unique_by = "user"
[[plan]]
name = "agg_weighted_sum"
factor = "gb_hours"
unit = "GB·h"
period = "hour"
pricing = "fixed"
price = "0.0125"
aggregation = "weighted_sum"
"#;

/// The aggregations in row order, with the plan their instances are registered on.
const ROWS: [(&str, &str); 6] = [
    ("sum", "calls"),
    ("count", "agg_count"),
    ("max", "agg_max"),
    ("latest", "agg_latest"),
    ("unique_count", "agg_unique_count"),
    ("weighted_sum", "agg_weighted_sum"),
];

/// Sizes of the per-aggregation rows.
struct AggSizes {
    /// Issue 14: "ingest of 1M events over 1000 instances"; quick: 100k.
    events: u64,
    /// 1000 instances × 24 hourly windows = 24k windows, as figure 5's seal.
    instances: u64,
    /// Events in the one window of the memory probe: enough that the per-event cost stands
    /// far above the seal's fixed allocations.
    probe_events: u64,
}

impl AggSizes {
    fn of(s: &Sizes) -> AggSizes {
        if s.quick {
            AggSizes { events: 100_000, instances: 1000, probe_events: 20_000 }
        } else {
            AggSizes { events: 1_000_000, instances: 1000, probe_events: 100_000 }
        }
    }
}

// ---- the counting allocator -------------------------------------------------------------

/// The system allocator, counting live Rust heap bytes and allocations (and their peaks)
/// while [`COUNTING`] is on. Frees of memory allocated before counting started make the live
/// count drift below zero; the peaks are measured from a reset, so they are the *growth* over
/// the start.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static PEAK_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_ALLOCS: AtomicI64 = AtomicI64::new(0);
static PEAK_ALLOCS: AtomicI64 = AtomicI64::new(0);

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count(bytes: i64, allocs: i64) {
    let b = LIVE_BYTES.fetch_add(bytes, Relaxed) + bytes;
    PEAK_BYTES.fetch_max(b, Relaxed);
    let a = LIVE_ALLOCS.fetch_add(allocs, Relaxed) + allocs;
    PEAK_ALLOCS.fetch_max(a, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() && COUNTING.load(Relaxed) {
            count(layout.size() as i64, 1);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() && COUNTING.load(Relaxed) {
            count(layout.size() as i64, 1);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        if COUNTING.load(Relaxed) {
            count(-(layout.size() as i64), -1);
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() && COUNTING.load(Relaxed) {
            count(new_size as i64 - layout.size() as i64, 0);
        }
        p
    }
}

/// Peak growth of the Rust heap while `f` runs: (bytes, allocations), and `f`'s result.
fn heap_peak<T>(f: impl FnOnce() -> T) -> (i64, i64, T) {
    for a in [&LIVE_BYTES, &PEAK_BYTES, &LIVE_ALLOCS, &PEAK_ALLOCS] {
        a.store(0, Relaxed);
    }
    COUNTING.store(true, Relaxed);
    let out = f();
    COUNTING.store(false, Relaxed);
    (PEAK_BYTES.load(Relaxed), PEAK_ALLOCS.load(Relaxed), out)
}

/// Resets the process's peak RSS (VmHWM) to its current RSS (Linux ≥ 4.0); false if refused.
fn reset_vm_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

// ---- the rows -----------------------------------------------------------------------------

fn agg_config() -> Config {
    Config::from_toml_str(&format!("{CONFIG}{AGG_PLANS}")).expect("bench aggregation config parses")
}

fn register_on(db: &Path, plan: &str, ids: &[String], start_s: i64) {
    let mut store = Store::open(db).unwrap();
    store
        .write(|tx| {
            for id in ids {
                instances::add(tx, id, plan, Timestamp::from_secs(start_s), Timestamp::from_secs(start_s))?;
            }
            Ok(())
        })
        .unwrap();
}

/// Event `i` of the generator shaped for `agg`: no quantity for `count` / `unique_count`, a
/// `user` property for `unique_count` (`user(i)`).
fn shaped(agg: &str, mut ev: EventInput, user: impl FnOnce() -> String) -> EventInput {
    if matches!(agg, "count" | "unique_count") {
        ev.quantity = Quantity(Decimal::ZERO);
        ev.quantity_omitted = true;
    }
    if agg == "unique_count" {
        ev.properties = Properties::new([("user".to_string(), user())].into()).expect("a valid property");
    }
    ev
}

/// One row's figures.
pub struct AggRow {
    name: &'static str,
    events_per_s: f64,
    writer_us_per_event: f64,
    seal_s: f64,
    records: usize,
    seal_heap_bytes: i64,
    peak_rss: Option<u64>,
    db_bytes_per_event: f64,
}

/// One row: a fresh database, `events` events over `instances` instances on `plan`, sealed.
fn agg_row(dir: &Path, z: &AggSizes, callers: usize, name: &'static str, plan: &str) -> AggRow {
    let db = dir.join(format!("agg-{name}.db"));
    let (n, inst, t0) = (z.events, z.instances, T_END - DAY);
    let ids: Vec<String> = (0..inst).map(instance_id).collect();
    register_on(&db, plan, &ids, t0 - DAY);
    let cfg = agg_config();
    let now = Timestamp::from_secs(T_END + cfg.seal.grace.as_secs_i64() + 1);
    let rss_reset = reset_vm_hwm();
    let c = Collector::start(&db, Arc::new(agg_config()), Box::new(|_, _| {})).unwrap();
    let cpu0 = thread_cpu_s("meterd-writer");
    let started = Instant::now();
    ingest_all(&c, n, callers, now, &|i| shaped(name, event(i, n, inst, t0, DAY), || format!("user-{:04}", mix(i ^ 0x5eed) % 1000)));
    let secs = started.elapsed().as_secs_f64();
    let writer_us_per_event = (thread_cpu_s("meterd-writer") - cpu0) * 1e6 / n as f64;
    drop(c);
    let mut store = Store::open(&db).unwrap();
    let started = Instant::now();
    let (seal_heap_bytes, _, report) = heap_peak(|| meterd::seal::seal(&mut store, &cfg, now).unwrap());
    let seal_s = started.elapsed().as_secs_f64();
    let peak_rss = rss_reset.then(super::vm_hwm_bytes);
    drop(store);
    let bytes = db_bytes(&db);
    let _ = std::fs::remove_file(&db);
    AggRow {
        name,
        events_per_s: n as f64 / secs,
        writer_us_per_event,
        seal_s,
        records: report.records,
        seal_heap_bytes,
        peak_rss,
        db_bytes_per_event: bytes as f64 / n as f64,
    }
}

/// Peak heap growth of sealing one hourly window of `n` events of one instance.
fn probe(dir: &Path, n: u64, name: &'static str, plan: &str, user: &(dyn Fn(u64) -> String + Sync)) -> i64 {
    // Named by the first value too: each probe needs its own fresh store.
    let db = dir.join(format!("probe-{name}-{}.db", user(0)));
    let t0 = T_END - HOUR;
    let id = "probe-instance".to_string();
    register_on(&db, plan, std::slice::from_ref(&id), t0 - DAY);
    let cfg = agg_config();
    let now = Timestamp::from_secs(T_END + cfg.seal.grace.as_secs_i64() + 1);
    let c = Collector::start(&db, Arc::new(agg_config()), Box::new(|_, _| {})).unwrap();
    ingest_all(&c, n, 2, now, &|i| {
        let mut ev = event(i, n, 1, t0, HOUR);
        ev.instance_id = id.clone();
        ev.id = uuid(i, 0x9906);
        shaped(name, ev, || user(i))
    });
    drop(c);
    let mut store = Store::open(&db).unwrap();
    let (bytes, _, report) = heap_peak(|| meterd::seal::seal(&mut store, &cfg, now).unwrap());
    assert_eq!(report.records, 1, "the probe seals one window");
    drop(store);
    for suffix in ["", "-wal", "-shm", ".created"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    bytes
}

/// What sealing one `unique_count` window holds, from three probes of `n` events.
pub struct UniqueMemory {
    events: u64,
    /// Heap growth of the `sum` seal (reads no events), of `unique_count` with one value, and
    /// with every value distinct.
    sum: i64,
    one_value: i64,
    all_distinct: i64,
}

/// All rows and the memory probe.
pub struct AggFigures {
    pub rows: Vec<AggRow>,
    pub unique: UniqueMemory,
    events: u64,
    instances: u64,
}

/// Runs the rows (one fresh database each, deleted after) and the probe.
pub fn run(dir: &Path, s: &Sizes, phase: &dyn Fn(&str)) -> AggFigures {
    let z = AggSizes::of(s);
    let mut rows = Vec::new();
    for (name, plan) in ROWS {
        phase(&format!("aggregation {name}: ingest {} events over {} instances, seal", z.events, z.instances));
        rows.push(agg_row(dir, &z, s.ingest_callers, name, plan));
    }
    phase(&format!("unique_count memory probe: one window of {} events", z.probe_events));
    // 13-character values ("user-00000042"), a typical short user id.
    let unique = UniqueMemory {
        events: z.probe_events,
        sum: probe(dir, z.probe_events, "sum", "calls", &|_| String::new()),
        one_value: probe(dir, z.probe_events, "unique_count", "agg_unique_count", &|_| "user-00000000".to_string()),
        all_distinct: probe(dir, z.probe_events, "unique_count", "agg_unique_count", &|i| format!("user-{:08}", i + 1)),
    };
    AggFigures { rows, unique, events: z.events, instances: z.instances }
}

/// Prints the sub-table "per aggregation" and the probe's result.
pub fn print(f: &AggFigures) {
    println!(
        "\nper aggregation (issue 14): library ingest of {} events over {} instances (one day, hourly windows), then one seal",
        fmt_n(f.events as f64),
        f.instances
    );
    println!("| aggregation | ingest ev/s | writer µs CPU/ev | seal s | records | seal heap peak | peak RSS | DB B/event |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &f.rows {
        let rss = r.peak_rss.map_or("—".to_string(), |b| format!("{} MiB", b >> 20));
        println!(
            "| {} | {} | {:.2} | {:.3} | {} | {:.1} MiB | {rss} | {:.0} |",
            r.name,
            fmt_n(r.events_per_s),
            r.writer_us_per_event,
            r.seal_s,
            r.records,
            r.seal_heap_bytes as f64 / (1024.0 * 1024.0),
            r.db_bytes_per_event
        );
    }
    let u = &f.unique;
    let n = u.events as f64;
    println!(
        "unique_count memory while one window of {} events is sealed (Rust heap, 13-char values): {:.0} B per event of the window \
         (sum reads none: {:.1} KiB in all) + {:.0} B per distinct value; nothing is held per open window at ingest",
        fmt_n(n),
        (u.one_value - u.sum) as f64 / n,
        u.sum as f64 / 1024.0,
        (u.all_distinct - u.one_value) as f64 / n
    );
}
