//! TLS to the PostgreSQL server: the store URL's libpq parameters `sslmode` and `sslrootcert`,
//! what each mode checks, and a person-readable account of a handshake that failed (issue 13).
//!
//! **The parameters** ([`split_url`], pure). meterd takes them out of the URL before the
//! `postgres` client parses the rest (that client knows `sslmode` = disable/prefer/require
//! only, and no `sslrootcert`):
//!
//! | `sslmode` | TLS | certificate checked against the trusted CAs | host name checked |
//! |---|---|---|---|
//! | `disable` | never (clear text) | — | — |
//! | `prefer` (**default**) | if the server offers it, else clear text | only when `sslrootcert` is given (as libpq) | no |
//! | `require` | always; refused when the server has none | **yes** | no |
//! | `verify-ca` | always | yes | no |
//! | `verify-full` | always | yes | yes (DNS name or IP address in the certificate) |
//!
//! The trusted CAs are the PEM certificates in `sslrootcert=/path/ca.pem` (one or more), else
//! the platform's CA store, read through `rustls-native-certs` (the OS bundle, so a company CA
//! an operator installed with `update-ca-certificates` is trusted, as `SSL_CERT_FILE` is;
//! webpki-roots would trust only Mozilla's public CAs, compiled in, and a database server's
//! certificate is most often issued by a private CA). `sslrootcert=system` names the platform
//! store explicitly and, as in libpq 16, implies `verify-full` (a weaker mode is refused).
//!
//! **Where meterd differs from libpq, and why.** libpq's `require` encrypts without checking
//! the certificate unless a root certificate file exists; meterd always has trusted roots, so
//! `require` checks the chain like `verify-ca`: a billing tool asked for TLS never sends its
//! password or usage to a server it could not authenticate. An `sslrootcert` without an
//! `sslmode` means `verify-full` (giving a CA is asking for verification), where libpq would
//! stay at `prefer`. `prefer` stays the default, with libpq's meaning, so a URL that works with
//! `psql` on a trusted network keeps working; it protects against eavesdropping only — across
//! hosts, use `verify-full`. A Unix-socket host never uses TLS (as libpq; the socket does not
//! leave the machine). Client certificates (`sslcert`, `sslkey`) and CRLs are not supported
//! and are refused rather than ignored.
//!
//! **Errors.** A bad parameter or an unreadable/garbage `sslrootcert` is a [`TlsConfigError`]
//! (a configuration error, exit 2). A handshake that fails because of the server's certificate
//! or because the server has no TLS is explained by [`explain`] (untrusted CA, wrong host name,
//! expired, ...) and becomes `StoreError::Tls` — reason `config`, like a wrong password.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

/// The URL's `sslmode` (see the module docs for what each checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`verify-full`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Parses a mode; spelling is exact, as in libpq (a mode in another case is refused with a
    /// hint naming the lower-case spelling).
    fn parse(s: &str) -> Result<SslMode, TlsConfigError> {
        const ALL: [SslMode; 5] = [SslMode::Disable, SslMode::Prefer, SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull];
        if let Some(m) = ALL.into_iter().find(|m| m.as_str() == s) {
            return Ok(m);
        }
        match ALL.into_iter().find(|m| m.as_str().eq_ignore_ascii_case(s)) {
            Some(m) => Err(TlsConfigError::ModeCase { given: s.to_string(), mode: m.as_str() }),
            None => Err(TlsConfigError::BadMode(s.to_string())),
        }
    }

    /// Whether the server's certificate chain must verify when roots are the platform's.
    fn verifies(self) -> bool {
        matches!(self, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// `sslrootcert=PATH`: the PEM certificates in that file, and no others.
    File(PathBuf),
    /// No `sslrootcert` (or `sslrootcert=system`): the platform's CA store.
    Platform,
}

/// The TLS parameters of one store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// Whether the URL named the mode (else it is the default: `prefer`, or `verify-full`
    /// with an `sslrootcert`).
    pub mode_given: bool,
    pub roots: Roots,
}

impl std::fmt::Display for TlsSettings {
    /// One line for logs and messages: `sslmode=verify-full, CAs from /etc/meterd/ca.pem`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let default = if self.mode_given { "" } else { " (default)" };
        write!(f, "sslmode={}{default}, {}", self.mode.as_str(), self.roots_text())
    }
}

impl TlsSettings {
    fn roots_text(&self) -> String {
        match &self.roots {
            Roots::File(p) => format!("the CA certificates in sslrootcert={}", p.display()),
            Roots::Platform => "the platform's CA store (no sslrootcert= given)".into(),
        }
    }
}

/// A TLS parameter of the store URL that meterd cannot use. A configuration error (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsConfigError {
    #[error("sslmode={0:?} is not a TLS mode; use one of disable, prefer, require, verify-ca, verify-full (verify-full across hosts)")]
    BadMode(String),
    #[error("sslmode={given:?}: modes are lower case; write sslmode={mode}")]
    ModeCase { given: String, mode: &'static str },
    #[error("the URL gives {0} more than once; keep one (which one was meant cannot be known)")]
    Repeated(&'static str),
    #[error("sslmode={0} is weaker than sslrootcert=system allows; use sslmode=verify-full, or name a CA file in sslrootcert=")]
    WeakWithSystem(&'static str),
    #[error("the URL parameter {0} is not supported (meterd has no client certificates or CRLs); remove it and log in with a password")]
    Unsupported(String),
    #[error("sslrootcert={path}: cannot read it ({reason}); name a readable PEM file holding the CA certificate that signed the server's certificate")]
    RootUnreadable { path: String, reason: String },
    #[error("sslrootcert={path}: {reason}; it must hold one or more PEM CA certificates (-----BEGIN CERTIFICATE-----)")]
    RootNotPem { path: String, reason: String },
    #[error("sslmode={mode} verifies the server's certificate, but the platform's CA store is empty or unreadable ({reason}); name the CA in sslrootcert=/path/ca.pem")]
    NoPlatformRoots { mode: &'static str, reason: String },
    #[error("TLS cannot be set up in this build ({0}); report it")]
    Setup(String),
}

/// Takes `sslmode` and `sslrootcert` out of `url` (percent-decoded, as the `postgres` client
/// reads values); returns the URL without them and the settings. Every other parameter is
/// kept byte for byte. Pure.
pub fn split_url(url: &str) -> Result<(String, TlsSettings), TlsConfigError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        let key = decode(k);
        match key.as_str() {
            "sslmode" if mode.is_some() => return Err(TlsConfigError::Repeated("sslmode")),
            "sslmode" => mode = Some(SslMode::parse(&decode(v))?),
            "sslrootcert" if root.is_some() => return Err(TlsConfigError::Repeated("sslrootcert")),
            "sslrootcert" => root = Some(decode(v)),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => return Err(TlsConfigError::Unsupported(key)),
            _ => kept.push(piece),
        }
    }
    let roots = match root.as_deref() {
        None | Some("system") => Roots::Platform,
        Some(path) => Roots::File(PathBuf::from(path)),
    };
    let settings = match (mode, root.as_deref()) {
        (Some(m), Some("system")) if m != SslMode::VerifyFull => return Err(TlsConfigError::WeakWithSystem(m.as_str())),
        (Some(mode), _) => TlsSettings { mode, mode_given: true, roots },
        (None, Some(_)) => TlsSettings { mode: SslMode::VerifyFull, mode_given: false, roots },
        (None, None) => TlsSettings { mode: SslMode::Prefer, mode_given: false, roots },
    };
    let stripped = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    Ok((stripped, settings))
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The `postgres` client's TLS mode for `settings`: it only knows whether TLS is off, tried,
/// or required; what is checked lives in the connector ([`connector`]).
pub fn client_mode(settings: &TlsSettings) -> postgres::config::SslMode {
    match settings.mode {
        SslMode::Disable => postgres::config::SslMode::Disable,
        SslMode::Prefer => postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => postgres::config::SslMode::Require,
    }
}

/// The rustls connector for `settings` (`None` for `disable`): reads `sslrootcert` (or the
/// platform store, when the mode verifies) once, here.
pub fn connector(settings: &TlsSettings) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, TlsConfigError> {
    if settings.mode == SslMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match (&settings.roots, settings.mode) {
        (Roots::Platform, m) if !m.verifies() => Arc::new(AnyCertificate(provider.clone())),
        (roots, mode) => {
            let store = Arc::new(load_roots(roots, mode)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(store, provider.clone())
                .build()
                .map_err(|e| root_not_pem(roots, mode, format!("no usable CA certificate ({e})")))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // PostgreSQL 17's direct TLS negotiation (`sslnegotiation=direct`) requires this ALPN name;
    // older servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
}

fn root_not_pem(roots: &Roots, mode: SslMode, reason: String) -> TlsConfigError {
    match roots {
        Roots::File(p) => TlsConfigError::RootNotPem { path: p.display().to_string(), reason },
        Roots::Platform => TlsConfigError::NoPlatformRoots { mode: mode.as_str(), reason },
    }
}

fn load_roots(roots: &Roots, mode: SslMode) -> Result<RootCertStore, TlsConfigError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let shown = path.display().to_string();
            let bytes = std::fs::read(path).map_err(|e| TlsConfigError::RootUnreadable { path: shown.clone(), reason: e.to_string() })?;
            let certs = CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsConfigError::RootNotPem { path: shown.clone(), reason: format!("not PEM ({e})") })?;
            if certs.is_empty() {
                return Err(TlsConfigError::RootNotPem { path: shown, reason: "it holds no certificate".into() });
            }
            for cert in certs {
                store.add(cert).map_err(|e| TlsConfigError::RootNotPem {
                    path: shown.clone(),
                    reason: format!("a certificate in it is unusable ({e})"),
                })?;
            }
        }
        Roots::Platform => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
                return Err(TlsConfigError::NoPlatformRoots {
                    mode: mode.as_str(),
                    reason: if why.is_empty() { "no certificates found".into() } else { why },
                });
            }
        }
    }
    Ok(store)
}

/// `verify-ca` / `require`: the chain must lead to a trusted CA (signatures, validity dates);
/// only a host-name mismatch is forgiven. rustls checks the name last, after the chain.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` without `sslrootcert` (libpq's meaning): encryption against eavesdropping, the
/// certificate not checked. The handshake's own signatures are still verified.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What went wrong, for a person, when `e` (from connecting under `settings`) is a TLS
/// problem that a retry cannot fix: the server has no TLS, or its certificate was refused (the
/// message names why and what to do). `None` for anything else (a connection reset during the
/// handshake stays an "unreachable" error).
pub fn explain(e: &postgres::Error, settings: &TlsSettings) -> Option<String> {
    if !e.to_string().starts_with("error performing TLS handshake") {
        return None;
    }
    let source = std::error::Error::source(e)?;
    if let Some(tls) = source.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).and_then(|r| r.downcast_ref::<rustls::Error>()) {
        return Some(explain_rustls(tls, settings));
    }
    if source.downcast_ref::<std::io::Error>().is_some() {
        return None;
    }
    let text = source.to_string();
    if text.contains("does not support TLS") {
        return Some(format!(
            "sslmode={} requires TLS, but the server does not offer it (`ssl = off` in its postgresql.conf?): turn TLS on at the server, or set sslmode=disable only where the network is trusted (loopback, a private link)",
            settings.mode.as_str()
        ));
    }
    Some(format!("TLS could not be set up ({text}); check sslmode= in the store URL"))
}

/// A certificate name as rustls lists it (`DnsName("db.example")`, `IpAddress(127.0.0.1)`),
/// bare (`db.example`, `127.0.0.1`); anything else as it is.
fn bare_name(n: &str) -> &str {
    n.strip_prefix("DnsName(\"")
        .and_then(|r| r.strip_suffix("\")"))
        .or_else(|| n.strip_prefix("IpAddress(").and_then(|r| r.strip_suffix(')')))
        .unwrap_or(n)
}

fn explain_rustls(e: &rustls::Error, settings: &TlsSettings) -> String {
    let cert = match e {
        rustls::Error::InvalidCertificate(c) => c,
        other => return format!("the TLS handshake with the server failed ({other}; {settings}); check the server's TLS settings"),
    };
    match cert {
        CertificateError::UnknownIssuer => format!(
            "the server's TLS certificate is not signed by a trusted CA (untrusted CA; trusted here: {}); set sslrootcert= to the PEM file of the CA that signed the server's certificate",
            settings.roots_text()
        ),
        CertificateError::NotValidForName => {
            "the server's TLS certificate is not valid for the host name in the URL (wrong host name); connect by a name the certificate holds, or reissue it with this name".into()
        }
        CertificateError::NotValidForNameContext { expected, presented } => format!(
            "the server's TLS certificate is not valid for the host name {} (wrong host name; the certificate names {}); connect by a name the certificate holds, or reissue it with this name",
            expected.to_str(),
            presented.iter().map(|n| bare_name(n)).collect::<Vec<_>>().join(", ")
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's TLS certificate has expired; renew it on the server".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the server's TLS certificate is not valid yet; check the clocks of this host and the server".into()
        }
        other => format!("the server's TLS certificate was refused ({other:?}; {settings})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> (String, TlsSettings) {
        split_url(url).unwrap()
    }

    #[test]
    fn the_tls_parameters_are_taken_out_and_the_rest_kept() {
        let (rest, s) =
            settings("postgres://u:p@db:5432/m?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3");
        assert_eq!(rest, "postgres://u:p@db:5432/m?application_name=x&connect_timeout=3");
        assert_eq!(s, TlsSettings { mode: SslMode::VerifyFull, mode_given: true, roots: Roots::File("/etc/ca.pem".into()) });
        let (rest, s) = settings("postgres://db/m?sslmode=disable");
        assert_eq!((rest.as_str(), s.mode), ("postgres://db/m", SslMode::Disable));
    }

    #[test]
    fn defaults_prefer_and_a_root_alone_means_verify_full() {
        let (_, s) = settings("postgres://db/m");
        assert_eq!((s.mode, s.mode_given, s.roots), (SslMode::Prefer, false, Roots::Platform));
        assert_eq!(settings("postgres://db/m?sslrootcert=/ca.pem").1.mode, SslMode::VerifyFull);
        assert_eq!(
            settings("postgres://db/m?sslrootcert=system").1,
            TlsSettings { mode: SslMode::VerifyFull, mode_given: false, roots: Roots::Platform }
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = split_url("postgres://db/m?sslmode=VERIFY-FULL").unwrap_err().to_string();
        assert!(e.contains("lower case") && e.contains("sslmode=verify-full"), "{e}");
        let e = split_url("postgres://db/m?sslmode=disable&sslmode=verify-full").unwrap_err().to_string();
        assert!(e.contains("sslmode more than once"), "{e}");
        let e = split_url("postgres://db/m?sslrootcert=/a.pem&sslrootcert=/b.pem").unwrap_err().to_string();
        assert!(e.contains("sslrootcert more than once"), "{e}");
        let e = split_url("postgres://db/m?sslmode=verify_full").unwrap_err().to_string();
        assert!(e.contains("sslmode=\"verify_full\"") && e.contains("verify-full"), "{e}");
        let e = split_url("postgres://db/m?sslmode=require&sslrootcert=system").unwrap_err().to_string();
        assert!(e.contains("sslrootcert=system"), "{e}");
        let e = split_url("postgres://db/m?sslcert=/c.pem").unwrap_err().to_string();
        assert!(e.contains("sslcert") && e.contains("not supported"), "{e}");
    }

    #[test]
    fn an_unreadable_or_garbage_root_file_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let s = |p: &std::path::Path| TlsSettings { mode: SslMode::VerifyFull, mode_given: true, roots: Roots::File(p.into()) };
        let e = connector(&s(&missing)).err().unwrap();
        assert!(matches!(e, TlsConfigError::RootUnreadable { .. }) && e.to_string().contains("sslrootcert="), "{e}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello, not a certificate\n").unwrap();
        let e = connector(&s(&garbage)).err().unwrap();
        assert!(matches!(e, TlsConfigError::RootNotPem { .. }) && e.to_string().contains("PEM"), "{e}");
        assert!(connector(&TlsSettings { mode: SslMode::Disable, mode_given: true, roots: Roots::Platform }).unwrap().is_none());
        assert!(connector(&TlsSettings { mode: SslMode::Prefer, mode_given: false, roots: Roots::Platform }).unwrap().is_some());
    }

    #[test]
    fn certificate_names_are_shown_bare() {
        assert_eq!(super::bare_name("DnsName(\"db.example\")"), "db.example");
        assert_eq!(super::bare_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(super::bare_name("something else"), "something else");
    }
}
