//! The library door of the one integration-test harness ([`Env`]): the store opened in this
//! process, instances registered and windows sealed through the library rather than the binary,
//! and [`Live`] — an environment with one collector kept open across calls, as a daemon keeps
//! its own, for suites that interleave ingest, seals and lifecycle changes step by step
//! (`tests/seal.rs`, whose private `World` this replaced; issue 16 item 6).
//!
//! The config is the file the binary would read ([`Env::with_config`]), loaded once by
//! [`Env::live`], so one environment serves the library and the binary alike, on SQLite or (in
//! the `_pg` targets) PostgreSQL. Times are RFC 3339 text in the suites' tables and
//! [`Timestamp`]s here.

#![allow(dead_code)]

use super::Env;
use meterd::collector::{Collector, EventInput, IngestResult};
use meterd::config::Config;
use meterd::model::{parse_rfc3339, Quantity, Timestamp};
use meterd::seal::SealReport;
use meterd::store::{instances, Store};
use std::sync::Arc;

impl Env {
    /// The store, opened in this process (a new connection on every call).
    pub fn store(&self) -> Store {
        Store::open(&self.db).expect("open the store")
    }

    /// Registers instance `id` on `plan`, started (and created) at `start`, through the library.
    pub fn add_instance_at(&self, id: &str, plan: &str, start: Timestamp) {
        self.store().write(|tx| instances::add(tx, id, plan, start, start)).expect("add the instance");
    }

    /// Seals every window closed at `at`, as `meterd seal --now AT` does; what it sealed.
    pub fn seal(&self, at: Timestamp) -> SealReport {
        meterd::seal::seal(&mut self.store(), &self.cfg(), at).expect("seal")
    }

    /// This environment with a collector of `tuning` kept open across calls (see [`Live`]).
    pub fn live(self, tuning: meterd::Tuning) -> Live {
        let cfg = self.cfg();
        let collector = Collector::builder(&self.db, cfg.clone()).tuning(tuning).start().expect("collector starts");
        Live { collector, cfg, env: self }
    }
}

/// An [`Env`] (reached through `Deref`) with one long-lived collector and its config: state a
/// running collector keeps between calls (its late boundary, its dedupe keys, unfolded window
/// totals) stays alive across a test's steps, as in a daemon.
pub struct Live {
    /// Declared first, so it closes before the environment's directory goes.
    pub collector: Collector,
    /// The config the collector runs with (the environment's file, parsed once).
    pub cfg: Arc<Config>,
    pub env: Env,
}

impl std::ops::Deref for Live {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.env
    }
}

impl Live {
    /// Ingests one event (instance `inst`, id `id`, quantity text `q`, time `t`) through the
    /// kept collector at `now`; the collector's answer. Times are RFC 3339.
    pub fn event(&self, inst: &str, id: &str, q: &str, t: &str, now: &str) -> IngestResult {
        let ev = EventInput {
            id: id.into(),
            instance_id: inst.into(),
            quantity: Quantity::parse_event(q).expect("a quantity"),
            time: parse_rfc3339(t).expect("an RFC 3339 event time"),
            metric: None,
            properties: None,
            quantity_omitted: false,
        };
        self.collector.ingest_events(vec![ev], parse_rfc3339(now).expect("an RFC 3339 now")).expect("ingest")
    }
}
