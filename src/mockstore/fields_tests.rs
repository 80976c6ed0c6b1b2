use super::*;

fn ctx_now() -> Timestamp {
    crate::model::parse_rfc3339("2022-08-10T00:00:00Z").unwrap()
}

const GOOD: &str = r#"{"begin_time":"20220809T080000Z","end_time":"20220809T090000Z","instance_id":"i-1","metering_sn":"sn-1","record_time":"20220809T091000Z","usage_value":"99"}"#;

fn check(json: &str, instances: Option<&HashSet<String>>) -> Result<UsageRecord, Rejection> {
    let raw: Box<RawValue> = serde_json::from_str(json).unwrap();
    check_record(3, &raw, &Context { now: ctx_now(), instances, packages: None })
}

fn code_of(json: &str) -> Code {
    check(json, None).unwrap_err().code
}

/// GOOD with `field` set to the raw JSON text `raw_value` (added when absent). Built as text,
/// not through `serde_json::Value`, so a number like `1e3` reaches the check unchanged.
fn with(field: &str, raw_value: &str) -> String {
    let members: Members = serde_json::from_str(GOOD).unwrap();
    let mut parts: Vec<(String, String)> = members.0.into_iter().map(|(k, v)| (k, v.get().to_string())).collect();
    match parts.iter_mut().find(|(k, _)| k == field) {
        Some(p) => p.1 = raw_value.to_string(),
        None => parts.push((field.to_string(), raw_value.to_string())),
    }
    format!("{{{}}}", parts.iter().map(|(k, v)| format!("{k:?}:{v}")).collect::<Vec<_>>().join(","))
}

#[test]
fn good_record_passes_and_keeps_number_text() {
    let r = check(GOOD, None).unwrap();
    assert_eq!((r.instance_id.as_str(), r.usage_value.as_str()), ("i-1", "99"));
    assert_eq!(check(&with("usage_value", "12.5000"), None).unwrap().usage_value, "12.5000");
    assert_eq!(check(&with("relate_pkg_instance", r#""pkg""#), None).unwrap().relate_pkg_instance.as_deref(), Some("pkg"));
}

#[test]
fn usage_values() {
    for ok in ["1", "0.0001", "99999999.9999", "00000001.5", "12.5"] {
        assert_eq!(usage_value(ok), Ok(()), "{ok}");
    }
    for bad in ["0", "0.0000", "1.00001", "1e3", "1E3", "-1", "+1", "", ".5", "1.", "123456789", "1,5", " 1", "NaN"] {
        assert!(usage_value(bad).is_err(), "{bad:?}");
    }
    for (raw, code) in [
        (r#""0""#, Code::BadValue),
        (r#""1.23456""#, Code::BadValue),
        (r#""1e3""#, Code::BadValue),
        ("1e3", Code::BadValue),
        ("-2", Code::BadValue),
        ("0", Code::BadValue),
        (r#""123456789012345678901""#, Code::BadValue),
        ("null", Code::InvalidParameter),
        ("true", Code::InvalidParameter),
        ("[1]", Code::InvalidParameter),
    ] {
        assert_eq!(code_of(&with("usage_value", raw)), code, "usage_value {raw}");
    }
}

#[test]
fn times() {
    assert_eq!(record_time("20220809T091000Z").unwrap(), crate::model::parse_rfc3339("2022-08-09T09:10:00Z").unwrap());
    for bad in
        ["2022-08-09T09:10:00Z", "20220809T091000", "20220809 091000Z", "20221309T091000Z", "20220809T250000Z", "+2022089T091000Z", ""]
    {
        assert!(record_time(bad).is_err(), "{bad:?}");
    }
    assert_eq!(code_of(&with("record_time", r#""2022-08-09T09:10:00Z""#)), Code::BadValue);
    assert_eq!(code_of(&with("end_time", r#""20220809T080000Z""#)), Code::InvalidEntries, "begin == end");
    assert_eq!(code_of(&with("end_time", r#""20220809T070000Z""#)), Code::InvalidEntries, "begin > end");
}

#[test]
fn fields_present_known_and_typed() {
    assert_eq!(code_of(&with("extra", r#""x""#)), Code::InvalidParameter);
    assert_eq!(code_of(&GOOD.replace(r#","metering_sn":"sn-1""#, "")), Code::InvalidParameter);
    assert_eq!(code_of(&GOOD.replace(r#""i-1""#, r#""i-1","instance_id":"i-2""#)), Code::InvalidParameter, "duplicate key");
    assert_eq!(code_of(&with("instance_id", r#""""#)), Code::InvalidParameter);
    assert_eq!(code_of(&with("instance_id", "7")), Code::InvalidParameter);
    assert_eq!(code_of(&with("relate_pkg_instance", "null")), Code::InvalidParameter);
    assert_eq!(code_of(r#"["not an object"]"#), Code::InvalidParameter);
    assert_eq!(code_of(&with("instance_id", &format!("{:?}", "i".repeat(65)))), Code::BadValue);
    assert!(check(&with("instance_id", &format!("{:?}", "实".repeat(64))), None).is_ok(), "length counts characters");
    assert_eq!(code_of(&with("metering_sn", &format!("{:?}", "s".repeat(65)))), Code::BadValue);
}

#[test]
fn twenty_one_days_and_known_instances() {
    // now = 2022-08-10T00:00Z; 21 days earlier is 2022-07-20T00:00Z.
    assert!(check(&with("begin_time", r#""20220720T000000Z""#), None).is_ok());
    assert_eq!(code_of(&with("begin_time", r#""20220719T235959Z""#)), Code::BeginOutOfRange);
    let known: HashSet<String> = ["i-1".to_string()].into();
    assert!(check(GOOD, Some(&known)).is_ok());
    let err = check(&with("instance_id", r#""i-2""#), Some(&known)).unwrap_err();
    assert_eq!(err.code, Code::InstanceNotFound);
    assert!(err.message.starts_with("usage_records[3]:"), "{}", err.message);
}

#[test]
fn package_instances_and_relate_pkg_instance() {
    let pkgs: Packages = [("i-1".to_string(), HashSet::from(["pkg-a".to_string(), "pkg-b".to_string()]))].into();
    let run = |json: &str| {
        let raw: Box<RawValue> = serde_json::from_str(json).unwrap();
        check_record(0, &raw, &Context { now: ctx_now(), instances: None, packages: Some(&pkgs) })
    };
    assert_eq!(run(GOOD).unwrap_err().code, Code::InvalidParameter, "i-1 has packages: relate_pkg_instance required");
    assert!(run(&with("relate_pkg_instance", r#""pkg-b""#)).is_ok());
    let err = run(&with("relate_pkg_instance", r#""pkg-z""#)).unwrap_err();
    assert!(err.code == Code::InvalidParameter && err.message.contains("pkg-z"), "{err:?}");
    let as_instance = GOOD.replace(r#""instance_id":"i-1""#, r#""instance_id":"pkg-a""#);
    assert_eq!(run(&as_instance).unwrap_err().code, Code::InstanceNotFound);
    let other = GOOD.replace(r#""instance_id":"i-1""#, r#""instance_id":"i-2""#);
    assert!(run(&other).is_ok(), "instances without packages need no relate_pkg_instance");
}
