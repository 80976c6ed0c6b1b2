//! Records the store refuses: one bad record bisected out of a full batch and requeued after
//! its cause is fixed, and records too old to send rejected locally as `EXPIRED`.

use crate::util::upload::*;
use crate::util::Env;
use meterd::mockstore::read_entries;
use meterd::upload::canonical_body;

/// One record of an instance the store does not know, inside a batch of 1000 → the store
/// refuses the whole request with `MKT.9001`; meterd bisects down to that record: 999
/// delivered, 1 rejected, exit code 1, listed by `meterd rejected` (table and JSON) with the
/// body sent. After the instance is known to the store, `meterd requeue SN` + `meterd upload`
/// deliver it with the same serial and byte-identical bytes.
///
/// Both sides are the real binary: `meterd mock-store --instances FILE --ledger FILE`,
/// restarted with the instance added (its ledger file is read back, so dedupe survives).
#[test]
fn unknown_instance_is_bisected_out_then_requeued() {
    let w = Env::for_upload();
    let known: Vec<String> = (0..999).map(|i| format!("known-{i:04}")).collect();
    let stranger = "stranger-0001".to_string();
    let all: Vec<String> = known.iter().cloned().chain([stranger.clone()]).collect();
    w.add_instances(&all);
    let hour = now().add_secs(-2 * 3600 + 600);
    w.ingest(&all.iter().map(|id| (id.clone(), hour)).collect::<Vec<_>>(), now());
    w.seal(now());
    let rows = w.records();
    assert_eq!(rows.len(), 1000);
    let bad = rows.iter().find(|r| r.instance_id == stranger).unwrap().clone();

    let (ledger, list) = (w.dir.path().join("ledger.jsonl"), w.dir.path().join("instances.txt"));
    std::fs::write(&list, format!("# what the store knows\n{}\n", known.join("\n"))).unwrap();
    let store_args = ["--ledger", ledger.to_str().unwrap(), "--instances", list.to_str().unwrap()];
    let (mock, endpoint) = mock_binary(w.dir.path(), &store_args);
    w.configure(&Upload::to(&endpoint));
    let env = [("METERD_ISV_KEY", KEY)];

    let run = w.meterd(&["upload", "--now", NOW], &env).expect(1);
    let report = run.report();
    assert_eq!((report["delivered"].as_u64(), report["rejected"].as_u64()), (Some(999), Some(1)), "{run:#?}");
    let (errors, delivered) = (report["outcomes"]["record_error"].as_u64().unwrap(), report["outcomes"]["delivered"].as_u64().unwrap());
    assert_eq!(errors, delivered + 1, "bisection: every split delivers one half and refuses the other, down to the bad record");
    assert_eq!(report["requests"].as_u64(), Some(errors + delivered));
    assert!(run.stderr.contains(&bad.metering_sn) && run.stderr.contains("meterd requeue"), "{}", run.stderr);
    assert_eq!(w.states(), counts(&[("delivered", 999), ("rejected", 1)]));
    let good: Vec<_> = rows.iter().filter(|r| r.instance_id != stranger).cloned().collect();
    assert_billed_once(&read_entries(&ledger).unwrap(), &good);

    // The rejected log, as a person and a script see it.
    let sent = format!("{{\"usage_records\":[{}]}}", String::from_utf8(bad.body.clone()).unwrap());
    let table = w.meterd(&["rejected"], &[]).expect(0).stdout;
    for needle in [bad.metering_sn.as_str(), stranger.as_str(), "MKT.9001", sent.as_str()] {
        assert!(table.contains(needle), "`meterd rejected` lacks {needle:?}:\n{table}");
    }
    assert!(!table.contains("requeued"));
    let json: serde_json::Value = serde_json::from_str(&w.meterd(&["rejected", "--format", "json"], &[]).expect(0).stdout).unwrap();
    let entries = json.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{json:#}");
    let e = &entries[0];
    assert_eq!(
        (e["metering_sn"].as_str(), e["instance_id"].as_str(), e["code"].as_str()),
        (Some(&*bad.metering_sn), Some(&*stranger), Some("MKT.9001"))
    );
    assert_eq!(e["body"].as_str(), Some(sent.as_str()), "the log keeps the exact body that was sent");
    assert!(!e["message"].as_str().unwrap().is_empty() && e["at_ns"].as_i64().unwrap() > 0 && e["requeued"] == false);

    let check = w.meterd(&["status", "--check", "--now", NOW], &[]);
    assert_eq!(check.code, 1, "a rejected record needs the operator: {check:#?}");
    assert!(check.stderr.contains("the last upload failed"), "{check:#?}");

    // The cause is fixed in the store: it now knows the instance.
    let mock_err = mock.finish();
    assert!(!mock_err.contains(KEY), "the mock logged the key");
    std::fs::write(&list, format!("{}\n{stranger}\n", known.join("\n"))).unwrap();
    let (_mock, endpoint) = mock_binary(w.dir.path(), &store_args);
    w.configure(&Upload::to(&endpoint));

    let requeue = w.meterd(&["requeue", "--all"], &[]).expect(0);
    assert!(requeue.stdout.contains(&bad.metering_sn) && requeue.stdout.contains("1 record(s) pending again"), "{requeue:#?}");
    assert_eq!(w.states(), counts(&[("delivered", 999), ("pending", 1)]));
    assert_eq!(w.meterd(&["requeue", &bad.metering_sn], &[]).code, 2, "only rejected records can be requeued");
    let none = w.meterd(&["requeue", "--all"], &[]).expect(0);
    assert!(none.stdout.contains("no rejected records"), "{none:#?}");

    let again = w.meterd(&["upload", "--now", NOW], &env).expect(0);
    assert_eq!((again.report()["delivered"].as_u64(), again.report()["requests"].as_u64()), (Some(1), Some(1)), "{again:#?}");
    assert_eq!(w.states(), counts(&[("delivered", 1000)]));
    let billed = read_entries(&ledger).unwrap();
    assert_billed_once(&billed, &w.records());
    let entry = billed.iter().find(|e| e.record.instance_id == stranger).unwrap();
    assert_eq!(entry.record.metering_sn, bad.metering_sn, "same serial");
    assert_eq!(
        canonical_body(std::slice::from_ref(&entry.record)),
        sent.as_bytes(),
        "the billed record is byte-identical to the one refused"
    );
    assert_eq!(w.batches().last().unwrap().1, sent.as_bytes(), "the requeued record was sent as the same bytes");
    let json: serde_json::Value = serde_json::from_str(&w.meterd(&["rejected", "--format", "json"], &[]).expect(0).stdout).unwrap();
    assert_eq!(json[0]["requeued"], true);
    // The failure is fixed and the record delivered: the check passes again (the upload error
    // of the run before once stayed for good, so `status --check` failed for ever).
    let check = w.meterd(&["status", "--check", "--now", NOW], &[]);
    assert_eq!(check.code, 0, "{check:#?}");
    assert!(!check.stderr.contains("the last upload failed"), "{check:#?}");
    assert!(check.stdout.lines().any(|l| l.starts_with("last error") && l.ends_with(" -")), "{check:#?}");
    // Several serials: each is judged alone and every refusal is named (exit 2).
    let mixed = w.meterd(&["requeue", "no-such-sn", &bad.metering_sn], &[]);
    assert_eq!(mixed.code, 2, "{mixed:#?}");
    assert!(mixed.stderr.contains("no-such-sn") && mixed.stderr.contains("delivered, not rejected"), "{mixed:#?}");
}

/// A record that begins more than 21 days before `--now` is rejected locally as `EXPIRED`
/// and never sent; one that begins exactly 21 days before is still sent (the store accepts
/// it). `meterd upload` exits 1 and `meterd rejected` lists the expired record.
#[test]
fn expired_records_are_rejected_locally_and_never_sent() {
    let day = 86_400;
    let old_at = now().add_secs(-21 * day - 3600 + 600); // window begins 21d 1h before NOW
    let edge_at = now().add_secs(-21 * day + 600); // window begins exactly 21d before NOW
    let then = now().add_secs(-21 * day + 2 * 3600);

    // Only the expired record: the store never hears of it.
    let lone = Env::for_upload();
    lone.add_instances(&["old-1".to_string()]);
    lone.ingest(&[("old-1".to_string(), old_at)], then);
    lone.seal(then);
    let mock = Mock::start(mock_config());
    lone.configure(&Upload::to(&mock.endpoint()));
    let run = lone.meterd(&["upload", "--now", NOW], &[("METERD_ISV_KEY", KEY)]).expect(1);
    assert_eq!((run.report()["expired"].as_u64(), run.report()["requests"].as_u64()), (Some(1), Some(0)), "{run:#?}");
    assert_eq!(mock.counters().requests, 0, "nothing was sent");
    assert_eq!(lone.states(), counts(&[("rejected", 1)]));

    // With an edge record and a fresh one beside it.
    let w = Env::for_upload();
    let ids = ["old-1", "edge-1", "fresh-1"].map(String::from);
    w.add_instances(&ids);
    w.ingest(&[(ids[0].clone(), old_at), (ids[1].clone(), edge_at)], then);
    w.seal(then);
    w.ingest(&[(ids[2].clone(), now().add_secs(-2 * 3600 + 600))], now());
    w.seal(now());
    let rows = w.records();
    assert_eq!(rows.len(), 3);
    let old = rows.iter().find(|r| r.instance_id == "old-1").unwrap();

    let mock = Mock::start(mock_config());
    w.configure(&Upload::to(&mock.endpoint()));
    let run = w.meterd(&["upload", "--now", NOW], &[("METERD_ISV_KEY", KEY)]).expect(1);
    let report = run.report();
    assert_eq!((report["expired"].as_u64(), report["delivered"].as_u64(), report["requests"].as_u64()), (Some(1), Some(2), Some(1)));
    let received = mock.received();
    assert_eq!(received.len(), 1);
    assert!(!String::from_utf8_lossy(&received[0]).contains(&old.metering_sn), "the expired record was sent");
    let sent: Vec<_> = rows.iter().filter(|r| r.instance_id != "old-1").cloned().collect();
    assert_billed_once(&mock.ledger(), &sent);
    assert_eq!(w.states(), counts(&[("delivered", 2), ("rejected", 1)]));

    let json: serde_json::Value = serde_json::from_str(&w.meterd(&["rejected", "--format", "json"], &[]).expect(0).stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1, "{json:#}");
    assert_eq!((json[0]["metering_sn"].as_str(), json[0]["code"].as_str()), (Some(old.metering_sn.as_str()), Some("EXPIRED")));
    assert!(json[0]["message"].as_str().unwrap().contains("21 days"), "{json:#}");
    let table = w.meterd(&["rejected"], &[]).expect(0).stdout;
    assert!(table.contains(&old.metering_sn) && table.contains("EXPIRED"), "{table}");
}

/// `--dry-run` shows what a real run would send: not a record the real run would expire (it
/// says how many it would expire instead), and it changes nothing.
#[test]
fn dry_run_leaves_out_what_a_real_run_would_expire() {
    let day = 86_400;
    let then = now().add_secs(-21 * day + 2 * 3600);
    let w = Env::for_upload();
    let ids = ["old-1", "fresh-1"].map(String::from);
    w.add_instances(&ids);
    w.ingest(&[(ids[0].clone(), now().add_secs(-21 * day - 3600 + 600))], then);
    w.seal(then);
    w.ingest(&[(ids[1].clone(), now().add_secs(-2 * 3600 + 600))], now());
    w.seal(now());
    let rows = w.records();
    let (old, fresh) = (rows.iter().find(|r| r.instance_id == "old-1").unwrap(), rows.iter().find(|r| r.instance_id == "fresh-1").unwrap());
    let kf = w.dir.path().join("k");
    std::fs::write(&kf, KEY).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&kf, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    w.configure(&Upload::to("http://127.0.0.1:9").key_file(&kf));

    let dry = w.meterd(&["upload", "--now", NOW, "--dry-run"], &[]).expect(0);
    assert!(dry.stdout.contains(&fresh.metering_sn), "{dry:#?}");
    assert!(!dry.stdout.contains(&old.metering_sn), "the dry run shows a record the real run would expire:\n{}", dry.stdout);
    assert!(
        dry.stderr.contains("1 request(s) would be sent") && dry.stderr.contains("1 record(s) would be rejected as expired"),
        "{dry:#?}"
    );
    assert_eq!(w.states(), counts(&[("pending", 2)]), "a dry run changes nothing");
    assert!(w.batches().is_empty());
}

/// `--dry-run` refuses an endpoint the real run would refuse, with the same exit code.
#[test]
fn dry_run_refuses_plain_http_to_a_remote_host() {
    let w = Env::for_upload();
    w.seed("dry", 1, 1);
    w.configure(&Upload::to("http://mkt.myhuaweicloud.com"));
    let run = w.meterd(&["upload", "--now", NOW, "--dry-run"], &[("METERD_ISV_KEY", KEY)]).expect(2);
    assert!(run.stderr.contains("upload.endpoint") && run.stderr.contains("https://"), "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
}
