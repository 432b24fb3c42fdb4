//! End-to-end tests of `dutyflow run` over a real Kafka-protocol broker (`dutyflow dev-broker`
//! in its own process), with the SQLite store: totals, crashes, amendments, 12-month
//! duplicates and poison pills. Expected results come from `dutyflow assess` on the same input
//! (the same operators and data).

mod harness;

use harness::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[test]
fn totals_equal_the_accepted_assessments_end_to_end() {
    let dir = temp_dir("e2e");
    let (_broker, addr) = broker();
    let input = dir.join("in.jsonl");
    write_manifests(&input, 60, 1000, false);
    let expected = expected_from_file_mode(&input);
    let db = dir.join("store.db");
    let _svc = service(&addr, &db, "e2e");
    produce(&addr, &input);
    wait_for("the totals", Duration::from_secs(60), || {
        summarize_totals(&totals(&db)) == expected
    });
    assert_eq!(expected.values().map(|v| v.0).sum::<i64>(), 60 * 3);
}

#[test]
fn sigkill_at_random_points_counts_every_package_exactly_once() {
    let dir = temp_dir("crash");
    let (_broker, addr) = broker();
    let input = dir.join("in.jsonl");
    write_manifests(&input, 3300, 200_000, true);
    let expected = expected_from_file_mode(&input);
    let total: i64 = expected.values().map(|v| v.0).sum();
    // Eleven chunks: one more is produced before each round, so every round has work.
    let lines: Vec<String> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let chunks: Vec<PathBuf> = lines
        .chunks(300)
        .enumerate()
        .map(|(i, c)| {
            let f = dir.join(format!("chunk{i}.jsonl"));
            std::fs::write(&f, c.join("\n") + "\n").unwrap();
            f
        })
        .collect();
    let db = dir.join("store.db");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut mid_stream = 0;
    for (round, chunk) in chunks.iter().take(10).enumerate() {
        produce(&addr, chunk);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let before = committed_packages(&db);
        let mut svc = service(&addr, &db, "crash");
        let start = Instant::now();
        while committed_packages(&db) == before && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(seed % 60));
        // SIGKILL: no chance to commit, flush or leave the group.
        svc.0.kill().unwrap();
        svc.0.wait().unwrap();
        let after = committed_packages(&db);
        let produced = expected_from_file_mode_lines(&lines[..(round + 1) * 300]);
        if after < produced {
            mid_stream += 1;
        }
        eprintln!("crash round {round}: {after} of {produced} produced packages committed");
    }
    assert!(mid_stream >= 5, "only {mid_stream} of 10 kills landed mid-stream");
    produce(&addr, &chunks[10]);
    let _svc = service(&addr, &db, "crash");
    wait_for("all packages after 10 crashes", Duration::from_secs(120), || {
        summarize_totals(&totals(&db)) == expected
    });
    // Give a redelivery the chance to double-count, then check again.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(summarize_totals(&totals(&db)), expected);
    assert_eq!(committed_packages(&db), total);
}

#[test]
fn an_amendment_replaces_the_earlier_version_and_reuse_within_12_months_is_a_duplicate() {
    let dir = temp_dir("amend");
    let (_broker, addr) = broker();
    let db = dir.join("store.db");
    let _svc = service(&addr, &db, "amend");
    let template: Value = serde_json::from_str(include_str!("fixtures/examples/manifest-valid.json")).unwrap();
    // Version 1: the example (2 dutiable packages + 1 exempt gift).
    let v1 = dir.join("v1.jsonl");
    std::fs::write(&v1, format!("{}\n", serde_json::to_string(&template).unwrap())).unwrap();
    produce(&addr, &v1);
    wait_for("version 1", Duration::from_secs(60), || {
        summarize_totals(&totals(&db)).values().map(|v| v.0).sum::<i64>() == 3
    });
    // Version 2 of the same manifest: only the first package, value 47.00 → duty 4.70.
    let mut amended = template.clone();
    amended["packages"].as_array_mut().unwrap().truncate(1);
    amended["packages"][0]["items"][0]["value"] = Value::from("47.00");
    let v2 = dir.join("v2.jsonl");
    std::fs::write(&v2, format!("{}\n", serde_json::to_string(&amended).unwrap())).unwrap();
    produce(&addr, &v2);
    wait_for("the amendment", Duration::from_secs(60), || {
        let t = summarize_totals(&totals(&db));
        t.values().map(|v| v.0).sum::<i64>() == 1 && t.values().map(|v| v.1).sum::<i64>() == 470
    });
    // Another manifest of the same carrier reusing the tracking number within 12 months.
    let mut other = amended.clone();
    other["manifest_id"] = Value::from("LH-OTHER-1");
    let v3 = dir.join("v3.jsonl");
    std::fs::write(&v3, format!("{}\n", serde_json::to_string(&other).unwrap())).unwrap();
    produce(&addr, &v3);
    wait_for("the duplicate", Duration::from_secs(60), || {
        totals(&db).first().is_some_and(|r| r["rejected_packages"] == 1)
    });
    let t = summarize_totals(&totals(&db));
    assert_eq!(
        t.values().map(|v| v.0).sum::<i64>(),
        1,
        "the duplicate must not be counted"
    );
    assert_eq!(t.values().map(|v| v.1).sum::<i64>(), 470);
    // Its dead letter says the store found it, in the headers and in the value alike.
    let dead = drain(&addr, "manifests.dlq", 4, Duration::from_secs(3));
    let dup: Vec<_> = dead
        .iter()
        .filter(|(_, _, h)| h.get("dutyflow.error.code").map(String::as_str) == Some("DUPLICATE_TRACKING_NUMBER"))
        .collect();
    assert_eq!(dup.len(), 1);
    let (key, value, headers) = dup[0];
    assert_eq!(headers["dutyflow.error.stage"], "store");
    let v: Value = serde_json::from_slice(value).unwrap();
    assert_eq!(v["stage"], "store");
    assert_eq!(v["errors"][0]["stage"], "store");
    assert_eq!(key.as_deref(), v["tracking_number"].as_str().map(str::as_bytes));
}

#[test]
fn poison_pills_become_one_dead_letter_each_and_good_manifests_flow() {
    let dir = temp_dir("poison");
    let (_broker, addr) = broker();
    let input = dir.join("in.jsonl");
    write_manifests(&input, 70, 500_000, true);
    let pills = 10; // lines 3, 10, 17, ... of 70
    let expected = expected_from_file_mode(&input);
    let db = dir.join("store.db");
    let _svc = service(&addr, &db, "poison");
    produce(&addr, &input);
    wait_for("the good manifests", Duration::from_secs(60), || {
        summarize_totals(&totals(&db)) == expected
    });
    let dead = drain(&addr, "manifests.dlq", 4, Duration::from_secs(3));
    let malformed: Vec<_> = dead
        .iter()
        .filter(|(_, _, h)| h.get("dutyflow.error.code").map(String::as_str) == Some("MALFORMED_JSON"))
        .collect();
    assert_eq!(malformed.len(), pills);
    for (_, value, headers) in &malformed {
        assert_eq!(headers["dutyflow.error.stage"], "decode");
        assert_eq!(headers["dutyflow.source.topic"], "manifests");
        let v: Value = serde_json::from_slice(value).unwrap();
        assert_eq!(v["schema"], "dlq/v1");
        assert!(v["raw_text"]
            .as_str()
            .unwrap()
            .starts_with("{\"schema\":\"manifest/v1\""));
    }
    let assessments = drain(&addr, "assessments", 4, Duration::from_secs(3));
    let accepted = assessments
        .iter()
        .filter(|(_, v, _)| serde_json::from_slice::<Value>(v).unwrap()["status"] == "accepted")
        .count() as i64;
    assert!(
        accepted >= expected.values().map(|v| v.0).sum::<i64>(),
        "every accepted package is published at least once"
    );
}
