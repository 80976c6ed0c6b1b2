//! `meterd ingest FILE` streams NDJSON in chunks of 20,000 lines: indexes stay global across
//! chunk edges, blank lines do not count, a chunk with no JSON line at all is refused line by
//! line (not as a whole), and the totals are those of the whole file.

use crate::util::{Env, Ev, NOW};

#[test]
fn chunk_edges_keep_global_indexes_and_exact_totals() {
    let env = Env::new();
    env.add_instance("inst-s", "calls", "2026-11-23T00:00:00Z");
    let mut lines = Vec::new();
    let bad_at = [19_999usize, 20_000, 40_000, 40_001];
    for i in 0..40_010usize {
        if bad_at.contains(&i) {
            lines.push(Ev::new(&format!("bad-{i}"), "inst-s", "-1", "2026-11-23T11:00:00Z").json());
        } else {
            lines.push(Ev::new(&format!("e{i}"), "inst-s", "0.001", "2026-11-23T11:00:00Z").json());
        }
        if i % 7_001 == 0 {
            lines.push(String::new()); // blank lines are skipped and take no index
        }
    }
    let body = lines.join("\n") + "\n";
    let r = env.ingest_file("big.ndjson", body.as_bytes());
    r.code(1);
    let v = r.json();
    assert_eq!(v["accepted"], 40_010 - bad_at.len());
    let idx: Vec<u64> = v["rejected"].as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, bad_at.iter().map(|&i| i as u64).collect::<Vec<_>>());
    assert_eq!(v["rejected"][1]["id"], "bad-20000");
    let usage = crate::util::db::windows(&env.db(), "inst-s");
    assert_eq!(usage[0].1, "40.006", "exact total of 40,006 × 0.001: {usage:?}");
    // Sending the same file again: everything is a duplicate, nothing counted twice.
    let again = env.ingest_file("big.ndjson", body.as_bytes()).json();
    assert_eq!(again["duplicates"], 40_006);
    let _ = NOW;
}

#[test]
fn a_chunk_without_json_is_refused_line_by_line() {
    let env = Env::new();
    env.add_instance("inst-s", "calls", "2026-11-23T00:00:00Z");
    let mut lines = vec![Ev::new("first", "inst-s", "1", "2026-11-23T11:00:00Z").json()];
    lines.extend((0..20_000).map(|i| format!("garbage line {i}")));
    lines.push(Ev::new("last", "inst-s", "1", "2026-11-23T11:00:00Z").json());
    let v = env.ingest_file("mixed.ndjson", (lines.join("\n") + "\n").as_bytes()).json();
    assert_eq!(v["accepted"], 2, "{}", &v.to_string()[..200]);
    let rejected = v["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 20_000);
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[19_999]["index"], 20_000);
    assert!(rejected[0]["error"].as_str().unwrap().contains("invalid JSON"));
}
