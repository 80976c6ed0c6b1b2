//! TLS to the PostgreSQL store (issue 13): the store URL's `sslmode` and `sslrootcert`, against
//! a real private cluster with `ssl = on` and a certificate for `localhost` / `127.0.0.1` signed
//! by a CA of its own (`PgCluster::start_tls`), through the library and the real binary.
//!
//! The server is the judge of whether a connection is encrypted: `pg_stat_ssl` of the
//! connection's backend (its own, or every `meterd` backend of the test's database while a
//! daemon runs). Refusals are one-shot commands that exit 2 (a configuration error) with a
//! message naming the problem; the password never appears in any output.

mod util;

use meterd::store::{Store, StoreError};
use std::path::{Path, PathBuf};
use util::pg::PgCluster;
use util::{Env, Run, NOW};

fn gate() {}

/// `url` with `params` appended as its query.
fn with(url: &str, params: &str) -> String {
    format!("{url}?{params}")
}

fn verify_full(pg: &PgCluster, url: &str) -> String {
    with(url, &format!("sslmode=verify-full&sslrootcert={}", ca(pg).display()))
}

fn ca(pg: &PgCluster) -> &Path {
    pg.tls_ca().expect("a TLS cluster")
}

/// Whether the server sees this store's connection as TLS.
fn store_uses_tls(store: &mut Store) -> bool {
    store
        .read(|tx| {
            let mut pg = tx.pg().expect("a PostgreSQL store");
            let row = pg.client()?.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])?;
            Ok(row.get::<_, bool>(0))
        })
        .expect("read pg_stat_ssl")
}

/// `meterd status` on `url` (the gate set), in a fresh environment.
fn status(url: &str) -> Run {
    let mut env = Env::new();
    env.db = PathBuf::from(url);
    let out = env.cmd().args(["status", "--now", NOW]).stdin(std::process::Stdio::null()).output().expect("spawn meterd");
    Run::from(out)
}

/// Exit 2 with `words` in stderr, and no password anywhere.
fn refused(run: &Run, words: &[&str], password: &str) {
    assert_eq!(run.code, 2, "stdout {}\nstderr {}", run.stdout, run.stderr);
    for w in words {
        assert!(run.stderr.contains(w), "no {w:?} in: {}", run.stderr);
    }
    assert!(!run.stdout.contains(password) && !run.stderr.contains(password), "the password shows: {}", run.stderr);
}

/// A CA that signed nothing the server holds, as a PEM file in `dir`.
fn stray_ca(dir: &Path) -> PathBuf {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, "some other CA");
    let path = dir.join("other-ca.pem");
    std::fs::write(&path, params.self_signed(&key).expect("self-sign").pem()).expect("write the stray CA");
    path
}

#[test]
fn verify_full_with_the_right_ca_is_tls_as_the_server_sees_it() {
    let Some(pg) = PgCluster::start_tls() else { return };
    gate();
    let url = pg.fresh_db();
    let mut store = Store::open(Path::new(&verify_full(&pg, &url))).expect("verify-full with the cluster's CA connects");
    assert!(store_uses_tls(&mut store), "the server sees a TLS connection under verify-full");
    // The default (prefer) takes the TLS the server offers; disable does not: the check above
    // tells the two apart.
    assert!(store_uses_tls(&mut Store::open(Path::new(&url)).expect("prefer connects")), "prefer uses the TLS offered");
    let mut plain = Store::open(Path::new(&with(&url, "sslmode=disable"))).expect("disable connects");
    assert!(!store_uses_tls(&mut plain), "sslmode=disable is clear text");
}

#[test]
fn the_binary_ingests_and_reports_over_verified_tls() {
    let Some(pg) = PgCluster::start_tls() else { return };
    let name = pg.fresh_db_name();
    let url = verify_full(&pg, &pg.url(&name));
    let mut env = Env::new();
    env.db = PathBuf::from(&url);
    let add = env.cmd().args(["instance", "add", "i-1", "--plan", "calls", "--start", "2026-11-01T00:00:00Z"]).output();
    Run::from(add.expect("spawn meterd")).success();
    let d = env.daemon_with(&["--node", "tls-a"], &[]);
    let ev = r#"{"id":"e-1","instance_id":"i-1","time":"2026-11-23T11:10:00Z","quantity":"3"}"#;
    let reply = d.http().events(format!("[{ev}]"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    // Every connection the daemon holds to its database is TLS, as the server sees it.
    let mut admin = pg.admin();
    let rows = admin
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = $1 AND a.application_name = 'meterd'",
            &[&name],
        )
        .expect("pg_stat_ssl");
    assert!(!rows.is_empty(), "the daemon holds connections to {name}");
    assert!(
        rows.iter().all(|r| r.get::<_, bool>(0)),
        "every meterd connection is TLS: {:?}",
        rows.iter().map(|r| r.get::<_, bool>(0)).collect::<Vec<_>>()
    );
    let s = status(&url);
    s.success();
    assert!(s.stdout.contains("events stored       1"), "{}", s.stdout);
    assert!(!s.stdout.contains(pg.password()) && !d.stderr().contains(pg.password()), "the password never shows");
    drop(d);
}

#[test]
fn a_certificate_from_another_ca_is_refused_naming_the_problem() {
    let Some(pg) = PgCluster::start_tls() else { return };
    gate();
    let dir = tempfile::tempdir().unwrap();
    let url = with(&pg.fresh_db(), &format!("sslmode=verify-full&sslrootcert={}", stray_ca(dir.path()).display()));
    refused(&status(&url), &["untrusted CA", "sslrootcert="], pg.password());
    // verify-ca and require check the chain too.
    for mode in ["verify-ca", "require"] {
        let url = url.replace("verify-full", mode);
        refused(&status(&url), &["untrusted CA"], pg.password());
    }
    let e = Store::open(Path::new(&url)).unwrap_err();
    assert!(matches!(e, StoreError::Tls(_)) && e.reason() == "config", "{e:?}");
}

#[test]
fn a_wrong_host_name_is_refused_by_verify_full_and_accepted_by_verify_ca() {
    let Some(pg) = PgCluster::start_tls() else { return };
    gate();
    // The certificate names localhost and 127.0.0.1; connect to 127.0.0.1 by another name.
    let name = pg.fresh_db_name();
    let base = format!("postgres://meterd:{}@db.wrong.test:{}/{name}", pg.password(), pg.port());
    let root = ca(&pg).display().to_string();
    let full = format!("{base}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={root}");
    refused(&status(&full), &["wrong host name", "db.wrong.test", "localhost"], pg.password());
    let verify_ca = full.replace("verify-full", "verify-ca");
    status(&verify_ca).success();
    let mut store = Store::open(Path::new(&verify_ca)).expect("verify-ca ignores the name");
    assert!(store_uses_tls(&mut store));
}

#[test]
fn require_against_a_server_without_tls_is_refused_and_disable_works() {
    let Some(pg) = PgCluster::shared() else { return };
    let url = pg.fresh_db();
    refused(&status(&with(&url, "sslmode=require")), &["sslmode=require requires TLS", "does not offer it"], pg.password());
    refused(&status(&with(&url, &format!("sslmode=verify-full&sslrootcert={}", "/dev/null"))), &["sslrootcert=/dev/null"], pg.password());
    status(&with(&url, "sslmode=disable")).success();
    // The default (prefer) falls back to clear text on a server without TLS, as libpq does.
    status(&url).success();
}

#[test]
fn bad_tls_parameters_are_configuration_errors() {
    let Some(pg) = PgCluster::shared() else { return };
    let url = pg.fresh_db();
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("ca.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    refused(&status(&with(&url, "sslmode=verify_full")), &["sslmode=\"verify_full\"", "verify-full"], pg.password());
    refused(
        &status(&with(&url, &format!("sslmode=verify-full&sslrootcert={}", garbage.display()))),
        &["sslrootcert=", "PEM"],
        pg.password(),
    );
    let missing = dir.path().join("missing.pem");
    refused(&status(&with(&url, &format!("sslrootcert={}", missing.display()))), &["sslrootcert=", "cannot read"], pg.password());
    refused(&status(&with(&url, "sslcert=/etc/client.pem")), &["sslcert", "not supported"], pg.password());
}
