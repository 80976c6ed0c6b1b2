//! Upload: deliver sealed usage records to the cloud store (design §6).
//!
//! The pieces, one per stage, each usable on its own by the upload driver:
//! - [`body`]: records → canonical bytes (`{"usage_records":[…]}`, keys sorted, no
//!   whitespace). Serialised once per batch; the same bytes are stored, signed and sent on
//!   every attempt.
//! - [`sign`]: pure HMAC-SHA256 signature over `ts`, `nonce` and the body; fresh nonces.
//! - [`client`]: one signed HTTP attempt → a [`Response`]; https only (http for loopback).
//! - [`classify()`]: pure [`Response`] → [`Action`] (delivered, transient, configuration error,
//!   too many records, record error), by `error_code` first, HTTP status second.
//! - [`step`]: pure answer → [`step::Decision`] (deliver, retry or leave open, abandon, split,
//!   reject; the fallback switch and the batch size), performed by [`run`].
//! - [`backoff`]: how long to wait before the next attempt (capped exponential, full jitter,
//!   `Retry-After` honoured).
//!
//! "Should we retry?" ([`classify()`]) is decided apart from "how long do we wait?"
//! ([`backoff`]). Only [`run`], the shell, reads the clock: once at the top of each step (the
//! run's start, each request's `ts`, each answer, each batch cut, the run's end), passed down
//! as a parameter to everything it calls. Nothing logs or prints the key.

mod applier;
pub mod backoff;
pub mod body;
pub mod classify;
pub mod client;
pub mod run;
pub mod sign;
pub mod step;

pub use backoff::{Backoff, BackoffError};
pub use body::{canonical_body, join_records, parse_body, record_bytes, BodyError, MAX_RECORDS_PER_REQUEST};
pub use classify::{classify, parse_retry_after, Action, Response, TransientReason};
pub use client::{http_client, request_url, send, EndpointError};
pub use sign::{new_nonce, signature, verify, NONCE_LEN};
