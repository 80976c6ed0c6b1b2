//! Shared harness: start the mock in-process on 127.0.0.1:0 and talk to it over real HTTP.

use meterd::config::Secret;
use meterd::mockstore::{MockConfig, MockHandle, MockStore};
use meterd::model::{metering_sn, parse_rfc3339, UsageRecord};
use meterd::upload::{canonical_body, new_nonce, signature};

pub const KEY: &str = "test-interconnection-key";

/// The pinned "now" of most tests; records below begin on the day before.
pub const NOW: &str = "2022-08-10T00:00:00Z";

pub fn key() -> Secret {
    Secret::new(KEY)
}

pub fn config() -> MockConfig {
    let mut cfg = MockConfig::new(key());
    cfg.now = Some(parse_rfc3339(NOW).unwrap());
    cfg
}

pub async fn start(cfg: MockConfig) -> MockHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    MockStore::start(cfg, listener).await.unwrap()
}

/// Record `i`: instance `inst-{i}`, the hour 08:00–09:00 on 2022-08-09.
pub fn rec(i: usize) -> UsageRecord {
    let (instance_id, begin, end) = (format!("inst-{i}"), "20220809T080000Z", "20220809T090000Z");
    UsageRecord {
        metering_sn: metering_sn(&instance_id, begin, end),
        instance_id,
        begin_time: begin.into(),
        end_time: end.into(),
        record_time: "20220809T091000Z".into(),
        relate_pkg_instance: None,
        usage_value: format!("{i}.5"),
    }
}

pub fn recs(n: usize) -> Vec<UsageRecord> {
    (1..=n).map(rec).collect()
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A fresh client per call, so a dropped connection never affects the next request.
fn client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap()
}

/// What came back: (HTTP status, body text), or the transport error text.
pub type Reply = Result<(u16, String), String>;

/// POSTs `body` with exactly these headers.
pub async fn post_raw(h: &MockHandle, body: &[u8], ts: i64, nonce: &str, sig: &str) -> Reply {
    let answer = client()
        .post(h.url())
        .header("content-type", "application/json")
        .header("ts", ts.to_string())
        .header("nonce", nonce)
        .header("signature", sig)
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = answer.status().as_u16();
    Ok((status, answer.text().await.map_err(|e| format!("{e:?}"))?))
}

/// POSTs `body` correctly signed with a fresh ts and nonce.
pub async fn post(h: &MockHandle, body: &[u8]) -> Reply {
    let (ts, nonce) = (now_ms(), new_nonce());
    post_raw(h, body, ts, &nonce, &signature(&key(), ts, &nonce, body)).await
}

pub async fn post_records(h: &MockHandle, records: &[UsageRecord]) -> Reply {
    post(h, &canonical_body(records)).await
}

/// The (status, error_code) of a reply that must have an HTTP answer.
pub fn code(reply: &Reply) -> (u16, String) {
    let (status, body) = reply.as_ref().unwrap_or_else(|e| panic!("expected an HTTP answer, got {e}"));
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    (*status, v["error_code"].as_str().unwrap_or_else(|| panic!("no error_code: {body}")).to_string())
}

pub fn ok() -> (u16, String) {
    (200, "MKT.0000".to_string())
}

/// A canonical one-record body with `field` replaced by the raw JSON text `raw` (or added).
pub fn body_with(field: &str, raw: &str) -> Vec<u8> {
    let text = String::from_utf8(canonical_body(&[rec(1)])).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["usage_records"][0][field] = serde_json::Value::String("__RAW__".into());
    serde_json::to_string(&v).unwrap().replace("\"__RAW__\"", raw).into_bytes()
}
