//! Reliability tests of issue 7: crashes, faults, overload and hostile input against the real
//! binary, a real SQLite file and real loopback HTTP. Each module proves one promise and fails
//! if the protection behind it is removed (see the negative controls in the closing
//! note). Randomized tests print their seed; `SEED=<n>` replays one.
//!
//! - `crash_ingest`: SIGKILL at random moments under concurrent ingest, 50 rounds; death
//!   between commit and reply.
//! - `crash_upload`: death between "the store billed" and the local commit; the rerun resends
//!   the same bytes and the store bills every record once.
//! - `outage`: a long store outage with dropped connections; the fallback host takes over,
//!   backoff stays within its cap, everything is delivered once.
//! - `disk_full`: a capped database answers 503 + Retry-After / exit 3, loses nothing
//!   acknowledged, stays intact, and resumes when space is back.
//! - `hostile`: 100k+ generated hostile inputs through the parser, the library, HTTP and the
//!   CLI: no panic, a clear answer for each, nothing stored for what was refused.
//! - `clock`: `--now` moving backwards and jumping forwards: nothing sealed or billed twice,
//!   nothing lost, old records expired locally.
//! - `security`: loopback by default, bearer token, body limit, the key never shown, key file
//!   permissions, untrusted TLS certificates refused.

#[path = "../util/mod.rs"]
mod util;

mod clock;
mod common;
mod crash_ingest;
mod crash_upload;
mod disk_full;
mod hostile;
mod outage;
mod security;
