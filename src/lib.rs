//! # meterd
//!
//! A usage-metering pipeline for SaaS products sold pay-per-use on Huawei Cloud KooGallery.
//! The pipeline, stage by stage:
//!
//! 1. **collect** — the app reports raw usage events; [`collector`] validates them and commits
//!    each exactly once to the [`store`] (SQLite, or a shared PostgreSQL);
//! 2. **seal** — [`mod@seal`] turns every closed billing window into one immutable usage record;
//! 3. **price** — [`pricing`] computes what records cost (fixed, volume `tier`, graduated
//!    `step`) and [`mod@preview`] shows it;
//! 4. **upload** — [`upload`] signs canonical batches and delivers them to the cloud store,
//!    retrying transient failures and logging rejections.
//!
//! [`notify`] announces quota and usage crossings, deadlines, rejections and readiness changes
//! to the seller's app through a persisted outbox and signed webhooks; [`mockstore`] emulates
//! the cloud store on loopback for tests and local integration; [`server`] and [`daemon`] run
//! it all as a sidecar. The binary's own modules — `cli` (the command line), `demo`, `faults`
//! (test-only fault injection read from the environment) and `logging` — are public only so
//! that `main.rs` and the integration tests reach them; they are hidden from these docs and are
//! not part of the library's API.
//!
//! Invariants: an event is acknowledged only after the transaction holding it committed
//! (`synchronous=FULL`, WAL); an event is identified by (`instance_id`, `id`) and counted once;
//! a sealed record never changes and is always sent with the same bytes under the same
//! `metering_sn`. Code below `cli`/`daemon` takes `now` as a parameter and never reads the clock.
//!
//! ## Embedding
//!
//! A Rust service can skip the sidecar and embed the collector: the types it needs are
//! re-exported here. [`Collector::ingest_events_async`] never blocks the runtime;
//! [`Collector::ingest_events`] blocks the calling thread and is safe anywhere (on a
//! multi-thread runtime's worker it steps aside with `block_in_place`; see the collector's
//! docs). `examples/embed.rs` runs the whole loop: open, ingest, seal, preview.
//!
//! ```
//! use axum::{extract::State, http::StatusCode, routing::post, Json, Router};
//! use meterd::{Collector, Config, EventInput, IngestError, IngestResult, Quantity, Timestamp};
//! use std::sync::Arc;
//!
//! /// What our own API receives: "this customer used this much".
//! #[derive(serde::Deserialize)]
//! struct Used { request_id: String, customer: String, amount: String }
//!
//! async fn used(State(meter): State<Arc<Collector>>, Json(u): Json<Used>)
//!     -> Result<Json<IngestResult>, (StatusCode, String)> {
//!     let quantity: Quantity = u.amount.parse().map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}")))?;
//!     let event = EventInput::new(u.request_id, u.customer, quantity, Timestamp::now());
//!     match meter.ingest_events_async(vec![event], Timestamp::now()).await {
//!         Ok(result) => Ok(Json(result)), // per-event refusals are in result.rejected
//!         Err(e @ IngestError::Unavailable(_)) => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
//!         Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let db = dir.path().join("meterd.db");
//! let cfg = Config::from_toml_str(r#"
//!     [[plan]]
//!     name = "calls"
//!     factor = "api_calls"
//!     unit = "call"
//!     period = "hour"
//!     pricing = "fixed"
//!     price = "0.01"
//!     currency = "CNY"
//! "#)?;
//! let mut store = meterd::Store::open(&db)?;
//! store.write(|tx| meterd::store::instances::add(tx, "cust-1", "calls", Timestamp::from_secs(0), Timestamp::now()))?;
//!
//! let meter = Arc::new(Collector::builder(&db, cfg).start()?);
//! let _app: Router = Router::new().route("/used", post(used)).with_state(meter.clone());
//!
//! let body = Used { request_id: "r-1".into(), customer: "cust-1".into(), amount: "2.5".into() };
//! let Json(result) = used(State(meter), Json(body)).await.map_err(|(_, e)| e)?;
//! assert_eq!((result.accepted, result.rejected.len()), (1, 0));
//! # Ok(()) }
//! ```

pub mod audit;
#[doc(hidden)]
pub mod cli;
pub mod collector;
pub mod config;
pub mod daemon;
#[doc(hidden)]
pub mod demo;
#[doc(hidden)]
pub mod faults;
pub mod guard;
pub mod health;
#[doc(hidden)]
pub mod logging;
pub mod metrics;
pub mod mockstore;
pub mod model;
pub mod notify;
pub mod preview;
pub mod pricing;
pub mod quota;
pub mod schedule;
pub mod seal;
pub mod server;
pub mod settings;
pub mod status;
pub mod store;
pub mod upload;
pub mod views;

pub use collector::{Collector, CollectorBuilder, EventInput, IngestError, IngestResult, LateUnbilled, RejectReason, Rejected, Tuning};
pub use config::Config;
pub use model::{Properties, Quantity, QuantityError, Timestamp, TimestampError};
pub use preview::{preview, Preview, PreviewQuery};
pub use seal::{seal, SealReport};
pub use store::{ErrorKind, OpenOptions, Store, StoreError};
