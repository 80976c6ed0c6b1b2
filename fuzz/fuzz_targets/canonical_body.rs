//! Records parsed from arbitrary bytes, re-serialised canonically, parse back to the same
//! records and re-serialise to the same bytes; signing those bytes never panics and verifies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meterd::config::Secret;
use meterd::upload::{canonical_body, parse_body, signature, verify};

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = parse_body(data) {
        let bytes = canonical_body(&records);
        let again = parse_body(&bytes).expect("canonical bytes parse");
        assert_eq!(again, records);
        assert_eq!(canonical_body(&again), bytes);
        let key = Secret::new("fuzz-key");
        let sig = signature(&key, 1_709_690_865_879, "n", &bytes);
        assert!(verify(&key, 1_709_690_865_879, "n", &bytes, &sig));
    }
});
