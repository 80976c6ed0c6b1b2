//! `schemas/openapi.json` against the code (issue 17): the router's routes and methods are the
//! document's operations, no more and no fewer; the JSON Schemas of `schemas/` embedded in the
//! document are those files; the daemon serves the file at `/openapi.json`; and the real
//! answers of a live daemon — each success and each error status a route can give (400, 401,
//! 408, 413, 422, 500, 503) — are documented for their operation, with the documented content
//! type, headers and body schema. Together with schemathesis in CI
//! (`contrib/ci/schemathesis.sh`), a route, field or status code the code and the document
//! disagree on fails here.

mod util;

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::Duration;
use util::{example_config_with, repo_file, Env, Reply, NOW};

const INSTANCE: &str = "7f141bf1-aec8-4859-8323-fb3a8ad50721";
const TOKEN: &str = "openapi-test-token";

fn document() -> Value {
    let text = std::fs::read_to_string(repo_file("schemas/openapi.json")).expect("read schemas/openapi.json");
    serde_json::from_str(&text).expect("schemas/openapi.json is JSON")
}

/// Follows a local `$ref` (`#/a/b`) in the document, or returns the value itself.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap_or_else(|| panic!("unresolved $ref {r}")),
        None => v,
    }
}

/// A validator for a schema inside the document, its `#/components/…` references resolving
/// against the document.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    jsonschema::options().should_validate_formats(true).build(&root).unwrap_or_else(|e| panic!("schema does not compile: {e}\n{schema:#}"))
}

/// The (path, method) pairs the router in `src/server.rs` declares: `.route("PATH", get(h).post(h))`.
fn router_operations() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(repo_file("src/server.rs")).expect("read src/server.rs");
    let mut ops = BTreeSet::new();
    for chunk in src.split(".route(\"").skip(1) {
        let (path, rest) = chunk.split_once('"').expect("route path");
        // The method router: up to the parenthesis that closes `.route(`.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("closing parenthesis of .route(");
        let methods = &rest[..end];
        for m in ["get", "post", "put", "delete", "patch", "head", "options"] {
            let called = methods.match_indices(&format!("{m}(")).any(|(i, _)| i == 0 || !methods.as_bytes()[i - 1].is_ascii_alphanumeric());
            if called {
                ops.insert((path.to_string(), m.to_string()));
            }
        }
    }
    assert!(ops.len() >= 10, "the router parse found only {ops:?}: has src/server.rs changed shape?");
    ops
}

fn document_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "delete", "patch", "head", "options"].contains(&m.as_str()) {
                ops.insert((path.clone(), m.clone()));
            }
        }
    }
    ops
}

#[test]
fn document_is_openapi_3_1_and_every_schema_compiles() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"), "info.version of schemas/openapi.json is the crate's version");
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let v = validator(&doc, schema);
        drop(v);
        assert!(jsonschema::meta::validate(schema).is_ok(), "components.schemas.{name} is not a valid JSON Schema");
    }
    // Every operation documents its answers and each `$ref` resolves.
    for (path, method) in document_operations(&doc) {
        let op = &doc["paths"][&path][&method];
        assert!(op["operationId"].is_string(), "{method} {path}: no operationId");
        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}: no responses"));
        for (code, r) in responses {
            let r = resolve(&doc, r);
            for (ctype, media) in r["content"].as_object().into_iter().flatten() {
                validator(&doc, &media["schema"]);
                assert!(!ctype.is_empty());
            }
            assert!(code.len() == 3, "{method} {path}: status {code}");
        }
    }
}

#[test]
fn the_routers_routes_are_the_documents_operations() {
    let doc = document();
    let router = router_operations();
    let documented = document_operations(&doc);
    let undocumented: Vec<_> = router.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&router).collect();
    assert!(undocumented.is_empty(), "routes in src/server.rs missing from schemas/openapi.json: {undocumented:?}");
    assert!(unserved.is_empty(), "operations in schemas/openapi.json that src/server.rs does not route: {unserved:?}");
}

/// The embedded copy of `schemas/NAME`, with its `#/$defs/` references moved under the component.
#[test]
fn embedded_schemas_are_the_files_in_schemas() {
    let doc = document();
    for (file, component) in [
        ("event.schema.json", "Event"),
        ("ingest-result.schema.json", "IngestResult"),
        ("error.schema.json", "Error"),
        ("preview.schema.json", "Preview"),
    ] {
        let mut s: Value = serde_json::from_str(&std::fs::read_to_string(repo_file(&format!("schemas/{file}"))).unwrap()).unwrap();
        let obj = s.as_object_mut().unwrap();
        obj.remove("$schema");
        obj.remove("$id");
        let text = serde_json::to_string(&s).unwrap().replace("\"#/$defs/", &format!("\"#/components/schemas/{component}/$defs/"));
        let expected: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            doc["components"]["schemas"][component], expected,
            "components.schemas.{component} of schemas/openapi.json differs from schemas/{file}: copy the file in (its `#/$defs/` refs as `#/components/schemas/{component}/$defs/`)"
        );
    }
}

/// Checks one live answer against the document: its status is documented for the operation,
/// with its content type, its headers, and a body valid against the schema.
fn conforms(doc: &Value, method: &str, template: &str, reply: &Reply) {
    let what = format!("{} {template} answered {}", method.to_uppercase(), reply.status);
    let op = &doc["paths"][template][method];
    assert!(op.is_object(), "{what}: the operation is not documented");
    let documented = &op["responses"][reply.status.to_string()];
    assert!(documented.is_object(), "{what}: status {} is not documented for it; body: {}", reply.status, reply.text());
    let documented = resolve(doc, documented);
    for (name, header) in documented["headers"].as_object().into_iter().flatten() {
        let value = reply.headers.get(name.as_str()).unwrap_or_else(|| panic!("{what}: no `{name}` header"));
        let value: Value = value.to_str().unwrap().parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(value.to_str().unwrap()));
        let errs: Vec<_> = validator(doc, &header["schema"]).iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errs.is_empty(), "{what}: header {name}: {errs:?}");
    }
    let content = documented["content"].as_object().unwrap_or_else(|| panic!("{what}: no content documented"));
    let mime = reply.content_type.split(';').next().unwrap().trim();
    let media = content.get(mime).unwrap_or_else(|| panic!("{what}: content type {mime:?} is not documented ({:?})", content.keys()));
    let body = if mime == "application/json" { reply.json() } else { Value::String(reply.text()) };
    let errs: Vec<_> = validator(doc, &media["schema"]).iter_errors(&body).map(|e| format!("{e} (at {})", e.instance_path)).collect();
    assert!(errs.is_empty(), "{what}: the body does not match the document: {errs:#?}\n{body:#}");
}

/// A request on a raw connection: the head, then `sent` of the body, then waits for the answer.
fn raw(addr: &str, head: &str, sent: &[u8]) -> Reply {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(sent).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status");
    let mut headers = reqwest::header::HeaderMap::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(), v.trim().parse().unwrap());
        }
    }
    let content_type = headers.get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    Reply { status, content_type, body: body.as_bytes().to_vec(), headers }
}

fn token_env() -> Env {
    Env::with_config(&example_config_with(&[
        ("# token_env = \"METERD_TOKEN\"", "token_env = \"METERD_TOKEN\""),
        ("max_body = 16777216", "max_body = 4096"),
        ("body_timeout = \"60s\"", "body_timeout = \"1s\""),
        // A `stop` plan, so that packages and quota answer with figures.
        ("# package = \"stop\"", "package = \"stop\""),
    ]))
}

#[test]
fn live_answers_of_every_route_conform_to_the_document() {
    let doc = document();
    let env = token_env();
    env.add_instance(INSTANCE, "calls", "2026-11-20T00:00:00Z");
    let d = env.daemon_with(&[], &[("METERD_TOKEN", TOKEN)]);
    let h = d.http_with_token(TOKEN);
    let anon = d.http();
    let check = |m: &str, t: &str, r: Reply| conforms(&doc, m, t, &r);
    let inst = |tail: &str| format!("/v1/instances/{INSTANCE}/{tail}");

    // /openapi.json: no token, the file's bytes.
    let served = anon.get("/openapi.json");
    assert_eq!(served.body, std::fs::read(repo_file("schemas/openapi.json")).unwrap(), "the daemon serves another document");
    check("get", "/openapi.json", served);

    // Events: 200 (accepted, duplicate, rejected), 400, 401, 413, 408.
    let ev = |id: &str, q: &str| format!(r#"{{"id":"{id}","instance_id":"{INSTANCE}","quantity":"{q}","time":"2026-11-23T11:00:00Z"}}"#);
    let body = format!("[{},{},{{\"id\":\"bad\"}}]", ev("e1", "2.5"), ev("e1", "2.5"));
    let r = h.events(body);
    assert_eq!(r.json()["accepted"], 1, "{}", r.text());
    check("post", "/v1/events", r);
    check("post", "/v1/events", h.post("/v1/events", ev("e2", "1") + "\n" + &ev("e3", "1")));
    check("post", "/v1/events", h.events("not json"));
    // A body holding no event object at all is refused whole (schemathesis found `"AAA"` taken).
    for scalar in ["5", "\"AAA\"", "null"] {
        let r = h.events(scalar);
        assert_eq!(r.status, 400, "{scalar}: {}", r.text());
        check("post", "/v1/events", r);
    }
    check("post", "/v1/events", anon.events(ev("e4", "1")));
    check("post", "/v1/events", h.events(vec![b' '; 5000]));
    let slow =
        raw(&d.addr, &format!("POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n"), b"[");
    assert_eq!(slow.status, 408, "{}", slow.text());
    check("post", "/v1/events", slow);

    // Instances: 201 (new), 200 (the same again), 400 (shape), 422 (data), 401.
    for status in [201, 200] {
        let r = h.post("/v1/instances", r#"{"instance_id":"i-2","plan":"calls","start":"2026-11-22T00:00:00Z"}"#);
        assert_eq!(r.status, status, "{}", r.text());
        check("post", "/v1/instances", r);
    }
    check("post", "/v1/instances", h.post("/v1/instances", r#"{"instance_id":"i-3","plan":"calls"}"#));
    check("post", "/v1/instances", h.post("/v1/instances", r#"{"instance_id":"i 3","plan":"calls","start":"2026-11-22T00:00:00Z"}"#));
    check("post", "/v1/instances", h.post("/v1/instances", r#"{"instance_id":"i-3","plan":"nope","start":"2026-11-22T00:00:00Z"}"#));
    check("post", "/v1/instances", anon.post("/v1/instances", "{}"));
    check("get", "/v1/instances", h.get("/v1/instances"));
    check("get", "/v1/instances", anon.get("/v1/instances"));

    // Status changes and release, with and without warnings.
    let t = "/v1/instances/{id}/status";
    check("post", t, h.post(&inst("status"), r#"{"status":"FREEZE","time":"2026-11-23T10:30:00Z"}"#));
    check("post", t, h.post(&inst("status"), r#"{"status":"UNFREEZE","time":"2026-11-23T10:45:00Z"}"#));
    check("post", t, h.post(&inst("status"), r#"{"status":"MELT","time":"2026-11-23T10:45:00Z"}"#));
    check("post", t, h.post(&inst("status"), r#"{"status":"FREEZE","time":"yesterday"}"#));
    check("post", t, h.post("/v1/instances/nope/status", r#"{"status":"FREEZE","time":"2026-11-23T10:30:00Z"}"#));

    // Packages and quota.
    let t = "/v1/instances/{id}/packages";
    let r = h.post(
        &inst("packages"),
        r#"{"package_id":"pkg-1","quota":"100","from":"2026-11-01T00:00:00Z","to":"2026-12-01T00:00:00Z","reset":"monthly"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    check("post", t, r);
    check(
        "post",
        t,
        h.post(&inst("packages"), r#"{"package_id":"pkg-2","quota":true,"from":"2026-11-01T00:00:00Z","to":"2026-12-01T00:00:00Z"}"#),
    );
    check("post", t, h.post(&inst("packages"), r#"{"package_id":"pkg-2"}"#));
    check("get", "/v1/instances/{id}/quota", h.get(&inst("quota")));
    check("get", "/v1/instances/{id}/quota", h.get("/v1/instances/nope/quota"));
    // An id that is not UTF-8 once decoded: a JSON 400 like every other error.
    let r = h.get("/v1/instances/%FF/quota");
    assert_eq!((r.status, r.content_type.as_str()), (400, "application/json"), "{}", r.text());
    check("get", "/v1/instances/{id}/quota", r);
    let r = h.post("/v1/instances/%FF/release", r#"{"time":"2026-11-23T10:50:00Z"}"#);
    assert_eq!((r.status, r.content_type.as_str()), (400, "application/json"), "{}", r.text());
    check("post", "/v1/instances/{id}/release", r);

    // Preview: 200, 400 (bad time, reversed range, unknown parameter).
    check("get", "/v1/preview", h.get("/v1/preview"));
    check("get", "/v1/preview", h.get(&format!("/v1/preview?instance={INSTANCE}&from=2026-11-23T00:00:00Z&to=2026-11-24T00:00:00Z")));
    check("get", "/v1/preview", h.get("/v1/preview?from=2026-11-24T00:00:00Z&to=2026-11-23T00:00:00Z"));
    check("get", "/v1/preview", h.get("/v1/preview?from=soon"));
    check("get", "/v1/preview", h.get("/v1/preview?color=red"));
    let r = h.get("/v1/preview?instance=nope");
    assert_eq!(r.status, 422, "{}", r.text());
    check("get", "/v1/preview", r);

    // Release last (with a warning: events after it).
    let t = "/v1/instances/{id}/release";
    check("post", t, h.post(&inst("release"), r#"{"time":"2026-11-23T10:50:00Z"}"#));
    check("post", t, h.post(&inst("release"), r#"{"when":"2026-11-23T10:50:00Z"}"#));
    check("post", t, h.post("/v1/instances/nope/release", r#"{"time":"2026-11-23T10:50:00Z"}"#));

    // Operations.
    check("get", "/v1/status", h.get("/v1/status"));
    check("get", "/metrics", h.get("/metrics"));
    check("get", "/metrics", h.get("/metrics?audit=1"));
    check("get", "/metrics", h.get("/metrics?audit=yes"));
    // An unknown parameter is named, with the one /metrics accepts (not serde's wording).
    let unknown = h.get("/metrics?foo");
    let error = unknown.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(error.starts_with("unknown query parameter `foo`; /metrics accepts only `audit`"), "{error}");
    assert!(!error.contains("unknown field"), "{error}");
    check("get", "/metrics", unknown);
    check("get", "/metrics", anon.get("/metrics"));
    check("get", "/healthz", anon.get("/healthz"));
    check("get", "/readyz", anon.get("/readyz"));

    // A method the document does not list on a documented path is not served.
    for (m, path) in [("DELETE", "/v1/events"), ("PUT", "/v1/instances"), ("POST", "/v1/preview"), ("POST", "/healthz")] {
        let r = raw(
            &d.addr,
            &format!("{m} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
            b"",
        );
        assert_eq!(r.status, 405, "{m} {path} is not in the document but answered {}", r.status);
    }
}

/// The failure answers: 500 from a handler that panics, 503 (with `Retry-After`) when the
/// store cannot take events, and 503 from `/healthz` and `/readyz` when the writer is dead.
#[test]
fn failure_answers_conform_to_the_document() {
    let doc = document();
    let env = token_env();
    env.add_instance(INSTANCE, "calls", "2026-11-20T00:00:00Z");
    let d = env.daemon_with(&[], &[("METERD_TOKEN", TOKEN), ("METERD_FAULTS", "preview-handler,ingest-writer-panic")]);
    let h = d.http_with_token(TOKEN);
    let r = h.get("/v1/preview");
    assert_eq!(r.status, 500, "{}", r.text());
    conforms(&doc, "get", "/v1/preview", &r);
    let ev = format!(r#"{{"id":"e1","instance_id":"{INSTANCE}","quantity":"1","time":"{NOW}"}}"#);
    let mut r = h.events(ev.clone());
    for _ in 0..50 {
        if r.status == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        r = h.events(ev.clone());
    }
    assert_eq!(r.status, 503, "{}", r.text());
    conforms(&doc, "post", "/v1/events", &r);
    // The writer's reply channel closes while its thread is still unwinding: the events answer
    // can come a moment before the thread has ended and `/healthz` sees it dead.
    let mut r = d.http().get("/healthz");
    for _ in 0..50 {
        if r.status == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        r = d.http().get("/healthz");
    }
    assert_eq!(r.status, 503, "{}", r.text());
    conforms(&doc, "get", "/healthz", &r);
    let r = d.http().get("/readyz");
    assert_eq!(r.status, 503, "{}", r.text());
    conforms(&doc, "get", "/readyz", &r);
}

/// Paths and methods the API does not have answer the API's JSON error (`{"error"}`) saying
/// where the routes are listed, not axum's empty body; 405 names the methods in `Allow`.
#[test]
fn unknown_paths_and_methods_answer_the_json_error() {
    let env = token_env();
    let d = env.daemon_with(&[], &[("METERD_TOKEN", TOKEN)]);
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let ask = |method: &str, path: &str, with_token: bool| {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\nContent-Length: 0\r\n\r\n",
            if with_token { auth.as_str() } else { "" }
        );
        raw(&d.addr, &head, b"")
    };
    let missing = ask("GET", "/v1/nothing-here", true);
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert!(
        missing.json()["error"].as_str().is_some_and(|e| e.contains("/v1/nothing-here") && e.contains("/openapi.json")),
        "{}",
        missing.text()
    );
    let wrong = ask("DELETE", "/v1/events", true);
    assert_eq!(wrong.status, 405, "{}", wrong.text());
    assert!(wrong.json()["error"].as_str().is_some_and(|e| e.contains("DELETE")), "{}", wrong.text());
    assert_eq!(wrong.headers.get("allow").and_then(|v| v.to_str().ok()), Some("POST"), "{:?}", wrong.headers);
    let open = ask("POST", "/healthz", false);
    assert_eq!(open.status, 405, "{}", open.text());
    assert!(open.json()["error"].is_string(), "{}", open.text());
}

/// Requests refused for their token are logged (one WARN a minute at most, with the count),
/// never with the token they gave.
#[test]
fn refused_tokens_are_logged_once_without_the_token() {
    let env = token_env();
    let d = env.daemon_with(&[], &[("METERD_TOKEN", TOKEN)]);
    let wrong = d.http_with_token("not-the-token-5f3a");
    for _ in 0..3 {
        assert_eq!(wrong.get("/v1/status").status, 401);
    }
    util::wait_for("the refusal logged", Duration::from_secs(10), || d.stderr().contains("wrong bearer token"));
    let log = d.stderr();
    assert_eq!(log.matches("wrong bearer token").count(), 1, "{log}");
    assert!(log.contains("/v1/status") && !log.contains("not-the-token-5f3a") && !log.contains(TOKEN), "{log}");
}
