//! The event table of design §2: events that must be stored and one bad event per rule, shared
//! by the ingest tests (each door must reject exactly these) and the schema tests (the event
//! schema must reject exactly the ones whose fault is visible in the JSON alone).
//!
//! Times are relative to [`super::NOW`] = 2026-11-23T12:00:00Z with the example config
//! (`max_future` 5m, `max_age` 20d).

use super::event::{s, Ev};

/// Instances the table refers to: (id, plan, start).
pub const INSTANCES: &[(&str, &str, &str)] = &[
    ("inst-calls", "calls", "2026-11-01T00:00:00Z"),
    ("inst-late", "calls", "2026-11-20T00:00:00Z"),
    ("inst-gone", "calls", "2026-11-10T00:00:00Z"),
    ("inst-store", "storage", "2026-11-01T00:00:00Z"),
    // A sum plan: a daemon's start-up seal may race the ingest, and a late event of a `max`
    // plan (seats) is reported as `late_unbilled`, which would make the doors' answers differ.
    (LONG_INSTANCE, "calls", "2026-11-01T00:00:00Z"),
];

/// Releases applied after registering: (id, release time).
pub const RELEASES: &[(&str, &str)] = &[("inst-gone", "2026-11-22T00:00:00Z")];

/// 64 characters, every kind the instance id rule allows.
pub const LONG_INSTANCE: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567._:-";

/// An event that must be stored, and how it must look in the store.
#[derive(Debug, Clone)]
pub struct Good {
    pub ev: Ev,
    pub instance: String,
    pub id: String,
    /// The `events.qty` text: exact, normalised.
    pub stored_qty: &'static str,
    /// The event time as UTC RFC 3339.
    pub utc: &'static str,
}

fn good(id: &str, instance: &str, ev: Ev, stored_qty: &'static str, utc: &'static str) -> Good {
    Good { ev, instance: instance.into(), id: id.into(), stored_qty, utc }
}

/// Valid events, including every boundary a rule allows.
pub fn good_events() -> Vec<Good> {
    let c = "inst-calls";
    let long_id: String = "g".repeat(120) + " !\"#$%}~";
    assert_eq!(long_id.len(), 128);
    vec![
        good("good-plain", c, Ev::new("good-plain", c, "1", "2026-11-23T08:00:00Z").metric("api_calls"), "1", "2026-11-23T08:00:00Z"),
        good("good-number", c, Ev::num("good-number", c, "2.5", "2026-11-23T08:10:00Z"), "2.5", "2026-11-23T08:10:00Z"),
        good("good-zero", c, Ev::new("good-zero", c, "0", "2026-11-23T08:20:00Z"), "0", "2026-11-23T08:20:00Z"),
        good("good-max", c, Ev::new("good-max", c, "1000000000000", "2026-11-23T09:00:00Z"), "1000000000000", "2026-11-23T09:00:00Z"),
        good(
            "good-max-9dp",
            c,
            Ev::num("good-max-9dp", c, "1000000000000.000000000", "2026-11-23T09:01:00Z"),
            "1000000000000",
            "2026-11-23T09:01:00Z",
        ),
        good("good-zeros", c, Ev::new("good-zeros", c, "007.500", "2026-11-23T09:30:00Z"), "7.5", "2026-11-23T09:30:00Z"),
        good("good-9dp", c, Ev::new("good-9dp", c, "0.123456789", "2026-11-23T10:00:00Z"), "0.123456789", "2026-11-23T10:00:00Z"),
        good("good-future-edge", c, Ev::new("good-future-edge", c, "1", "2026-11-23T12:05:00Z"), "1", "2026-11-23T12:05:00Z"),
        good("good-age-edge", c, Ev::new("good-age-edge", c, "1", "2026-11-03T12:00:00Z"), "1", "2026-11-03T12:00:00Z"),
        good("good-at-start", "inst-late", Ev::new("good-at-start", "inst-late", "1", "2026-11-20T00:00:00Z"), "1", "2026-11-20T00:00:00Z"),
        good(
            "good-before-release",
            "inst-gone",
            Ev::new("good-before-release", "inst-gone", "1", "2026-11-21T23:59:59.999999999Z"),
            "1",
            "2026-11-21T23:59:59.999999999Z",
        ),
        good("good-offset", c, Ev::new("good-offset", c, "3", "2026-11-23T16:15:00+08:00"), "3", "2026-11-23T08:15:00Z"),
        good(
            "good-storage",
            "inst-store",
            Ev::new("good-storage", "inst-store", "12.577", "2026-11-23T03:00:00Z").metric("gb_hours"),
            "12.577",
            "2026-11-23T03:00:00Z",
        ),
        good(
            "good-props",
            c,
            Ev::new("good-props", c, "1", "2026-11-23T10:10:00Z").set("properties", r#"{"user":"u-17","region":"eu-1.a_b"}"#),
            "1",
            "2026-11-23T10:10:00Z",
        ),
        good(
            "good-props-16",
            c,
            Ev::new("good-props-16", c, "1", "2026-11-23T10:11:00Z").set("properties", &props(16)),
            "1",
            "2026-11-23T10:11:00Z",
        ),
        good(
            "good-props-empty",
            c,
            Ev::new("good-props-empty", c, "1", "2026-11-23T10:12:00Z").set("properties", "{}"),
            "1",
            "2026-11-23T10:12:00Z",
        ),
        good(&long_id, LONG_INSTANCE, Ev::new(&long_id, LONG_INSTANCE, "4", "2026-11-23T07:00:00Z"), "4", "2026-11-23T07:00:00Z"),
    ]
}

/// One bad event and what its rejection must say.
#[derive(Debug, Clone)]
pub struct Case {
    /// The rule of design §2 this event breaks.
    pub rule: &'static str,
    pub event: String,
    /// The id the rejection must carry (`None` when the id itself is unreadable or invalid).
    pub id: Option<&'static str>,
    /// Text naming the field.
    pub field: &'static str,
    /// Text that tells this rule apart from the field's other rules.
    pub why: &'static str,
    /// Whether `schemas/event.schema.json` alone rejects it (false: the rule needs the
    /// registry, the clock, or the number's written form, which a JSON Schema cannot see).
    pub schema: bool,
}

fn case(rule: &'static str, ev: Ev, id: Option<&'static str>, field: &'static str, why: &'static str, schema: bool) -> Case {
    Case { rule, event: ev.json(), id, field, why, schema }
}

/// A valid base event of `inst-calls` with id `id`; cases break one thing in it.
fn base(id: &str) -> Ev {
    Ev::new(id, "inst-calls", "1", "2026-11-23T08:00:00Z")
}

/// One bad event per rule of design §2.
pub fn bad_cases() -> Vec<Case> {
    let q = |id: &'static str, raw: &str, why: &'static str, schema: bool| {
        case("quantity", base(id).set("quantity", raw), Some(id), "`quantity`", why, schema)
    };
    let t = |rule: &'static str, id: &'static str, inst: &str, time: &str, why: &'static str, schema: bool| {
        case(rule, base(id).set_str("instance_id", inst).set_str("time", time), Some(id), "`time`", why, schema)
    };
    vec![
        case("missing id", base("x").without("id"), None, "missing field `id`", "every event needs", true),
        case(
            "missing instance_id",
            base("b-no-inst").without("instance_id"),
            Some("b-no-inst"),
            "missing field `instance_id`",
            "every event needs",
            true,
        ),
        // Only count and unique_count plans take an event without a quantity: the schema
        // cannot see the plan.
        case(
            "missing quantity",
            base("b-no-qty").without("quantity"),
            Some("b-no-qty"),
            "missing field `quantity`",
            "unless its plan counts events (plan \"calls\" aggregates by sum)",
            false,
        ),
        case("missing time", base("b-no-time").without("time"), Some("b-no-time"), "missing field `time`", "every event needs", true),
        case("unknown field", base("b-typo").set("qty", "1"), Some("b-typo"), "unknown field `qty`", "typos are refused", true),
        case("duplicate key", base("b-dupkey").push_dup("id", &s("b-dupkey2")), None, "duplicate field `id`", "not an event object", false),
        case("empty id", base(""), None, "`id`", "got 0", true),
        case("id over 128", base(&"x".repeat(129)), None, "`id`", "got 129", true),
        case("id not printable", base("a\u{7}b"), None, "`id`", "printable ASCII", true),
        case("id not ascii", base("café"), None, "`id`", "printable ASCII", true),
        case("id not a string", base("x").set("id", "42"), None, "`id`", "JSON string", true),
        case(
            "instance id characters",
            base("b-inst-chars").set_str("instance_id", "inst/calls"),
            Some("b-inst-chars"),
            "`instance_id`",
            "may only hold",
            true,
        ),
        case(
            "instance id space",
            base("b-inst-space").set_str("instance_id", "inst calls"),
            Some("b-inst-space"),
            "`instance_id`",
            "may only hold",
            true,
        ),
        case(
            "instance id over 64",
            base("b-inst-long").set_str("instance_id", &"i".repeat(65)),
            Some("b-inst-long"),
            "`instance_id`",
            "got 65",
            true,
        ),
        case("instance id empty", base("b-inst-empty").set_str("instance_id", ""), Some("b-inst-empty"), "`instance_id`", "got 0", true),
        case(
            "instance id not a string",
            base("b-inst-num").set("instance_id", "7"),
            Some("b-inst-num"),
            "`instance_id`",
            "JSON string",
            true,
        ),
        case(
            "unknown instance",
            base("b-nobody").set_str("instance_id", "nobody"),
            Some("b-nobody"),
            "`instance_id`",
            "not registered",
            false,
        ),
        q("b-neg", &s("-1"), "has a sign", true),
        q("b-neg-num", "-1", "has a sign", true),
        q("b-plus", &s("+1"), "has a sign", true),
        q("b-exp", &s("1e3"), "exponent", true),
        q("b-exp-num", "1e3", "exponent", false),
        q("b-exp-huge", "1e400", "exponent", true),
        q("b-nan", &s("NaN"), "not a decimal number", true),
        q("b-inf", &s("Infinity"), "not a decimal number", true),
        q("b-dot", &s("1."), "not a decimal number", true),
        q("b-empty-qty", &s(""), "empty", true),
        q("b-10dp", &s("0.0000000001"), "more than 9 fractional digits", true),
        q("b-10dp-num", "0.0000000001", "more than 9 fractional digits", false),
        q("b-over", &s("1000000000000.000000001"), "larger than 1e12", true),
        q("b-over-num", "1000000000001", "larger than 1e12", true),
        q("b-bool", "true", "number or a decimal string", true),
        q("b-object", r#"{"value":1}"#, "number or a decimal string", true),
        q("b-array", "[1]", "number or a decimal string", true),
        q("b-null", "null", "number or a decimal string", true),
        t("time without offset", "b-no-offset", "inst-calls", "2026-11-23T08:00:00", "with an offset", true),
        t("time not a date", "b-feb30", "inst-calls", "2026-02-30T00:00:00Z", "RFC 3339", false),
        case("time not a string", base("b-time-num").set("time", "1795420800"), Some("b-time-num"), "`time`", "JSON string", true),
        t("time in the future", "b-future", "inst-calls", "2026-11-23T12:05:01Z", "ahead of now", false),
        t("time too old", "b-old", "inst-calls", "2026-11-03T11:59:59Z", "older than 20d", false),
        t("time before start", "b-early", "inst-late", "2026-11-19T23:59:59Z", "before the instance's start", false),
        t("time at release", "b-at-release", "inst-gone", "2026-11-22T00:00:00Z", "at or after the instance's release", false),
        t("time after release", "b-released", "inst-gone", "2026-11-23T08:00:00Z", "at or after the instance's release", false),
        case("wrong metric", base("b-metric").metric("gb_hours"), Some("b-metric"), "`metric`", "billing factor", false),
        case("metric not a string", base("b-metric-num").set("metric", "1"), Some("b-metric-num"), "`metric`", "JSON string", true),
        case(
            "properties not an object",
            base("b-props-arr").set("properties", r#"["u"]"#),
            Some("b-props-arr"),
            "`properties`",
            "JSON object of string values",
            true,
        ),
        case(
            "property not a string",
            base("b-props-num").set("properties", r#"{"user":1}"#),
            Some("b-props-num"),
            "`properties`",
            "JSON object of string values",
            true,
        ),
        case(
            "property key",
            base("b-props-key").set("properties", r#"{"user id":"u"}"#),
            Some("b-props-key"),
            "`properties`",
            "key \"user id\" must be 1–64 characters",
            true,
        ),
        case(
            "property key empty",
            base("b-props-empty").set("properties", r#"{"":"u"}"#),
            Some("b-props-empty"),
            "`properties`",
            "key \"\" must be 1–64",
            true,
        ),
        case(
            "property key over 64",
            base("b-props-long").set("properties", &format!(r#"{{"{}":"u"}}"#, "k".repeat(65))),
            Some("b-props-long"),
            "`properties`",
            "must be 1–64 characters",
            true,
        ),
        case(
            "property value over 256",
            base("b-props-val").set("properties", &format!(r#"{{"u":"{}"}}"#, "é".repeat(257))),
            Some("b-props-val"),
            "`properties`",
            "257 characters; at most 256",
            true,
        ),
        case(
            "properties over 16",
            base("b-props-17").set("properties", &props(17)),
            Some("b-props-17"),
            "`properties`",
            "at most 16 entries",
            true,
        ),
        case(
            "property twice",
            base("b-props-dup").set("properties", r#"{"u":"a","u":"b"}"#),
            Some("b-props-dup"),
            "`properties`",
            "duplicate property \"u\"",
            false,
        ),
        Case {
            rule: "not an object",
            event: "42".into(),
            id: None,
            field: "event object",
            why: "each event must be a JSON object with `id`",
            schema: true,
        },
    ]
}

/// A `properties` object of `n` entries `k0`…, the last with a 64-character key, values of 256
/// characters.
pub fn props(n: usize) -> String {
    let entries: Vec<String> = (0..n)
        .map(|i| if i + 1 == n { format!(r#""{}":"{}""#, "k".repeat(64), "v".repeat(256)) } else { format!(r#""k{i}":"v""#) })
        .collect();
    format!("{{{}}}", entries.join(","))
}

/// A request mixing every good event with every bad one: good, bad, good, bad, …, then the
/// rest. Returns the event texts and, for each bad case, its index in the request.
pub fn mixed_request() -> (Vec<String>, Vec<(usize, Case)>, Vec<Good>) {
    let (goods, bads) = (good_events(), bad_cases());
    let mut events = Vec::new();
    let mut expected = Vec::new();
    let n = goods.len().max(bads.len());
    for i in 0..n {
        if let Some(g) = goods.get(i) {
            events.push(g.ev.json());
        }
        if let Some(b) = bads.get(i) {
            expected.push((events.len(), b.clone()));
            events.push(b.event.clone());
        }
    }
    (events, expected, goods)
}
