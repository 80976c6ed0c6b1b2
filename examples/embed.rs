//! Embedding meterd in a Rust program (issue 16, item 9): open a store in a temporary
//! directory, register an instance, ingest events built in code (blocking and async), seal the
//! closed windows and print the preview. Run it with `cargo run --example embed`; `.ci/run`
//! runs it too, so it keeps compiling and working.
//!
//! The clock is fixed (`NOW`) so the output is the same on every machine; a service would pass
//! `Timestamp::now()`.

use meterd::{Collector, Config, EventInput, PreviewQuery, Quantity, Store, Timestamp};
use rust_decimal::Decimal;
use std::error::Error;

const PLANS: &str = r#"
[[plan]]
name = "calls"
factor = "api_calls"
unit = "call"
period = "hour"
pricing = "tier"              # volume pricing: the whole hour at its tier's price
tiers = [ { up_to = "100", price = "0.02" }, { price = "0.01" } ]
currency = "CNY"
"#;

const NOW: &str = "2026-11-23T12:00:00Z";

fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("meterd.db");
    let cfg = Config::from_toml_str(PLANS)?;
    let now: Timestamp = NOW.parse()?;

    let mut store = Store::open(&db)?;
    let start: Timestamp = "2026-11-23T10:00:00Z".parse()?;
    store.write(|tx| meterd::store::instances::add(tx, "cust-1", "calls", start, now))?;

    let collector = Collector::builder(&db, cfg.clone()).on_commit(|n, took| eprintln!("committed {n} events in {took:?}")).start()?;

    // Blocking: fine on a plain thread (and, on a multi-thread runtime, inside a handler too).
    let at_ten: Timestamp = "2026-11-23T10:15:00Z".parse()?;
    let one = Quantity::try_from(Decimal::ONE)?;
    let events = (0..80).map(|i| EventInput::new(format!("ev-{i}"), "cust-1", one, at_ten)).collect();
    let r = collector.ingest_events(events, now)?;
    println!("blocking: {} accepted, {} duplicates, {} rejected", r.accepted, r.duplicates, r.rejected.len());

    // Async: what a tokio handler calls. A resend of ev-0 is a duplicate; a bad id is refused
    // on its own while the good event beside it goes through.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let at_eleven: Timestamp = "2026-11-23T11:30:00Z".parse()?;
    let more = vec![
        EventInput::new("ev-0", "cust-1", "1".parse()?, at_ten),
        EventInput::new("ev-late", "cust-1", "150.5".parse()?, at_eleven),
        EventInput::new("", "cust-1", "1".parse()?, at_eleven),
    ];
    let r = rt.block_on(collector.ingest_events_async(more, now))?;
    println!("async: {} accepted, {} duplicates, {} rejected", r.accepted, r.duplicates, r.rejected.len());
    for bad in &r.rejected {
        println!("  #{}: {}", bad.index, bad.error);
    }
    drop(collector);

    let sealed = meterd::seal(&mut store, &cfg, now)?;
    println!("sealed {} records", sealed.records);
    let p = meterd::preview(&mut store, &cfg, &PreviewQuery::default().at(now))?;
    print!("{}", meterd::views::preview_table(&p));
    Ok(())
}
