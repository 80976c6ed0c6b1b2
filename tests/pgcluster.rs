//! The PostgreSQL test harness (`tests/util/pg.rs`) against a real server: the cluster is
//! durable (`fsync`, `synchronous_commit` on), hands out distinct databases, refuses a wrong
//! password, keeps committed rows over a restart (while connections made before it fail), and
//! leaves no server behind when the test process that started it is killed.
//!
//! The last test re-runs this test binary as a helper process (`helper_holds_a_cluster_until_killed`,
//! a no-op unless `METERD_PG_HELPER=1`), which starts a cluster and waits; the test SIGKILLs it.

#[path = "util/pg.rs"]
mod pg;

use pg::PgCluster;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn show(client: &mut postgres::Client, setting: &str) -> String {
    client.query_one(&format!("SHOW {setting}"), &[]).unwrap().get(0)
}

#[test]
fn the_cluster_is_durable() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut c = pg::connect(&pg.fresh_db());
    assert_eq!(show(&mut c, "fsync"), "on");
    assert_eq!(show(&mut c, "synchronous_commit"), "on");
    assert_eq!(show(&mut c, "server_encoding"), "UTF8");
    assert_eq!(show(&mut c, "listen_addresses"), "127.0.0.1");
}

#[test]
fn fresh_databases_are_distinct() {
    let Some(pg) = PgCluster::shared() else { return };
    let (a, b) = (pg.fresh_db(), pg.fresh_db());
    assert_ne!(a, b);
    pg::connect(&a).batch_execute("CREATE TABLE only_in_a (x bigint)").unwrap();
    let n: i64 = pg::connect(&b).query_one("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'", &[]).unwrap().get(0);
    assert_eq!(n, 0, "a table created in one fresh database shows in another");
}

#[test]
fn a_wrong_or_missing_password_is_refused() {
    let Some(pg) = PgCluster::shared() else { return };
    let name = &pg.fresh_db_name();
    let url = pg.url(name);
    let wrong = url.replace(pg.password(), "not-the-password");
    let err = postgres::Client::connect(&wrong, postgres::NoTls).err().expect("a wrong password was accepted");
    assert_eq!(err.code(), Some(&postgres::error::SqlState::INVALID_PASSWORD), "{err}");
    let err = postgres::Client::connect(&pg.url_without_password(name), postgres::NoTls).err().expect("no password was accepted");
    assert!(format!("{err:?}").contains("password"), "{err:?}");
    let mut ok = postgres::Config::new();
    let ok = ok.host("127.0.0.1").port(pg.port()).user(pg::USER).password(pg.password()).dbname(name);
    ok.connect(postgres::NoTls).expect("the right password is accepted");
}

#[test]
fn a_restart_keeps_committed_rows_and_drops_old_connections() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.fresh_db();
    let mut before = pg::connect(&url);
    before.batch_execute("CREATE TABLE t (x bigint); INSERT INTO t VALUES (1), (2), (3)").unwrap();
    let (port, pid) = (pg.port(), pg.server_pid());
    assert!(pg.is_running());
    pg.stop();
    assert!(!pg.is_running());
    pg.restart();
    assert!(pg.is_running());
    assert_eq!(pg.port(), port);
    assert_ne!(pg.server_pid(), pid, "a new server process");
    assert!(before.query_one("SELECT count(*) FROM t", &[]).is_err(), "a connection from before the restart still works");
    let n: i64 = pg::connect(&url).query_one("SELECT count(*) FROM t", &[]).unwrap().get(0);
    assert_eq!(n, 3);
}

#[test]
fn a_private_cluster_is_removed_on_drop() {
    let Some(pg) = PgCluster::start() else { return };
    let dir = pg.dir().to_path_buf();
    let pid = pg.server_pid().unwrap() as i32;
    assert!(dir.join("data").is_dir());
    drop(pg);
    assert!(!dir.exists(), "{} is left behind", dir.display());
    assert!(!pg::process_alive(pid), "the server outlived its cluster");
}

/// Run as a helper by the next test: starts a private cluster, says where, and waits to be
/// killed. Without `METERD_PG_HELPER=1` it does nothing.
#[test]
fn helper_holds_a_cluster_until_killed() {
    if std::env::var_os("METERD_PG_HELPER").is_none() {
        return;
    }
    let Some(pg) = PgCluster::start() else { return };
    println!("READY {} {} {}", pg.port(), pg.server_pid().unwrap(), pg.dir().display());
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_killed_test_process_leaves_no_server() {
    if PgCluster::shared().is_none() {
        return;
    }
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["helper_holds_a_cluster_until_killed", "--exact", "--nocapture", "--test-threads=1"])
        .env("METERD_PG_HELPER", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut ready = None;
    for line in BufReader::new(helper.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // With --nocapture the line follows libtest's "test NAME ... " on the same line.
        if let Some((_, rest)) = line.split_once("READY ") {
            let f: Vec<&str> = rest.splitn(3, ' ').collect();
            ready = Some((f[0].parse::<u16>().unwrap(), f[1].parse::<i32>().unwrap(), std::path::PathBuf::from(f[2])));
            break;
        }
    }
    let Some((port, server_pid, dir)) = ready else { panic!("the helper exited without a cluster: {:?}", helper.wait()) };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok(), "the helper's server accepts connections");

    helper.kill().unwrap(); // SIGKILL: no Drop, no atexit
    helper.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() || pg::process_alive(server_pid) {
        assert!(Instant::now() < deadline, "the server (pid {server_pid}, port {port}) outlived its killed test process");
        std::thread::sleep(Duration::from_millis(50));
    }
    pg::sweep_dead_clusters();
    assert!(!dir.exists(), "the killed run's directory {} was not swept", dir.display());
}
