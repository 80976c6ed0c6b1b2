//! The upload body: `{"usage_records":[…]}` in canonical form.
//!
//! Canonical form (see `koogallery-usage-api.md`, "Request"): object keys sorted by name at
//! every level, no whitespace, absent optional fields omitted (never `null`), `usage_value` a
//! JSON string. [`canonical_body`] produces those bytes once per batch; they are stored with the
//! batch, signed and sent unchanged on every retry, so the signature always covers exactly what
//! the store receives.
//!
//! Sorting comes from the types, not from a runtime sort: [`UsageRecord`] declares its fields
//! in alphabetical order and skips `relate_pkg_instance` when it is `None`, and the wrapper has a
//! single key. A test re-sorts the output independently to keep that promise honest.
//!
//! A record's own bytes are made when it is sealed ([`record_bytes`], stored with the record)
//! and a batch's body is joined from them ([`join_records`], stored with the batch): the store
//! only keeps and returns bytes, every byte of a request is made here.
//!
//! [`parse_body`] is the inverse, for dry runs and for reading a stored batch back; it is strict
//! (unknown fields are errors) because it only ever reads bytes we wrote.

use crate::model::UsageRecord;
use serde::{Deserialize, Serialize};

/// The most records the store accepts in one request.
pub const MAX_RECORDS_PER_REQUEST: usize = 1000;

#[derive(Serialize)]
struct BodyRef<'a> {
    usage_records: &'a [UsageRecord],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyOwned {
    usage_records: Vec<UsageRecord>,
}

/// Why bytes are not an upload body.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("upload body is not `{{\"usage_records\":[…]}}` with well-formed records: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// The canonical bytes of the upload body holding `records`, in the order given.
pub fn canonical_body(records: &[UsageRecord]) -> Vec<u8> {
    // Serialising structs of `String`s into a Vec cannot fail: there are no maps with
    // non-string keys, no custom serialisers and no I/O.
    serde_json::to_vec(&BodyRef { usage_records: records }).expect("serialising usage records to memory cannot fail")
}

/// The canonical bytes of one record, as stored with it when it is sealed (`records.body`):
/// exactly the bytes [`canonical_body`] writes for it inside a request, so a batch joined from
/// stored records ([`join_records`]) is byte for byte the canonical body of those records.
pub fn record_bytes(record: &UsageRecord) -> Vec<u8> {
    // As in `canonical_body`: serialising a struct of strings to memory cannot fail.
    serde_json::to_vec(record).expect("serialising a usage record to memory cannot fail")
}

/// The request body holding the records whose stored bytes ([`record_bytes`]) are `records`,
/// in the order given: `{"usage_records":[` the records joined by `,` `]}`. Equal to
/// [`canonical_body`] of the same records; made once per batch and stored with it, so every
/// retry and every resend after a restart or failover sends these same bytes.
pub fn join_records(records: &[&[u8]]) -> Vec<u8> {
    let len: usize = records.iter().map(|b| b.len() + 1).sum::<usize>() + 20;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"{\"usage_records\":[");
    for (i, b) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b);
    }
    out.extend_from_slice(b"]}");
    out
}

/// Reads an upload body back into records (inverse of [`canonical_body`]).
pub fn parse_body(bytes: &[u8]) -> Result<Vec<UsageRecord>, BodyError> {
    let body: BodyOwned = serde_json::from_slice(bytes)?;
    Ok(body.usage_records)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;

    /// The record of the API doc's test vector.
    pub(crate) fn doc_record() -> UsageRecord {
        UsageRecord {
            begin_time: "20220809T080000Z".into(),
            end_time: "20220809T090000Z".into(),
            instance_id: "7f141bf1-aec8-4859-8323-fb3a8ad50721".into(),
            metering_sn: "a1b2c3d4e5f60718293a4b5c6d7e8f90".into(),
            record_time: "20220809T091000Z".into(),
            relate_pkg_instance: None,
            usage_value: "99".into(),
        }
    }

    /// Re-serialises a JSON value with keys sorted explicitly, independent of serde_json's map
    /// type (which keeps insertion order when a dependency enables `preserve_order`).
    fn sorted(v: &Value) -> String {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let parts: Vec<String> = keys.iter().map(|k| format!("{}:{}", Value::String((*k).clone()), sorted(&m[*k]))).collect();
                format!("{{{}}}", parts.join(","))
            }
            Value::Array(a) => format!("[{}]", a.iter().map(sorted).collect::<Vec<_>>().join(",")),
            other => other.to_string(),
        }
    }

    #[test]
    fn matches_the_api_doc_vector_byte_for_byte() {
        let expected = r#"{"usage_records":[{"begin_time":"20220809T080000Z","end_time":"20220809T090000Z","instance_id":"7f141bf1-aec8-4859-8323-fb3a8ad50721","metering_sn":"a1b2c3d4e5f60718293a4b5c6d7e8f90","record_time":"20220809T091000Z","usage_value":"99"}]}"#;
        assert_eq!(String::from_utf8(canonical_body(&[doc_record()])).unwrap(), expected);
    }

    #[test]
    fn output_equals_an_independent_sorted_reserialisation() {
        let mut with_pkg = doc_record();
        with_pkg.relate_pkg_instance = Some("pkg-1".into());
        with_pkg.usage_value = "0.0001".into();
        for records in [vec![], vec![doc_record()], vec![doc_record(), with_pkg]] {
            let bytes = canonical_body(&records);
            let text = String::from_utf8(bytes.clone()).unwrap();
            let value: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(text, sorted(&value));
            assert!(!text.contains(char::is_whitespace), "{text}");
            assert!(!text.contains("null"), "{text}");
        }
    }

    #[test]
    fn optional_package_is_omitted_or_placed_in_order() {
        let text = String::from_utf8(canonical_body(&[doc_record()])).unwrap();
        assert!(!text.contains("relate_pkg_instance"));
        let mut r = doc_record();
        r.relate_pkg_instance = Some("pkg-1".into());
        let text = String::from_utf8(canonical_body(&[r])).unwrap();
        assert!(text.contains(r#""record_time":"20220809T091000Z","relate_pkg_instance":"pkg-1","usage_value":"99""#), "{text}");
    }

    #[test]
    fn a_batch_joined_from_stored_records_is_the_canonical_body_byte_for_byte() {
        let mut with_pkg = doc_record();
        with_pkg.relate_pkg_instance = Some("pkg-1".into());
        with_pkg.metering_sn = "00000000000000000000000000000002".into();
        with_pkg.usage_value = "0.0001".into();
        let expected = concat!(
            r#"{"usage_records":[{"begin_time":"20220809T080000Z","end_time":"20220809T090000Z","instance_id":"7f141bf1-aec8-4859-8323-fb3a8ad50721","metering_sn":"a1b2c3d4e5f60718293a4b5c6d7e8f90","record_time":"20220809T091000Z","usage_value":"99"},"#,
            r#"{"begin_time":"20220809T080000Z","end_time":"20220809T090000Z","instance_id":"7f141bf1-aec8-4859-8323-fb3a8ad50721","metering_sn":"00000000000000000000000000000002","record_time":"20220809T091000Z","relate_pkg_instance":"pkg-1","usage_value":"0.0001"}]}"#
        );
        let stored = [record_bytes(&doc_record()), record_bytes(&with_pkg)];
        let joined = join_records(&[&stored[0], &stored[1]]);
        assert_eq!(String::from_utf8(joined.clone()).unwrap(), expected);
        assert_eq!(joined, canonical_body(&[doc_record(), with_pkg]));
        assert_eq!(join_records(&[]), br#"{"usage_records":[]}"#);
        assert_eq!(join_records(&[&stored[0]]), canonical_body(&[doc_record()]));
    }

    #[test]
    fn parse_is_the_inverse_and_strict() {
        let mut r2 = doc_record();
        r2.relate_pkg_instance = Some("pkg".into());
        let records = vec![doc_record(), r2];
        assert_eq!(parse_body(&canonical_body(&records)).unwrap(), records);
        assert!(parse_body(b"not json").is_err());
        assert!(parse_body(br#"{"usage_records":[],"extra":1}"#).is_err());
        assert!(parse_body(br#"{"records":[]}"#).is_err());
        let extra_field =
            String::from_utf8(canonical_body(&[doc_record()])).unwrap().replace(r#""usage_value""#, r#""x":"1","usage_value""#);
        assert!(parse_body(extra_field.as_bytes()).is_err());
    }
}
