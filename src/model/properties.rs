//! Event properties (issue 14, design §2): an optional object of string keys to string values
//! that an event may carry, e.g. `{"user": "u-17"}`. A `unique_count` plan counts the distinct
//! values of one of them (its `unique_by`).
//!
//! Rules: at most [`MAX_PROPERTIES`] entries; keys of 1–[`MAX_KEY_LEN`] characters of
//! `[A-Za-z0-9_.-]`; values of at most [`MAX_VALUE_LEN`] characters.

/// Most entries in one event's `properties`.
pub const MAX_PROPERTIES: usize = 16;
/// Longest property key, in characters.
pub const MAX_KEY_LEN: usize = 64;
/// Longest property value, in characters.
pub const MAX_VALUE_LEN: usize = 256;

/// Whether `key` is a valid property key: 1–64 characters of `[A-Za-z0-9_.-]`.
pub fn valid_property_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(valid_property_key("user"));
        assert!(valid_property_key("a.b-c_D9"));
        assert!(valid_property_key(&"k".repeat(64)));
        assert!(!valid_property_key(""));
        assert!(!valid_property_key(&"k".repeat(65)));
        assert!(!valid_property_key("user id"));
        assert!(!valid_property_key("usér"));
    }
}
