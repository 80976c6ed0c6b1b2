//! [`CollectorBuilder`]: how an embedding service starts a [`Collector`] — the store and the
//! configuration are required; the commit hook (metrics), the writer's [`Tuning`] and the
//! store's [`OpenOptions`] are optional (defaults: none, production's, none).

use super::{writer, Collector, Tuning};
use crate::config::Config;
use crate::store::{OpenOptions, StoreError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Options for [`Collector::builder`]; [`CollectorBuilder::start`] opens the store.
pub struct CollectorBuilder {
    pub(super) db: PathBuf,
    pub(super) cfg: Arc<Config>,
    pub(super) on_commit: Option<writer::CommitHook>,
    pub(super) tuning: Tuning,
    pub(super) open: OpenOptions,
}

impl CollectorBuilder {
    /// Called on the writer thread after every commit with (events in the group, time the
    /// commit took). Keep it cheap: the writer waits for it. Default: nothing.
    pub fn on_commit(mut self, hook: impl Fn(usize, Duration) + Send + 'static) -> CollectorBuilder {
        self.on_commit = Some(Box::new(hook));
        self
    }

    /// The writer's batch sizes (see [`Tuning`]). Default: [`Tuning::default`].
    pub fn tuning(mut self, tuning: Tuning) -> CollectorBuilder {
        self.tuning = tuning;
        self
    }

    /// How the writer's store connection is opened (see [`OpenOptions`]). Default: none.
    pub fn open_options(mut self, open: OpenOptions) -> CollectorBuilder {
        self.open = open;
        self
    }

    /// Opens (and if needed creates and migrates) the store and starts the writer thread.
    ///
    /// Errors: the store cannot be opened or migrated, or the thread cannot start
    /// ([`StoreError`]).
    pub fn start(self) -> Result<Collector, StoreError> {
        let hook = self.on_commit.unwrap_or_else(|| Box::new(|_, _| {}));
        Collector::start_with(&self.db, self.cfg, hook, self.tuning, self.open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_rfc3339;
    use crate::store::{instances, Store};

    /// Ingests `n` events, one request each, through a collector started with `tuning` on a
    /// fresh store; returns (dedupe key runs written, last seq folded into `windows`).
    fn runs_and_fold(n: usize, tuning: Option<Tuning>) -> (i64, i64) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("m.db");
        let cfg = Config::from_toml_str(
            "[[plan]]\nname = \"calls\"\nfactor = \"api_calls\"\nunit = \"call\"\nperiod = \"hour\"\npricing = \"fixed\"\nprice = \"0.1\"\n",
        )
        .unwrap();
        let now = parse_rfc3339("2026-11-23T08:30:00Z").unwrap();
        let start = parse_rfc3339("2026-11-23T00:00:00Z").unwrap();
        Store::create(&db).unwrap().write(|tx| instances::add(tx, "i1", "calls", start, now)).unwrap();
        let builder = Collector::builder(&db, cfg);
        let collector = match tuning {
            Some(t) => builder.tuning(t),
            None => builder,
        }
        .start()
        .unwrap();
        for i in 0..n {
            let body = format!(r#"{{"id":"e{i}","instance_id":"i1","quantity":"1","time":"2026-11-23T08:00:00Z"}}"#);
            assert_eq!(collector.ingest_body(body.as_bytes(), now).unwrap().accepted, 1);
        }
        drop(collector);
        let mut store = Store::open(&db).unwrap();
        store
            .read(|tx| {
                let runs = tx.one::<i64>("SELECT count(*) FROM key_runs", crate::store::sql::params![])?;
                Ok((runs, crate::store::windows::folded_through(tx)?))
            })
            .unwrap()
    }

    /// Two collectors in one process, each with its own batch sizes (no environment): the small
    /// one flushes key runs and folds window totals every few events, the default one never
    /// within 10 events.
    #[test]
    fn each_collector_has_its_own_tuning() {
        let (runs, folded) = runs_and_fold(10, Some(Tuning::every(3, 4)));
        assert!(runs >= 2, "flushed every 4 keys: {runs} runs");
        assert!(folded >= 6, "folded every 3 events: through seq {folded}");
        assert_eq!(runs_and_fold(10, None), (0, 0), "the defaults (131,072 / 262,144) are not reached");
    }
}
