//! The service's life cycle over a real Kafka-protocol broker (`dutyflow dev-broker` in its own
//! process): a rebalance between two members of one group, a graceful shutdown in the middle of
//! a stream, and the Prometheus endpoint while packages flow.

mod harness;

use harness::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Splits a JSON Lines file into files of `per` lines each.
fn chunks(input: &std::path::Path, per: usize) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(input).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(per)
        .enumerate()
        .map(|(i, c)| {
            let f = input.with_extension(format!("{i}.jsonl"));
            std::fs::write(&f, c.join("\n") + "\n").unwrap();
            f
        })
        .collect()
}

#[test]
fn two_members_share_the_partitions_and_one_stops_mid_stream_with_exact_totals() {
    let dir = temp_dir("rebalance");
    let (_broker, addr) = broker_with(4);
    let input = dir.join("in.jsonl");
    write_manifests(&input, 1200, 3_000_000, true);
    let expected = expected_from_file_mode(&input);
    let total: i64 = expected.values().map(|v| v.0).sum();
    let parts = chunks(&input, 100);
    let db = dir.join("store.db");
    let (log_a, log_b, log_c) = (dir.join("a.log"), dir.join("b.log"), dir.join("c.log"));
    let _a = service_logged(&addr, &db, "rebalance", &log_a, &[]);
    let mut b = service_logged(&addr, &db, "rebalance", &log_b, &[]);
    // Both members hold partitions before the stream starts.
    wait_for("both members assigned", Duration::from_secs(60), || {
        let a = std::fs::read_to_string(&log_a).unwrap_or_default();
        let b = std::fs::read_to_string(&log_b).unwrap_or_default();
        a.contains("partitions=2") && b.contains("partitions=2")
    });
    for p in &parts[..6] {
        produce(&addr, p);
    }
    wait_for("a first commit", Duration::from_secs(60), || {
        committed_packages(&db) > 0
    });
    let status = terminate(&mut b, Duration::from_secs(30));
    assert!(status.success(), "member b stopped with {status}");
    let at_stop = committed_packages(&db);
    assert!(
        at_stop < total,
        "b stopped after the stream ended; the test proves nothing"
    );
    let b_log = std::fs::read_to_string(&log_b).unwrap();
    assert!(b_log.contains("dutyflow stopped"), "b did not stop cleanly:\n{b_log}");
    // A third member joins while the rest of the stream flows: one more rebalance.
    for p in &parts[6..9] {
        produce(&addr, p);
    }
    let _c = service_logged(&addr, &db, "rebalance", &log_c, &[]);
    for p in &parts[9..] {
        produce(&addr, p);
    }
    wait_for("every package", Duration::from_secs(120), || {
        summarize_totals(&totals(&db)) == expected
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(summarize_totals(&totals(&db)), expected);
    assert_eq!(committed_packages(&db), total);
    let c_log = std::fs::read_to_string(&log_c).unwrap();
    assert!(
        c_log.contains("partitions assigned"),
        "c never got partitions:\n{c_log}"
    );
}

#[test]
fn sigterm_mid_stream_commits_in_flight_batches_and_exits_cleanly() {
    let dir = temp_dir("graceful");
    // One partition: the stored offset is then a prefix of the input file, which lets the test
    // check that what is committed is exactly what the offsets cover.
    let (_broker, addr) = broker_with(1);
    let input = dir.join("in.jsonl");
    write_manifests(&input, 2000, 4_000_000, false);
    let lines: Vec<String> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let expected = expected_from_file_mode(&input);
    let db = dir.join("store.db");
    let log = dir.join("svc.log");
    let mut svc = service_logged(&addr, &db, "graceful", &log, &[]);
    produce(&addr, &input);
    wait_for("a first commit", Duration::from_secs(60), || {
        committed_packages(&db) > 0
    });
    let started = Instant::now();
    let status = terminate(&mut svc, Duration::from_secs(30));
    assert!(status.success(), "the service exited with {status} after SIGTERM");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("dutyflow stopped"), "no clean stop in the log:\n{text}");
    eprintln!("stopped {:?} after SIGTERM", started.elapsed());
    let next = stored_offsets(&db, "graceful").get(&0).copied().unwrap_or(0);
    assert!(
        next > 0 && (next as usize) < lines.len(),
        "stopped at offset {next}: not mid-stream"
    );
    // What is committed is exactly the input the stored offset covers: nothing more, nothing less.
    assert_eq!(
        committed_packages(&db),
        expected_from_file_mode_lines(&lines[..next as usize]),
        "the store's totals and offsets disagree after a graceful stop"
    );
    // A restart resumes from the store's offset and finishes exactly.
    let _svc = service(&addr, &db, "graceful");
    wait_for("the rest of the stream", Duration::from_secs(120), || {
        summarize_totals(&totals(&db)) == expected
    });
}

/// The value of one series (exact name and labels) in a Prometheus exposition.
fn series(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn the_metrics_endpoint_moves_as_packages_flow() {
    let dir = temp_dir("metrics");
    let (_broker, addr) = broker_with(4);
    let db = dir.join("store.db");
    let listen = format!("127.0.0.1:{}", free_port());
    let _svc = service_logged(
        &addr,
        &db,
        "metrics",
        &dir.join("svc.log"),
        &[("DUTYFLOW_METRICS_LISTEN", &listen)],
    );
    wait_for("/healthz", Duration::from_secs(30), || {
        http_get(&listen, "/healthz").is_some_and(|(s, _)| s == 200)
    });
    wait_for("/readyz", Duration::from_secs(60), || {
        http_get(&listen, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    assert_eq!(http_get(&listen, "/nope").unwrap().0, 404);
    let before = http_get(&listen, "/metrics").unwrap().1;
    assert_eq!(
        series(&before, "dutyflow_packages_total{outcome=\"accepted\"}"),
        Some(0.0)
    );
    assert_eq!(series(&before, "dutyflow_up"), Some(1.0));

    let first = dir.join("first.jsonl");
    write_manifests(&first, 40, 5_000_000, false);
    let accepted_first: i64 = expected_from_file_mode(&first).values().map(|v| v.0).sum();
    produce(&addr, &first);
    wait_for("the first packages in the metrics", Duration::from_secs(60), || {
        let m = http_get(&listen, "/metrics").map(|r| r.1).unwrap_or_default();
        series(&m, "dutyflow_packages_total{outcome=\"accepted\"}") == Some(accepted_first as f64)
    });
    let mid = http_get(&listen, "/metrics").unwrap().1;

    let second = dir.join("second.jsonl");
    write_manifests(&second, 35, 5_100_000, true);
    let accepted_second: i64 = expected_from_file_mode(&second).values().map(|v| v.0).sum();
    produce(&addr, &second);
    wait_for("the second packages in the metrics", Duration::from_secs(60), || {
        let m = http_get(&listen, "/metrics").map(|r| r.1).unwrap_or_default();
        series(&m, "dutyflow_packages_total{outcome=\"accepted\"}") == Some((accepted_first + accepted_second) as f64)
    });
    let after = http_get(&listen, "/metrics").unwrap().1;

    let moved = |name: &str| {
        let (a, b) = (series(&mid, name).unwrap_or(0.0), series(&after, name).unwrap_or(0.0));
        assert!(b > a, "{name} did not move: {a} → {b}");
    };
    moved("dutyflow_messages_received_total");
    moved("dutyflow_packages_received_total");
    moved("dutyflow_end_to_end_latency_seconds_count");
    moved("dutyflow_store_commit_duration_seconds_count");
    moved("dutyflow_stage_duration_seconds_count{stage=\"assess\"}");
    moved("dutyflow_stage_duration_seconds_count{stage=\"commit_wait\"}");
    moved("dutyflow_batch_packages_count");
    // The poison pills of the second file: 5 undecodable messages (lines 3, 10, 17, 24, 31).
    assert_eq!(
        series(
            &after,
            "dutyflow_dead_letters_total{code=\"MALFORMED_JSON\",stage=\"decode\"}"
        ),
        Some(5.0)
    );
    assert!(series(&after, "dutyflow_end_to_end_latency_seconds_bucket{le=\"+Inf\"}").is_some());
    assert!(after.contains("# TYPE dutyflow_end_to_end_latency_seconds histogram"));
    assert!(after.contains("dutyflow_duty_assessed_cents_total{carrier=\"LH\""));
    assert!(after.contains("dutyflow_consumer_lag_messages{partition="));
    assert!(series(&after, "dutyflow_last_commit_timestamp_seconds").is_some_and(|t| t > 1.7e9));
    // A duplicate filter per carrier committed, each built at its first batch (32 KiB at least),
    // and no carrier searched in the store for every number.
    let filtered = series(&after, "dutyflow_store_duplicate_filter_carriers{state=\"filtered\"}").unwrap_or(0.0);
    assert!(filtered >= 1.0, "{filtered} carriers filtered");
    assert!(series(&after, "dutyflow_store_duplicate_filter_bytes").is_some_and(|b| b >= filtered * 32768.0));
    assert_eq!(
        series(&after, "dutyflow_store_duplicate_filter_carriers{state=\"store_only\"}"),
        Some(0.0)
    );
    // Low-cardinality labels only: no tracking number or manifest id anywhere.
    assert!(!after.contains("RR0"), "a tracking number leaked into the metrics");
    assert!(!after.contains("M-5"), "a manifest id leaked into the metrics");
}

#[test]
fn batches_waiting_behind_a_slow_commit_are_committed_together_exactly_once() {
    let dir = temp_dir("group");
    let (_broker, addr) = broker_with(4);
    let input = dir.join("in.jsonl");
    write_manifests(&input, 400, 6_000_000, true);
    let expected = expected_from_file_mode(&input);
    let total: i64 = expected.values().map(|v| v.0).sum();
    let db = dir.join("store.db");
    let listen = format!("127.0.0.1:{}", free_port());
    let _svc = service_logged(
        &addr,
        &db,
        "group",
        &dir.join("svc.log"),
        &[
            ("DUTYFLOW_METRICS_LISTEN", &listen),
            ("DUTYFLOW_PIPELINE_BATCH_MAX_MESSAGES", "8"),
            ("DUTYFLOW_PIPELINE_MAX_GROUP_BATCHES", "4"),
        ],
    );
    wait_for("/readyz", Duration::from_secs(60), || {
        http_get(&listen, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    // Another connection holds the store's write lock: the commit stage waits in its BEGIN
    // while assessed batches pile up behind it.
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    produce(&addr, &input);
    wait_for("batches waiting for the commit", Duration::from_secs(20), || {
        let m = http_get(&listen, "/metrics").map(|r| r.1).unwrap_or_default();
        series(&m, "dutyflow_in_flight_batches").is_some_and(|n| n >= 8.0)
    });
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    wait_for("every package", Duration::from_secs(60), || {
        summarize_totals(&totals(&db)) == expected
    });
    assert_eq!(committed_packages(&db), total);
    let next: i64 = stored_offsets(&db, "group").values().sum();
    assert_eq!(next, 400, "the stored offsets cover every input message once");
    // Batches close at 8 messages: a commit of more merged several.
    let m = http_get(&listen, "/metrics").unwrap().1;
    let commits = series(&m, "dutyflow_batch_messages_count").unwrap();
    let single = series(&m, "dutyflow_batch_messages_bucket{le=\"8\"}").unwrap();
    assert!(
        single < commits,
        "no group commit: {commits} commits, all of at most 8 messages"
    );
}
