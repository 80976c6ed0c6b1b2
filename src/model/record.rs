//! The usage record (话单) as the cloud store receives it, and its deterministic serial.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One record of the upload body. Field order is alphabetical, which is also the canonical
/// order the body is serialised in (see `upload::body`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageRecord {
    pub begin_time: String,
    pub end_time: String,
    pub instance_id: String,
    pub metering_sn: String,
    pub record_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relate_pkg_instance: Option<String>,
    pub usage_value: String,
}

/// `metering_sn` = the first 32 hex characters of SHA-256 over `instance_id`, `begin_time` and
/// `end_time` (record format) joined by newlines. The same record always gets the same serial.
pub fn metering_sn(instance_id: &str, begin_time: &str, end_time: &str) -> String {
    let mut h = Sha256::new();
    h.update(instance_id.as_bytes());
    h.update(b"\n");
    h.update(begin_time.as_bytes());
    h.update(b"\n");
    h.update(end_time.as_bytes());
    let digest = h.finalize();
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sn_is_sha256_prefix() {
        let sn = metering_sn("a", "20220809T080000Z", "20220809T090000Z");
        let full = hex::encode(Sha256::digest(b"a\n20220809T080000Z\n20220809T090000Z"));
        assert_eq!(sn, &full[..32]);
        assert_ne!(sn, metering_sn("a", "20220809T080000Z", "20220809T085959Z"));
    }
}
