//! Event bodies written field by field as raw JSON text, so a test can send exactly the bytes
//! it means: a quantity as the number `999999999999.999999999` (which `f64` would round), an
//! exponent, a missing or an extra field, a duplicated key.

/// One event object under construction; fields keep their order.
#[derive(Debug, Clone)]
pub struct Ev {
    fields: Vec<(String, String)>,
}

/// A JSON string literal.
pub fn s(text: &str) -> String {
    serde_json::to_string(text).expect("string encodes")
}

impl Ev {
    /// `{"id", "instance_id", "quantity": "<qty>", "time"}` with the quantity as a string.
    pub fn new(id: &str, instance_id: &str, qty: &str, time: &str) -> Ev {
        Ev::raw(&s(id), &s(instance_id), &s(qty), &s(time))
    }

    /// The same with the quantity as a JSON number written exactly as `qty`.
    pub fn num(id: &str, instance_id: &str, qty: &str, time: &str) -> Ev {
        Ev::raw(&s(id), &s(instance_id), qty, &s(time))
    }

    /// Every value given as raw JSON text.
    pub fn raw(id: &str, instance_id: &str, quantity: &str, time: &str) -> Ev {
        Ev { fields: vec![] }.set("id", id).set("instance_id", instance_id).set("quantity", quantity).set("time", time)
    }

    /// Sets (or replaces) a field to raw JSON text.
    pub fn set(mut self, key: &str, raw: &str) -> Ev {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(f) => f.1 = raw.to_string(),
            None => self.fields.push((key.to_string(), raw.to_string())),
        }
        self
    }

    /// Sets a field to a JSON string.
    pub fn set_str(self, key: &str, value: &str) -> Ev {
        self.set(key, &s(value))
    }

    /// Adds a second occurrence of a key (invalid for meterd, legal JSON syntax).
    pub fn push_dup(mut self, key: &str, raw: &str) -> Ev {
        self.fields.push((key.to_string(), raw.to_string()));
        self
    }

    pub fn without(mut self, key: &str) -> Ev {
        self.fields.retain(|(k, _)| k != key);
        self
    }

    pub fn metric(self, m: &str) -> Ev {
        self.set_str("metric", m)
    }

    pub fn json(&self) -> String {
        let body: Vec<String> = self.fields.iter().map(|(k, v)| format!("{}:{v}", s(k))).collect();
        format!("{{{}}}", body.join(","))
    }
}

impl From<Ev> for String {
    fn from(e: Ev) -> String {
        e.json()
    }
}
