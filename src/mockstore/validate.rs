//! Request-level checks: the auth headers (`ts`, `nonce`, `signature`) and the envelope
//! `{"usage_records":[…]}`. Pure: the clock readings are parameters; nonce memory lives in
//! [`NonceCache`], owned by the server state.
//!
//! Any invalid record fails the whole request with that record's code (the first bad record
//! by position), like the real store; the uploader then bisects.

use super::codes::{Code, Rejection};
use super::fields::{check_record, Context, Members};
use crate::config::Secret;
use crate::model::UsageRecord;
use crate::upload::{verify, MAX_RECORDS_PER_REQUEST};
use axum::http::HeaderMap;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How far `ts` may be from the mock's real clock, either way.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// The longest nonce the store accepts.
pub const MAX_NONCE_LEN: usize = 64;

/// Checks `ts`, `nonce` and `signature` against the exact body bytes; returns the nonce.
/// Every failure is `MKT.0102` with a message saying which header is wrong.
pub fn check_auth(headers: &HeaderMap, body: &[u8], key: &Secret, real_now_ms: i64) -> Result<String, Rejection> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let bad = |msg: String| Rejection::new(Code::BadSignature, msg);
    let ts_text = header("ts").ok_or_else(|| bad("missing or non-ASCII `ts` header".into()))?;
    let ts: i64 = ts_text.parse().map_err(|_| bad(format!("`ts` header {ts_text:?} is not Unix time in milliseconds")))?;
    let skew = real_now_ms.saturating_sub(ts).saturating_abs();
    if skew > MAX_SKEW_MS {
        return Err(bad(format!("`ts` {ts} is {} s away from the store's clock; the limit is 300 s", skew / 1000)));
    }
    let nonce = header("nonce").ok_or_else(|| bad("missing or non-ASCII `nonce` header".into()))?;
    if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
        return Err(bad(format!("`nonce` must be 1 to {MAX_NONCE_LEN} characters, got {}", nonce.len())));
    }
    let signature = header("signature").ok_or_else(|| bad("missing or non-ASCII `signature` header".into()))?;
    if !verify(key, ts, nonce, body, signature) {
        return Err(bad("invalid body signature".into()));
    }
    Ok(nonce.to_string())
}

/// Checks the envelope and every record; returns the records in order.
pub fn check_body(body: &[u8], ctx: &Context) -> Result<Vec<UsageRecord>, Rejection> {
    let invalid = |msg: &str| Rejection::new(Code::InvalidParameter, msg);
    let top: Members = serde_json::from_slice(body).map_err(|_| invalid("body is not a JSON object"))?;
    let list = match top.0.as_slice() {
        [(name, list)] if name == "usage_records" => list,
        _ => return Err(invalid("body must be an object with exactly one field, \"usage_records\"")),
    };
    let raw: Vec<Box<RawValue>> = serde_json::from_str(list.get()).map_err(|_| invalid("usage_records must be an array"))?;
    if raw.is_empty() {
        return Err(Rejection::new(Code::InvalidEntries, "usage_records is empty"));
    }
    if raw.len() > MAX_RECORDS_PER_REQUEST {
        return Err(Rejection::new(Code::TooManyRecords, format!("{} records; at most {MAX_RECORDS_PER_REQUEST} per request", raw.len())));
    }
    raw.iter().enumerate().map(|(i, r)| check_record(i, r, ctx)).collect()
}

/// Nonces seen with a valid signature, remembered while a replay could still pass the `ts`
/// check (a `ts` up to 5 minutes ahead stays valid for 10 minutes), then forgotten so memory
/// stays bounded.
#[derive(Debug, Default)]
pub struct NonceCache {
    seen: HashMap<String, Instant>,
}

/// How long a nonce is remembered; longer than the whole `ts` acceptance window.
pub const NONCE_MEMORY: Duration = Duration::from_secs(11 * 60);

impl NonceCache {
    /// Records `nonce`; false when it was already used.
    pub fn insert(&mut self, nonce: &str, now: Instant) -> bool {
        self.seen.retain(|_, at| now.saturating_duration_since(*at) < NONCE_MEMORY);
        if self.seen.contains_key(nonce) {
            return false;
        }
        self.seen.insert(nonce.to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;
    use crate::upload::signature;

    fn headers(ts: &str, nonce: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("ts", ts.parse().unwrap());
        h.insert("nonce", nonce.parse().unwrap());
        h.insert("signature", sig.parse().unwrap());
        h
    }

    #[test]
    fn auth_headers() {
        let key = Secret::new("k");
        let (now, body) = (1_800_000_000_000i64, b"{}".as_slice());
        let sig = |ts: i64| signature(&key, ts, "n", body);
        assert_eq!(check_auth(&headers(&now.to_string(), "n", &sig(now)), body, &key, now).unwrap(), "n");
        let edge = now - MAX_SKEW_MS;
        assert!(check_auth(&headers(&edge.to_string(), "n", &sig(edge)), body, &key, now).is_ok());
        for ts in [edge - 1, now + MAX_SKEW_MS + 1] {
            assert_eq!(check_auth(&headers(&ts.to_string(), "n", &sig(ts)), body, &key, now).unwrap_err().code, Code::BadSignature);
        }
        let cases = [
            headers("abc", "n", &sig(now)),
            headers(&now.to_string(), &"n".repeat(65), &signature(&key, now, &"n".repeat(65), body)),
            headers(&now.to_string(), "n", &signature(&Secret::new("other"), now, "n", body)),
            HeaderMap::new(),
        ];
        for h in cases {
            assert_eq!(check_auth(&h, body, &key, now).unwrap_err().code, Code::BadSignature, "{h:?}");
        }
        assert!(check_auth(&headers(&now.to_string(), "n", &sig(now)), b"{} ", &key, now).is_err(), "signature covers exact bytes");
    }

    #[test]
    fn envelope() {
        let ctx = Context { now: Timestamp::from_secs(1_660_000_000), instances: None, packages: None };
        let code = |b: &str| check_body(b.as_bytes(), &ctx).unwrap_err().code;
        assert_eq!(code("nope"), Code::InvalidParameter);
        assert_eq!(code("[]"), Code::InvalidParameter);
        assert_eq!(code(r#"{"usage_records":{}}"#), Code::InvalidParameter);
        assert_eq!(code(r#"{"usage_records":[],"x":1}"#), Code::InvalidParameter);
        assert_eq!(code(r#"{"usage_records":[],"usage_records":[]}"#), Code::InvalidParameter);
        assert_eq!(code(r#"{"usage_records":[]}"#), Code::InvalidEntries);
        let many = format!(r#"{{"usage_records":[{}]}}"#, vec!["{}"; 1001].join(","));
        assert_eq!(code(&many), Code::TooManyRecords);
        let at_limit = format!(r#"{{"usage_records":[{}]}}"#, vec!["{}"; 1000].join(","));
        assert_eq!(code(&at_limit), Code::InvalidParameter, "1000 records pass the count check");
    }

    #[test]
    fn nonces_are_single_use_and_forgotten_later() {
        let mut c = NonceCache::default();
        let t0 = Instant::now();
        assert!(c.insert("a", t0));
        assert!(!c.insert("a", t0 + Duration::from_secs(60)));
        assert!(c.insert("b", t0));
        assert!(c.insert("a", t0 + NONCE_MEMORY + Duration::from_secs(1)));
        assert_eq!(c.seen.len(), 1, "old nonces are pruned");
    }
}
