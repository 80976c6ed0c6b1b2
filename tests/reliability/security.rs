//! Security (issue 7, test 7): the collector listens on loopback unless told otherwise; with a
//! token configured nothing is served (or stored) without it; bodies over the limit get 413;
//! the upload key never appears in logs (trace level, JSON), answers, errors, `Debug` output
//! or the database; a key file readable by others is warned about; and an `https://` store
//! with an untrusted (self-signed) certificate is refused at the handshake — no request ever
//! reaches it, the records stay queued, the run exits 3.

use crate::common::{outcome, records, start_mock, upload, upload_config, KEY};
use crate::util::{db, example_config_with, ndjson, Env, Ev, Http, NOW};
use base64::Engine as _;
use meterd::mockstore::Faults;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The key in every form it could leak in.
fn forms(key: &str) -> Vec<String> {
    vec![key.to_string(), hex::encode(key), base64::engine::general_purpose::STANDARD.encode(key)]
}

fn assert_no_key(text: &str, key: &str, place: &str) {
    for form in forms(key) {
        assert!(!text.contains(&form), "the key ({form}) appears in {place}");
    }
}

#[test]
fn the_collector_listens_on_loopback_by_default() {
    let default = meterd::config::Config::default();
    let addr: SocketAddr = default.server.listen.parse().unwrap();
    assert!(addr.ip().is_loopback(), "default server.listen {addr}");
    let example = meterd::config::Config::from_toml_str(meterd::config::EXAMPLE_CONFIG).unwrap();
    assert!(example.server.listen.parse::<SocketAddr>().unwrap().ip().is_loopback());

    // `meterd run` without --listen and without [server] binds 127.0.0.1 (when 9464 is free).
    let env = Env::with_config(&example_config_with(&[("listen = \"127.0.0.1:9464\"", "")]));
    if std::net::TcpListener::bind("127.0.0.1:9464").is_err() {
        eprintln!("port 9464 is taken here; only the config default was checked");
        return;
    }
    let mut child =
        env.cmd().args(["run", "--now", NOW]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    if line.is_empty() {
        eprintln!("port 9464 was taken meanwhile; only the config default was checked");
        return;
    }
    assert_eq!(line.trim(), "meterd listening on http://127.0.0.1:9464");
}

#[test]
fn without_the_token_nothing_is_served_or_stored_and_big_bodies_get_413() {
    const TOKEN: &str = "tok-3b9f0c2d7e";
    let env = Env::with_config(&example_config_with(&[
        ("# token_env = \"METERD_TOKEN\"", "token_env = \"METERD_TOKEN\""),
        ("max_body = 16777216", "max_body = 4096"),
    ]));
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    let daemon = env.daemon_with(&[], &[("METERD_TOKEN", TOKEN), ("RUST_LOG", "trace")]);
    let body = ndjson(&[Ev::new("e1", "inst-a", "1", "2026-11-23T11:00:00Z").json()]);
    for http in [daemon.http(), daemon.http_with_token("wrong"), daemon.http_with_token(&format!("{TOKEN}x"))] {
        let r = http.events(body.clone());
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(r.json()["error"].as_str().unwrap().contains("Bearer"), "{}", r.text());
        for path in ["/v1/instances", "/v1/status", "/metrics", "/v1/preview"] {
            assert_eq!(http.get(path).status, 401, "{path}");
        }
        let r = http.post("/v1/instances", r#"{"instance_id":"evil","plan":"calls","start":"2026-11-01T00:00:00Z"}"#);
        assert_eq!(r.status, 401);
        assert_eq!(http.get("/healthz").status, 200, "health needs no token");
    }
    let basic = Http::new(&daemon.addr, None);
    let r = basic.post("/v1/events", body.clone());
    assert_eq!(r.status, 401);
    let c = env.db();
    assert_eq!(db::count_events(&c), 0, "nothing stored without the token");
    assert_eq!(c.one::<i64>("SELECT count(*) FROM instances", &[]), 1);

    let ok = daemon.http_with_token(TOKEN);
    // Over the limit (4096 bytes): 413, with or without the token, nothing stored.
    let mut big = Vec::new();
    for i in 0..60 {
        big.extend(ndjson(&[Ev::new(&format!("big-{i}"), "inst-a", "1", "2026-11-23T11:00:00Z").json()]));
    }
    assert!(big.len() > 4096);
    let r = ok.events(big.clone());
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("max_body"), "{}", r.text());
    assert!(matches!(daemon.http().events(big).status, 401 | 413));
    assert_eq!(db::count_events(&c), 0);

    assert_eq!(ok.events(body).ok()["accepted"], 1, "with the token it works");
    assert_eq!(db::count_events(&c), 1);
    assert!(!daemon.stderr().contains(TOKEN), "the token is not logged");
}

/// Sealed records for two instances, ready to upload.
fn sealed(env: &Env) {
    let lines: Vec<String> = ["inst-a", "inst-b"]
        .iter()
        .flat_map(|i| {
            env.add_instance(i, "calls", "2026-11-01T00:00:00Z");
            (8..10).map(move |h| Ev::new(&format!("{i}-{h}"), i, "4.5", &format!("2026-11-23T{h:02}:00:00Z")).json())
        })
        .collect();
    env.ingest_file("events.ndjson", &ndjson(&lines)).success();
    env.run(&["seal", "--now", NOW]).success();
}

#[test]
fn the_key_never_shows_in_logs_errors_debug_or_the_database() {
    let mock = start_mock(NOW, Faults { fail_first: 1, ..Faults::default() });
    let env = Env::with_config(&upload_config(&mock.endpoint(), &mock.endpoint(), &[]));
    sealed(&env);
    let trace = [("RUST_LOG", "trace")];

    // A dry run prints signatures and bodies, never the key.
    let mut cmd = env.cmd();
    cmd.args(["--log-format", "json", "upload", "--dry-run", "--now", NOW]).env("METERD_ISV_KEY", KEY).env("RUST_LOG", "trace");
    let o = outcome(cmd);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_no_key(&format!("{}{}", o.stdout, o.stderr), KEY, "upload --dry-run");

    // A wrong key: the store refuses the signature; the error names the settings, not the key.
    let wrong = "wrong-key-5d1e8a7c";
    let mut cmd = env.cmd();
    cmd.args(["--log-format", "json", "upload", "--now", NOW]).env("METERD_ISV_KEY", wrong).env("RUST_LOG", "trace");
    let o = outcome(cmd);
    assert_eq!(o.code, Some(2), "{o:?}");
    assert!(o.stderr.contains("METERD_ISV_KEY"), "{}", o.stderr);
    assert_no_key(&format!("{}{}", o.stdout, o.stderr), wrong, "a failed upload");

    // The real key, at trace level in JSON, through a transient failure and a delivery.
    let mut cmd = env.cmd();
    cmd.args(["--log-format", "json", "upload", "--now", NOW]).env("METERD_ISV_KEY", KEY).envs(trace);
    let o = outcome(cmd);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stderr.contains("\"level\":\"TRACE\"") || o.stderr.contains("\"level\":\"DEBUG\""), "trace logging was on");
    assert_no_key(&format!("{}{}", o.stdout, o.stderr), KEY, "a trace-level upload log");
    assert!(records(&env).iter().all(|r| r.1 == "delivered"));

    // Debug output of everything that holds the key.
    let secret = meterd::config::Secret::new(KEY);
    assert_no_key(&format!("{secret:?} {secret}"), KEY, "Secret's Debug/Display");
    assert_no_key(&format!("{:?}", meterd::mockstore::MockConfig::new(secret.clone())), KEY, "MockConfig's Debug");
    std::env::set_var("METERD_ISV_KEY", KEY);
    let loaded = meterd::upload::run::load_key(&env.cfg().upload);
    std::env::remove_var("METERD_ISV_KEY");
    assert_no_key(&format!("{loaded:?} {:?}", env.cfg()), KEY, "the loaded key and config");

    // The database and its WAL never hold the key. SQLite's files only: a PostgreSQL
    // database's files are the server's. The database file must be there to be read; the WAL
    // only exists until a checkpoint folds it back, so it is read when present.
    if crate::util::backend::PG {
        return;
    }
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", env.db.display());
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if suffix == "-wal" && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("read {path}: {e}"),
        };
        assert!(!bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()), "the key is in {path}");
    }
}

#[cfg(unix)]
#[test]
fn a_key_file_readable_by_others_is_warned_about_and_the_daemon_never_logs_it() {
    use std::os::unix::fs::PermissionsExt;
    let mock = start_mock(NOW, Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("isv.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let line = format!("key_file = {:?}", key_file.display().to_string());
    let env = Env::with_config(&upload_config(
        &mock.endpoint(),
        &mock.endpoint(),
        &[("# key_file = \"/etc/meterd/isv.key\"   # or env METERD_ISV_KEY; chmod 600", &line)],
    ));
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = env.run(&["upload", "--now", NOW]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stderr.matches("chmod 600").count(), 1, "a group/other-readable key file is warned about, once: {}", o.stderr);
    assert_no_key(&o.stderr, KEY, "the warning");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = env.run(&["upload", "--now", NOW]);
    assert!(!o.stderr.contains("chmod"), "no warning for 0600: {}", o.stderr);

    // The daemon with the key file, at trace level: delivers, never logs the key.
    sealed(&env);
    let daemon = env.daemon_with(&["--log-format", "json"], &[("RUST_LOG", "trace")]);
    let start = std::time::Instant::now();
    while mock.ledger().len() < 4 {
        assert!(start.elapsed() < Duration::from_secs(20), "the daemon did not deliver: {}", daemon.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(daemon);
    let logs: String = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".stderr"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"), "trace logging was on");
    assert_no_key(&logs, KEY, "the daemon's trace log");
}

/// A TLS server on loopback with a self-signed certificate, counting what reaches it.
struct SelfSigned {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    tcp: Arc<AtomicU64>,
    handshakes: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

impl SelfSigned {
    fn start() -> SelfSigned {
        use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use tokio_rustls::rustls::ServerConfig;
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
        let tls = ServerConfig::builder().with_no_client_auth().with_single_cert(vec![cert.cert.der().clone()], key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tcp, handshakes, requests) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (t, h, q) = (tcp.clone(), handshakes.clone(), requests.clone());
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                t.fetch_add(1, Ordering::SeqCst);
                let (acceptor, h, q) = (acceptor.clone(), h.clone(), q.clone());
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    if let Ok(mut tls) = acceptor.accept(stream).await {
                        h.fetch_add(1, Ordering::SeqCst);
                        let mut buf = [0u8; 1];
                        if matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {
                            q.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        SelfSigned { rt, addr, tcp, handshakes, requests }
    }
}

#[test]
fn an_untrusted_certificate_is_refused_and_records_stay_queued() {
    let server = SelfSigned::start();
    let endpoint = format!("https://localhost:{}", server.addr.port());
    let env = Env::with_config(&upload_config(&endpoint, &endpoint, &[("max_attempts = 8", "max_attempts = 2")]));
    sealed(&env);
    let before = records(&env);
    let o = upload(&env, NOW, &[]);
    assert_eq!(o.code, Some(3), "an untrusted store is a runtime failure: {o:?}");
    let report = o.json();
    assert_eq!(report["delivered"], 0, "{report}");
    assert!(o.stderr.to_lowercase().contains("certificate"), "the error says why: {}", o.stderr);
    assert!(server.tcp.load(Ordering::SeqCst) >= 1, "the client did connect");
    assert_eq!(server.handshakes.load(Ordering::SeqCst), 0, "no TLS session was established");
    assert_eq!(server.requests.load(Ordering::SeqCst), 0, "the server never saw an HTTP request");
    let after = records(&env);
    assert_eq!(after.len(), before.len());
    assert!(after.iter().all(|r| r.1 == "pending" || r.1 == "sending"), "records stay queued: {after:?}");
    assert_eq!(env.db().one::<i64>("SELECT count(*) FROM rejected", &[]), 0);
    drop(server.rt);
}
