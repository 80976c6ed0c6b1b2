//! Schema migrations, appended in order and never edited once released. The number of applied
//! migrations is kept in `PRAGMA user_version`; all pending migrations run in one transaction.
//! `schemas/store.sql` is the schema these produce; a test fails when it is stale.

/// Every migration ever released, in order.
pub const MIGRATIONS: &[&str] = &[
    // 1: instances, events with exact dedupe, running window totals, records, batches, rejects.
    r#"
CREATE TABLE instances (
    ref          INTEGER PRIMARY KEY,
    instance_id  TEXT NOT NULL UNIQUE,
    plan         TEXT NOT NULL,
    start_ns     INTEGER NOT NULL,
    release_ns   INTEGER,
    -- UTC seconds: every window that ends at or before this is sealed; late events go here.
    sealed_until INTEGER NOT NULL DEFAULT 0,
    -- remainder (< 0.0001, or a capped excess) carried into the instance's next record
    carry        TEXT NOT NULL DEFAULT '0',
    -- late usage of a released instance that no window can bill any more
    unbillable   TEXT NOT NULL DEFAULT '0',
    created_ns   INTEGER NOT NULL
) STRICT;

-- Append-only in arrival order, no index: (instance_ref, event_id) is unique, enforced by the
-- writer through event_keys (see src/store/dedupe.rs), so inserts never scatter over a
-- random-order index.
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY,
    -- no REFERENCES: the writer resolves the key from `instances` in the same transaction, and
    -- a foreign-key probe per inserted event costs more than it protects
    instance_ref  INTEGER NOT NULL,
    event_id      TEXT NOT NULL,
    time_ns       INTEGER NOT NULL,
    qty           TEXT NOT NULL,
    -- start (UTC s) of the window that bills the event; differs from its own window when late;
    -- NULL when the usage is unbillable
    billed_window INTEGER,
    received_s    INTEGER NOT NULL
) STRICT;

-- Dedupe keys, written in sorted runs: run `gen` holds the 64-bit key hash of every event with
-- seq in (previous run's through_seq, through_seq]. A hash match is always verified against
-- the event itself.
CREATE TABLE event_keys (
    gen      INTEGER NOT NULL,
    key_hash INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (gen, key_hash, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE key_runs (
    gen         INTEGER PRIMARY KEY,
    keys        INTEGER NOT NULL,
    through_seq INTEGER NOT NULL
) STRICT;

-- Keyed time-first: the windows being filled now are a few adjacent pages, not one page per
-- instance.
CREATE TABLE windows (
    instance_ref INTEGER NOT NULL REFERENCES instances(ref),
    start_s      INTEGER NOT NULL,
    usage        TEXT NOT NULL,
    events       INTEGER NOT NULL,
    PRIMARY KEY (start_s, instance_ref)
) STRICT, WITHOUT ROWID;
CREATE INDEX windows_by_instance ON windows(instance_ref, start_s);

CREATE TABLE records (
    metering_sn   TEXT PRIMARY KEY,
    instance_ref  INTEGER NOT NULL REFERENCES instances(ref),
    window_start  INTEGER NOT NULL,
    begin_s       INTEGER NOT NULL,
    end_s         INTEGER NOT NULL,
    usage_value   TEXT NOT NULL,
    window_usage  TEXT NOT NULL,
    carry_in      TEXT NOT NULL,
    carry_out     TEXT NOT NULL,
    record_time_s INTEGER NOT NULL,
    relate_pkg    TEXT,
    body          BLOB NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('zero', 'pending', 'sending', 'delivered', 'rejected')),
    batch_id      INTEGER,
    attempts      INTEGER NOT NULL DEFAULT 0,
    updated_ns    INTEGER NOT NULL,
    UNIQUE (instance_ref, begin_s, end_s)
) STRICT;
CREATE INDEX records_by_instance ON records(instance_ref, window_start);
CREATE INDEX records_unsent ON records(window_start) WHERE state IN ('pending', 'sending');

CREATE TABLE batches (
    id         INTEGER PRIMARY KEY,
    body       BLOB NOT NULL,
    records    INTEGER NOT NULL,
    -- open: being delivered; delivered; split: replaced by two halves; abandoned: never billed,
    -- its records went back to pending (configuration error)
    state      TEXT NOT NULL CHECK (state IN ('open', 'delivered', 'split', 'abandoned')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    created_ns INTEGER NOT NULL,
    last_error TEXT
) STRICT;

CREATE INDEX batches_open ON batches(id) WHERE state = 'open';
CREATE INDEX records_by_batch ON records(batch_id) WHERE batch_id IS NOT NULL;

CREATE TABLE rejected (
    id          INTEGER PRIMARY KEY,
    metering_sn TEXT NOT NULL REFERENCES records(metering_sn),
    code        TEXT NOT NULL,
    message     TEXT NOT NULL,
    at_ns       INTEGER NOT NULL,
    body        BLOB NOT NULL,
    requeued_ns INTEGER
) STRICT;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
"#,
    // 2: instance status history (freeze/unfreeze), kept in time order, never overwritten.
    r#"
CREATE TABLE instance_status (
    instance_ref INTEGER NOT NULL REFERENCES instances(ref),
    at_ns        INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('FREEZE', 'UNFREEZE')),
    recorded_ns  INTEGER NOT NULL,
    PRIMARY KEY (instance_ref, at_ns)
) STRICT, WITHOUT ROWID;
"#,
    // 3: find the next pending records without scanning every record.
    r#"
CREATE INDEX records_pending ON records(window_start, metering_sn) WHERE state = 'pending';
"#,
    // 4: prepaid packages (design §4.2): quota per package, consumption per reset period,
    // stop-before-excess window segments (one record each), usage beyond every quota.
    r#"
CREATE TABLE packages (
    package_id   TEXT PRIMARY KEY,
    instance_ref INTEGER NOT NULL REFERENCES instances(ref),
    -- exact decimal, > 0, at most 4 decimals (the store's precision)
    quota        TEXT NOT NULL,
    -- validity [from, to), UTC ns
    from_ns      INTEGER NOT NULL,
    to_ns        INTEGER NOT NULL,
    reset        TEXT NOT NULL CHECK (reset IN ('none', 'monthly', 'yearly')),
    -- remainder (< 0.0001, or a capped excess) carried between this package's records
    carry        TEXT NOT NULL DEFAULT '0',
    created_ns   INTEGER NOT NULL
) STRICT;
CREATE INDEX packages_by_instance ON packages(instance_ref);

CREATE TABLE package_usage (
    package_id TEXT NOT NULL REFERENCES packages(package_id),
    -- start (UTC s) of the reset period: the calendar month/year in the configured zone,
    -- clipped to the validity; the validity start for reset = 'none'
    period_s   INTEGER NOT NULL,
    used       TEXT NOT NULL,
    PRIMARY KEY (package_id, period_s)
) STRICT, WITHOUT ROWID;

CREATE TABLE segments (
    instance_ref INTEGER NOT NULL REFERENCES instances(ref),
    window_start INTEGER NOT NULL,
    -- the segment runs from here to the next segment's begin (or the window's end)
    begin_s      INTEGER NOT NULL,
    package_id   TEXT NOT NULL REFERENCES packages(package_id),
    usage        TEXT NOT NULL,
    PRIMARY KEY (instance_ref, window_start, begin_s)
) STRICT, WITHOUT ROWID;

CREATE TABLE over_quota (
    instance_ref INTEGER PRIMARY KEY REFERENCES instances(ref),
    usage        TEXT NOT NULL
) STRICT;
"#,
    // 5: ingest without per-event index or window writes (issue 6).
    // - Window totals are folded in lazily (src/store/windows.rs): `windows` covers the events up
    //   to `windows_through`; later ones are summed from `events`, which now also keeps the part
    //   of an event its window bills when a stop-before-excess package left some unbilled.
    // - The ingest writer's per-instance cache is invalidated by a generation that triggers
    //   bump, not by every commit of another connection.
    // - Dedupe runs are stored packed, 320 keys per row, instead of one index row per key
    //   (src/store/dedupe/runs.rs). The old runs are dropped; the writer rebuilds them from `events`.
    r#"
ALTER TABLE events ADD COLUMN billed_qty TEXT;

CREATE TABLE ingest_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    -- every billable event with seq <= this is summed in `windows`
    windows_through INTEGER NOT NULL,
    -- bumped by every change to what the ingest writer caches per instance (the triggers
    -- below), so that other commits (uploads, events from another process) keep its cache
    instances_gen   INTEGER NOT NULL DEFAULT 0,
    -- rows in `events`, kept by the writer in the same transactions (count(*) reads them all)
    events          INTEGER NOT NULL
) STRICT;
INSERT INTO ingest_state (id, windows_through, events)
    VALUES (1, (SELECT coalesce(max(seq), 0) FROM events), (SELECT count(*) FROM events));
CREATE TRIGGER instances_gen_ins AFTER INSERT ON instances BEGIN UPDATE ingest_state SET instances_gen = instances_gen + 1; END;
CREATE TRIGGER instances_gen_upd AFTER UPDATE ON instances BEGIN UPDATE ingest_state SET instances_gen = instances_gen + 1; END;
CREATE TRIGGER instances_gen_del AFTER DELETE ON instances BEGIN UPDATE ingest_state SET instances_gen = instances_gen + 1; END;
CREATE TRIGGER status_gen_ins AFTER INSERT ON instance_status BEGIN UPDATE ingest_state SET instances_gen = instances_gen + 1; END;
CREATE TRIGGER status_gen_upd AFTER UPDATE ON instance_status BEGIN UPDATE ingest_state SET instances_gen = instances_gen + 1; END;
CREATE TRIGGER status_gen_del AFTER DELETE ON instance_status BEGIN UPDATE ingest_state SET instances_gen = instances_gen + 1; END;
CREATE TRIGGER packages_gen_ins AFTER INSERT ON packages BEGIN UPDATE ingest_state SET instances_gen = instances_gen + 1; END;
CREATE TRIGGER packages_gen_upd AFTER UPDATE ON packages BEGIN UPDATE ingest_state SET instances_gen = instances_gen + 1; END;
CREATE TRIGGER packages_gen_del AFTER DELETE ON packages BEGIN UPDATE ingest_state SET instances_gen = instances_gen + 1; END;
CREATE TRIGGER package_usage_gen_ins AFTER INSERT ON package_usage BEGIN UPDATE ingest_state SET instances_gen = instances_gen + 1; END;
CREATE TRIGGER package_usage_gen_upd AFTER UPDATE ON package_usage BEGIN UPDATE ingest_state SET instances_gen = instances_gen + 1; END;
CREATE TRIGGER package_usage_gen_del AFTER DELETE ON package_usage BEGIN UPDATE ingest_state SET instances_gen = instances_gen + 1; END;

DROP TABLE event_keys;
DELETE FROM key_runs;

-- One block of a dedupe run: up to 320 entries sorted by hash, each the key hash (i64, little
-- endian) and seq - base_seq (u32, little endian). Entries with equal hashes are never split
-- over two blocks, so the block of run `gen` with the greatest first_hash <= h holds every
-- entry of that run with hash h.
CREATE TABLE key_blocks (
    gen        INTEGER NOT NULL,
    first_hash INTEGER NOT NULL,
    base_seq   INTEGER NOT NULL,
    keys       BLOB NOT NULL,
    PRIMARY KEY (gen, first_hash)
) STRICT;
"#,
    // 6: the upload queue (issue 6). A record's upload progress (waiting, in which batch) lives here, keyed
    // in the order batches are cut, instead of in its `records` row: a catch-up seal writes
    // records instance by instance, so the rows of one batch (one window of many instances) sit
    // on as many pages, and marking them `sending` and `delivered` rewrote a page per record
    // twice per batch. `records.state` stays `pending` while a record is queued; upload writes
    // the final `delivered` in bulk ("settles") once several batches are delivered, so each
    // records page is rewritten about once, not once per record. Rows: a record that is
    // pending (batch_id NULL), in an open batch (sending), or in a delivered batch not yet
    // settled (delivered). `records_pending` and `records_unsent` are replaced by this table.
    // Per-record reads of a batch's state go through `batches_state`.
    r#"
-- No REFERENCES records(metering_sn) and no separate index of the waiting rows: sealing
-- writes a queue row with every pending record, and an FK probe plus a second b-tree per
-- record cost more than they protect (rows in batches are few: settling deletes them).
CREATE TABLE upload_queue (
    window_start INTEGER NOT NULL,
    metering_sn  TEXT NOT NULL,
    -- NULL: waiting for a batch; else an open batch, or a delivered one not yet settled
    batch_id     INTEGER REFERENCES batches(id),
    PRIMARY KEY (window_start, metering_sn)
) STRICT, WITHOUT ROWID;
CREATE INDEX upload_queue_by_batch ON upload_queue(batch_id) WHERE batch_id IS NOT NULL;
-- A batch's state without reading its row: `state` comes after the body, so reading it from
-- the row walks the body's overflow pages (~55 for 1000 records).
CREATE INDEX batches_state ON batches(id, state);
INSERT INTO upload_queue (window_start, metering_sn, batch_id)
    SELECT window_start, metering_sn, CASE state WHEN 'sending' THEN batch_id END FROM records WHERE state IN ('pending', 'sending');
UPDATE records SET state = 'pending', batch_id = NULL WHERE state = 'sending';
DROP INDEX records_pending;
DROP INDEX records_unsent;
"#,
    // Issue 15: two uploaders on one database sent the same open batch at once (billed once,
    // counted delivered twice). An open batch is claimed inside a write transaction before it
    // is sent: `claimed_by` is the holder ("pid:nonce" of the process), `claim_until_ns` the end
    // of its lease, renewed at every attempt (see `store::claims`).
    r#"
ALTER TABLE batches ADD COLUMN claimed_by TEXT;
ALTER TABLE batches ADD COLUMN claim_until_ns INTEGER;
"#,
    // 8: event properties and point windows (issue 14). Properties are kept apart from
    // `events`, one row per event that has
    // any (keyed by the event's seq), so events without properties — every `sum` plan's —
    // are written and read exactly as before. `props` is the canonical form: compact JSON,
    // keys in byte order (src/model/properties.rs). No REFERENCES: events are never deleted.
    r#"
CREATE TABLE event_props (
    seq   INTEGER PRIMARY KEY,
    props TEXT NOT NULL
) STRICT;

-- The events of each window of a point plan (`max`, `latest`, `unique_count`), by which a
-- seal and the audit read them: written only for those plans' events (src/model/aggregation.rs).
CREATE TABLE window_events (
    instance_ref INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (instance_ref, window_start, seq)
) STRICT, WITHOUT ROWID;

-- Events of point plans stored after their window was sealed: acknowledged, billed nowhere.
ALTER TABLE instances ADD COLUMN late_unbilled INTEGER NOT NULL DEFAULT 0;
"#,
    // 9: the sealer lease and the nodes seen (issue 13). On SQLite one machine holds the
    // store, but the same rows let the daemon and a one-shot `meterd seal` take turns and keep
    // the code one for both backends (see `store::lease`). Times are Unix nanoseconds.
    r#"
CREATE TABLE lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    epoch      INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL
) STRICT;

CREATE TABLE nodes (
    name         TEXT PRIMARY KEY,
    version      TEXT NOT NULL,
    started_ns   INTEGER NOT NULL,
    last_seen_ns INTEGER NOT NULL
) STRICT;
"#,
    // 10: weighted_sum (issue 14). A weighted record keeps what its seal saw — the highest
    // event seq and the number of the instance's status changes (they only append) — so the
    // audit integrates exactly the events and frozen intervals that were billed, whatever
    // arrived later (src/store/levels.rs). NULL on every other record.
    // `late_change`: Σ of what late events of a weighted_sum instance would have changed in
    // its sealed windows, unit·seconds, signed (reported, never billed).
    r#"
ALTER TABLE records ADD COLUMN seen_seq INTEGER;
ALTER TABLE records ADD COLUMN seen_changes INTEGER;
ALTER TABLE instances ADD COLUMN late_change TEXT NOT NULL DEFAULT '0';
"#,
    // 11: the notification outbox (issue 17, `store::notify`). One row per announcement and
    // receiver; `(target, state)` is unique, so a crossing is announced once per state whatever
    // node or door took the ingest that caused it, and the row is the persisted state. `body`
    // holds the exact bytes sent (and signed) at every attempt. Times are Unix nanoseconds;
    // `next_ns` 0 means due now; `delivered_ns` is set only after a 2xx.
    r#"
CREATE TABLE notify_outbox (
    id              TEXT PRIMARY KEY,
    target          TEXT NOT NULL,
    state           TEXT NOT NULL,
    kind            TEXT NOT NULL,
    instance_id     TEXT,
    body            TEXT NOT NULL,
    created_ns      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_ns         INTEGER NOT NULL DEFAULT 0,
    last_attempt_ns INTEGER,
    last_error      TEXT,
    delivered_ns    INTEGER,
    UNIQUE (target, state)
) STRICT;

CREATE INDEX notify_outbox_pending ON notify_outbox (next_ns) WHERE delivered_ns IS NULL;
"#,
    // 12: the twin of PostgreSQL migration 9 (issue 13), so both schemas keep the same columns
    // (and `meterd store copy` carries them). On PostgreSQL the seal copies each pending
    // record's canonical bytes into its queue row, where a cut reads them without probing
    // `records`. SQLite's seal never writes it (NULL: the bytes are written once) and nothing
    // on SQLite reads it (a copy from PostgreSQL may carry the bytes); its cut reads them from
    // the record (`store::batches::next_pending`), as before.
    r#"
ALTER TABLE upload_queue ADD COLUMN body BLOB;
"#,
    // 13: the twin of PostgreSQL migration 10 (issue 13): whether a node seen has an upload
    // key (1) or not (0), written by its heartbeat. On a shared store a node without a key
    // bids for the sealer lease only while no node with one is alive (`daemon`, module docs);
    // SQLite has one node and never reads it. Rows of older builds count as having a key.
    r#"
ALTER TABLE nodes ADD COLUMN uploads INTEGER NOT NULL DEFAULT 1;
"#,
];
