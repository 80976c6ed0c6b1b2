//! `meterd demo`: the whole pipeline on built-in defaults, replayed at a fixed instant so its
//! output is the same on every machine. Everything lives in a temporary directory: a fresh
//! store, the example plans, the instances and events from `fixtures/demo/`, and the mock
//! cloud store on a loopback port with a throw-away key.

use crate::collector::Collector;
use crate::config::{Config, Secret};
use crate::mockstore::{MockConfig, MockStore};
use crate::model::{parse_rfc3339, Timestamp};
use crate::preview::{preview, PreviewQuery};
use crate::store::{instances, Store};
use anyhow::Context;
use std::sync::{Arc, Mutex};

const CONFIG: &str = include_str!("../fixtures/meterd.example.toml");
const INSTANCES: &str = include_str!("../fixtures/demo/instances.json");
const EVENTS: &str = include_str!("../fixtures/demo/events.ndjson");
/// The demo replays the day of its fixtures up to this instant.
pub const DEMO_NOW: &str = "2026-11-23T12:00:00Z";

#[derive(serde::Deserialize)]
struct DemoInstance {
    instance_id: String,
    plan: String,
    start: Timestamp,
}

/// Runs the demo; returns the exit code.
pub fn run(keep: bool) -> anyhow::Result<u8> {
    let dir = tempfile::Builder::new().prefix("meterd-demo-").tempdir().context("cannot create a temporary directory")?;
    let db = dir.path().join("meterd.db");
    let mut cfg = Config::from_toml_str(CONFIG).map_err(anyhow::Error::msg)?;
    let now = parse_rfc3339(DEMO_NOW).map_err(anyhow::Error::msg)?;
    println!("meterd demo: replaying {DEMO_NOW} with the example plans (timezone {})", cfg.timezone);
    println!("store: {}\n", db.display());

    let mut store = Store::open(&db)?;
    let list: Vec<DemoInstance> = serde_json::from_str(INSTANCES)?;
    for i in &list {
        store.write(|tx| instances::add(tx, &i.instance_id, &i.plan, i.start, now))?;
    }
    println!(
        "0. registered {} instances (plans: calls = step per hour, storage = GB·h per day from the GB stored (weighted_sum), seats = tier per hour on the peak (max), logins = count, licences = latest per day, users = unique users per day)",
        list.len()
    );

    let collector = Collector::builder(&db, cfg.clone()).tuning(crate::faults::tuning_from_env()).start()?;
    let ingested = collector.ingest_body(EVENTS.as_bytes(), now)?;
    drop(collector);
    println!("1. collect: {} events accepted, {} duplicate, {} rejected:", ingested.accepted, ingested.duplicates, ingested.rejected.len());
    for r in &ingested.rejected {
        println!("   #{} {}: {}", r.index, r.id.as_deref().unwrap_or("-"), r.error);
    }

    let sealed = crate::seal::seal(&mut store, &cfg, now)?;
    println!(
        "\n2. seal: {} records from the windows closed by {DEMO_NOW} ({} with value 0, kept but never sent)",
        sealed.records, sealed.zero
    );

    let p = preview(&mut store, &cfg, &PreviewQuery::default().at(now))?;
    println!("\n3. preview (charges before upload; 'open' windows are still collecting):\n");
    print!("{}", crate::views::preview_table(&p));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (report, ledger) = rt.block_on(async {
        let key = Secret::new(crate::upload::new_nonce().into_bytes());
        let mut mock_cfg = MockConfig::new(key.clone());
        mock_cfg.now = Some(now);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mock = MockStore::start(mock_cfg, listener).await?;
        cfg.upload.endpoint = mock.endpoint();
        cfg.upload.fallback = None;
        let report = crate::upload::run::upload(Arc::new(Mutex::new(store)), &cfg.upload, &key, now).await?;
        let ledger = mock.ledger().len();
        mock.shutdown().await;
        anyhow::Ok((report, ledger))
    })?;
    println!("\n4. upload to the mock cloud store on loopback: {} records delivered in {} request(s), {} rejected; its ledger bills {ledger} records", report.delivered, report.requests, report.rejected);

    let total: Vec<String> = p.totals.iter().map(|t| format!("{} {}", t.charge_2dp, t.currency)).collect();
    println!(
        "\nsummary: {} events in, {} records sealed, {} priced (open windows included), {} records delivered exactly once. Try `meterd init` to start your own.",
        ingested.accepted,
        sealed.records,
        total.join(" + "),
        report.delivered
    );
    if keep {
        let path = dir.keep();
        println!("kept {}", path.display());
    }
    Ok(if report.delivered as usize == ledger { 0 } else { 3 })
}
