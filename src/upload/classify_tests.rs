use super::*;

fn http(status: u16, body: &str) -> Response {
    Response::Http { status, body: body.as_bytes().to_vec(), retry_after: None }
}

fn coded(status: u16, code: &str) -> Response {
    http(status, &format!(r#"{{"error_code":"{code}","error_msg":"m"}}"#))
}

#[derive(Debug, PartialEq)]
enum Kind {
    Delivered,
    Transient,
    Config,
    TooMany,
    Record,
}

fn kind(a: &Action) -> Kind {
    match a {
        Action::Delivered => Kind::Delivered,
        Action::Transient { .. } => Kind::Transient,
        Action::ConfigError { .. } => Kind::Config,
        Action::TooManyRecords => Kind::TooMany,
        Action::RecordError { .. } => Kind::Record,
    }
}

#[test]
fn the_design_table_by_error_code() {
    use Kind::*;
    // (HTTP status as documented, code, expected); the status must not matter for codes.
    let table = [
        (200, "MKT.0000", Delivered),
        (500, "MKT.0999", Transient),
        (500, "MKT.0100", Record),
        (400, "MKT.0101", Record),
        (400, "MKT.0102", Config),
        (400, "MKT.0199", Record),
        (401, "MKT.0150", Config),
        (401, "MKT.0151", Config),
        (401, "MKT.0154", Config),
        (500, "MKT.9001", Record),
        (500, "MKT.9002", Record),
        (500, "MKT.9003", TooMany),
        (500, "MKT.9004", Record),
    ];
    for (status, code, expected) in table {
        assert_eq!(kind(&classify(&coded(status, code))), expected, "{status} {code}");
        if code != "MKT.0000" {
            for other in [200, 400, 401, 500, 503] {
                assert_eq!(kind(&classify(&coded(other, code))), expected, "{code} must win over HTTP {other}");
            }
        }
    }
}

#[test]
fn codes_and_messages_are_carried() {
    let a = classify(&http(400, r#"{"error_code":"MKT.0102","error_msg":"invalid body signature"}"#));
    assert_eq!(a, Action::ConfigError { code: "MKT.0102".into(), message: "invalid body signature".into() });
    let a = classify(&http(500, r#"{"error_code":"MKT.9001"}"#));
    assert_eq!(a, Action::RecordError { code: "MKT.9001".into(), message: String::new() });
}

#[test]
fn by_status_when_no_code() {
    use Kind::*;
    let table = [
        (500, "", Transient),
        (502, "<html>bad gateway</html>", Transient),
        (503, "", Transient),
        (504, "{}", Transient),
        (408, "", Transient),
        (429, "", Transient),
        (200, "", Transient),
        (200, "<html>ok</html>", Transient),
        (413, "", TooMany),
        (400, "", Config),
        (401, "", Config),
        (403, "", Config),
        (404, "not found", Config),
        (405, "", Config),
        (301, "", Config),
        (100, "", Transient),
    ];
    for (status, body, expected) in table {
        assert_eq!(kind(&classify(&http(status, body))), expected, "{status} {body:?}");
    }
}

#[test]
fn careful_with_surprises() {
    // Unknown code, even with 200: retried, flagged so the caller warns; never delivered/rejected.
    match classify(&coded(200, "MKT.1234")) {
        Action::Transient { reason: TransientReason::UnknownCode { code, status: 200, .. }, .. } => assert_eq!(code, "MKT.1234"),
        other => panic!("{other:?}"),
    }
    // Success code with an error status: delivery not confirmed → send again.
    assert_eq!(kind(&classify(&coded(500, "MKT.0000"))), Kind::Transient);
    // error_code of the wrong JSON type is not a code.
    assert_eq!(kind(&classify(&http(400, r#"{"error_code":102}"#))), Kind::Config);
}

#[test]
fn no_answer_is_transient() {
    assert_eq!(classify(&Response::Timeout), Action::Transient { retry_after: None, reason: TransientReason::Timeout });
    assert_eq!(kind(&classify(&Response::Transport("connection reset".into()))), Kind::Transient);
}

#[test]
fn retry_after_is_passed_through() {
    let ra = Some(Duration::from_secs(7));
    for r in [
        Response::Http { status: 429, body: vec![], retry_after: ra },
        Response::Http { status: 503, body: vec![], retry_after: ra },
        Response::Http { status: 500, body: br#"{"error_code":"MKT.0999","error_msg":"busy"}"#.to_vec(), retry_after: ra },
    ] {
        match classify(&r) {
            Action::Transient { retry_after, .. } => assert_eq!(retry_after, ra, "{r:?}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn retry_after_seconds_form_only() {
    assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
    assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
    for bad in ["", "-1", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT", "99999999999999999999999"] {
        assert_eq!(parse_retry_after(bad), None, "{bad:?}");
    }
}
