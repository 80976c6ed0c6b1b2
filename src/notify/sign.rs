//! The notification signature (issue 17), fixed by `fixtures/notify/signature-vector.json`:
//! header `Meterd-Signature: t=<unix seconds>,v1=<hex>` where `<hex>` is the lower-case hex of
//! HMAC-SHA256 with key = the receiver's secret (its UTF-8 bytes) over `"<t>." + body bytes`.
//! Pure: the bytes signed are the bytes sent (the outbox's `body`). A receiver should compare
//! in constant time and refuse a `t` more than 5 minutes from its clock (replays).

use crate::config::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header's name.
pub const HEADER: &str = "Meterd-Signature";
/// The header carrying the notice's id (the body's `id`), for receivers that dedupe early.
pub const ID_HEADER: &str = "Meterd-Event-Id";

/// Lower-case hex HMAC-SHA256 of `"<t>." + body` under `secret`.
pub fn signature(secret: &Secret, t: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose()) else { return String::new() };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The `Meterd-Signature` header value for `body` signed at `t` (Unix seconds).
pub fn header_value(secret: &Secret, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", signature(secret, t, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_vector_verifies() {
        let text = include_str!("../../fixtures/notify/signature-vector.json");
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let secret = Secret::new(v["secret"].as_str().unwrap().as_bytes().to_vec());
        let t = v["timestamp"].as_i64().unwrap();
        let body = v["body"].as_str().unwrap().as_bytes();
        assert_eq!(signature(&secret, t, body), v["signature_hex"].as_str().unwrap());
        assert_eq!(header_value(&secret, t, body), v["header_value"].as_str().unwrap());
        assert_eq!(HEADER, v["header_name"].as_str().unwrap());
        assert_ne!(signature(&secret, t + 1, body), v["signature_hex"].as_str().unwrap(), "the timestamp is signed");
    }
}
