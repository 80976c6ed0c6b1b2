//! `meterd mock-store`: the mock cloud store as a command. Serves until Ctrl-C or SIGTERM and
//! prints exactly one line on stdout at start, `mock-store listening on http://ADDR`, which
//! scripts and tests parse (so `--listen 127.0.0.1:0` is usable). The key is read from the
//! environment variable named by `--key-env` and is never printed or logged.
//!
//! What stops it before it serves is a configuration error ([`ServeError::Config`], exit code
//! 2 from the CLI): the key variable unset or empty, an unreadable `--instances` /
//! `--packages` file, an address it cannot listen on (in use, not this host's, a privileged
//! port) — each message says which flag or variable to fix. A failure after it started serving
//! is [`ServeError::Runtime`] (exit 3).

use super::{Faults, LostAnswer, MockConfig, MockStore, DEFAULT_PATH};
use crate::config::Secret;
use crate::model::Timestamp;
use anyhow::{bail, Context as _};
use std::collections::HashSet;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of `meterd mock-store`.
#[derive(Debug, Clone, clap::Args)]
pub struct MockStoreArgs {
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8480")]
    pub listen: SocketAddr,
    /// Name of the environment variable holding the interconnection key (the key itself is
    /// never passed on the command line, so it stays out of `ps` and shell history).
    #[arg(long, value_name = "VAR")]
    pub key_env: String,
    /// Append every billed record to this JSON-lines file (read back at start for dedupe).
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
    /// Known instance ids, one per line (`#` comments allowed); others get MKT.9001.
    #[arg(long, value_name = "FILE")]
    pub instances: Option<PathBuf>,
    /// Package instances, one `instance_id package_id` pair per line (`#` comments allowed):
    /// records of those instances must name one of theirs in relate_pkg_instance (MKT.0101),
    /// and a package id used as instance_id gets MKT.9001.
    #[arg(long, value_name = "FILE")]
    pub packages: Option<PathBuf>,
    /// The route to serve.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_PATH)]
    pub path: String,
    /// Pin "now" (RFC 3339) for the 21-day rule; the `ts` header is always checked against
    /// the real clock.
    #[arg(long, value_name = "TIME")]
    pub now: Option<Timestamp>,
    /// Answer the first N requests with 500 MKT.0999.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub fail_first: u64,
    /// Answer every Kth request with 500 MKT.0999 (0: never).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub fail_every: u64,
    /// Wait this long before handling each request.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Close the connection of the first N requests without answering.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub drop_first: u64,
    /// Close the connection of every Kth request without answering (0: never).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub drop_every: u64,
    /// Bill the first N requests, then lose the answer (see --bill-then-fail-how).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub bill_then_fail_first: u64,
    /// Bill every Kth request, then lose the answer (0: never).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub bill_then_fail_every: u64,
    /// How a bill-then-fail answer is lost.
    #[arg(long, value_enum, value_name = "HOW", default_value_t = LostAnswer::Empty500)]
    pub bill_then_fail_how: LostAnswer,
}

impl MockStoreArgs {
    /// The mock's configuration; reads the key variable and the instances file.
    pub fn to_config(&self) -> anyhow::Result<MockConfig> {
        let key = match std::env::var(&self.key_env) {
            Ok(k) if !k.is_empty() => Secret::new(k),
            _ => bail!("environment variable {} (named by --key-env) is not set, empty or not UTF-8; export the key there", self.key_env),
        };
        let instances = self.instances.as_deref().map(load_instances).transpose()?;
        Ok(MockConfig {
            key,
            path: self.path.clone(),
            ledger: self.ledger.clone(),
            instances,
            packages: self.packages.as_deref().map(load_packages).transpose()?,
            now: self.now,
            faults: Faults {
                fail_first: self.fail_first,
                fail_every: self.fail_every,
                latency: Duration::from_millis(self.latency_ms),
                drop_first: self.drop_first,
                drop_every: self.drop_every,
                bill_then_fail_first: self.bill_then_fail_first,
                bill_then_fail_every: self.bill_then_fail_every,
                bill_then_fail_how: self.bill_then_fail_how,
            },
            keep_bodies: false,
        })
    }
}

/// Reads a known-instances file: one id per line, blank lines and `#` comments skipped.
pub fn load_instances(path: &Path) -> anyhow::Result<HashSet<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read --instances {}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect())
}

/// Reads a packages file: `instance_id package_id` per line, blank lines and `#` comments
/// skipped.
pub fn load_packages(path: &Path) -> anyhow::Result<super::Packages> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read --packages {}", path.display()))?;
    let mut out = super::Packages::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            [inst, pkg] => {
                out.entry(inst.to_string()).or_default().insert(pkg.to_string());
            }
            _ => bail!("--packages {} line {}: expected `instance_id package_id`, got {line:?}", path.display(), n + 1),
        }
    }
    Ok(out)
}

/// Why the mock store could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A flag, the key variable or a file it names is wrong, or the address cannot be listened
    /// on: fix the command line (exit code 2).
    #[error("{0:#}")]
    Config(anyhow::Error),
    /// It failed after its configuration was accepted (exit code 3).
    #[error("{0:#}")]
    Runtime(anyhow::Error),
}

/// Serves until `stop` completes; calls `on_listening` with the bound address first.
pub async fn serve_until(
    args: MockStoreArgs,
    on_listening: impl FnOnce(SocketAddr),
    stop: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let cfg = args.to_config().map_err(ServeError::Config)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| ServeError::Config(anyhow::anyhow!(crate::server::listen::bind_error(args.listen, "--listen", &e))))?;
    let handle = MockStore::start(cfg, listener).await.map_err(|e| ServeError::Runtime(e.into()))?;
    on_listening(handle.addr());
    stop.await;
    handle.shutdown().await;
    Ok(())
}

/// `meterd mock-store`: serve until Ctrl-C or SIGTERM.
pub async fn run_cli(args: MockStoreArgs) -> Result<(), ServeError> {
    let announce = |addr: SocketAddr| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "mock-store listening on http://{addr}");
        let _ = out.flush();
    };
    serve_until(args, announce, terminated()).await
}

async fn terminated() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MockStoreArgs,
    }

    fn parse(argv: &[&str]) -> Result<MockStoreArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("mock-store").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn flags_map_to_faults() {
        let a = parse(&[
            "--key-env",
            "K",
            "--listen",
            "127.0.0.1:0",
            "--fail-first",
            "1",
            "--fail-every",
            "2",
            "--latency-ms",
            "3",
            "--drop-first",
            "4",
            "--drop-every",
            "5",
            "--bill-then-fail-first",
            "6",
            "--bill-then-fail-every",
            "7",
            "--bill-then-fail-how",
            "drop",
            "--now",
            "2026-11-23T08:00:00Z",
        ])
        .unwrap();
        assert_eq!(a.listen.port(), 0);
        assert_eq!(a.path, DEFAULT_PATH);
        assert_eq!(a.now, Some(crate::model::parse_rfc3339("2026-11-23T08:00:00Z").unwrap()));
        // SAFETY of set_var: the variable name is unique to this test.
        std::env::set_var("METERD_TEST_MOCK_FLAGS_KEY", "sekrit");
        let a = MockStoreArgs { key_env: "METERD_TEST_MOCK_FLAGS_KEY".into(), ..a };
        let c = a.to_config().unwrap();
        let expected = Faults {
            fail_first: 1,
            fail_every: 2,
            latency: Duration::from_millis(3),
            drop_first: 4,
            drop_every: 5,
            bill_then_fail_first: 6,
            bill_then_fail_every: 7,
            bill_then_fail_how: LostAnswer::Drop,
        };
        assert_eq!(c.faults, expected);
        assert_eq!(c.key.expose(), b"sekrit");
        assert!(!format!("{c:?}").contains("sekrit"));
    }

    #[test]
    fn key_env_is_required_and_must_be_set() {
        assert!(parse(&[]).is_err());
        let a = parse(&["--key-env", "METERD_TEST_MOCK_UNSET_VAR"]).unwrap();
        let err = a.to_config().unwrap_err().to_string();
        assert!(err.contains("METERD_TEST_MOCK_UNSET_VAR"), "{err}");
        assert!(parse(&["--key-env", "K", "--now", "yesterday"]).is_err());
    }

    #[test]
    fn instances_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("instances");
        std::fs::write(&p, "# known\n i-1 \n\ni-2\n").unwrap();
        assert_eq!(load_instances(&p).unwrap(), HashSet::from(["i-1".to_string(), "i-2".to_string()]));
    }

    #[test]
    fn packages_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("packages");
        std::fs::write(&p, "# instance package\ni-1 pkg-a\n\ni-1  pkg-b\ni-2 pkg-c\n").unwrap();
        let got = load_packages(&p).unwrap();
        assert_eq!(got["i-1"], HashSet::from(["pkg-a".to_string(), "pkg-b".to_string()]));
        assert_eq!(got["i-2"], HashSet::from(["pkg-c".to_string()]));
        std::fs::write(&p, "i-1\n").unwrap();
        assert!(load_packages(&p).unwrap_err().to_string().contains("line 1"));
    }
}
