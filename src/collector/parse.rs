//! Request bodies → candidate events, each accepted or refused on its own.
//!
//! A body is one JSON object, a JSON array of objects, or NDJSON (one object per line). Only a
//! body that is not JSON at all, or holds no object (a lone `"text"`, `5`, `null`, NDJSON of
//! scalars only), is refused whole: there is no event in it to accept or reject (issue 17:
//! schemathesis found `"AAA"` answered 200 with one rejected "event"). Quantities are read from the raw JSON text
//! (number or string), never through `f64`.
//!
//! `properties` (issue 14) is checked here ([`Properties::new`]); `quantity` may be left out —
//! whether that is allowed depends on the instance's plan (only `count` and `unique_count`
//! plans take it), which the writer decides ([`super::decide::admit`]); an omitted quantity is
//! 0 ([`EventInput::quantity_omitted`]).

use super::result::RejectReason;
use crate::model::{parse_rfc3339, shorten, valid_event_id as valid_id, valid_instance_id, Properties, Quantity, Timestamp};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// A syntactically valid event, not yet checked against instances or the clock.
#[derive(Debug, Clone, PartialEq)]
pub struct EventInput {
    pub id: String,
    pub instance_id: String,
    pub quantity: Quantity,
    pub time: Timestamp,
    pub metric: Option<String>,
    /// Optional string properties (`unique_count` plans count one of them); part of the
    /// event's identity check.
    pub properties: Option<Properties>,
    /// The event had no `quantity` (then `quantity` is 0): allowed only on `count` and
    /// `unique_count` plans.
    pub quantity_omitted: bool,
}

impl EventInput {
    /// An event built in code: `id` unique per instance (1–128 printable ASCII characters),
    /// `instance_id` (1–64 of letters, digits and `._:-`), an exact `quantity` in the plan's
    /// unit, and the UTC `time` it happened. No metric or properties; set the fields to add
    /// them. The collector checks the fields ([`EventInput::validate`]) and refuses a bad one
    /// in [`super::IngestResult::rejected`], never with a panic.
    pub fn new(id: impl Into<String>, instance_id: impl Into<String>, quantity: Quantity, time: Timestamp) -> EventInput {
        EventInput {
            id: id.into(),
            instance_id: instance_id.into(),
            quantity,
            time,
            metric: None,
            properties: None,
            quantity_omitted: false,
        }
    }

    /// The field rules `parse_event` applies to JSON, for events built in code (the library
    /// door): the same ids, instance ids and quantities are refused with the same messages.
    pub fn validate(&self) -> Result<(), Refusal> {
        let fail =
            |reason: RejectReason| move |error: String| Refusal { id: valid_id(&self.id).is_ok().then(|| self.id.clone()), error, reason };
        valid_id(&self.id).map_err(fail(RejectReason::Id))?;
        valid_instance_id(&self.instance_id).map_err(fail(RejectReason::InstanceId))?;
        Quantity::parse_event(&self.quantity.0.to_string()).map_err(|e| fail(RejectReason::Quantity)(format!("`quantity`: {e}")))?;
        if let Some(p) = &self.properties {
            let map = p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Properties::new(map).map_err(|e| fail(RejectReason::Invalid)(format!("`properties`: {e}")))?;
        }
        if self.quantity_omitted && !self.quantity.0.is_zero() {
            return Err(fail(RejectReason::Quantity)("`quantity` is marked omitted but is not 0".into()));
        }
        Ok(())
    }
}

/// Why an event was refused, with its id when it could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub id: Option<String>,
    pub error: String,
    /// The metrics label's reason, set by the rule that refused it.
    pub reason: RejectReason,
}

/// The body as a whole could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct NotJson(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an event object with `id`, `instance_id`, `time` and `quantity`")]
struct Wire<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    instance_id: Option<&'a RawValue>,
    /// `null` is kept as a value (and refused), not taken for a left-out quantity.
    #[serde(borrow, default, deserialize_with = "present")]
    quantity: Option<&'a RawValue>,
    #[serde(borrow, default)]
    time: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metric: Option<&'a RawValue>,
    #[serde(borrow, default)]
    properties: Option<&'a RawValue>,
}

/// A member that is present, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct IdOnly {
    id: Option<serde_json::Value>,
}

/// Splits a body into per-event results, in order.
pub fn parse_body(body: &[u8]) -> Result<Vec<Result<EventInput, Refusal>>, NotJson> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body); // a UTF-8 byte order mark
    let trimmed = body.trim_ascii_start();
    if trimmed.is_empty() {
        return Err(NotJson("the body is empty; send a JSON object, a JSON array of objects, or NDJSON".into()));
    }
    if trimmed[0] == b'[' {
        let items: Vec<&RawValue> = serde_json::from_slice(trimmed).map_err(|e| {
            NotJson(format!("the body starts like a JSON array but is not valid JSON ({e}); send a JSON array of event objects"))
        })?;
        return Ok(items.iter().map(|raw| parse_event(raw.get().as_bytes())).collect());
    }
    if let Ok(one) = serde_json::from_slice::<&RawValue>(trimmed) {
        if !one.get().starts_with('{') {
            return Err(NotJson(format!(
                "the body is the JSON value {}, not an event; send a JSON object, a JSON array of objects, or NDJSON (one object per line)",
                excerpt(one.get())
            )));
        }
        return Ok(vec![parse_event(one.get().as_bytes())]);
    }
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').map(|l| l.trim_ascii()).filter(|l| !l.is_empty()).collect();
    let parsed: Vec<_> = lines.iter().map(|l| parse_event(l)).collect();
    // NDJSON with no object on any line holds no event to judge: refused whole, like a body
    // that is not JSON (a stray scalar among objects is one rejected event).
    let any_object = lines.iter().any(|l| l.starts_with(b"{") && serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok());
    if !any_object {
        return Err(NotJson(
            "the body is not JSON objects; send a JSON object, a JSON array of objects, or NDJSON (one object per line)".into(),
        ));
    }
    Ok(parsed)
}

/// The start of a JSON text for a message: at most 40 characters.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Parses and checks one event object.
pub fn parse_event(text: &[u8]) -> Result<EventInput, Refusal> {
    // serde would also read a struct from a JSON array, mapping values by position; an event
    // is an object with named fields, so an array is refused before that can happen, and so is
    // every other non-object (serde's own words would name an internal type).
    if let Some(kind) = not_an_object(text) {
        let shown = shorten(&String::from_utf8_lossy(text));
        return Err(Refusal {
            id: None,
            error: format!("not an event object: got {kind} {shown}; {EVENT_SHAPE}"),
            reason: RejectReason::Invalid,
        });
    }
    let wire: Wire<'_> = match serde_json::from_slice(text) {
        Ok(w) => w,
        Err(e) => {
            let (reason, error) = describe_json_error(&e);
            return Err(Refusal { id: readable_id(text), error, reason });
        }
    };
    let id_text = wire.id.map(|raw| string_field("id", raw));
    let id = id_text.clone().and_then(Result::ok);
    let fail = |reason: RejectReason| {
        let id = id.clone().filter(|i| valid_id(i).is_ok());
        move |error: String| Refusal { id, error, reason }
    };
    use RejectReason::{Id, InstanceId, Invalid, Metric, MissingField, Time};
    let id = match id_text {
        None => return Err(fail(MissingField)(missing("id"))),
        Some(r) => r.map_err(fail(Id))?,
    };
    valid_id(&id).map_err(fail(Id))?;
    let instance_id = wire.instance_id.ok_or_else(|| fail(MissingField)(missing("instance_id")))?;
    let instance_id = string_field("instance_id", instance_id).map_err(fail(InstanceId))?;
    valid_instance_id(&instance_id).map_err(fail(InstanceId))?;
    let (quantity, quantity_omitted) = match wire.quantity {
        Some(raw) => (quantity_field(raw).map_err(fail(RejectReason::Quantity))?, false),
        None => (Quantity::ZERO, true),
    };
    let time_text = string_field("time", wire.time.ok_or_else(|| fail(MissingField)(missing("time")))?).map_err(fail(Time))?;
    let time = parse_rfc3339(&time_text).map_err(|e| fail(Time)(format!("`time`: {e}")))?;
    let metric = match wire.metric {
        None => None,
        Some(raw) => Some(string_field("metric", raw).map_err(fail(Metric))?),
    };
    let properties = match wire.properties {
        None => None,
        Some(raw) => properties_field(raw).map_err(fail(Invalid))?,
    };
    Ok(EventInput { id, instance_id, quantity, time, metric, properties, quantity_omitted })
}

/// What every event must be, in the user's terms (the field names of design §2).
const EVENT_SHAPE: &str = "each event must be a JSON object with `id`, `instance_id` and `time` (strings) and `quantity` (a number or decimal string; may be left out on plans that count events), optionally `metric` and `properties`, e.g. {\"id\": \"req-1\", \"instance_id\": \"i-1\", \"quantity\": \"2.5\", \"time\": \"2026-11-23T08:15:00Z\"}";

/// The kind of JSON value `text` holds when it is not an object (`None` for an object, and for
/// text that is not JSON: serde's syntax error says more there).
fn not_an_object(text: &[u8]) -> Option<&'static str> {
    match text.trim_ascii_start().first().copied()? {
        b'{' => None,
        b'[' => Some("a JSON array"),
        b'"' => Some("a JSON string"),
        b'-' | b'0'..=b'9' => Some("a JSON number"),
        b't' | b'f' if serde_json::from_slice::<bool>(text).is_ok() => Some("a JSON boolean"),
        b'n' if serde_json::from_slice::<()>(text).is_ok() => Some("JSON null"),
        _ => None,
    }
}

fn properties_field(raw: &RawValue) -> Result<Option<Properties>, String> {
    let map = serde_json::from_str::<UniqueMap>(raw.get()).map_err(|e| {
        let why = if e.to_string().contains("duplicate property") { format!(" ({e})") } else { String::new() };
        format!(
            "`properties` must be a JSON object of string values, each key once, e.g. {{\"user\": \"u-17\"}}; got {}{why}",
            shorten(raw.get())
        )
    })?;
    Properties::new(map.0).map_err(|e| format!("`properties`: {e}"))
}

/// A JSON object of strings that refuses a key written twice (serde's maps keep the last one,
/// which would make the stored identity depend on the sender's duplicate).
struct UniqueMap(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for UniqueMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = UniqueMap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<UniqueMap, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!("duplicate property {k:?}")));
                    }
                    out.insert(k, v);
                }
                Ok(UniqueMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn missing(field: &str) -> String {
    format!("missing field `{field}`; every event needs `id`, `instance_id` and `time`, and a `quantity` unless its plan counts events")
}

fn string_field(field: &str, raw: &RawValue) -> Result<String, String> {
    serde_json::from_str::<String>(raw.get()).map_err(|_| format!("`{field}` must be a JSON string, got {}", shorten(raw.get())))
}

fn quantity_field(raw: &RawValue) -> Result<Quantity, String> {
    let text = raw.get();
    let digits = if text.starts_with('"') {
        serde_json::from_str::<String>(text).map_err(|_| "`quantity`: unreadable string".to_string())?
    } else if text.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        text.to_string()
    } else {
        return Err(format!("`quantity` must be a number or a decimal string, got {}", shorten(text)));
    };
    Quantity::parse_event(&digits).map_err(|e| format!("`quantity`: {e}"))
}

fn readable_id(text: &[u8]) -> Option<String> {
    let v: IdOnly = serde_json::from_slice(text).ok()?;
    match v.id? {
        serde_json::Value::String(s) if valid_id(&s).is_ok() => Some(s),
        _ => None,
    }
}

/// The refusal of an object serde could not read. serde_json reports an unknown field only in
/// its message (its `Category` is `Data` for every type error), so this one place reads it.
fn describe_json_error(e: &serde_json::Error) -> (RejectReason, String) {
    use serde_json::error::Category;
    let msg = e.to_string();
    match e.classify() {
        Category::Data if msg.contains("unknown field") => {
            (RejectReason::UnknownField, format!("{msg}; remove the field (typos are refused so data is never silently dropped)"))
        }
        Category::Data => (RejectReason::Invalid, format!("not an event object: {msg}")),
        Category::Syntax | Category::Eof => (RejectReason::Invalid, format!("invalid JSON: {msg}")),
        Category::Io => (RejectReason::Invalid, format!("unreadable: {msg}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_body_shapes() {
        let ev = r#"{"id":"a","instance_id":"i","quantity":"1","time":"2026-11-23T08:00:00Z"}"#;
        assert_eq!(parse_body(ev.as_bytes()).unwrap().len(), 1);
        assert_eq!(parse_body(format!("[{ev},{ev}]").as_bytes()).unwrap().len(), 2);
        assert_eq!(parse_body(format!("{ev}\n\n{ev}\n{ev}\n").as_bytes()).unwrap().len(), 3);
        let pretty = "{\n \"id\": \"a\",\n \"instance_id\": \"i\", \"quantity\": 1, \"time\": \"2026-11-23T08:00:00Z\"\n}";
        assert!(parse_body(pretty.as_bytes()).unwrap()[0].is_ok());
        assert!(parse_body(b"hello world").is_err());
        assert!(parse_body(b"[{\"id\":").is_err());
        // No object at all: refused whole, naming what was sent; a scalar among objects is one
        // rejected event.
        for scalar in [&b"\"AAA\""[..], b"5", b"null", b" true ", b"5\n\"x\"\n"] {
            let e = parse_body(scalar).unwrap_err();
            assert!(e.0.contains("send a JSON object"), "{e}");
        }
        assert!(parse_body(b"\"AAA\"").unwrap_err().0.contains("the JSON value \"AAA\""));
        let mixed = parse_body(format!("5\n{ev}").as_bytes()).unwrap();
        assert!(mixed[0].is_err() && mixed[1].is_ok());
        assert_eq!(parse_body(b"[1]").unwrap().len(), 1);
        assert!(parse_body(b"").is_err());
        let bom = [b"\xEF\xBB\xBF".as_slice(), ev.as_bytes()].concat();
        assert!(parse_body(&bom).unwrap()[0].is_ok(), "a leading byte order mark is ignored");
    }

    #[test]
    fn number_quantities_keep_every_digit() {
        let ev = r#"{"id":"a","instance_id":"i","quantity":999999999999.999999999,"time":"2026-11-23T08:00:00Z"}"#;
        let e = parse_event(ev.as_bytes()).unwrap();
        assert_eq!(e.quantity.to_string(), "999999999999.999999999");
    }

    #[test]
    fn refusals_keep_the_id_when_readable() {
        let r = parse_event(br#"{"id":"x1","instance_id":"i","quantity":"1","time":"2026-11-23T08:00:00Z","extra":1}"#).unwrap_err();
        assert_eq!(r.id.as_deref(), Some("x1"));
        assert!(r.error.contains("extra"), "{}", r.error);
        let r = parse_event(br#"{"id":"x2","quantity":"1","time":"2026-11-23T08:00:00Z"}"#).unwrap_err();
        assert_eq!(r.id.as_deref(), Some("x2"));
        assert!(r.error.contains("instance_id"));
        let r = parse_event(b"42").unwrap_err();
        assert_eq!(r.id, None);
        let r = parse_event(br#"["x3","i","1","2026-11-23T08:00:00Z"]"#).unwrap_err();
        assert!(r.error.contains("JSON object"), "an array is not an event, even with the fields in order: {}", r.error);
    }

    #[test]
    fn a_non_object_is_refused_in_the_users_terms() {
        for (text, kind) in
            [("1", "a JSON number"), ("\"x\"", "a JSON string"), ("null", "JSON null"), ("true", "a JSON boolean"), ("[1]", "a JSON array")]
        {
            let r = parse_event(text.as_bytes()).unwrap_err();
            assert!(
                r.error.contains(kind) && r.error.contains("each event must be a JSON object with `id`, `instance_id`"),
                "{text}: {}",
                r.error
            );
            assert!(!r.error.contains("Wire") && !r.error.contains("struct"), "no internal type names: {}", r.error);
        }
        let r = parse_body(b"[1,2]").unwrap();
        assert!(r.iter().all(|e| e.as_ref().is_err_and(|r| r.error.contains("a JSON number 1") || r.error.contains("a JSON number 2"))));
    }
}
