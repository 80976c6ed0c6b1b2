//! Request signing (pure): `signature = Base64(HMAC-SHA256(key, "ts={ts}&nonce={nonce}&body={body}"))`.
//!
//! The body is the exact canonical bytes that are sent (see [`super::body`]); `ts` is Unix time
//! in milliseconds and `nonce` is fresh for every attempt, so every attempt has its own
//! signature while the body bytes never change. Base64 is the standard alphabet with padding
//! (44 characters). [`verify`] compares in constant time; the mock store uses it.
//!
//! The key is a [`Secret`] and is only exposed to the MAC here; nothing in this module formats
//! or logs it.

use crate::config::Secret;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::TryRngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of a nonce from [`new_nonce`]: 32 random bytes as lowercase hex.
pub const NONCE_LEN: usize = 64;

/// The MAC over `ts={ts}&nonce={nonce}&body=` followed by the body bytes.
fn mac(key: &Secret, ts_ms: i64, nonce: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key.expose()).expect("HMAC accepts keys of any length");
    mac.update(format!("ts={ts_ms}&nonce={nonce}&body=").as_bytes());
    mac.update(body);
    mac
}

/// The `signature` header for one attempt.
pub fn signature(key: &Secret, ts_ms: i64, nonce: &str, body: &[u8]) -> String {
    STANDARD.encode(mac(key, ts_ms, nonce, body).finalize().into_bytes())
}

/// Whether `signature` is the signature of (`ts_ms`, `nonce`, `body`) under `key`. The MAC
/// comparison is constant-time; a signature that is not valid padded standard Base64 is false.
pub fn verify(key: &Secret, ts_ms: i64, nonce: &str, body: &[u8], signature: &str) -> bool {
    match STANDARD.decode(signature) {
        Ok(tag) => mac(key, ts_ms, nonce, body).verify_slice(&tag).is_ok(),
        Err(_) => false,
    }
}

/// A fresh nonce: 64 lowercase hex characters from the operating system's CSPRNG.
///
/// Panics only if the OS random source fails, which leaves no safe way to sign anything.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; NONCE_LEN / 2];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).expect("the operating system's random number generator failed");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Vectors {
        vectors: Vec<Vector>,
    }

    #[derive(Deserialize)]
    struct Vector {
        note: String,
        key: String,
        ts: i64,
        nonce: String,
        body: String,
        signature: String,
    }

    const DOC_BODY: &str = r#"{"usage_records":[{"begin_time":"20220809T080000Z","end_time":"20220809T090000Z","instance_id":"7f141bf1-aec8-4859-8323-fb3a8ad50721","metering_sn":"a1b2c3d4e5f60718293a4b5c6d7e8f90","record_time":"20220809T091000Z","usage_value":"99"}]}"#;

    #[test]
    fn api_doc_golden_vector() {
        let key = Secret::new("xxx");
        let sig = signature(&key, 1709690865879, "6c63c221-1f6b-4141-8ff4-22f5dfe82b65", DOC_BODY.as_bytes());
        assert_eq!(sig, "Q7JRf89cbjcRXODo+kvXmbIRgxufo+7UQDMcIV/Q3a0=");
        assert_eq!(sig.len(), 44);
    }

    #[test]
    fn doc_body_is_what_canonical_body_produces() {
        assert_eq!(super::super::body::canonical_body(&[super::super::body::tests::doc_record()]), DOC_BODY.as_bytes());
    }

    #[test]
    fn fixture_vectors_computed_independently() {
        let text = include_str!("../../fixtures/signing/vectors.json");
        let file: Vectors = serde_json::from_str(text).unwrap();
        assert!(file.vectors.len() >= 4, "the fixture lost vectors");
        for v in &file.vectors {
            let key = Secret::new(v.key.as_bytes());
            assert_eq!(signature(&key, v.ts, &v.nonce, v.body.as_bytes()), v.signature, "vector: {}", v.note);
            assert!(verify(&key, v.ts, &v.nonce, v.body.as_bytes(), &v.signature), "vector: {}", v.note);
        }
    }

    #[test]
    fn verify_rejects_any_change() {
        let key = Secret::new("xxx");
        let (ts, nonce, body) = (1709690865879, "n1", DOC_BODY.as_bytes());
        let sig = signature(&key, ts, nonce, body);
        assert!(verify(&key, ts, nonce, body, &sig));
        assert!(!verify(&Secret::new("xxy"), ts, nonce, body, &sig));
        assert!(!verify(&key, ts + 1, nonce, body, &sig));
        assert!(!verify(&key, ts, "n2", body, &sig));
        assert!(!verify(&key, ts, nonce, &body[1..], &sig));
        assert!(!verify(&key, ts, nonce, body, &sig[..43]), "unpadded must not verify");
        assert!(!verify(&key, ts, nonce, body, "not base64!"));
        assert!(!verify(&key, ts, nonce, body, ""));
    }

    #[test]
    fn nonces_are_64_lowercase_hex_and_fresh() {
        let a = new_nonce();
        let b = new_nonce();
        assert_eq!(a.len(), NONCE_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)), "{a}");
        assert_ne!(a, b);
    }
}
