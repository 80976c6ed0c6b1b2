//! # meterd
//!
//! A usage-metering pipeline for SaaS products sold pay-per-use on Huawei Cloud KooGallery.
//! The app reports raw usage events; [`collector`] validates them and commits each exactly
//! once to the SQLite [`store`]; [`seal`] turns every closed billing window into one immutable
//! usage record; [`pricing`] computes what records cost (fixed, tier, step) and [`preview`]
//! shows it; [`upload`] signs canonical batches and delivers them to the cloud store,
//! retrying transient failures and logging rejections. [`mockstore`] emulates the cloud store
//! on loopback for tests and local integration; [`server`] and [`daemon`] run it all as a
//! sidecar; [`cli`] is the command line.
//!
//! Invariants: an event is acknowledged only after the transaction holding it committed
//! (`synchronous=FULL`, WAL); an event is identified by (`instance_id`, `id`) and counted once;
//! a sealed record never changes and is always sent with the same bytes under the same
//! `metering_sn`. Code below `cli`/`daemon` takes `now` as a parameter and never reads the clock.

pub mod audit;
pub mod cli;
pub mod collector;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod faults;
pub mod guard;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod mockstore;
pub mod model;
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
