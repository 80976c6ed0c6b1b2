-- Generated from src/store/migrations.rs; refresh with:
--   METERD_BLESS=1 cargo test --lib store::tests::store_sql_is_fresh
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
, late_unbilled INTEGER NOT NULL DEFAULT 0, late_change TEXT NOT NULL DEFAULT '0') STRICT;

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
, billed_qty TEXT) STRICT;

CREATE TABLE key_runs (
    gen         INTEGER PRIMARY KEY,
    keys        INTEGER NOT NULL,
    through_seq INTEGER NOT NULL
) STRICT;

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
    updated_ns    INTEGER NOT NULL, seen_seq INTEGER, seen_changes INTEGER,
    UNIQUE (instance_ref, begin_s, end_s)
) STRICT;

CREATE INDEX records_by_instance ON records(instance_ref, window_start);

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
, claimed_by TEXT, claim_until_ns INTEGER) STRICT;

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

CREATE TABLE instance_status (
    instance_ref INTEGER NOT NULL REFERENCES instances(ref),
    at_ns        INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('FREEZE', 'UNFREEZE')),
    recorded_ns  INTEGER NOT NULL,
    PRIMARY KEY (instance_ref, at_ns)
) STRICT, WITHOUT ROWID;

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

CREATE TABLE key_blocks (
    gen        INTEGER NOT NULL,
    first_hash INTEGER NOT NULL,
    base_seq   INTEGER NOT NULL,
    keys       BLOB NOT NULL,
    PRIMARY KEY (gen, first_hash)
) STRICT;

CREATE TABLE upload_queue (
    window_start INTEGER NOT NULL,
    metering_sn  TEXT NOT NULL,
    -- NULL: waiting for a batch; else an open batch, or a delivered one not yet settled
    batch_id     INTEGER REFERENCES batches(id), body BLOB,
    PRIMARY KEY (window_start, metering_sn)
) STRICT, WITHOUT ROWID;

CREATE INDEX upload_queue_by_batch ON upload_queue(batch_id) WHERE batch_id IS NOT NULL;

CREATE INDEX batches_state ON batches(id, state);

CREATE TABLE event_props (
    seq   INTEGER PRIMARY KEY,
    props TEXT NOT NULL
) STRICT;

CREATE TABLE window_events (
    instance_ref INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (instance_ref, window_start, seq)
) STRICT, WITHOUT ROWID;

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
, uploads INTEGER NOT NULL DEFAULT 1) STRICT;

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

