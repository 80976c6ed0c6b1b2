//! Integration tests of issue #2, "durable, exactly-once ingest": the real binary, a real
//! SQLite file and a real loopback HTTP server. Each module proves one promise of design §2 and
//! fails if it breaks:
//!
//! - `validation`: one bad event per rule, mixed with good ones in one request — each bad one
//!   rejected with its index, id and a message naming the field; every good one stored.
//! - `doors`: the same request gives the same answer through the CLI, HTTP and the library.
//! - `dedupe`: duplicates counted once (within and across requests, and under concurrency);
//!   a conflicting re-send is rejected naming both values and the stored event is unchanged.
//! - `exact`: quantities round-trip digit for digit; window totals are exact sums.
//! - `http`: whole-body errors (400, 413, 401) store nothing; the instance endpoints.
//! - `resend`: idempotency first — an identical resend is a duplicate whatever rule changed
//!   since it was stored; only another quantity or time is a conflict.
//! - `cli`: `init`, `instance add|release|list`, `ingest` exit codes.
//! - `crash`: SIGKILL right after a `200` loses nothing that was acknowledged.
//! - `stream`: the CLI streams large NDJSON files in chunks with the same result as one piece.

#[path = "../util/mod.rs"]
mod util;

mod cli;
mod crash;
mod dedupe;
mod doors;
mod exact;
mod http;
mod resend;
mod stream;
mod validation;
