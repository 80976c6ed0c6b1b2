//! HTTP routes of the collector (design §7): events, instances, and (as they are built)
//! preview, status and metrics. Every handler is a thin adapter over the library; ingest is
//! answered only after the writer's commit. The listener and the shutdown signal are
//! parameters, so tests start the real server on `127.0.0.1:0`. Limits on connections, time
//! and request bodies (`[server]`) are in [`listen`] and [`limits`]. Every route, its answers
//! and its errors are described by the OpenAPI document that [`openapi`] serves at
//! `/openapi.json` (`schemas/openapi.json`, checked against this router by `tests/openapi.rs`).

use crate::collector::{Collector, IngestError};
use crate::config::Config;
use crate::model::{parse_rfc3339, Timestamp};
use crate::store::sql::Tx;
use crate::store::{instances, Store, StoreError};
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::future::Future;
use std::sync::{Arc, Mutex};

pub use error::ApiError;

pub mod error;
pub mod limits;
pub mod listen;
pub mod openapi;

/// Shared state of the HTTP server.
pub struct AppState {
    pub collector: Collector,
    pub cfg: Arc<Config>,
    /// A second connection for instance changes and reads; ingest has its own writer.
    pub admin: Mutex<Store>,
    /// Bearer token required on every route but `/healthz`, when configured.
    pub token: Option<crate::config::Secret>,
    /// Overrides the clock (tests and replays); `None` reads the wall clock per request.
    pub fixed_now: Option<Timestamp>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// What the daemon's loops report about themselves (`/readyz`, `/v1/status`, `/metrics`).
    pub live: Arc<crate::health::Live>,
    /// This daemon's node name (status and metrics show it beside the sealer lease's holder).
    pub node: String,
}

impl AppState {
    fn now(&self) -> Timestamp {
        self.fixed_now.unwrap_or_else(Timestamp::now)
    }
}

/// Builds the router.
pub fn router(state: Arc<AppState>) -> Router {
    let s = &state.cfg.server;
    let max_body = s.max_body;
    let bodies = Arc::new(limits::BodyLimits::new(s.max_body, s.body_timeout.0, s.max_inflight_bytes));
    let protected = Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/instances", post(post_instance).get(list_instances))
        .route("/v1/instances/{id}/release", post(release_instance))
        .route("/v1/instances/{id}/status", post(set_status))
        .route("/v1/instances/{id}/packages", post(add_package))
        .route("/v1/instances/{id}/quota", get(get_quota))
        .route("/v1/preview", get(get_preview))
        .route("/v1/status", get(get_status))
        .route("/metrics", get(get_metrics))
        .layer(axum::middleware::from_fn_with_state(bodies, limits::read_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(get_healthz))
        .route("/readyz", get(get_readyz))
        .route("/openapi.json", get(openapi::get_openapi))
        .merge(protected)
        // Unknown paths and methods answer the API's JSON error too (axum's default is an
        // empty body; operator trial finding).
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        // Outermost: a panic anywhere below answers 500 and never takes the connection down.
        .layer(axum::middleware::from_fn(crate::guard::catch_panic))
        .with_state(state)
}

/// 404 for a path the API does not have.
async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::Other(StatusCode::NOT_FOUND, format!("no such route: {method} {}; the API's routes are listed at /openapi.json", uri.path()))
}

/// 405 for a method a route does not take (axum adds the `Allow` header).
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::Other(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}; see the Allow header or /openapi.json for the methods it takes", uri.path()),
    )
}

/// Serves until `shutdown` resolves, then finishes in-flight requests; connections under the
/// `[server]` limits ([`listen::serve`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let s = &state.cfg.server;
    let limits =
        listen::ConnLimits { max_connections: s.max_connections, header_timeout: s.header_timeout.0, idle_timeout: s.idle_timeout.0 };
    listen::serve(listener, router(state), limits, shutdown).await
}

async fn require_token(State(st): State<Arc<AppState>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if let Some(token) = &st.token {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, t)| t.trim()))
            .is_some_and(|given| token.matches(given.as_bytes()));
        if !ok {
            log_refused(req.method(), req.uri().path());
            return ApiError::Unauthorized("missing or wrong bearer token; send `Authorization: Bearer <token>`".into()).into_response();
        }
    }
    next.run(req).await
}

/// Logs requests refused for their bearer token — at most one WARN a minute, counting the
/// others, so a misconfigured client is visible without flooding the log. Never the token given.
fn log_refused(method: &axum::http::Method, path: &str) {
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
    static REFUSED: AtomicU64 = AtomicU64::new(0);
    static LAST_LOGGED: AtomicI64 = AtomicI64::new(i64::MIN);
    REFUSED.fetch_add(1, Ordering::Relaxed);
    let now = Timestamp::now().secs();
    let last = LAST_LOGGED.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 60 && LAST_LOGGED.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        let refused = REFUSED.swap(0, Ordering::Relaxed);
        tracing::warn!(%method, path, refused, "requests refused (401): missing or wrong bearer token; check the client's token (logged at most once a minute)");
    }
}

/// `POST /v1/events`: the ingest result after the writer's commit. A failure of the whole
/// request is 400 (not JSON), 413 (too large), 503 (the store cannot write now) or 500 (the
/// store failed); both of the last say that a resend counts stored events as duplicates.
async fn post_events(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<crate::collector::IngestResult>, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(format!(
            "the body is larger than server.max_body ({} bytes); split it into smaller requests — nothing was stored",
            st.cfg.server.max_body
        )),
        status => ApiError::Other(status, e.body_text()),
    })?;
    let result = st.collector.ingest_body_async(&body, st.now()).await.map_err(|e| match e {
        IngestError::NotJson(e) => ApiError::BadRequest(e.to_string()),
        IngestError::Unavailable(m) => ApiError::Unavailable(format!(
            "{m}; retry the whole request later: events already stored from it count as duplicates, never twice"
        )),
        IngestError::Store(e) => {
            tracing::error!(error = %e, "ingest failed in the store");
            ApiError::Internal(format!("{e}; retry the whole request later: events already stored from it count as duplicates"))
        }
    })?;
    st.metrics.record_ingest(&result);
    Ok(Json(result))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewInstance {
    instance_id: String,
    plan: String,
    start: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    time: String,
}

/// Runs a closure on the admin connection off the async runtime. A panic in `f` answers 500
/// and leaves the connection usable for the next request ([`crate::guard`]); a store error is
/// answered by its kind ([`ApiError`]).
async fn with_admin<T: Send + 'static>(
    st: &Arc<AppState>,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let st = st.clone();
    let joined = tokio::task::spawn_blocking(move || f(&mut crate::guard::lock_admin(&st.admin))).await;
    let done = joined.map_err(|e| match e.try_into_panic() {
        Ok(payload) => ApiError::Panicked(crate::guard::panic_message(payload.as_ref())),
        Err(e) => ApiError::Internal(e.to_string()),
    })?;
    Ok(done?)
}

/// The `{id}` of an instance route. A path that does not decode to UTF-8 (`%FF`) is a 400 in
/// the API's JSON error shape, as `schemas/openapi.json` says (axum's own answer is plain text;
/// found by schemathesis, issue 17).
fn path_id(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(id)| id)
        .map_err(|e| ApiError::BadRequest(format!("the instance id in the path: {}; percent-encode the id's UTF-8 bytes", e.body_text())))
}

/// Parses a JSON request body; a 400 that shows the expected shape otherwise.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("expected {expected}: {e}")))
}

/// Parses an RFC 3339 field; a 422 naming the field otherwise.
fn time_field(name: &str, text: &str) -> Result<Timestamp, ApiError> {
    parse_rfc3339(text).map_err(|m| ApiError::Unprocessable(format!("`{name}`: {m}")))
}

type Answer<T = serde_json::Value> = Result<Json<T>, ApiError>;

/// `POST /v1/instances`: registers an instance. 201 Created with the instance and `"created":
/// true` when it is new; 200 OK with `"created": false` when it was registered already with the
/// same plan and start (nothing changed, as `meterd instance add` says); 422 with other values.
async fn post_instance(State(st): State<Arc<AppState>>, body: Bytes) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let req: NewInstance = json_body(&body, r#"{"instance_id", "plan", "start"}"#)?;
    crate::model::valid_instance_id(&req.instance_id).map_err(ApiError::Unprocessable)?;
    if st.cfg.plan(&req.plan).is_none() {
        return Err(ApiError::Unprocessable(format!("plan {:?} is not in the config", req.plan)));
    }
    let start = time_field("start", &req.start)?;
    let now = st.now();
    let (mut v, new) = with_admin(&st, move |s| {
        s.write(|tx| {
            let r = instances::register(tx, &req.instance_id, &req.plan, start, now)?;
            Ok((view(tx, &r.row, now)?, r.new))
        })
    })
    .await?;
    v["created"] = json!(new);
    Ok((if new { StatusCode::CREATED } else { StatusCode::OK }, Json(v)))
}

async fn release_instance(State(st): State<Arc<AppState>>, id: Result<Path<String>, PathRejection>, body: Bytes) -> Answer {
    let id = path_id(id)?;
    let at = json_body::<ReleaseBody>(&body, r#"{"time"}"#).and_then(|req| time_field("time", &req.time))?;
    let (cfg, now) = (st.cfg.clone(), st.now());
    let result = with_admin(&st, move |s| {
        s.write(|tx| {
            let billing = |plan: &str| crate::store::lifecycle_release::Billing::of(&cfg, plan);
            let released = instances::release(tx, &id, at, &billing)?;
            let mut v = view(tx, &released.instance, now)?;
            if let Some(w) = released.warning() {
                v["warning"] = json!(w);
                v["sealed_past_release"] = json!(released.sealed_past);
                v["events_after_release"] = json!(released.events_after);
            }
            Ok(v)
        })
    });
    Ok(Json(result.await?))
}

async fn list_instances(State(st): State<Arc<AppState>>, _h: HeaderMap) -> Answer<Vec<serde_json::Value>> {
    let now = st.now();
    let list =
        with_admin(&st, move |s| s.read(|tx| instances::list(tx)?.iter().map(|r| view(tx, r, now)).collect::<Result<Vec<_>, _>>())).await?;
    Ok(Json(list))
}

/// The query of `GET /v1/preview`.
#[derive(Debug, Default, PartialEq, Eq)]
struct PreviewParams {
    instance: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// Reads `/v1/preview`'s query (pure). An unknown parameter is named and the accepted ones
/// listed; a parameter given twice is refused (which one would count is not obvious). Both are
/// 400s with these words, not serde's.
fn preview_params(query: Option<&str>) -> Result<PreviewParams, String> {
    let [instance, from, to] =
        query_params(query, "/v1/preview", ["instance", "from", "to"], "`instance` (an instance id), `from` and `to` (RFC 3339 times)")?;
    Ok(PreviewParams { instance, from, to })
}

/// Reads a route's query (pure): the value of each of `names`, in that order. An unknown
/// parameter is named with the ones `route` accepts (`accepted`, in words), and a parameter
/// given twice is refused; both are 400s with these words, not serde's.
fn query_params<const N: usize>(query: Option<&str>, route: &str, names: [&str; N], accepted: &str) -> Result<[Option<String>; N], String> {
    let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let Some(i) = names.iter().position(|n| *n == name) else {
            return Err(format!("unknown query parameter `{}`; {route} accepts only {accepted}", crate::model::shorten(&name)));
        };
        if values[i].replace(value.into_owned()).is_some() {
            return Err(format!("query parameter `{name}` is given twice; give it once"));
        }
    }
    Ok(values)
}

async fn get_preview(
    State(st): State<Arc<AppState>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Answer<crate::preview::Preview> {
    let params = preview_params(query.as_deref()).map_err(ApiError::BadRequest)?;
    crate::faults::panic_point("preview-handler");
    let parse = |name: &str, v: &Option<String>| {
        v.as_deref().map(|s| parse_rfc3339(s).map_err(|e| ApiError::BadRequest(format!("`{name}`: {e}")))).transpose()
    };
    let (from, to) = (parse("from", &params.from)?, parse("to", &params.to)?);
    let q = crate::preview::PreviewQuery::new(params.instance, from, to).map_err(|e| ApiError::BadRequest(e.to_string()))?.at(st.now());
    let cfg = st.cfg.clone();
    Ok(Json(with_admin(&st, move |s| crate::preview::preview(s, &cfg, &q)).await?))
}

/// The status with the daemon's live checks in place of the store-only ones; `audit` also
/// runs the conservation audit (it reads every event).
async fn current_status(st: &Arc<AppState>, audit: bool) -> Result<crate::status::Status, ApiError> {
    let (cfg, now) = (st.cfg.clone(), st.now());
    let (node, held) = (st.node.clone(), st.live.lease_held());
    let mut s = with_admin(st, move |s| {
        let mut status = crate::status::status(s, &cfg, now, audit)?;
        status.store = Some(crate::status::store_view(s, &node, held, cfg.store.lease.0)?);
        Ok(status)
    })
    .await?;
    let mut inputs = st.live.inputs(Timestamp::now().secs(), &st.collector, (s.past_deadline, s.unsealed_past_deadline));
    if let Some(seal) = inputs.seal.as_mut() {
        seal.standby = crate::health::standby(s.store.as_ref(), st.live.lease_held());
        seal.store_last_ok = s.last_seal.map(Timestamp::secs);
    }
    s.checks = crate::health::evaluate(&inputs);
    Ok(s)
}

/// `GET /healthz` (liveness, no token, no store read): 200 `ok` while the writer runs and
/// its database file is the one at its path; 503 with the failing checks otherwise.
async fn get_healthz(State(st): State<Arc<AppState>>) -> Response {
    let inputs = crate::health::Inputs {
        writer_alive: Some(st.collector.writer_alive()),
        file_moved: Some(st.collector.file_moved()),
        ..Default::default()
    };
    let checks: Vec<_> = crate::health::evaluate(&inputs).into_iter().filter(|c| crate::health::LIVENESS.contains(&c.name)).collect();
    if crate::health::live(&checks) {
        return "ok\n".into_response();
    }
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "live": false, "checks": checks }))).into_response()
}

/// `GET /readyz` (no token): 200 or 503 with `{"ready", "checks", "failing"}`, every check
/// of [`crate::health`]; a status that cannot be read at all is a failing `database` check.
async fn get_readyz(State(st): State<Arc<AppState>>) -> Response {
    let checks = readiness_checks(&st).await;
    let failing: Vec<_> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
    let ready = failing.is_empty();
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(json!({ "ready": ready, "checks": checks, "failing": failing }))).into_response()
}

/// The checks `/readyz` answers with (ready when all pass); also read by the daemon's
/// readiness notifications (`daemon::notify`).
pub async fn readiness_checks(st: &Arc<AppState>) -> Vec<crate::health::Check> {
    match current_status(st, false).await {
        Ok(s) => s.checks,
        Err(e) => {
            let (parts, body) = e.into_response().into_parts();
            let text = axum::body::to_bytes(body, 64 * 1024).await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            let mut c = crate::health::evaluate(&st.live.inputs(Timestamp::now().secs(), &st.collector, (0, 0)));
            c.push(crate::health::Check {
                name: "database",
                ok: false,
                detail: format!("status cannot be read ({}): {text}", parts.status),
            });
            c
        }
    }
}

async fn get_status(State(st): State<Arc<AppState>>) -> Answer<crate::status::Status> {
    Ok(Json(current_status(&st, false).await?))
}

/// Reads `/metrics`' query (pure, [`query_params`]): whether `audit` asks for the conservation
/// audit.
fn metrics_params(query: Option<&str>) -> Result<bool, String> {
    let [audit] =
        query_params(query, "/metrics", ["audit"], "`audit` (audit=1 adds the conservation audit; leave it out for the ordinary scrape)")?;
    match audit.as_deref() {
        None | Some("0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(a) => Err(format!("`audit={}`: use audit=1 (or leave it out)", crate::model::shorten(a))),
    }
}

/// `GET /metrics`; `?audit=1` adds `meterd_conservation_violations`, which reads every event:
/// scrape it as a separate, infrequent job (see `contrib/prometheus/README.md`).
async fn get_metrics(
    State(st): State<Arc<AppState>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, ApiError> {
    let audit = metrics_params(query.as_deref()).map_err(ApiError::BadRequest)?;
    let s = current_status(&st, audit).await?;
    let undelivered = with_admin(&st, |s| s.read(crate::store::notify::undelivered_by_target)).await?;
    let mut text = st.metrics.render(&s);
    text.push_str(&crate::metrics::render_notifications(&crate::notify::Outbox::split(&undelivered, &st.cfg.notify)));
    text.push_str(&crate::metrics::render_health(&s, &st.live, st.collector.health()));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// An instance with its status history, as the API shows it.
fn view(tx: &Tx<'_>, r: &crate::store::InstanceRow, now: Timestamp) -> Result<serde_json::Value, StoreError> {
    let h = crate::store::lifecycle::history(tx, r.key)?;
    Ok(crate::views::instance_json(r, &h, now))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: crate::store::lifecycle::Status,
    time: String,
}

async fn set_status(State(st): State<Arc<AppState>>, id: Result<Path<String>, PathRejection>, body: Bytes) -> Answer {
    let id = path_id(id)?;
    let req: StatusBody = json_body(&body, r#"{"status": "FREEZE"|"UNFREEZE", "time"}"#)?;
    let at = time_field("time", &req.time)?;
    let now = st.now();
    let result = with_admin(&st, move |s| {
        s.write(|tx| {
            let change = crate::store::lifecycle::set_status(tx, &id, req.status, at, now)?;
            let mut v = view(tx, &change.instance, now)?;
            if let Some(w) = change.warning(req.status, at) {
                v["warning"] = json!(w);
                v["sealed_inside_frozen"] = json!(change.sealed_inside);
                v["events_after"] = json!(change.events_after);
            }
            Ok(v)
        })
    })
    .await?;
    Ok(Json(result))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageBody {
    package_id: String,
    quota: Box<serde_json::value::RawValue>,
    from: String,
    to: String,
    reset: Option<String>,
}

/// `POST /v1/instances/{id}/packages`: registers a package; answers the instance's quota view,
/// 201 Created when the package is new, 200 OK when it was registered already with the same
/// terms (nothing changed, as `meterd package add` says); 422 with other terms.
async fn add_package(
    State(st): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<(StatusCode, Json<crate::quota::QuotaView>), ApiError> {
    let id = path_id(id)?;
    let req: PackageBody = json_body(&body, r#"{"package_id", "quota", "from", "to", "reset" (optional: none|monthly|yearly)}"#)?;
    // The quota's own digits, never through f64: a JSON string's content or a number's text.
    let raw = req.quota.get();
    let quota = match serde_json::from_str::<String>(raw) {
        Ok(text) => text,
        Err(_) if raw.starts_with(|c: char| c.is_ascii_digit() || c == '-') => raw.to_string(),
        Err(_) => return Err(ApiError::Unprocessable(format!("`quota` must be a decimal string or number, got {raw}"))),
    };
    let new =
        crate::quota::new_package(&req.package_id, &quota, &req.from, &req.to, req.reset.as_deref()).map_err(ApiError::Unprocessable)?;
    let (cfg, now) = (st.cfg.clone(), st.now());
    let (view, created) = with_admin(&st, move |s| {
        s.write(|tx| {
            let created = crate::quota::register(tx, &cfg, &id, &new, now)?.new;
            Ok((quota_view(tx, &cfg, &id, now)?, created))
        })
    })
    .await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(view)))
}

/// The quota view of a registered instance.
fn quota_view(tx: &Tx<'_>, cfg: &Config, id: &str, now: Timestamp) -> Result<crate::quota::QuotaView, StoreError> {
    let inst = instances::get(tx, id)?.ok_or_else(|| StoreError::NotFound(format!("instance {id:?} is not registered")))?;
    crate::quota::view(tx, cfg, &inst, now)
}

/// `GET /v1/instances/{id}/quota`: each package's use and what is left at now.
async fn get_quota(State(st): State<Arc<AppState>>, id: Result<Path<String>, PathRejection>) -> Answer<crate::quota::QuotaView> {
    let id = path_id(id)?;
    let (cfg, now) = (st.cfg.clone(), st.now());
    Ok(Json(with_admin(&st, move |s| s.read(|tx| quota_view(tx, &cfg, &id, now))).await?))
}
