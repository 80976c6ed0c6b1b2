//! The API's one error type: every handler returns `Result<_, ApiError>` and uses `?`; this
//! module alone decides the HTTP status of each kind of failure and writes the body
//! `{"error": "…"}` that `schemas/openapi.json` specifies for every error answer.
//!
//! | failure | status |
//! |---|---|
//! | unreadable request: body not JSON, a bad path or query ([`ApiError::BadRequest`]) | 400 |
//! | missing or wrong bearer token ([`ApiError::Unauthorized`]) | 401 |
//! | no such route, or a method the route does not take (`server::no_route`, `method_not_allowed`) | 404, 405 with `Allow` |
//! | this node lost the sealer lease ([`StoreError::Fenced`]) | 409 |
//! | body over `server.max_body` ([`ApiError::TooLarge`]) | 413 |
//! | bad input: a value, a name that does not exist, an amount out of range ([`ErrorKind::BadInput`]) | 422 |
//! | a bug or broken invariant ([`ErrorKind::Internal`]), a panic, or the database failing ([`ErrorKind::Runtime`]) | 500 |
//! | the store cannot write now ([`ErrorKind::Unavailable`]) | 503 with `Retry-After: 1` |
//!
//! A store error is sorted by [`StoreError::kind`], never by its message. An unknown instance
//! is 422 like other bad input: the OpenAPI document defines no 404, and clients already
//! branch on 422.

use crate::store::{ErrorKind, StoreError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Why a request failed; its [`IntoResponse`] is the status and `{"error": message}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the request cannot be read (not JSON, a bad path, an unknown query parameter).
    BadRequest(String),
    /// 401: the bearer token is missing or wrong.
    Unauthorized(String),
    /// 409: this node lost the sealer lease; nothing was written.
    Conflict(String),
    /// 413: the body is larger than `server.max_body`.
    TooLarge(String),
    /// 422: the request is readable but its values are wrong.
    Unprocessable(String),
    /// 500: meterd or its database failed; the request changed nothing.
    Internal(String),
    /// 500: the handler panicked (the text it panicked with); answered as
    /// [`crate::guard::internal_error`] does.
    Panicked(String),
    /// 503 with `Retry-After: 1`: the store cannot write now; retry the same request.
    Unavailable(String),
    /// Another status chosen by axum's own extractors (e.g. 415, 408), passed through.
    Other(StatusCode, String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) | ApiError::Panicked(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Other(s, _) => *s,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e.kind() {
            ErrorKind::BadInput => ApiError::Unprocessable(e.to_string()),
            ErrorKind::Fenced => ApiError::Conflict(e.to_string()),
            ErrorKind::Unavailable => ApiError::Unavailable(e.to_string()),
            ErrorKind::Internal | ErrorKind::Runtime => {
                tracing::error!(error = %e, reason = e.reason(), "a request failed in the store; answered 500");
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match self {
            ApiError::Panicked(what) => return crate::guard::internal_error(&what),
            ApiError::BadRequest(m)
            | ApiError::Unauthorized(m)
            | ApiError::Conflict(m)
            | ApiError::TooLarge(m)
            | ApiError::Unprocessable(m)
            | ApiError::Internal(m)
            | ApiError::Unavailable(m)
            | ApiError::Other(_, m) => m,
        };
        let mut r = (status, Json(serde_json::json!({ "error": message }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Every kind of store failure → the status the API answers (the module's table).
    #[test]
    fn each_store_error_kind_has_its_status() {
        let fenced = StoreError::Fenced { lease: "sealer".into(), ours: 1, holder: "b".into(), epoch: 2 };
        let cases: Vec<(StoreError, StatusCode)> = vec![
            (StoreError::Invalid("bad".into()), StatusCode::UNPROCESSABLE_ENTITY),
            (StoreError::NotFound("instance \"x\" is not registered".into()), StatusCode::UNPROCESSABLE_ENTITY),
            (StoreError::Overflow("sum overflows".into()), StatusCode::UNPROCESSABLE_ENTITY),
            (StoreError::Tls("no TLS".into()), StatusCode::UNPROCESSABLE_ENTITY),
            (StoreError::Internal("the task opening the store failed".into()), StatusCode::INTERNAL_SERVER_ERROR),
            (StoreError::Corrupt("x".into()), StatusCode::INTERNAL_SERVER_ERROR),
            (StoreError::TooNew(PathBuf::from("m.db"), 99), StatusCode::INTERNAL_SERVER_ERROR),
            (fenced, StatusCode::CONFLICT),
            (StoreError::Full, StatusCode::SERVICE_UNAVAILABLE),
            (StoreError::Busy, StatusCode::SERVICE_UNAVAILABLE),
            (StoreError::Moved(PathBuf::from("m.db")), StatusCode::SERVICE_UNAVAILABLE),
            (StoreError::Missing { path: "m.db".into(), marker: "m.db.created".into() }, StatusCode::SERVICE_UNAVAILABLE),
        ];
        for (e, want) in cases {
            let shown = e.to_string();
            let api = ApiError::from(e);
            assert_eq!(api.status(), want, "{shown}");
            let r = api.into_response();
            assert_eq!(r.status(), want, "{shown}");
            assert_eq!(r.headers().contains_key(header::RETRY_AFTER), want == StatusCode::SERVICE_UNAVAILABLE, "{shown}");
        }
    }

    #[tokio::test]
    async fn the_body_is_the_openapi_error_shape_with_the_message_unchanged() {
        let r = ApiError::from(StoreError::Invalid("`time`: not RFC 3339".into())).into_response();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, serde_json::json!({ "error": "`time`: not RFC 3339" }));
        let r = ApiError::Panicked("boom".into()).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("internal error while answering this request (boom)"), "{v}");
    }
}
