//! End-to-end tests of `dutyflow run` over a real Kafka-protocol broker (`dutyflow dev-broker`
//! in its own process), with the SQLite store: totals, crashes, amendments, 12-month
//! duplicates and poison pills. Expected results come from `dutyflow assess` on the same input
//! (the same operators and data).

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dutyflow");

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn broker() -> (Proc, String) {
    let mut child = Command::new(BIN)
        .args(["dev-broker", "--partitions", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Proc(child), line.trim().to_string())
}

fn service(brokers: &str, db: &Path, group: &str) -> Proc {
    let child = Command::new(BIN)
        .args(["run", "--config-dir"])
        .arg(config_dir())
        .env("DUTYFLOW_KAFKA_BROKERS", brokers)
        .env("DUTYFLOW_KAFKA_GROUP_ID", group)
        .env("DUTYFLOW_STORE_URL", format!("sqlite://{}", db.display()))
        .env("DUTYFLOW_PIPELINE_BATCH_MAX_MESSAGES", "16")
        .env("DUTYFLOW_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

fn produce(brokers: &str, file: &Path) {
    let status = Command::new(BIN)
        .arg("produce")
        .arg(file)
        .env("DUTYFLOW_KAFKA_BROKERS", brokers)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

fn totals(db: &Path) -> Vec<Value> {
    let out = Command::new(BIN)
        .args(["totals", "--format", "json", "--config-dir"])
        .arg(config_dir())
        .env("DUTYFLOW_STORE_URL", format!("sqlite://{}", db.display()))
        .output()
        .unwrap();
    if !out.status.success() {
        return Vec::new();
    }
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// (carrier, month, regime, method) → (packages, duty in cents), from totals rows.
fn summarize_totals(rows: &[Value]) -> BTreeMap<(String, String, String, String), (i64, i64)> {
    rows.iter()
        .map(|r| {
            let key = (
                r["carrier"].as_str().unwrap().into(),
                r["month"].as_str().unwrap().into(),
                r["regime"].as_str().unwrap().into(),
                r["method"].as_str().unwrap().into(),
            );
            (
                key,
                (r["packages"].as_i64().unwrap(), cents(r["duty_usd"].as_str().unwrap())),
            )
        })
        .collect()
}

fn cents(s: &str) -> i64 {
    let (a, b) = s.split_once('.').unwrap();
    a.parse::<i64>().unwrap() * 100 + b.parse::<i64>().unwrap()
}

/// The same aggregation over `dutyflow assess` output: what the store must hold.
fn expected_from_file_mode(file: &Path) -> BTreeMap<(String, String, String, String), (i64, i64)> {
    let out = Command::new(BIN)
        .arg("assess")
        .arg(file)
        .arg("--config-dir")
        .arg(config_dir())
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut m = BTreeMap::new();
    for line in out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let a: Value = serde_json::from_slice(line).unwrap();
        if a["status"] == "accepted" {
            let d = &a["duty"];
            let key = (
                a["carrier"].as_str().unwrap().into(),
                a["month"].as_str().unwrap().into(),
                d["regime"].as_str().unwrap().into(),
                d["method"].as_str().unwrap().into(),
            );
            let e = m.entry(key).or_insert((0, 0));
            e.0 += 1;
            e.1 += cents(d["total_usd"].as_str().unwrap()) - cents(d["fees_usd"].as_str().unwrap());
        }
    }
    m
}

fn s10(serial: u32, prefix: &str) -> String {
    let s = format!("{serial:08}");
    let w = [8u32, 6, 4, 2, 3, 5, 9, 7];
    let sum: u32 = s.bytes().zip(w).map(|(d, w)| u32::from(d - b'0') * w).sum();
    let c = match 11 - sum % 11 {
        10 => 0,
        11 => 5,
        c => c,
    };
    format!("{prefix}{s}{c}DE")
}

/// `n` manifests built from the example, each with unique ids and tracking numbers; every
/// 7th line is a poison pill when `poison` is set.
fn write_manifests(path: &Path, n: usize, first_serial: u32, poison: bool) {
    let template: Value = serde_json::from_str(include_str!("fixtures/examples/manifest-valid.json")).unwrap();
    let carriers = ["LH", "AF", "UA"];
    let mut f = std::fs::File::create(path).unwrap();
    for i in 0..n {
        if poison && i % 7 == 3 {
            writeln!(
                f,
                "{{\"schema\":\"manifest/v1\",\"packages\":[{{\"tracking_number\": \"RR47{i}"
            )
            .unwrap();
            continue;
        }
        let mut m = template.clone();
        m["manifest_id"] = Value::from(format!("M-{first_serial}-{i}"));
        m["carrier"]["code"] = Value::from(carriers[i % 3]);
        let month = 3 + (i % 4);
        m["trip"]["arrival_time"] = Value::from(format!("2026-{month:02}-02T13:05:00-05:00"));
        for (j, p) in m["packages"].as_array_mut().unwrap().iter_mut().enumerate() {
            p["tracking_number"] = Value::from(s10(first_serial + (i * 3 + j) as u32, "RR"));
        }
        writeln!(f, "{}", serde_json::to_string(&m).unwrap()).unwrap();
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dutyflow-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

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

/// Accepted packages committed so far, read straight from the store.
fn committed_packages(db: &Path) -> i64 {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return 0;
    };
    conn.query_row("SELECT COALESCE(SUM(packages), 0) FROM totals", [], |r| r.get(0))
        .unwrap_or(0)
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

/// Accepted packages among the first manifests (by file mode).
fn expected_from_file_mode_lines(lines: &[String]) -> i64 {
    let f = std::env::temp_dir().join(format!("dutyflow-prefix-{}.jsonl", std::process::id()));
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    expected_from_file_mode(&f).values().map(|v| v.0).sum()
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
}

fn drain(
    addr: &str,
    topic: &str,
    partitions: i32,
    quiet: Duration,
) -> Vec<(Option<Vec<u8>>, Vec<u8>, BTreeMap<String, String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "test-drain")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
                headers,
            ));
            last = Instant::now();
        }
    }
    out
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
