//! [`CollectorBuilder`]: how an embedding service starts a [`Collector`] — the store and the
//! configuration are required, the commit hook (metrics) is optional.

use super::{writer, Collector};
use crate::config::Config;
use crate::store::StoreError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Options for [`Collector::builder`]; [`CollectorBuilder::start`] opens the store.
pub struct CollectorBuilder {
    pub(super) db: PathBuf,
    pub(super) cfg: Arc<Config>,
    pub(super) on_commit: Option<writer::CommitHook>,
}

impl CollectorBuilder {
    /// Called on the writer thread after every commit with (events in the group, time the
    /// commit took). Keep it cheap: the writer waits for it. Default: nothing.
    pub fn on_commit(mut self, hook: impl Fn(usize, Duration) + Send + 'static) -> CollectorBuilder {
        self.on_commit = Some(Box::new(hook));
        self
    }

    /// Opens (and if needed creates and migrates) the store and starts the writer thread.
    ///
    /// Errors: the store cannot be opened or migrated, or the thread cannot start
    /// ([`StoreError`]).
    pub fn start(self) -> Result<Collector, StoreError> {
        let hook = self.on_commit.unwrap_or_else(|| Box::new(|_, _| {}));
        Collector::start(&self.db, self.cfg, hook)
    }
}
