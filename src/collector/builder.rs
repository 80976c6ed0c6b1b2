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
