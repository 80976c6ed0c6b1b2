//! A private PostgreSQL cluster for tests and benches, started from the OS package's server
//! binaries: `initdb` into a directory of its own, then `postgres` as a child process on a free
//! loopback port. Self-contained (std, libc, tempfile, postgres), so it is shared by the
//! integration tests (`util::pg`), `benches/`, and the library's unit tests through
//! `#[path = "../../tests/util/pg.rs"]`.
//!
//! **Use.** `let Some(pg) = PgCluster::shared() else { return };` at the top of a test, then
//! `pg.fresh_db()` for a database of its own (a `postgres://meterd:PASSWORD@127.0.0.1:PORT/NAME`
//! URL). [`PgCluster::shared`] is one cluster per test process, started on first use;
//! [`PgCluster::start`] a private one for tests that [`stop`](PgCluster::stop) or
//! [`restart`](PgCluster::restart) the server (never stop the shared one). [`PgCluster::start_with`]
//! is a private one with extra server settings (the bench's `METERD_BENCH_PG_SETTINGS`).
//!
//! **Where the binaries come from** ([`find_bin_dir`]): `$METERD_PG_BIN` if set, else the
//! highest `/usr/lib/postgresql/<version>/bin` holding `initdb` (Debian's layout), else the
//! directory of `initdb` on `PATH`. When there are none, the PostgreSQL tests are skipped:
//! `PostgreSQL tests skipped: <why>` goes to the real stderr (not the test's captured output,
//! so it shows in `cargo test`), once per process; under `CI=true` it is a panic instead, since
//! a skip in CI would hide an untested backend. A cluster that fails to start is always a panic
//! with the tail of the server log, never a skip.
//!
//! **The cluster** is durable like a production one: `fsync` and `synchronous_commit` keep
//! their defaults (on). Superuser `meterd` with a random password; TCP on 127.0.0.1 only, with
//! `scram-sha-256`; `trust` on a unix socket in a private directory (mode 0700), which the
//! harness itself uses for `CREATE DATABASE`. UTF8, C locale (`--no-locale`); a test that needs a
//! database of another collation makes one with [`PgCluster::fresh_db_with`].
//!
//! **TLS** ([`PgCluster::start_tls`]): a private cluster with `ssl = on`, serving a certificate
//! for `localhost` and `127.0.0.1` signed by a CA made for that cluster alone (rcgen, ECDSA
//! P-256); the CA's PEM is at [`PgCluster::tls_ca`]. `server.crt` / `server.key` sit in the data
//! directory (the key mode 0600, owned by the server's user, as PostgreSQL demands). The
//! `host … scram-sha-256` line `initdb` writes still admits clear-text connections, so a test
//! can tell from `pg_stat_ssl` whether a client really used TLS.
//!
//! **Root.** `initdb` and `postgres` refuse to run as root. When the test process is root they
//! run as the OS package's `postgres` user (`Command::uid`/`gid`: std switches group, clears
//! supplementary groups and switches user in the child before the `pre_exec` hook runs), and
//! the cluster directory is chowned to it. Root without a `postgres` user is a skip.
//!
//! **No orphans.** The server is a child of this process, never a `pg_ctl` daemon, and its
//! `pre_exec` hook sets `PR_SET_PDEATHSIG` to `SIGQUIT` — after the user switch, which would
//! clear it. SIGQUIT is PostgreSQL's immediate shutdown: the postmaster stops its backends at
//! once and releases its shared memory, where SIGKILL would leave the System V segment and
//! backends behind, and SIGTERM (smart shutdown) would wait for clients and checkpoint data
//! nobody will read again. The death signal fires when the *thread* that spawned the child
//! exits, so every server is spawned by one spawner thread that lives as long as the process
//! (test threads come and go). Clean paths: `Drop` (private clusters) and an `atexit` hook
//! (the shared one, a `static` that is never dropped) stop the server with a fast shutdown
//! (SIGINT, bounded wait, then SIGKILL) and remove its directory.
//!
//! **Leftovers.** Every cluster lives under one parent, `$TMPDIR/meterd-pgtest/<pid>-<n>-<nonce>/`
//! (`data/`, `sock/`, `server.log`). A killed test process cannot remove its directory, so the
//! first cluster a process starts first removes ([`sweep_dead_clusters`]) every directory whose
//! creating process is gone and whose postmaster (per `data/postmaster.pid`) is not running.
//!
//! **Async tests.** The blocking `postgres::Client` runs its own runtime and panics when used
//! on a tokio worker thread; inside async code wrap it in `tokio::task::spawn_blocking`.

#![allow(dead_code)]

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The superuser `initdb` creates; every URL the harness hands out logs in as it.
pub const USER: &str = "meterd";
/// Name of the directory (under the system temp dir) that holds every cluster.
const PARENT_DIR: &str = "meterd-pgtest";
/// Longest wait for a starting server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a fast shutdown before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Ports tried when another process takes the chosen port first.
const PORT_ATTEMPTS: usize = 8;

/// One running (or stopped) private PostgreSQL cluster. Fields are fixed at start; only the
/// server child changes (stop / restart).
pub struct PgCluster {
    bin: PathBuf,
    /// `<parent>/<pid>-<n>-<nonce>`: `data/`, `sock/`, `server.log`, `initdb.log`.
    dir: PathBuf,
    port: u16,
    password: String,
    /// `(uid, gid)` the server runs as when the test process is root.
    run_as: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
    next_db: AtomicU64,
    /// The CA that signed the server's certificate (PEM), when started with TLS.
    tls_ca: Option<PathBuf>,
    /// Server settings (`name=value`) passed as `-c` beyond the harness's own
    /// ([`PgCluster::start_with`]); empty for the tests' clusters.
    settings: Vec<String>,
}

/// What is needed to run a cluster: the binaries and the user to run them as.
struct Located {
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
}

/// Why a start attempt failed.
enum StartError {
    /// Another process bound the port first: try another (or wait, on restart).
    PortTaken,
    /// Anything else: the message (the log tail is added by the caller).
    Other(String),
}

static SHARED: OnceLock<Option<PgCluster>> = OnceLock::new();

impl PgCluster {
    /// The cluster shared by every test of this process, started on first use; `None` (with
    /// the skip message, or a panic under `CI=true`) when no server binaries are usable.
    pub fn shared() -> Option<&'static PgCluster> {
        SHARED
            .get_or_init(|| {
                let located = locate().map_err(|why| skip(&why)).ok()?;
                let cluster = PgCluster::launch(located, false);
                // SAFETY: registers a plain `extern "C" fn` with no captured state.
                unsafe { libc::atexit(stop_shared_at_exit) };
                Some(cluster)
            })
            .as_ref()
    }

    /// A private cluster (stopped and removed on drop), for tests that stop or restart the
    /// server; `None` as for [`PgCluster::shared`].
    pub fn start() -> Option<PgCluster> {
        PgCluster::start_with(&[])
    }

    /// A private cluster as [`PgCluster::start`], its server started with these settings too
    /// (`name=value`, each passed as `-c`; the bench's tuned cluster). Durability settings
    /// (`fsync`, `synchronous_commit`, `full_page_writes`) are refused: a cluster of this
    /// harness is always durable.
    pub fn start_with(settings: &[String]) -> Option<PgCluster> {
        for s in settings {
            let name = s.split('=').next().unwrap_or("").trim();
            assert!(
                !["fsync", "synchronous_commit", "full_page_writes"].contains(&name) && s.contains('='),
                "setting {s:?}: expected name=value, and the durability settings stay at their defaults"
            );
        }
        match locate() {
            Ok(located) => Some(PgCluster::launch_with(located, false, settings.to_vec())),
            Err(why) => {
                skip(&why);
                None
            }
        }
    }

    /// A private cluster with `ssl = on` (see the module docs); `None` as for
    /// [`PgCluster::shared`].
    pub fn start_tls() -> Option<PgCluster> {
        match locate() {
            Ok(located) => Some(PgCluster::launch(located, true)),
            Err(why) => {
                skip(&why);
                None
            }
        }
    }

    /// The PEM file of the CA that signed the server's certificate (clusters from
    /// [`PgCluster::start_tls`] only).
    pub fn tls_ca(&self) -> Option<&Path> {
        self.tls_ca.as_deref()
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `meterd` user's password (32 hex digits, URL-safe).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The directory holding `data/`, `sock/` and `server.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `CREATE DATABASE` with a name unique in this cluster; returns its URL with the password.
    pub fn fresh_db(&self) -> String {
        self.url(&self.fresh_db_name())
    }

    /// `CREATE DATABASE` with a name unique in this cluster (`t<pid>_<n>`); returns the name,
    /// for [`PgCluster::url_without_password`].
    pub fn fresh_db_name(&self) -> String {
        self.fresh_db_name_with("")
    }

    /// As [`PgCluster::fresh_db`], created with these `CREATE DATABASE` options (e.g. a
    /// collation other than the cluster's C: `TEMPLATE template0 LOCALE_PROVIDER icu
    /// ICU_LOCALE 'en-US' LOCALE 'C'`).
    pub fn fresh_db_with(&self, options: &str) -> String {
        self.url(&self.fresh_db_name_with(options))
    }

    fn fresh_db_name_with(&self, options: &str) -> String {
        let name = format!("t{}_{}", std::process::id(), self.next_db.fetch_add(1, Ordering::Relaxed));
        let mut admin = self.admin();
        admin
            .batch_execute(&format!("CREATE DATABASE {name} {options}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} {options}: {e}"));
        name
    }

    /// `postgres://meterd:PASSWORD@127.0.0.1:PORT/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{USER}:{}@127.0.0.1:{}/{name}", self.password, self.port)
    }

    /// The URL of database `name` without the password (for tests of `PGPASSWORD` or a
    /// password file).
    pub fn url_without_password(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// A superuser connection over the private unix socket (trust), to database `postgres`.
    pub fn admin(&self) -> postgres::Client {
        let mut cfg = postgres::Config::new();
        cfg.host_path(self.sock_dir()).port(self.port).user(USER).dbname("postgres").connect_timeout(Duration::from_secs(10));
        cfg.connect(postgres::NoTls).unwrap_or_else(|e| panic!("connect to the test cluster's socket: {e}\n{}", self.log_tail(30)))
    }

    /// The server's process id while it runs.
    pub fn server_pid(&self) -> Option<u32> {
        lock(&self.child).as_ref().map(|c| c.id())
    }

    /// Whether the server process is alive.
    pub fn is_running(&self) -> bool {
        match lock(&self.child).as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops the server with a fast shutdown (SIGINT: clients are disconnected, a checkpoint
    /// is written); kills it if that takes longer than 30 s. A stopped cluster stays stopped.
    pub fn stop(&self) {
        if let Some(child) = lock(&self.child).take() {
            fast_shutdown(child);
        }
    }

    /// Stops the server and starts it again on the same port with the same data; waits until
    /// it accepts connections. Committed rows survive; existing connections do not.
    pub fn restart(&self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_server() {
                Ok(()) => return,
                Err(StartError::PortTaken) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                Err(StartError::PortTaken) => self.fail(&format!("port {} stayed taken after the restart", self.port)),
                Err(StartError::Other(why)) => self.fail(&why),
            }
        }
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn sock_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    fn fail(&self, why: &str) -> ! {
        panic!("test PostgreSQL cluster in {}: {why}\n--- server.log (tail) ---\n{}", self.dir.display(), self.log_tail(40))
    }

    /// initdb, then start the server on a free port (another one when the port was taken).
    fn launch(located: Located, tls: bool) -> PgCluster {
        PgCluster::launch_with(located, tls, Vec::new())
    }

    fn launch_with(located: Located, tls: bool, settings: Vec<String>) -> PgCluster {
        static SWEPT: OnceLock<()> = OnceLock::new();
        SWEPT.get_or_init(|| {
            sweep_dead_clusters();
        });
        let dir = new_cluster_dir(located.run_as);
        let password = random_hex();
        let mut cluster = PgCluster {
            bin: located.bin,
            dir,
            port: 0,
            password,
            run_as: located.run_as,
            child: Mutex::new(None),
            next_db: AtomicU64::new(0),
            tls_ca: None,
            settings,
        };
        cluster.initdb();
        if tls {
            cluster.tls_ca = Some(cluster.write_server_certificate());
        }
        for _ in 0..PORT_ATTEMPTS {
            cluster.port = free_port();
            match cluster.spawn_server() {
                Ok(()) => return cluster,
                Err(StartError::PortTaken) => continue,
                Err(StartError::Other(why)) => cluster.fail(&why),
            }
        }
        cluster.fail(&format!("every one of {PORT_ATTEMPTS} free ports was taken before the server bound it"))
    }

    fn initdb(&self) {
        let pwfile = self.dir.join("pwfile");
        fs::write(&pwfile, format!("{}\n", self.password)).expect("write the initdb password file");
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600)).expect("chmod the password file");
        self.chown(&pwfile);
        let log = self.dir.join("initdb.log");
        let out = fs::File::create(&log).expect("create initdb.log");
        let mut cmd = Command::new(self.bin.join("initdb"));
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-U", USER, "-E", "UTF8", "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()));
        self.prepare(&mut cmd, libc::SIGTERM, out);
        let status = cmd.status().unwrap_or_else(|e| panic!("run {}: {e}", self.bin.join("initdb").display()));
        let _ = fs::remove_file(&pwfile);
        if !status.success() {
            let text = fs::read_to_string(&log).unwrap_or_default();
            panic!("initdb in {} failed ({status}):\n{text}", self.dir.display());
        }
    }

    /// Starts `postgres` on `self.port` through the spawner thread and waits until it accepts
    /// a password login over TCP and reports this cluster's data directory.
    fn spawn_server(&self) -> Result<(), StartError> {
        let log = fs::OpenOptions::new().create(true).append(true).open(self.dir.join("server.log")).expect("open server.log");
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D").arg(self.dir.join("data")).args(["-p", &self.port.to_string()]).arg("-k").arg(self.sock_dir()).args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "logging_collector=off",
            "-c",
            "max_connections=200",
        ]);
        if self.tls_ca.is_some() {
            cmd.args(["-c", "ssl=on"]);
        }
        for s in &self.settings {
            cmd.args(["-c", s]);
        }
        // Profiling (the bench's `METERD_BENCH_PGSS=1`): per-statement totals in
        // `pg_stat_statements`, statements inside functions included.
        if std::env::var_os("METERD_BENCH_PGSS").is_some_and(|v| v != "0") {
            cmd.args(["-c", "shared_preload_libraries=pg_stat_statements", "-c", "pg_stat_statements.track=all"]);
        }
        self.prepare(&mut cmd, libc::SIGQUIT, log);
        let mut child = spawn_on_spawner(cmd).map_err(|e| StartError::Other(format!("spawn postgres: {e}")))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let text = fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                let fresh = text.get(log_start as usize..).unwrap_or(&text);
                if fresh.contains("Address already in use") || fresh.contains("could not create any TCP/IP sockets") {
                    return Err(StartError::PortTaken);
                }
                return Err(StartError::Other(format!("postgres exited while starting ({status})")));
            }
            if self.is_ours() {
                *lock(&self.child) = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StartError::Other(format!("postgres did not accept connections within {START_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether a password login on our port reaches a server on our data directory (not some
    /// other server that took the port).
    fn is_ours(&self) -> bool {
        let mut cfg = postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .user(USER)
            .password(&self.password)
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(2));
        let Ok(mut client) = cfg.connect(postgres::NoTls) else { return false };
        let Ok(row) = client.query_one("SHOW data_directory", &[]) else { return false };
        let dir: String = row.get(0);
        Path::new(&dir) == self.dir.join("data")
    }

    /// Working directory, output, user and death signal of an initdb or postgres command.
    fn prepare(&self, cmd: &mut Command, death_signal: libc::c_int, log: fs::File) {
        let err = log.try_clone().expect("clone the log file handle");
        cmd.current_dir(&self.dir).stdin(Stdio::null()).stdout(log).stderr(err).env("LC_ALL", "C");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid).env("HOME", &self.dir);
        }
        // SAFETY: the hook only makes async-signal-safe calls (prctl, getppid) and allocates
        // nothing. It runs after std's setgid/setuid, which clear the death signal.
        let parent = std::process::id() as libc::pid_t;
        unsafe {
            cmd.pre_exec(move || die_with_parent(parent, death_signal));
        }
    }

    /// Makes a CA and a server certificate for `localhost` / `127.0.0.1` signed by it; writes
    /// `data/server.crt`, `data/server.key` (0600, the server's user) and `ca.pem`; returns the
    /// path of `ca.pem`.
    fn write_server_certificate(&self) -> PathBuf {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "meterd test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign the CA");
        let key = KeyPair::generate().expect("server key");
        let mut server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("server params");
        server.distinguished_name.push(DnType::CommonName, "localhost");
        let cert = server.signed_by(&key, &ca_cert, &ca_key).expect("sign the server certificate");
        let data = self.dir.join("data");
        for (name, text, mode) in [("server.crt", cert.pem(), 0o644), ("server.key", key.serialize_pem(), 0o600)] {
            let path = data.join(name);
            fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod the server certificate");
            self.chown(&path);
        }
        let ca_path = self.dir.join("ca.pem");
        fs::write(&ca_path, ca_cert.pem()).expect("write ca.pem");
        ca_path
    }

    fn chown(&self, path: &Path) {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `atexit` hook: the shared cluster is a `static`, never dropped.
extern "C" fn stop_shared_at_exit() {
    if let Some(Some(cluster)) = SHARED.get() {
        cluster.stop();
        let _ = fs::remove_dir_all(&cluster.dir);
    }
}

/// Connects with the blocking client to `url`, panicking with the URL's cause on failure.
/// Not on a tokio worker thread (see the module docs).
pub fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap_or_else(|e| panic!("connect to the test database: {e}"))
}

/// The directory holding every test cluster: `$TMPDIR/meterd-pgtest`.
pub fn parent_dir() -> PathBuf {
    std::env::temp_dir().join(PARENT_DIR)
}

/// Removes the directories of clusters whose test process is gone and whose postmaster is not
/// running (a killed run's leftovers); returns how many were removed.
pub fn sweep_dead_clusters() -> usize {
    let Ok(entries) = fs::read_dir(parent_dir()) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.split('-').next()).and_then(|p| p.parse::<i32>().ok()) else { continue };
        if pid == std::process::id() as i32 || process_alive(pid) {
            continue;
        }
        let postmaster = fs::read_to_string(entry.path().join("data/postmaster.pid")).ok();
        if let Some(pm) = postmaster.as_deref().and_then(|t| t.lines().next()).and_then(|l| l.trim().parse::<i32>().ok()) {
            if process_alive(pm) {
                continue;
            }
        }
        if fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether `pid` is a live process (a zombie is not: nobody may reap a reparented one).
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat.rsplit(')').next().and_then(|rest| rest.trim_start().chars().next()), Some('Z') | Some('X')),
        // SAFETY: signal 0 only checks that the process exists.
        Err(_) => unsafe { libc::kill(pid, 0) == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) },
    }
}

/// The directory of the server binaries, or why there is none (see the module docs).
pub fn find_bin_dir() -> Result<PathBuf, String> {
    let has_server = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("METERD_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_server(&dir) { Ok(dir) } else { Err(format!("METERD_PG_BIN={} holds no initdb and postgres", dir.display())) };
    }
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for entry in fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(version) = name.split('.').map(str::parse::<u32>).collect::<Result<Vec<u32>, _>>() else { continue };
        let bin = entry.path().join("bin");
        if has_server(&bin) && best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, bin));
        }
    }
    if let Some((_, bin)) = best {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).find(|d| has_server(d)).ok_or_else(|| {
        "no PostgreSQL server binaries (METERD_PG_BIN is unset, no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH); \
         install the OS package `postgresql` or set METERD_PG_BIN"
            .to_string()
    })
}

/// The binaries and, for root, the `postgres` user to run them as.
fn locate() -> Result<Located, String> {
    let bin = find_bin_dir()?;
    // SAFETY: geteuid has no preconditions.
    let run_as = if unsafe { libc::geteuid() } == 0 {
        Some(lookup_user("postgres").ok_or_else(|| {
            "the tests run as root, initdb refuses root, and there is no `postgres` user to run it as \
             (install the OS package `postgresql`, or run the tests as another user)"
                .to_string()
        })?)
    } else {
        None
    };
    Ok(Located { bin, run_as })
}

/// Reports a skip: a panic under `CI=true`, else one line on the real stderr (bypassing the
/// test's output capture) the first time.
fn skip(why: &str) {
    let msg = format!("PostgreSQL tests skipped: {why}");
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{msg} (CI=true: a skipped PostgreSQL test is a failure)");
    }
    static SAID: OnceLock<()> = OnceLock::new();
    SAID.get_or_init(|| {
        let _ = writeln!(io::stderr(), "{msg}");
    });
}

/// `(uid, gid)` of a user, by `getpwnam_r`.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids); getpwnam_r fills it.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf` outlives the read of `pwd`.
    let rc = unsafe { libc::getpwnam_r(name.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    (rc == 0 && !result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
}

/// Creates `<parent>/<pid>-<n>-<nonce>` (parent: sticky and world-writable like /tmp, so
/// root and other users can share it) owned by the server's user, mode 0700, with `sock/`.
fn new_cluster_dir(run_as: Option<(u32, u32)>) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let parent = parent_dir();
    if fs::create_dir(&parent).is_ok() {
        let _ = fs::set_permissions(&parent, fs::Permissions::from_mode(0o1777));
    }
    let dir = parent.join(format!("{}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), &random_hex()[..8]));
    fs::create_dir_all(dir.join("sock")).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    for d in [&dir, &dir.join("sock")] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o700)).expect("chmod the cluster directory");
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", d.display()));
        }
    }
    dir
}

/// A port that was free a moment ago on 127.0.0.1 (the caller retries if it is taken).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind 127.0.0.1:0")
}

/// 32 random hex digits (std's per-process random hash keys; no extra dependency).
fn random_hex() -> String {
    use std::hash::{BuildHasher, RandomState};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let (a, b) = (RandomState::new().hash_one((n, t)), RandomState::new().hash_one((t, n, 1u8)));
    format!("{a:016x}{b:016x}")
}

/// `pre_exec` hook: the child gets `signal` when the spawning thread dies; if the parent
/// already died before the hook ran, the child gives up instead of running unwatched.
fn die_with_parent(parent: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl and getppid are async-signal-safe and take no pointers here.
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (parent, signal);
    Ok(())
}

/// Spawns `cmd` on the spawner thread, which lives as long as the process, so the death
/// signal fires only when the process dies, not when a test thread ends.
fn spawn_on_spawner(cmd: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("pg-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the pg-spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    lock(tx).send((cmd, reply_tx)).map_err(|_| io::Error::other("the pg-spawner thread is gone"))?;
    reply_rx.recv().map_err(|_| io::Error::other("the pg-spawner thread is gone"))?
}

/// SIGINT (fast shutdown), wait up to [`STOP_TIMEOUT`], then SIGKILL.
fn fast_shutdown(mut child: Child) {
    // SAFETY: signals our own child by its pid; it has not been reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Locks a mutex, ignoring poison (a panicking test must not wedge every later one).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
