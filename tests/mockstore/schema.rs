//! `schemas/usage-record.schema.json` describes what `canonical_body` emits, and refuses what
//! the store refuses at the field level.

use super::harness::*;
use meterd::upload::canonical_body;
use serde_json::Value;

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/usage-record.schema.json")).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

#[test]
fn canonical_body_matches_the_schema() {
    let v = validator();
    let mut with_pkg = rec(7);
    with_pkg.relate_pkg_instance = Some("pkg-7".into());
    with_pkg.usage_value = "99999999.9999".into();
    for records in [recs(1), recs(1000), vec![with_pkg]] {
        let body: Value = serde_json::from_slice(&canonical_body(&records)).unwrap();
        let errors: Vec<String> = v.iter_errors(&body).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
}

#[test]
fn schema_refuses_what_the_store_refuses() {
    let v = validator();
    let good: Value = serde_json::from_slice(&canonical_body(&recs(1))).unwrap();
    assert!(v.is_valid(&good));
    let field = |name: &str, value: Value| {
        let mut b = good.clone();
        b["usage_records"][0][name] = value;
        b
    };
    let bad = [
        field("usage_value", "0".into()),
        field("usage_value", "0.0000".into()),
        field("usage_value", "1.23456".into()),
        field("usage_value", "1e3".into()),
        field("usage_value", "123456789".into()),
        field("usage_value", Value::from(12)),
        field("begin_time", "2022-08-09T08:00:00Z".into()),
        field("end_time", "20221309T080000Z".into()),
        field("instance_id", "i".repeat(65).into()),
        field("relate_pkg_instance", Value::Null),
        field("extra", "x".into()),
        serde_json::from_slice(&canonical_body(&recs(1001))).unwrap(),
        serde_json::json!({"usage_records": []}),
        serde_json::json!({"usage_records": [], "x": 1}),
    ];
    for b in bad {
        assert!(!v.is_valid(&b), "schema accepted {}", &b.to_string()[..b.to_string().len().min(200)]);
    }
    let mut missing = good.clone();
    missing["usage_records"][0].as_object_mut().unwrap().remove("metering_sn");
    assert!(!v.is_valid(&missing));
}
