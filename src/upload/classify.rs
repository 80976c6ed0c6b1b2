//! "What happened, and what do we do about it?" — a pure function from one attempt's
//! [`Response`] to an [`Action`] (design §6). How long to wait is decided elsewhere
//! ([`super::backoff`]); this module never sleeps, logs or reads the clock.
//!
//! Rules, in order:
//! 1. no HTTP answer (timeout, transport error) → [`Action::Transient`];
//! 2. a JSON body with an `error_code` decides by the code, whatever the HTTP status (several
//!    permanent errors come with HTTP 500): `MKT.0000` with a 2xx status → delivered;
//!    `MKT.0999` → transient; `MKT.0102/0150/0151/0154` → configuration error;
//!    `MKT.9003` → too many records; `MKT.0100/0101/0199/9001/9002/9004` → record error;
//! 3. otherwise the HTTP status decides.
//!
//! Choices where the API doc is silent, all made so that no record is ever rejected on a guess
//! (resending is harmless: the store keeps the first record per instance and period):
//! - an unknown `error_code` → transient, flagged [`TransientReason::UnknownCode`] so the caller
//!   can warn loudly; `max_attempts` bounds the retries;
//! - `MKT.0000` with a non-2xx status, or a 2xx without a parsable `error_code` → transient:
//!   delivery is not confirmed, so the batch is sent again;
//! - 408, 429, 5xx and 1xx without a code → transient;
//! - 413 without a code → [`Action::TooManyRecords`] (halving the batch is the remedy);
//! - 3xx and other 4xx without a code (401, 403, 404, 405…) → configuration error with code
//!   `HTTP <status>`: a wrong endpoint, path or gateway credential, not a bad record.

use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// What one attempt got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// An HTTP answer. `retry_after` is the parsed `Retry-After` header, when present.
    Http { status: u16, body: Vec<u8>, retry_after: Option<Duration> },
    /// No answer within the configured timeout.
    Timeout,
    /// No HTTP answer for another reason: refused, reset, closed before the answer, TLS.
    Transport(String),
}

/// What the uploader should do with the batch that got the [`Response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Every record of the batch is delivered.
    Delivered,
    /// Try the same bytes again later (fresh ts, nonce, signature).
    Transient { retry_after: Option<Duration>, reason: TransientReason },
    /// The configuration (key, endpoint, seller account) is wrong: keep the records pending,
    /// stop uploading, report loudly.
    ConfigError { code: String, message: String },
    /// `MKT.9003`: halve the batch size and retry.
    TooManyRecords,
    /// A record of the batch is bad: bisect down to single records; a single record with this
    /// action is rejected.
    RecordError { code: String, message: String },
}

/// Why an attempt is worth repeating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransientReason {
    Timeout,
    Transport(String),
    /// A code documented as transient (`MKT.0999`).
    Code {
        status: u16,
        code: String,
        message: String,
    },
    /// A code this version does not know; retried so nothing is rejected on a guess. Warn.
    UnknownCode {
        status: u16,
        code: String,
        message: String,
    },
    /// No usable `error_code`; the status alone says "try again" (or cannot confirm delivery).
    Status(u16),
}

impl fmt::Display for TransientReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransientReason::Timeout => f.write_str("timed out: no answer within `upload.timeout` (raise it if the store is only slow)"),
            TransientReason::Transport(e) => write!(f, "no HTTP answer: {e}"),
            TransientReason::Code { status, code, message } => write!(f, "HTTP {status} {code}: {message}"),
            TransientReason::UnknownCode { status, code, message } => write!(f, "HTTP {status} with unknown error_code {code}: {message}"),
            TransientReason::Status(s) => write!(f, "HTTP {s} without a usable error_code"),
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: String,
    #[serde(default)]
    error_msg: Option<String>,
}

/// Decides the [`Action`] for one attempt's [`Response`].
pub fn classify(response: &Response) -> Action {
    match response {
        Response::Timeout => transient(None, TransientReason::Timeout),
        Response::Transport(e) => transient(None, TransientReason::Transport(e.clone())),
        Response::Http { status, body, retry_after } => match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => by_code(*status, b.error_code, b.error_msg.unwrap_or_default(), *retry_after),
            Err(_) => by_status(*status, *retry_after),
        },
    }
}

fn transient(retry_after: Option<Duration>, reason: TransientReason) -> Action {
    Action::Transient { retry_after, reason }
}

fn by_code(status: u16, code: String, message: String, retry_after: Option<Duration>) -> Action {
    match code.as_str() {
        "MKT.0000" if (200..300).contains(&status) => Action::Delivered,
        "MKT.0000" => transient(retry_after, TransientReason::Status(status)),
        "MKT.0999" => transient(retry_after, TransientReason::Code { status, code, message }),
        "MKT.0102" | "MKT.0150" | "MKT.0151" | "MKT.0154" => Action::ConfigError { code, message },
        "MKT.9003" => Action::TooManyRecords,
        "MKT.0100" | "MKT.0101" | "MKT.0199" | "MKT.9001" | "MKT.9002" | "MKT.9004" => Action::RecordError { code, message },
        _ => transient(retry_after, TransientReason::UnknownCode { status, code, message }),
    }
}

fn by_status(status: u16, retry_after: Option<Duration>) -> Action {
    match status {
        413 => Action::TooManyRecords,
        408 | 429 => transient(retry_after, TransientReason::Status(status)),
        300..=499 => Action::ConfigError {
            code: format!("HTTP {status}"),
            message: format!("the store answered HTTP {status} without an error_code; check `upload.endpoint` and `upload.path`"),
        },
        _ => transient(retry_after, TransientReason::Status(status)),
    }
}

/// Parses a `Retry-After` header in its delay-seconds form (`"120"`). The HTTP-date form is
/// not supported (it would need the clock) and gives `None`, i.e. normal backoff.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
