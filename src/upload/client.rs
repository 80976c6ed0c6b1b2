//! One HTTP attempt: sign the stored bytes with a fresh `ts` and nonce, POST them, and turn
//! whatever happened into a [`Response`] for [`super::classify()`]. No retries here; the driver
//! decides what to do next.
//!
//! Transport rules (design §6): TLS ≥ 1.2 with certificate verification, always; plain
//! `http://` only for loopback hosts (the mock store); redirects are not followed (a redirect
//! is a configuration problem, classified as such), so the signed bytes only go where
//! configured.

use super::classify::{parse_retry_after, Response};
use super::sign::signature;
use crate::config::Secret;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::Url;
use std::time::Duration;

/// Why an endpoint cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("`upload.endpoint` {0:?} is not a URL")]
    NotAUrl(String),
    #[error("`upload.endpoint` {0:?} must use https:// (plain http:// is allowed only for loopback addresses)")]
    Insecure(String),
}

/// The request URL for `endpoint` + `path`, refusing plain HTTP to anything but loopback.
pub fn request_url(endpoint: &str, path: &str) -> Result<Url, EndpointError> {
    let joined = format!("{}/{}", endpoint.trim_end_matches('/'), path.trim_start_matches('/'));
    let url = Url::parse(&joined).map_err(|_| EndpointError::NotAUrl(endpoint.to_string()))?;
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(EndpointError::Insecure(endpoint.to_string())),
        _ => Err(EndpointError::NotAUrl(endpoint.to_string())),
    }
}

fn is_loopback(url: &Url) -> bool {
    crate::config::is_loopback_url(url)
}

/// The HTTP client for uploads: `timeout` per attempt, TLS ≥ 1.2, no redirects.
pub fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Sends `body` (the stored canonical bytes) once, signed for (`ts_ms`, `nonce`).
pub async fn send(http: &reqwest::Client, url: &Url, key: &Secret, body: &[u8], ts_ms: i64, nonce: &str) -> Response {
    let request = http
        .post(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header("ts", ts_ms.to_string())
        .header("nonce", nonce)
        .header("signature", signature(key, ts_ms, nonce, body))
        .body(body.to_vec());
    let answer = match request.send().await {
        Ok(a) => a,
        Err(e) => return no_answer(&e),
    };
    let status = answer.status().as_u16();
    let retry_after = answer.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    match answer.bytes().await {
        Ok(bytes) => Response::Http { status, body: bytes.to_vec(), retry_after },
        Err(e) => no_answer(&e),
    }
}

fn no_answer(e: &reqwest::Error) -> Response {
    if e.is_timeout() {
        return Response::Timeout;
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    Response::Transport(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_everywhere_but_loopback() {
        let p = "/api/mkp-openapi-public/global/v1/isv/usage-data";
        assert_eq!(
            request_url("https://mkt.myhuaweicloud.com", p).unwrap().as_str(),
            "https://mkt.myhuaweicloud.com/api/mkp-openapi-public/global/v1/isv/usage-data"
        );
        assert_eq!(request_url("https://h.example/", p).unwrap().path(), p);
        for ok in ["http://127.0.0.1:8480", "http://[::1]:8480", "http://localhost:1", "http://127.0.0.2"] {
            assert!(request_url(ok, p).is_ok(), "{ok}");
        }
        for bad in ["http://mkt.myhuaweicloud.com", "http://10.0.0.1", "http://127.0.0.1.evil.com"] {
            assert!(matches!(request_url(bad, p), Err(EndpointError::Insecure(_))), "{bad}");
        }
        for bad in ["ftp://x", "mkt.myhuaweicloud.com", ""] {
            assert!(matches!(request_url(bad, p), Err(EndpointError::NotAUrl(_))), "{bad}");
        }
    }
}
