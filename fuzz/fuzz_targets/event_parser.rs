//! Any byte string given to the ingest parser: no panic; every accepted event satisfies the
//! design §2 rules it was checked against.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = meterd::collector::parse_body(data) {
        for ev in events.into_iter().flatten() {
            assert!(!ev.id.is_empty() && ev.id.len() <= 128);
            assert!(!ev.instance_id.is_empty() && ev.instance_id.len() <= 64);
            assert!(ev.quantity.0 >= rust_decimal::Decimal::ZERO);
            assert!(ev.quantity.0.scale() <= 9);
        }
    }
});
