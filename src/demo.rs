//! `meterd demo`: the whole pipeline on built-in defaults, replayed at a fixed instant so its
//! output is the same on every machine. Everything lives in a temporary directory: a fresh
//! store, the example plans, the instances and events from `fixtures/demo/`.

use crate::collector::Collector;
use crate::config::Config;
use crate::model::{parse_rfc3339, Timestamp};
use crate::store::{instances, Store};
use anyhow::Context;
use std::sync::Arc;

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
    let cfg = Arc::new(Config::from_toml_str(CONFIG).map_err(anyhow::Error::msg)?);
    let now = parse_rfc3339(DEMO_NOW).map_err(anyhow::Error::msg)?;
    println!("meterd demo — replaying {} in {}", DEMO_NOW, dir.path().display());

    let mut store = Store::open(&db)?;
    let list: Vec<DemoInstance> = serde_json::from_str(INSTANCES)?;
    for i in &list {
        store.write(|tx| instances::add(tx, &i.instance_id, &i.plan, i.start, now))?;
        println!("  registered {} (plan {}, start {})", i.instance_id, i.plan, i.start);
    }
    let collector = Collector::start(&db, cfg.clone(), Box::new(|_, _| {}))?;
    let result = collector.ingest_body(EVENTS.as_bytes(), now)?;
    println!("\n1. collect: {} accepted, {} duplicates, {} rejected", result.accepted, result.duplicates, result.rejected.len());
    for r in &result.rejected {
        println!("   rejected #{} {}: {}", r.index, r.id.as_deref().unwrap_or("-"), r.error);
    }
    drop(collector);
    if keep {
        let path = dir.keep();
        println!("\nkept {}", path.display());
    }
    Ok(0)
}
