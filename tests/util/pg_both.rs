//! Runs one store script on a fresh PostgreSQL database (migrated, in one transaction) and on
//! a fresh SQLite file, and hands back both transcripts, for tests that require the two
//! backends to answer the same. Included with `#[path]` next to `util/pg.rs` (as `mod pg`).

use crate::pg::{self, PgCluster};
use meterd::store::sql::{PgConn, Tx};
use meterd::store::{Store, StoreError};

/// (PostgreSQL's transcript, SQLite's), or `None` when the PostgreSQL tests are skipped.
pub fn on_both<T>(script: impl Fn(&Tx<'_>) -> Result<T, StoreError>) -> Option<(T, T)> {
    let pg = PgCluster::shared()?;
    let mut client = pg::connect(&pg.fresh_db());
    meterd::store::pg_schema::migrate(&mut client).unwrap();
    let mut conn = PgConn::new(client);
    // As the library's write transactions do (`store::pg::begin_write`): writes of an older
    // meterd are refused.
    conn.batch(&format!("BEGIN; SET LOCAL meterd.writer_schema = '{}'", meterd::store::pg_schema::PG_MIGRATIONS.len())).unwrap();
    let on_pg = script(&Tx::postgres(&mut conn)).unwrap();
    conn.batch("COMMIT").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(&dir.path().join("t.db")).unwrap();
    let on_sqlite = store.write(&script).unwrap();
    Some((on_pg, on_sqlite))
}
