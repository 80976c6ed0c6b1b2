//! Event properties (issue 14, design §2): an optional object of string keys to string values
//! that an event may carry, e.g. `{"user": "u-17"}`. A `unique_count` plan counts the distinct
//! values of one of them (its `unique_by`).
//!
//! Rules: at most [`MAX_PROPERTIES`] entries; keys of 1–[`MAX_KEY_LEN`] characters of
//! `[A-Za-z0-9_.-]`; values of at most [`MAX_VALUE_LEN`] characters.
//!
//! [`Properties`] is kept sorted by key, so its canonical form ([`Properties::canonical`],
//! compact JSON with sorted keys) is the same whatever order the sender wrote: that form is
//! what the store keeps and what the identity check compares (the same event resent with its
//! keys in another order is a duplicate; with another value, a conflict). An empty object is
//! the same as no properties.

use std::collections::BTreeMap;

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

/// A valid, non-empty set of event properties, sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties(BTreeMap<String, String>);

impl Properties {
    /// Checks the rules; `Ok(None)` for an empty map. The error names the offending key and
    /// the rule, e.g. ``key "user id" must be 1–64 characters of [A-Za-z0-9_.-]``.
    pub fn new(map: BTreeMap<String, String>) -> Result<Option<Properties>, String> {
        if map.len() > MAX_PROPERTIES {
            return Err(format!("at most {MAX_PROPERTIES} entries, got {}", map.len()));
        }
        for (k, v) in &map {
            if !valid_property_key(k) {
                return Err(format!("key {k:?} must be 1–{MAX_KEY_LEN} characters of [A-Za-z0-9_.-]"));
            }
            let n = v.chars().count();
            if n > MAX_VALUE_LEN {
                return Err(format!("the value of {k:?} has {n} characters; at most {MAX_VALUE_LEN}"));
            }
        }
        Ok((!map.is_empty()).then_some(Properties(map)))
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Compact JSON with keys in byte order, e.g. `{"region":"eu","user":"u-17"}`: the stored
    /// form and the identity compared on a resend.
    pub fn canonical(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    /// Reads a stored canonical form back; `None` if it is not a valid properties object.
    pub fn from_canonical(text: &str) -> Option<Properties> {
        let map: BTreeMap<String, String> = serde_json::from_str(text).ok()?;
        Properties::new(map).ok().flatten()
    }

    /// The entries, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn rules_and_canonical_form() {
        let p = Properties::new(map(&[("user", "u-1"), ("region", "eu")])).unwrap().unwrap();
        assert_eq!(p.canonical(), r#"{"region":"eu","user":"u-1"}"#);
        assert_eq!(Properties::from_canonical(&p.canonical()), Some(p.clone()));
        assert_eq!(p.get("user"), Some("u-1"));
        assert_eq!(Properties::new(BTreeMap::new()), Ok(None));
        let many: Vec<(String, String)> = (0..17).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(Properties::new(many.into_iter().collect()).unwrap_err().contains("at most 16"));
        assert!(Properties::new(map(&[("user id", "x")])).unwrap_err().contains("\"user id\""));
        let long = "é".repeat(257);
        assert!(Properties::new(map(&[("u", &long)])).unwrap_err().contains("257 characters"));
        assert!(Properties::new(map(&[("u", &"é".repeat(256))])).is_ok(), "256 characters, not bytes");
    }

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
