//! HTTP limits under abuse (issue 15): 200 slow, idle and never-ending clients against the real
//! daemon, with small `[server]` limits and a low file limit (`RLIMIT_NOFILE` = 256, set in
//! `pre_exec`), on loopback. The daemon's memory stays bounded by configuration (peak RSS read
//! from `/proc/PID/status`), its descriptors stay below the limit (the seal loop, ticking
//! every second, never fails to open the store), `/healthz` and an ingest still answer while
//! the attack goes on, every abusive connection is answered 408/503 or closed within its
//! timeout, and the acknowledged event is stored.

#[path = "util/mod.rs"]
mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use util::{example_config_with, Env, Ev};

const NOFILE: u64 = 256;
const MAX_CONNECTIONS: usize = 64;
const MAX_BODY: usize = 4 << 20;
const MAX_INFLIGHT: usize = 8 << 20;
/// What each never-ending body sends at full speed before it trickles (its buffer: 4 MiB).
const BIG: usize = 3 << 20;
/// How long the attack lasts; every attempt must end well within it.
const ATTACK: Duration = Duration::from_secs(6);
/// The longest any one abusive connection may live: the largest timeout plus slack.
const PATIENCE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    SlowHeader,
    Idle,
    EndlessBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Outcome {
    /// An HTTP status, and for 503 which cap answered ("max_connections" / "max_inflight_bytes").
    Status(u16, &'static str),
    /// Closed or reset without an answer.
    Closed,
    /// Still open after [`PATIENCE`]: a limit did not hold.
    Hung,
}

fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// What the server sent so far decides the outcome; `None` until a whole answer arrived.
fn answered(got: &[u8]) -> Option<Outcome> {
    let text = String::from_utf8_lossy(got);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let length: usize =
        head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))?.parse().ok()?;
    if body.len() < length {
        return None;
    }
    let code: u16 = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let which = if text.contains("max_connections") {
        "max_connections"
    } else if text.contains("max_inflight_bytes") {
        "max_inflight_bytes"
    } else {
        ""
    };
    if code == 503 && !text.to_ascii_lowercase().contains("retry-after: 1") {
        return Some(Outcome::Status(503, "no Retry-After"));
    }
    Some(Outcome::Status(code, which))
}

/// One abusive connection of `kind`, until the server answers or closes it.
fn attack(addr: &str, kind: Kind) -> Outcome {
    let start = Instant::now();
    let Ok(mut s) = TcpStream::connect(addr) else { return Outcome::Closed };
    s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut got = Vec::new();
    let mut sent_big = 0usize;
    let chunk = vec![b'7'; 64 * 1024];
    let mut tick = 0u64;
    loop {
        if start.elapsed() > PATIENCE {
            return Outcome::Hung;
        }
        let step: Vec<u8> = match kind {
            Kind::SlowHeader if tick == 0 => b"POST /v1/events HTTP/1.1\r\nHost: x\r\n".to_vec(),
            Kind::SlowHeader => b"X".to_vec(),
            Kind::Idle => Vec::new(),
            Kind::EndlessBody if tick == 0 => b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            Kind::EndlessBody if sent_big < BIG => {
                sent_big += chunk.len();
                [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat()
            }
            Kind::EndlessBody => b"1\r\n7\r\n".to_vec(),
        };
        tick += 1;
        if !step.is_empty() {
            match s.write_all(&step) {
                Ok(()) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return answered(&got).unwrap_or(Outcome::Closed),
            }
        }
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => return answered(&got).unwrap_or(Outcome::Closed),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    if let Some(o) = answered(&got) {
                        return o;
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return answered(&got).unwrap_or(Outcome::Closed),
        }
        let trickling = kind == Kind::SlowHeader || (kind == Kind::EndlessBody && sent_big >= BIG);
        if trickling || kind == Kind::Idle {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn two_hundred_slow_clients_cannot_take_memory_descriptors_or_service() {
    let config = example_config_with(&[
        ("max_body = 16777216", &format!("max_body = {MAX_BODY}")),
        ("max_inflight_bytes = 67108864", &format!("max_inflight_bytes = {MAX_INFLIGHT}")),
        ("max_connections = 1024", &format!("max_connections = {MAX_CONNECTIONS}")),
        ("header_timeout = \"10s\"", "header_timeout = \"1s\""),
        ("body_timeout = \"60s\"", "body_timeout = \"2s\""),
        ("idle_timeout = \"60s\"", "idle_timeout = \"2s\""),
        ("seal = \"0 */5 * * * *\"", "seal = \"* * * * * *\""),
    ]);
    let env = Env::with_config(&config);
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    let d = env.daemon_tweaked(&[], &[], |cmd| with_nofile(cmd, NOFILE, NOFILE));
    let pid = d.pid();
    // A measurement, not a wait for a condition: the daemon's memory settles after start.
    std::thread::sleep(Duration::from_millis(300));
    let baseline_kib = vm_kib(pid, "VmRSS:");
    assert!(baseline_kib > 0, "cannot read /proc/{pid}/status");

    let outcomes: Arc<Mutex<Vec<(Kind, Outcome, Duration)>>> = Arc::default();
    let begin = Instant::now();
    let attackers: Vec<_> = (0..200)
        .map(|i| {
            let kind = [Kind::SlowHeader, Kind::Idle, Kind::EndlessBody, Kind::EndlessBody][i % 4];
            let (addr, outcomes) = (d.addr.clone(), outcomes.clone());
            std::thread::spawn(move || {
                for _ in 0..3 {
                    if begin.elapsed() > ATTACK - PATIENCE {
                        break;
                    }
                    let t = Instant::now();
                    let o = attack(&addr, kind);
                    let refused = matches!(o, Outcome::Status(503, _));
                    outcomes.lock().unwrap().push((kind, o, t.elapsed()));
                    if refused {
                        std::thread::sleep(Duration::from_millis(300));
                    }
                }
            })
        })
        .collect();

    // While it goes on: the daemon's descriptors, and a well-behaved client that retries.
    let mut max_fds = 0;
    let http = d.http();
    let mut healthy = None;
    let mut ingested = None;
    let event = Ev::new("good-1", "inst-a", "1.5", "2026-11-23T11:30:00Z").json();
    while begin.elapsed() < ATTACK {
        max_fds = max_fds.max(open_fds(pid));
        if healthy.is_none() {
            let r = http.try_get("/healthz").ok();
            if r.as_ref().is_some_and(|r| r.status == 200) {
                healthy = Some(begin.elapsed());
            }
        } else if ingested.is_none() {
            let r = http.try_post("/v1/events", event.clone()).ok();
            if r.as_ref().is_some_and(|r| r.status == 200 && r.json()["accepted"] == 1) {
                ingested = Some(begin.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for a in attackers {
        a.join().unwrap();
    }
    let peak_kib = vm_kib(pid, "VmHWM:");
    let outcomes = outcomes.lock().unwrap().clone();
    let count = |f: &dyn Fn(&(Kind, Outcome, Duration)) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let summary = {
        let mut m = std::collections::BTreeMap::new();
        for (k, o, _) in &outcomes {
            *m.entry(format!("{k:?} {o:?}")).or_insert(0) += 1;
        }
        m
    };
    eprintln!("outcomes: {summary:#?}\nRSS {baseline_kib} KiB -> peak {peak_kib} KiB; max fds {max_fds}");

    // Memory: bounded by max_inflight_bytes and the per-connection buffers, not by 100 bodies.
    assert!(peak_kib < baseline_kib + 48 * 1024, "peak RSS {peak_kib} KiB from {baseline_kib} KiB; outcomes {summary:#?}");
    // Descriptors: the connection cap keeps room for the store under the file limit.
    assert!(max_fds as u64 <= MAX_CONNECTIONS as u64 + meterd::daemon::startup::FD_RESERVE, "{max_fds} descriptors open");
    // Service: while the attack went on, a retrying client was answered.
    let healthy = healthy.unwrap_or_else(|| panic!("/healthz never answered 200 during the attack; {summary:#?}"));
    let ingested = ingested.unwrap_or_else(|| panic!("no ingest answered during the attack; {summary:#?}"));
    assert!(healthy < ATTACK && ingested < ATTACK);
    // Each abusive connection was answered or closed within its limits.
    assert_eq!(count(&|(_, o, _)| *o == Outcome::Hung), 0, "connections outlived every timeout: {summary:#?}");
    for (kind, o, took) in &outcomes {
        let ok = matches!(
            (kind, o),
            (_, Outcome::Status(503, "max_connections") | Outcome::Closed)
                | (Kind::EndlessBody, Outcome::Status(503, "max_inflight_bytes") | Outcome::Status(408, _))
        );
        assert!(ok, "{kind:?} got {o:?} after {took:?}");
    }
    assert!(count(&|(_, o, _)| *o == Outcome::Status(503, "max_connections")) > 0, "the connection cap never answered: {summary:#?}");
    assert!(count(&|(_, o, _)| *o == Outcome::Status(503, "max_inflight_bytes")) > 0, "the body budget never answered: {summary:#?}");
    assert!(count(&|(k, o, _)| *k == Kind::EndlessBody && matches!(o, Outcome::Status(408, _))) > 0, "no 408: {summary:#?}");
    let closed_in = |kind: Kind| outcomes.iter().filter(|(k, o, _)| *k == kind && *o == Outcome::Closed).map(|(_, _, t)| *t).max();
    for kind in [Kind::SlowHeader, Kind::Idle] {
        let t = closed_in(kind).unwrap_or_else(|| panic!("no {kind:?} connection was closed by a timeout: {summary:#?}"));
        assert!(t < Duration::from_millis(3500), "{kind:?} lived {t:?}");
    }

    // The seal loop kept opening the store; the acknowledged event is stored.
    let log = d.stderr();
    assert!(!log.contains("seal failed") && !log.contains("unable to open"), "{log}");
    let status = d.http().get("/v1/status").ok();
    assert_eq!(status["events"], 1, "{status}");
}

/// Sets `RLIMIT_NOFILE` of the daemon's process to (`soft`, `hard`) before it execs.
/// A client that starts its header after the connection went quiet, then drips it a byte at a
/// time: closed at the header timeout counted from its first byte (1 s here), not at the idle
/// timeout (30 s) that the watchdog was sleeping towards when the header began.
#[test]
fn a_dripped_header_is_closed_at_the_header_timeout_not_the_idle_timeout() {
    let config = example_config_with(&[
        ("header_timeout = \"10s\"", "header_timeout = \"1s\""),
        ("idle_timeout = \"60s\"", "idle_timeout = \"30s\""),
    ]);
    let env = Env::with_config(&config);
    let d = env.daemon();
    let mut s = TcpStream::connect(&d.addr).unwrap();
    // The sleep is the test: the connection is quiet first, so the watchdog waits for idle.
    std::thread::sleep(Duration::from_millis(300));
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let started = Instant::now();
    let header = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = None;
    for b in header.iter().cycle() {
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
        if s.write_all(&[*b]).is_err() {
            closed = Some(started.elapsed());
            break;
        }
        // Waits up to 200 ms for the server: an answer or a close ends the connection.
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            _ => {
                closed = Some(started.elapsed());
                break;
            }
        }
    }
    let closed = closed.expect("the dripping client was never closed");
    assert!(closed < Duration::from_secs(10), "closed after {closed:?}: the idle timeout (30 s), not the header timeout (1 s)");
}

fn with_nofile(cmd: &mut std::process::Command, soft: u64, hard: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

#[test]
fn the_soft_file_limit_is_raised_and_the_connection_cap_fits_under_it() {
    let env = Env::new();
    let d = env.daemon_tweaked(&[], &[("RUST_LOG", "warn")], |cmd| with_nofile(cmd, 128, 512));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[3..5], &["512", "512"], "soft limit not raised to the hard one: {line}");
    // The default max_connections (1024) does not fit 512 descriptors: lowered, with a warning.
    let fits = 512 - meterd::daemon::startup::FD_RESERVE;
    let log = d.stderr();
    assert!(log.contains("server.max_connections") && log.contains(&format!("serving at most {fits} connections")), "{log}");
}
