//! Checks of single values at load, so every command that reads the config refuses a setting
//! that makes no sense (exit code 2) before it does anything, with a message naming the key.
//!
//! [`super::Config::from_toml_str`] calls [`values`] after the older cross-field checks in
//! `mod.rs`. The endpoint and listen rules live here too ([`endpoint_url`], [`listen_addr`]), so
//! `upload` and `run` apply exactly the rule the config was checked with. What depends on the
//! environment (is the token variable set, is the key file readable, does the database
//! directory exist) is not a value: `run` and `upload` check it at start
//! (`daemon::startup`, `upload::run::load_key`).

use super::{Config, Span};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use url::Url;

/// Longest `collector.max_future`: it is a clock-skew allowance, and a larger one would let an
/// app that writes local times as UTC (hours ahead) bill the wrong windows.
pub const MAX_FUTURE_LIMIT: Span = Span::secs(3600);

/// Checks every value that has a "makes no sense" range; the first problem found.
pub(super) fn values(cfg: &Config) -> Result<(), String> {
    let u = &cfg.upload;
    positive("upload.timeout", u.timeout, "every request would time out at once")?;
    if u.max_attempts == 0 {
        return Err("`upload.max_attempts` = 0 must be at least 1 (attempts of a batch per upload run)".into());
    }
    if u.fallback.is_some() && u.fallback_after == 0 {
        return Err("`upload.fallback_after` = 0 must be at least 1 (consecutive transient failures on `upload.endpoint` before \
                    `upload.fallback` is tried); write `fallback = \"\"` to turn the fallback off"
            .into());
    }
    if !u.path.starts_with('/') {
        return Err(format!("`upload.path` = {:?} must start with `/`", u.path));
    }
    endpoint_url("upload.endpoint", &u.endpoint, &u.path)?;
    if let Some(f) = &u.fallback {
        endpoint_url("upload.fallback", f, &u.path)?;
    }
    if u.key_file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        return Err("`upload.key_file` is empty; name the key file or remove the setting (or set METERD_ISV_KEY)".into());
    }
    server(cfg)?;
    let c = &cfg.collector;
    if c.max_future > MAX_FUTURE_LIMIT {
        return Err(format!(
            "`collector.max_future` = {} must be at most {MAX_FUTURE_LIMIT}: it is an allowance for clock skew, not for events hours ahead",
            c.max_future
        ));
    }
    positive("collector.max_age", c.max_age, "every event would be refused as too old")?;
    Ok(())
}

fn server(cfg: &Config) -> Result<(), String> {
    let s = &cfg.server;
    listen_addr("server.listen", &s.listen)?;
    if let Some(var) = &s.token_env {
        if var.is_empty() || var.contains(['=', '\0']) {
            return Err(format!(
                "`server.token_env` = {var:?} is not an environment variable name; name the variable that holds the token, or remove the setting"
            ));
        }
    }
    positive("server.header_timeout", s.header_timeout, "no request could be read")?;
    positive("server.body_timeout", s.body_timeout, "no request body could be read")?;
    positive("server.idle_timeout", s.idle_timeout, "every connection would be closed at once")?;
    if s.max_body == 0 {
        return Err("`server.max_body` = 0 must be at least 1 (bytes of one request body)".into());
    }
    if s.max_connections == 0 {
        return Err("`server.max_connections` = 0 must be at least 1".into());
    }
    if s.max_inflight_bytes < s.max_body {
        return Err(format!(
            "`server.max_inflight_bytes` = {} must be at least `server.max_body` = {}, or no request of the largest allowed size could ever be read",
            s.max_inflight_bytes, s.max_body
        ));
    }
    Ok(())
}

fn positive(key: &str, v: Span, why: &str) -> Result<(), String> {
    if v.0.is_zero() {
        return Err(format!("`{key}` = {v} must be longer than 0: {why}"));
    }
    Ok(())
}

/// The request URL for `endpoint` + `path` (design §6): https with a host, or plain http to a
/// loopback address only (the mock store). `key` names the setting in the error.
pub fn endpoint_url(key: &str, endpoint: &str, path: &str) -> Result<Url, String> {
    let joined = format!("{}/{}", endpoint.trim_end_matches('/'), path.trim_start_matches('/'));
    let not_url = || format!("`{key}` = {endpoint:?} is not a URL; write e.g. \"https://mkt.myhuaweicloud.com\"");
    let url = Url::parse(&joined).map_err(|_| not_url())?;
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if is_loopback_url(&url) => Ok(url),
        "http" => Err(format!("`{key}` = {endpoint:?} must use https:// (plain http:// is allowed only for loopback addresses)")),
        _ => Err(not_url()),
    }
}

/// Whether a URL's host is a loopback address (or `localhost`).
pub fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A listen address: `IP:PORT` (`[::1]:PORT` for IPv6), or `localhost:PORT` (127.0.0.1).
/// Host names other than `localhost` are refused: whether the daemon is reachable from other
/// machines must not depend on a resolver. `key` names the setting (or flag) in the error.
pub fn listen_addr(key: &str, text: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    let port = text.strip_prefix("localhost:").and_then(|p| p.parse::<u16>().ok());
    port.map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p)).ok_or_else(|| {
        format!("`{key}` = {text:?} is not an address to listen on; write IP:PORT, e.g. \"127.0.0.1:9464\" (port 0 picks a free one)")
    })
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    /// Each bad value is refused, and the message names its key.
    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[upload]\nmax_attempts = 0", "upload.max_attempts"),
            ("[upload]\ntimeout = \"0s\"", "upload.timeout"),
            ("[upload]\nendpoint = \"not a url\"", "upload.endpoint"),
            ("[upload]\nendpoint = \"http://example.com\"", "upload.endpoint"),
            ("[upload]\nfallback = \"ftp://x\"", "upload.fallback"),
            ("[upload]\nfallback_after = 0", "upload.fallback_after"),
            ("[upload]\npath = \"usage\"", "upload.path"),
            ("[upload]\nkey_file = \"\"", "upload.key_file"),
            ("[server]\nlisten = \"9464\"", "server.listen"),
            ("[server]\nlisten = \"example.com:80\"", "server.listen"),
            ("[server]\ntoken_env = \"\"", "server.token_env"),
            ("[server]\nheader_timeout = \"0s\"", "server.header_timeout"),
            ("[server]\nbody_timeout = \"0ms\"", "server.body_timeout"),
            ("[server]\nidle_timeout = \"0s\"", "server.idle_timeout"),
            ("[server]\nmax_body = 0", "server.max_body"),
            ("[server]\nmax_connections = 0", "server.max_connections"),
            ("[server]\nmax_inflight_bytes = 10", "server.max_inflight_bytes"),
            ("[collector]\nmax_future = \"2h\"", "collector.max_future"),
            ("[collector]\nmax_age = \"0s\"", "collector.max_age"),
        ];
        for (text, key) in cases {
            let err = Config::from_toml_str(text).expect_err(text);
            assert!(err.contains(&format!("`{key}`")), "{text}: {err}");
        }
    }

    /// The shipped example shows the server defaults, so its comments cannot drift from them.
    #[test]
    fn the_example_shows_the_server_defaults() {
        let example = Config::from_toml_str(super::super::EXAMPLE_CONFIG).unwrap();
        assert_eq!(format!("{:?}", example.server), format!("{:?}", super::super::ServerConfig::default()));
    }

    #[test]
    fn good_values_pass() {
        let ok = "[upload]\nendpoint = \"http://127.0.0.1:8080\"\nfallback = \"\"\nfallback_after = 0\n\
                  [server]\nlisten = \"localhost:0\"\n";
        Config::from_toml_str(ok).unwrap();
        assert_eq!(listen_addr("k", "[::1]:80").unwrap().port(), 80);
        assert!(listen_addr("k", "localhost:0").unwrap().ip().is_loopback());
        assert!(endpoint_url("k", "http://localhost:1", "/p").is_ok());
        assert!(endpoint_url("k", "https://mkt.myhuaweicloud.com/", "/p").unwrap().as_str().ends_with(".com/p"));
    }
}
