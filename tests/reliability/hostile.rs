//! Hostile input (issue 7, test 5): a proptest generator of request bodies built field by field
//! from valid and hostile values — invalid UTF-8, raw NUL and control bytes, deep nesting, huge
//! numbers and strings, SQL-like text, wrong JSON types, unknown and duplicated keys, truncated
//! JSON, byte order marks, plain garbage — sent as one object, a JSON array or NDJSON.
//!
//! Each generated event knows what must happen to it: accepted (with exactly these stored
//! values), refused by the parser, refused at ingest (unknown instance, clock, metric), or
//! unreadable JSON (which refuses a whole array, but only its own line in NDJSON). Where the
//! outcome is legitimately open (a lone surrogate, a leap second, a 400-digit number) only the
//! general rules are checked: no panic, every event accounted for, stored rows = accepted.
//!
//! About 100k bodies go through `collector::parse_body`, 3,000 through `Collector::ingest_body`
//! on a real store, 2,000 through HTTP, and 40 through `meterd ingest`, plus oversize bodies
//! (413) and 100k-deep nesting over HTTP. Seeded: `SEED=<n>` replays.

use crate::common::{assert_sound, seed};
use crate::util::{db, now, Env, Http, NOW};
use meterd::collector::{parse_body, Collector};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};

/// What must happen to one field (and, combined, to one event).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Valid,
    /// Refused inside the writer: unknown instance, clock rules, metric.
    IngestRefused,
    /// Either outcome is acceptable; only the general rules apply.
    Unknown,
    /// Refused by the parser (valid JSON, bad value).
    ParseRefused,
    /// JSON in shape but not valid text (invalid UTF-8 inside a string): refuses a whole array;
    /// as a line of NDJSON (or a single object) it is refused on its own.
    BrokenUtf8,
    /// Not JSON at all.
    Broken,
}

#[derive(Clone, Debug)]
struct Field {
    raw: Vec<u8>,
    class: Class,
    /// For valid quantities and times: the value the store must hold.
    expect: Option<String>,
}

fn f(raw: impl Into<Vec<u8>>, class: Class) -> Field {
    Field { raw: raw.into(), class, expect: None }
}

fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

const ID: &str = "@@ID@@";

fn id_field() -> impl Strategy<Value = Field> {
    use Class::*;
    prop_oneof![
        60 => prop::sample::select(vec!["", "'); DROP TABLE events;--", " spaced ", "\"quoted\"", "\\back\\slash", "%s%n{}", "~!@#$^&*()_+`", "@@PAD@@"])
            .prop_map(|s| f(js(&format!("{ID}{s}")), Valid)),
        10 => Just(f(js(""), ParseRefused)),
        10 => (129usize..2000).prop_map(|n| f(js(&format!("{ID}{}", "y".repeat(n))), ParseRefused)),
        1 => (10_000usize..300_000).prop_map(|n| f(format!("\"{ID}{}\"", "z".repeat(n)), ParseRefused)),
        10 => prop::sample::select(vec!["\u{0}", "é", "\t", "\u{7f}", "😀", "\u{202e}"]).prop_map(|s| f(js(&format!("{ID}{s}")), ParseRefused)),
        10 => prop::sample::select(vec!["5", "null", "true", "[\"@@ID@@\"]", "{\"a\":\"@@ID@@\"}"]).prop_map(|s| f(s, ParseRefused)),
        5 => Just(f(&b"\"@@ID@@\xff\xfe\""[..], BrokenUtf8)),
        10 => prop::sample::select(vec![&b"\"@@ID@@\x00\""[..], b"\"@@ID@@\x01\"", b"\"@@ID@@"]).prop_map(|s| f(s, Broken)),
        10 => Just(f(format!("\"{ID}\\ud800\""), Unknown)),
    ]
}

fn instance_field() -> impl Strategy<Value = Field> {
    use Class::*;
    prop_oneof![
        8 => prop::sample::select(vec!["inst-a", "inst-b"]).prop_map(|s| f(js(s), Valid)),
        1 => Just(f(js("ghost-1"), IngestRefused)),
        2 => prop::sample::select(vec![
            js(""), js("x'; DROP TABLE instances;--"), js(&"a".repeat(65)), js("inst a"), js("inst-ä"), "7".into(), "null".into(), "[]".into()
        ]).prop_map(|s| f(s, ParseRefused)),
        1 => Just(f(&b"\"inst-\xc3\x28\""[..], BrokenUtf8)),
    ]
}

/// Normal decimal text: no leading zeros in the integer part, no trailing fraction zeros.
fn normal(int: u64, frac: &str) -> String {
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}

fn quantity_field() -> impl Strategy<Value = Field> {
    use Class::*;
    let valid = (0u64..=999_999_999_999, "[0-9]{0,9}", any::<bool>(), any::<bool>()).prop_map(|(int, frac, string, small)| {
        let int = if small { int % 100 } else { int };
        let text = if frac.is_empty() { int.to_string() } else { format!("{int}.{frac}") };
        let raw = if string { js(&text) } else { text };
        Field { raw: raw.into_bytes(), class: Valid, expect: Some(normal(int, &frac)) }
    });
    prop_oneof![
        8 => valid,
        1 => Just(Field { raw: b"1000000000000".to_vec(), class: Valid, expect: Some("1000000000000".into()) }),
        3 => prop::sample::select(vec![
            js("-1"), js("+1"), "-1".into(), "-0".into(), "1e3".into(), js("1e3"), "1E400".into(), js("NaN"), js("Infinity"), js(""), js(" 1"),
            js("1."), js(".5"), js("0x10"), "1.0000000001".into(), "1000000000000.000000001".into(), "9".repeat(40), js("１"), "true".into(),
            "null".into(), "[]".into(), "{}".into(), js("1,5"), js("1 000"),
        ]).prop_map(|s| f(s, ParseRefused)),
        1 => (400usize..20_000).prop_map(|n| f("9".repeat(n), Unknown)),
        1 => (129usize..3000).prop_map(|d| f(format!("{}1{}", "[".repeat(d), "]".repeat(d)), ParseRefused)),
        1 => Just(f("\"1", Broken)),
    ]
}

/// NOW as UTC seconds.
fn now_s() -> i64 {
    now().secs()
}

fn format_time(secs: i64, nanos: u32, digits: usize, offset_min: i32) -> String {
    use chrono::{FixedOffset, TimeZone};
    let tz = FixedOffset::east_opt(offset_min * 60).unwrap();
    let dt = tz.timestamp_opt(secs, nanos).unwrap();
    let mut s = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
    if digits > 0 {
        s.push('.');
        s.push_str(&format!("{nanos:09}")[..digits]);
    }
    if offset_min == 0 {
        s.push('Z');
    } else {
        s.push_str(&dt.format("%:z").to_string());
    }
    s
}

fn time_field() -> impl Strategy<Value = Field> {
    use Class::*;
    let offsets = prop::sample::select(vec![0, 480, -330]);
    let valid = (-19 * 86_400i64..240, 0usize..=9, 0u32..1_000_000_000, offsets.clone()).prop_map(|(delta, digits, nanos, off)| {
        let nanos = if digits == 0 { 0 } else { nanos / 10u32.pow(9 - digits as u32) * 10u32.pow(9 - digits as u32) };
        let secs = now_s() + delta;
        Field {
            raw: js(&format_time(secs, nanos, digits, off)).into_bytes(),
            class: Valid,
            expect: Some((secs as i128 * 1_000_000_000 + nanos as i128).to_string()),
        }
    });
    let clock = prop_oneof![(-40 * 86_400i64..-21 * 86_400), (360i64..10 * 365 * 86_400)]
        .prop_map(|delta| f(js(&format_time(now_s() + delta, 0, 0, 0)), IngestRefused));
    prop_oneof![
        8 => valid,
        1 => clock,
        1 => Just(f(js("1970-01-01T00:00:00Z"), IngestRefused)),
        2 => prop::sample::select(vec![
            js("2026-11-23T10:00:00"), js("2026-02-30T00:00:00Z"), js("yesterday"), js(""), "1700000000".into(), "null".into(),
            js("9999-12-31T23:59:59Z"), js("2026-13-01T00:00:00Z"), js("2026-11-23T25:00:00Z"), js("2026-11-23T10:00:00+25:00"),
        ]).prop_map(|s| f(s, ParseRefused)),
        1 => prop::sample::select(vec![js("2026-11-23T10:59:60Z"), js("2026-11-23T10:00:00.123456789012Z")]).prop_map(|s| f(s, Unknown)),
    ]
}

/// Optional extra members: the metric, unknown or duplicated keys.
fn extra_field() -> impl Strategy<Value = Option<(String, Field)>> {
    use Class::*;
    prop_oneof![
        12 => Just(None),
        1 => Just(Some(("metric".into(), f(js("api_calls"), Valid)))),
        1 => Just(Some(("metric".into(), f(js("gb_hours"), IngestRefused)))),
        1 => Just(Some(("metric".into(), f("5", ParseRefused)))),
        1 => prop::sample::select(vec!["extra", "Id", "id", "quantity", "__proto__"]).prop_map(|k| Some((k.to_string(), f("1", ParseRefused)))),
    ]
}

#[derive(Clone, Debug)]
struct GenEvent {
    id: Field,
    instance: Field,
    quantity: Field,
    time: Field,
    extra: Option<(String, Field)>,
    ws: &'static str,
}

impl GenEvent {
    fn class(&self) -> Class {
        let mut fields = vec![&self.id, &self.instance, &self.quantity, &self.time];
        if let Some((_, x)) = &self.extra {
            fields.push(x);
        }
        let worst = fields.iter().map(|x| x.class).max().unwrap();
        // A value refused by the parser wins over an open outcome elsewhere.
        if worst == Class::Unknown && fields.iter().any(|x| x.class == Class::ParseRefused) {
            return Class::ParseRefused;
        }
        worst
    }

    /// The event's bytes with its unique id prefix filled in.
    fn bytes(&self, prefix: &str) -> (Vec<u8>, Option<String>) {
        let pad = "p".repeat(128usize.saturating_sub(prefix.len()));
        let id = String::from_utf8_lossy(&self.id.raw).into_owned();
        let fill = |raw: &[u8]| -> Vec<u8> {
            let text = raw.to_vec();
            replace(&replace(&text, b"@@PAD@@", pad.as_bytes()), ID.as_bytes(), prefix.as_bytes())
        };
        let w = self.ws.as_bytes();
        let mut out = b"{".to_vec();
        let mut member = |k: &str, v: &[u8], first: bool| {
            if !first {
                out.push(b',');
            }
            out.extend_from_slice(w);
            out.extend_from_slice(js(k).as_bytes());
            out.extend_from_slice(w);
            out.push(b':');
            out.extend_from_slice(w);
            out.extend_from_slice(v);
        };
        member("id", &fill(&self.id.raw), true);
        member("instance_id", &self.instance.raw, false);
        member("quantity", &self.quantity.raw, false);
        member("time", &self.time.raw, false);
        if let Some((k, v)) = &self.extra {
            member(k, &fill(&v.raw), false);
        }
        out.extend_from_slice(w);
        out.push(b'}');
        let valid_id = (self.id.class == Class::Valid).then(|| serde_json::from_slice::<String>(&fill(self.id.raw.as_slice())).unwrap());
        let _ = id;
        (out, valid_id)
    }
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i] == from[0] && hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

fn event() -> impl Strategy<Value = GenEvent> {
    (id_field(), instance_field(), quantity_field(), time_field(), extra_field(), prop::sample::select(vec!["", " ", "\t"]))
        .prop_map(|(id, instance, quantity, time, extra, ws)| GenEvent { id, instance, quantity, time, extra, ws })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    Single,
    Array,
    Ndjson,
}

#[derive(Clone, Debug)]
enum Mangle {
    None,
    Bom,
    /// Cut the body after this fraction (per mille) of its bytes.
    Truncate(u16),
    /// Replace the body by random bytes.
    Garbage(Vec<u8>),
}

#[derive(Clone, Debug)]
struct Case {
    events: Vec<GenEvent>,
    shape: Shape,
    mangle: Mangle,
}

fn case() -> impl Strategy<Value = Case> {
    let shape = prop_oneof![Just(Shape::Single), Just(Shape::Array), Just(Shape::Ndjson)];
    let mangle = prop_oneof![
        12 => Just(Mangle::None),
        1 => Just(Mangle::Bom),
        2 => (1u16..1000).prop_map(Mangle::Truncate),
        2 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Mangle::Garbage),
    ];
    (prop::collection::vec(event(), 1..5), shape, mangle).prop_map(|(events, shape, mangle)| {
        let shape = if events.len() > 1 && shape == Shape::Single { Shape::Ndjson } else { shape };
        Case { events, shape, mangle }
    })
}

/// What a whole body must produce.
#[derive(Debug)]
enum Expect {
    /// Refused whole (HTTP 400, CLI exit 1, library `NotJson`).
    Whole,
    /// Per event, in order; `None` where the outcome is open.
    Each(Vec<Option<Class>>),
    /// Anything consistent.
    Open,
}

/// One event of a built body: its class, id, instance, quantity and time as sent (`None`:
/// left out).
type BuiltEvent = (Class, Option<String>, String, Option<String>, Option<String>);

/// A built body: its bytes, the expectation, and per event (valid id, expected stored values).
struct Built {
    body: Vec<u8>,
    expect: Expect,
    events: Vec<BuiltEvent>,
}

fn build(c: &Case, n: u64) -> Built {
    let mut parts = Vec::new();
    let mut events = Vec::new();
    for (j, e) in c.events.iter().enumerate() {
        let (bytes, id) = e.bytes(&format!("h{n}-{j}-"));
        parts.push(bytes);
        let inst = String::from_utf8_lossy(&e.instance.raw).trim_matches('"').to_string();
        events.push((e.class(), id, inst, e.quantity.expect.clone(), e.time.expect.clone()));
    }
    let mut body = match c.shape {
        Shape::Single => parts[0].clone(),
        Shape::Array => {
            let mut b = b"[".to_vec();
            b.extend(parts.join(&b","[..]));
            b.push(b']');
            b
        }
        Shape::Ndjson => {
            let mut b = parts.join(&b"\n"[..]);
            b.push(b'\n');
            b
        }
    };
    let classes: Vec<Class> = events.iter().map(|e| e.0).collect();
    // Every field of an open outcome is still valid JSON, so only `Broken*` decides the body.
    let mut expect = match c.shape {
        Shape::Array if classes.iter().any(|c| *c >= Class::BrokenUtf8) => Expect::Whole,
        Shape::Single | Shape::Ndjson if classes.iter().all(|c| *c == Class::Broken) => Expect::Whole,
        _ => Expect::Each(classes.iter().map(|c| (*c != Class::Unknown).then_some(*c)).collect()),
    };
    match &c.mangle {
        Mangle::None => {}
        Mangle::Bom => body.splice(0..0, b"\xEF\xBB\xBF".iter().copied()).for_each(drop),
        Mangle::Truncate(permille) => {
            body.truncate(body.len() * *permille as usize / 1000);
            expect = Expect::Open;
        }
        Mangle::Garbage(bytes) => {
            body = bytes.clone();
            expect = Expect::Open;
        }
    }
    Built { body, expect, events }
}

fn runner(seed: u64, cases: u32) -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let cfg = PtConfig { cases, max_shrink_iters: 64, failure_persistence: None, ..PtConfig::default() };
    TestRunner::new_with_rng(cfg, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

fn check(ok: bool, msg: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if ok {
        Ok(())
    } else {
        Err(TestCaseError::fail(msg()))
    }
}

/// The parser alone: 100k bodies.
#[test]
fn parser_answers_every_hostile_body() {
    let seed = seed("parser_answers_every_hostile_body");
    let counter = AtomicU64::new(0);
    let result = runner(seed, 100_000).run(&case(), |c| {
        let b = build(&c, counter.fetch_add(1, Ordering::Relaxed));
        match (parse_body(&b.body), &b.expect) {
            (Err(e), Expect::Whole | Expect::Open) => check(!e.0.is_empty(), || "empty error".into()),
            (Err(e), Expect::Each(_)) => Err(TestCaseError::fail(format!("refused whole ({e}), expected per-event answers"))),
            (Ok(_), Expect::Whole) => Err(TestCaseError::fail("accepted a body that is not JSON")),
            (Ok(parsed), expect) => {
                for ev in parsed.iter().flatten() {
                    check(!ev.id.is_empty() && ev.id.len() <= 128 && ev.id.chars().all(|c| (' '..='~').contains(&c)), || {
                        format!("bad id {ev:?}")
                    })?;
                    check(ev.quantity.0 >= rust_decimal::Decimal::ZERO && ev.quantity.0.scale() <= 9, || format!("bad quantity {ev:?}"))?;
                }
                for r in parsed.iter().filter_map(|p| p.as_ref().err()) {
                    check(!r.error.is_empty(), || "empty refusal".into())?;
                }
                if let Expect::Each(classes) = expect {
                    check(parsed.len() == classes.len(), || format!("{} events parsed of {}", parsed.len(), classes.len()))?;
                    for (i, (p, class)) in parsed.iter().zip(classes).enumerate() {
                        let Some(class) = class else { continue };
                        let (_, id, inst, qty, time) = &b.events[i];
                        match (p, class) {
                            (Ok(ev), Class::Valid) => {
                                check(Some(&ev.id) == id.as_ref() && &ev.instance_id == inst, || format!("event {i}: {ev:?}"))?;
                                check(Some(ev.quantity.to_string()) == *qty, || format!("event {i}: quantity {} ≠ {qty:?}", ev.quantity))?;
                                check(Some(ev.time.0.to_string()) == *time, || format!("event {i}: time {} ≠ {time:?}", ev.time.0))?;
                            }
                            (Ok(_), Class::IngestRefused) => {}
                            (Err(_), Class::ParseRefused | Class::BrokenUtf8 | Class::Broken) => {}
                            (p, class) => return Err(TestCaseError::fail(format!("event {i}: expected {class:?}, parser said {p:?}"))),
                        }
                    }
                }
                Ok(())
            }
        }
    });
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
    eprintln!("parser: 100000 hostile bodies, seed {seed}");
}

/// An event is a JSON object: the same fields as a JSON array (which serde would map by
/// position) are refused, not accepted.
#[test]
fn an_event_must_be_an_object_not_an_array() {
    let r = meterd::collector::parse::parse_event(br#"["a","inst-a","1","2026-11-23T11:00:00Z"]"#);
    let err = r.expect_err("an array is not an event");
    assert!(err.error.contains("object"), "{}", err.error);
    let body = parse_body(b"[[\"a\",\"inst-a\",\"1\",\"2026-11-23T11:00:00Z\"]]").unwrap();
    assert!(body[0].is_err(), "{body:?}");
}

/// One door of ingest: the answer as JSON (`Ok`) or a whole-body refusal text (`Err`).
trait Door {
    fn ingest(&self, body: &[u8]) -> Result<Value, String>;
}

struct Library(Collector);

impl Door for Library {
    fn ingest(&self, body: &[u8]) -> Result<Value, String> {
        match self.0.ingest_body(body, now()) {
            Ok(r) => Ok(serde_json::to_value(r).unwrap()),
            Err(meterd::collector::IngestError::NotJson(e)) => Err(e.to_string()),
            Err(e) => panic!("store failure on hostile input: {e}"),
        }
    }
}

struct OverHttp(Http);

impl Door for OverHttp {
    fn ingest(&self, body: &[u8]) -> Result<Value, String> {
        let r = self.0.post("/v1/events", body.to_vec());
        match r.status {
            200 => Ok(r.json()),
            400 => Err(r.json()["error"].as_str().expect("error text").to_string()),
            s => panic!("HTTP {s} on hostile input: {}", r.text()),
        }
    }
}

/// Checks one answer against the expectation and the store; re-sends every 4th accepted body.
fn check_door(door: &dyn Door, env: &Env, b: &Built, n: u64) -> Result<(), TestCaseError> {
    let c = env.db();
    let before = db::count_events(&c);
    let answer = door.ingest(&b.body);
    let after = db::count_events(&c);
    let v = match (answer, &b.expect) {
        (Err(e), Expect::Whole | Expect::Open) => {
            check(!e.is_empty(), || "empty error".into())?;
            return check(after == before, || "a refused body stored events".into());
        }
        (Err(e), Expect::Each(_)) => return Err(TestCaseError::fail(format!("refused whole: {e}"))),
        (Ok(v), Expect::Whole) => return Err(TestCaseError::fail(format!("answered {v} for a body that is not JSON"))),
        (Ok(v), _) => v,
    };
    let accepted = v["accepted"].as_u64().unwrap();
    let rejected = v["rejected"].as_array().unwrap();
    check((after - before) as u64 == accepted, || format!("{} rows stored, {accepted} accepted: {v}", after - before))?;
    check(v["duplicates"] == 0, || format!("fresh ids cannot be duplicates: {v}"))?;
    check(rejected.iter().all(|r| !r["error"].as_str().unwrap_or("").is_empty()), || format!("a refusal without a message: {v}"))?;
    if let Expect::Each(classes) = &b.expect {
        check(accepted as usize + rejected.len() == classes.len(), || format!("{v} for {} events", classes.len()))?;
        for (i, class) in classes.iter().enumerate() {
            let refused = rejected.iter().any(|r| r["index"] == i);
            let Some(class) = class else { continue };
            let (_, id, inst, qty, time) = &b.events[i];
            check(refused == (*class != Class::Valid), || format!("event {i} ({class:?}): {v}"))?;
            if let Some(id) = id {
                let stored = db::event(&c, inst, id);
                if *class == Class::Valid {
                    let want = (qty.clone().unwrap(), time.as_ref().unwrap().parse::<i64>().unwrap());
                    check(stored == Some(want.clone()), || format!("event {i} stored as {stored:?}, sent {want:?}"))?;
                } else {
                    check(stored.is_none(), || format!("refused event {i} was stored"))?;
                }
            }
        }
    }
    if accepted > 0 && n % 4 == 0 {
        let again = door.ingest(&b.body).map_err(TestCaseError::fail)?;
        check(again["accepted"] == 0 && again["duplicates"] == accepted, || format!("re-send: {again} after {v}"))?;
        check(db::count_events(&c) == after, || "a re-send stored rows".into())?;
    }
    Ok(())
}

fn env_with_instances() -> Env {
    let env = Env::new();
    env.add_instance("inst-a", "calls", "2026-10-01T00:00:00Z");
    env.add_instance("inst-b", "calls", "2026-10-01T00:00:00Z");
    env
}

fn run_door(name: &str, cases: u32, door: &dyn Door, env: &Env, between: &dyn Fn(u64)) {
    let seed = seed(name);
    let counter = AtomicU64::new(0);
    let result = runner(seed, cases).run(&case(), |c| {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        between(n);
        check_door(door, env, &build(&c, n), n)
    });
    if let Err(e) = result {
        panic!("{name}: seed {seed}: {e}");
    }
    eprintln!("{name}: {cases} hostile bodies, seed {seed}");
}

#[test]
fn library_ingest_stores_exactly_what_it_accepts() {
    let env = env_with_instances();
    let door = Library(env.collector());
    run_door("library_ingest_stores_exactly_what_it_accepts", 3_000, &door, &env, &|_| {});
    drop(door);
    assert_sound(&env, "after hostile library ingest");
}

#[test]
fn http_ingest_answers_every_hostile_body_and_stays_up() {
    let env = env_with_instances();
    let daemon = env.daemon();
    let health = daemon.http();
    let door = OverHttp(daemon.http());
    run_door("http_ingest_answers_every_hostile_body_and_stays_up", 2_000, &door, &env, &|n| {
        if n % 100 == 0 {
            assert_eq!(health.get("/healthz").status, 200, "the daemon answers /healthz");
        }
    });
    // Oversize (413, default 16 MiB limit) and 100k-deep nesting: refused, nothing stored.
    let before = db::count_events(&env.db());
    let big = vec![b' '; 16 * 1024 * 1024 + 1];
    let r = health.post("/v1/events", big);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("max_body"), "{}", r.text());
    // Whatever the 100k-deep bodies are answered with, it is a clear refusal of everything.
    for deep in [
        format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000)),
        format!(
            "{{\"id\":\"d\",\"instance_id\":\"inst-a\",\"quantity\":{}1{},\"time\":\"{NOW}\"}}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
    ] {
        let r = health.post("/v1/events", deep);
        match r.status {
            400 => assert!(!r.json()["error"].as_str().unwrap().is_empty()),
            200 => assert_eq!(r.json()["accepted"], 0, "{}", r.text()),
            s => panic!("HTTP {s}: {}", r.text()),
        }
    }
    assert_eq!(db::count_events(&env.db()), before);
    assert_eq!(health.get("/healthz").status, 200);
    drop(daemon);
    assert_sound(&env, "after hostile HTTP ingest");
}

/// The CLI door, on a smaller sample: exit 0 (all stored), 1 (something refused), never else.
#[test]
fn cli_ingest_answers_hostile_files() {
    let env = env_with_instances();
    let seed = seed("cli_ingest_answers_hostile_files");
    let counter = AtomicU64::new(0);
    let result = runner(seed, 40).run(&case(), |c| {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let b = build(&c, n);
        let before = db::count_events(&env.db());
        let r = env.ingest_file(&format!("hostile-{n}.ndjson"), &b.body);
        let after = db::count_events(&env.db());
        match r.code {
            0 | 1 if r.stdout.trim().is_empty() => {
                check(r.code == 1 && !r.stderr.trim().is_empty() && after == before, || format!("{r:?}"))?;
                check(!matches!(b.expect, Expect::Each(_)), || format!("refused whole: {r:?}"))
            }
            0 | 1 => {
                let v = r.json();
                check((after - before) as u64 == v["accepted"].as_u64().unwrap(), || format!("{v}"))?;
                check((r.code == 0) == v["rejected"].as_array().unwrap().is_empty(), || format!("exit {} for {v}", r.code))?;
                if let Expect::Each(classes) = &b.expect {
                    let valid = classes.iter().filter(|c| **c == Some(Class::Valid)).count() as u64;
                    check(v["accepted"].as_u64().unwrap() >= valid, || format!("{v}"))?;
                }
                Ok(())
            }
            code => Err(TestCaseError::fail(format!("exit {code}: {r:?}"))),
        }
    });
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
    assert_sound(&env, "after hostile CLI ingest");
}
