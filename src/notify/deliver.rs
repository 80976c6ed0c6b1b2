//! Delivery of the outbox: POST each due notice to its receiver, signed, until a 2xx.
//!
//! One attempt ([`attempt`]) signs the stored body with a fresh timestamp (`sign`), POSTs it
//! with `Content-Type: application/json`, `Meterd-Signature` and `Meterd-Event-Id`, and turns
//! the answer into an [`Outcome`]: a 2xx is delivered; anything else (another status, a
//! refused or dropped connection, a connect or response timeout — the receiver's `timeout`,
//! whose value the error names) is
//! a failed attempt, retried after a capped exponential backoff with full jitter
//! (`upload::backoff`, [`RETRY_BASE`] doubling to [`RETRY_CAP`]; a `Retry-After` is honoured up
//! to the cap). There is no last attempt: a notice is retried until acknowledged, and
//! `meterd notifications --pending` shows what waits and why.
//!
//! [`run`] is the loop: every [`POLL`] it reads the due rows of configured receivers, oldest
//! first, and starts up to [`MAX_IN_FLIGHT`] attempts at once (a slow receiver holds only its
//! own attempts; a notice in flight is not started twice). Each outcome is written as soon as
//! it is known, in its own transaction: `delivered_ns` only after the 2xx, so a crash between
//! the receiver's answer and that commit resends the notice (same id, same bytes) at the next
//! start — at-least-once. Rows of a receiver no longer configured are never attempted; they
//! stay in the outbox, shown as orphaned (see [`super::Standing`]).
//! The caller decides who delivers (the daemon: on a shared PostgreSQL store, the sealer
//! lease's holder only), through `may_deliver`.

use super::sign;
use crate::config::NotifyTarget;
use crate::metrics::Metrics;
use crate::store::notify::{self, Notice};
use crate::store::Store;
use crate::upload::backoff::Backoff;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often due rows are looked for (the latency of a notice enqueued by another process).
pub const POLL: Duration = Duration::from_millis(250);
/// Attempts in flight at once, over all receivers.
pub const MAX_IN_FLIGHT: usize = 16;
/// First retry delay.
pub const RETRY_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const RETRY_CAP: Duration = Duration::from_secs(300);

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Anything else; the text says what (never the secret), `retry_after` what the receiver asked.
    Failed { error: String, retry_after: Option<Duration> },
}

/// A receiver and its HTTP client (connect and response timeouts = its `timeout`; no
/// redirects, so the signed body goes only where configured).
pub struct Receiver {
    pub target: NotifyTarget,
    http: reqwest::Client,
}

impl Receiver {
    pub fn new(target: NotifyTarget) -> reqwest::Result<Receiver> {
        let http = reqwest::Client::builder()
            .connect_timeout(target.timeout.0)
            .timeout(target.timeout.0)
            .min_tls_version(reqwest::tls::Version::TLS_1_2)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Receiver { target, http })
    }
}

/// One attempt: POSTs `body` signed at `t` (Unix seconds).
pub async fn attempt(r: &Receiver, id: &str, body: &str, t: i64) -> Outcome {
    let request = r
        .http
        .post(r.target.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(sign::HEADER, sign::header_value(&r.target.secret, t, body.as_bytes()))
        .header(sign::ID_HEADER, id)
        .body(body.to_string());
    match request.send().await {
        Ok(resp) if resp.status().is_success() => Outcome::Delivered,
        Ok(resp) => {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            Outcome::Failed { error: format!("HTTP {}", resp.status().as_u16()), retry_after }
        }
        Err(e) if e.is_timeout() => Outcome::Failed { error: timed_out(&r.target), retry_after: None },
        Err(e) if e.is_connect() => Outcome::Failed { error: format!("connection failed: {}", cause(&e)), retry_after: None },
        Err(e) => Outcome::Failed { error: format!("request failed: {}", cause(&e)), retry_after: None },
    }
}

/// The error of an attempt that outlasted the receiver's `timeout`: the configured value and
/// where to change it, so a slow receiver is told apart from a dead one.
fn timed_out(t: &NotifyTarget) -> String {
    format!(
        "timed out: no answer within the receiver's timeout of {} (connect and response); if the receiver is only slow, raise `timeout` of the [[notify]] named {:?}",
        t.timeout, t.name
    )
}

/// Why a request failed, for `last_error` and the logs: the innermost cause (e.g. "Connection
/// refused (os error 111)", "invalid peer certificate: UnknownIssuer"), which says what to fix,
/// never the top-level text, which names the URL (it may carry a receiver's token in its query).
fn cause(e: &reqwest::Error) -> String {
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut text = String::from(if e.is_body() || e.is_request() { "transport error" } else { "error" });
    while let Some(s) = src {
        text = s.to_string();
        src = s.source();
    }
    text
}

fn now_ns() -> i64 {
    crate::model::Timestamp::now().0
}

/// Delivers until `cancel` (see the module docs). `store` is the loop's own connection; it is
/// used on blocking threads only.
pub async fn run(
    store: Arc<Mutex<Store>>,
    receivers: Vec<Receiver>,
    metrics: Arc<Metrics>,
    may_deliver: impl Fn() -> bool,
    cancel: CancellationToken,
) {
    let receivers: Arc<BTreeMap<String, Receiver>> = Arc::new(receivers.into_iter().map(|r| (r.target.name.clone(), r)).collect());
    let names: Arc<Vec<String>> = Arc::new(receivers.keys().cloned().collect());
    let Ok(backoff) = Backoff::new(RETRY_BASE, RETRY_CAP) else { return };
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    loop {
        while let Some(done) = tasks.try_join_next() {
            if let Ok(id) = done {
                in_flight.remove(&id);
            }
        }
        if may_deliver() && in_flight.len() < MAX_IN_FLIGHT {
            let (s, n) = (store.clone(), names.clone());
            let due = tokio::task::spawn_blocking(move || {
                let mut s = crate::store::lock_recovering(&s, "notify");
                s.read(|tx| notify::due(tx, now_ns(), &n, MAX_IN_FLIGHT * 2))
            })
            .await;
            match due {
                Ok(Ok(rows)) => {
                    let room = MAX_IN_FLIGHT - in_flight.len();
                    let fresh: Vec<Notice> = rows.into_iter().filter(|r| !in_flight.contains(&r.id)).take(room).collect();
                    for row in fresh {
                        in_flight.insert(row.id.clone());
                        tasks.spawn(send_one(store.clone(), receivers.clone(), row, backoff, metrics.clone()));
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the notification outbox; retrying"),
                Err(e) => tracing::error!(error = %e, "notification outbox task failed"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    // Attempts still in flight are dropped: their rows stay pending and are resent at the next
    // start (at-least-once), with the same id and bytes.
    tasks.shutdown().await;
}

/// One attempt of one row, and its outcome recorded.
async fn send_one(
    store: Arc<Mutex<Store>>,
    receivers: Arc<BTreeMap<String, Receiver>>,
    row: Notice,
    backoff: Backoff,
    metrics: Arc<Metrics>,
) -> String {
    let Some(r) = receivers.get(&row.target) else { return row.id };
    crate::faults::crash_point("notify-before-send");
    let outcome = attempt(r, &row.id, &row.body, crate::model::Timestamp::now().secs()).await;
    crate::faults::crash_point("notify-after-send");
    let now = now_ns();
    let next = match &outcome {
        Outcome::Delivered => 0,
        Outcome::Failed { error, retry_after } => {
            let attempt = u32::try_from(row.attempts).unwrap_or(u32::MAX);
            let delay = backoff.delay(attempt, *retry_after, &mut rand::rng());
            tracing::warn!(
                receiver = %row.target,
                id = %row.id,
                kind = %row.kind,
                attempts = row.attempts + 1,
                retry_in_ms = delay.as_millis() as u64,
                "notification not acknowledged: {error}; retrying"
            );
            metrics.record_notification_failed(&row.target);
            now.saturating_add(i64::try_from(delay.as_nanos()).unwrap_or(i64::MAX))
        }
    };
    let id = row.id.clone();
    let recorded = tokio::task::spawn_blocking(move || {
        let mut s = crate::store::lock_recovering(&store, "notify");
        s.write(|tx| match &outcome {
            Outcome::Delivered => notify::delivered(tx, &row.id, now),
            Outcome::Failed { error, .. } => notify::failed(tx, &row.id, now, next, error),
        })
        .map(|_| matches!(outcome, Outcome::Delivered))
    })
    .await;
    match recorded {
        Ok(Ok(true)) => metrics.record_notification_delivered(),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, id = %id, "cannot record a notification's delivery; it will be sent again"),
        Err(e) => tracing::error!(error = %e, "notification record task failed"),
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_says_why_and_not_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let toml = format!("[[notify]]\nname = \"ops\"\nurl = \"http://127.0.0.1:{port}/hook?token=sekret\"\nsecret = \"s\"\n");
        let cfg = crate::config::Config::from_toml_str(&toml).unwrap();
        let r = Receiver::new(cfg.notify[0].clone()).unwrap();
        let Outcome::Failed { error, .. } = attempt(&r, "ntf_1", "{}", 0).await else { panic!("delivered to a closed port") };
        assert!(error.starts_with("connection failed: ") && error.to_lowercase().contains("refused"), "{error}");
        assert!(!error.contains("sekret") && !error.contains("/hook"), "{error}");
    }
}
