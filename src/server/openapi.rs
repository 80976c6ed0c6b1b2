//! The OpenAPI 3.1 document of the HTTP API, `schemas/openapi.json`, served as is at
//! `GET /openapi.json` (no token: it describes the API and holds no data; design §10).
//!
//! The document is written by hand and checked against the code rather than generated (e.g.
//! by `utoipa`): the answers are built by several modules (`status`, `preview`, `quota`,
//! `cli::instance`, `collector::result`), some as `serde_json::Value`, so a generator would
//! need annotations across the crate and could still not see those; and the JSON Schemas in
//! `schemas/` (event, ingest result, error, preview) are already the contract other tests
//! hold the code to. So `tests/openapi.rs` holds the document to the code from outside: the
//! router's routes and methods against the document's paths, the embedded `schemas/*.json`
//! against their files, and the real answers of a live daemon — successes and every error
//! status — against the document's response schemas; CI also runs schemathesis against a
//! live daemon with it (`contrib/ci/schemathesis.sh`).

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The document's bytes, compiled in so that the answer always describes this binary.
pub const DOCUMENT: &str = include_str!("../../schemas/openapi.json");

/// `GET /openapi.json`: 200 with the document as `application/json`.
pub async fn get_openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}
