//! The ingest writer thread dies (a panic, through the fault switch).

use super::util::Env;
use super::{failing, post};

#[test]
fn a_dead_writer_fails_liveness() {
    let env = Env::new();
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    let d = env.daemon_with(&[], &[("METERD_FAULTS", "ingest-writer-panic")]);
    assert_eq!(d.http().get("/healthz").status, 200, "alive before any ingest");
    let r = post(&d, "inst-a", "x", 3);
    assert_eq!(r.status, 503, "{}", r.text());
    let start = std::time::Instant::now();
    let h = loop {
        let h = d.http().get("/healthz");
        if h.status != 200 || start.elapsed().as_secs() > 5 {
            break h;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(h.status, 503, "{}", h.text());
    assert_eq!(h.json()["checks"][0]["name"], "writer", "{}", h.text());
    let ready = d.http().get("/readyz");
    assert_eq!(ready.status, 503);
    assert_eq!(failing(&ready), ["writer"], "{}", ready.text());
    assert_eq!(post(&d, "inst-a", "y", 1).status, 503, "ingest keeps answering 503, never 200");
    assert_eq!(super::util::db::count_events_of(&env.db(), "inst-a"), 0);
}
