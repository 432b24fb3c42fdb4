//! Helpers shared by the service-level tests: a `dutyflow dev-broker` in its own process, the
//! service, the produce and totals verbs, file-mode expectations and generated manifests.
#![allow(dead_code)]

#[path = "../scratch/mod.rs"]
pub mod scratch;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_dutyflow");

pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn broker() -> (Proc, String) {
    broker_with(4)
}

/// `dutyflow dev-broker` with `partitions` per topic, and its bootstrap address.
pub fn broker_with(partitions: u32) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .args(["dev-broker", "--partitions", &partitions.to_string()])
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

pub fn service(brokers: &str, db: &Path, group: &str) -> Proc {
    Proc(service_cmd(brokers, db, group).spawn().unwrap())
}

/// The service command, ready to spawn or adjust; metrics are off unless asked for, so tests
/// running in parallel never fight over a port.
pub fn service_cmd(brokers: &str, db: &Path, group: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config-dir"])
        .arg(config_dir())
        .env("DUTYFLOW_KAFKA_BROKERS", brokers)
        .env("DUTYFLOW_KAFKA_GROUP_ID", group)
        .env("DUTYFLOW_STORE_URL", format!("sqlite://{}", db.display()))
        .env("DUTYFLOW_PIPELINE_BATCH_MAX_MESSAGES", "16")
        .env("DUTYFLOW_METRICS_LISTEN", "")
        .env("DUTYFLOW_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The service with its log (at info level) written to `log`.
pub fn service_logged(brokers: &str, db: &Path, group: &str, log: &Path, env: &[(&str, &str)]) -> Proc {
    let mut cmd = service_cmd(brokers, db, group);
    cmd.env("DUTYFLOW_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc(cmd.spawn().unwrap())
}

/// Sends SIGTERM and waits (up to `timeout`) for the process to exit; returns its status.
pub fn terminate(p: &mut Proc, timeout: Duration) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            return s;
        }
        assert!(
            start.elapsed() < timeout,
            "the service did not stop within {timeout:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The stored next offsets of `group` on the input topic, straight from the SQLite store.
pub fn stored_offsets(db: &Path, group: &str) -> BTreeMap<i32, i64> {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return BTreeMap::new();
    };
    let Ok(mut stmt) = conn.prepare("SELECT partition_id, next_offset FROM offsets WHERE consumer_group = ?1") else {
        return BTreeMap::new();
    };
    stmt.query_map([group], |r| Ok((r.get(0)?, r.get(1)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// A plain HTTP GET on 127.0.0.1: (status code, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn produce(brokers: &str, file: &Path) {
    let status = Command::new(BIN)
        .arg("produce")
        .arg(file)
        .env("DUTYFLOW_KAFKA_BROKERS", brokers)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn totals(db: &Path) -> Vec<Value> {
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
pub fn summarize_totals(rows: &[Value]) -> BTreeMap<(String, String, String, String), (i64, i64)> {
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

pub fn cents(s: &str) -> i64 {
    let (a, b) = s.split_once('.').unwrap();
    a.parse::<i64>().unwrap() * 100 + b.parse::<i64>().unwrap()
}

/// The same aggregation over `dutyflow assess` output: what the store must hold.
pub fn expected_from_file_mode(file: &Path) -> BTreeMap<(String, String, String, String), (i64, i64)> {
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

pub fn s10(serial: u32, prefix: &str) -> String {
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
pub fn write_manifests(path: &Path, n: usize, first_serial: u32, poison: bool) {
    let template: Value = serde_json::from_str(include_str!("../fixtures/examples/manifest-valid.json")).unwrap();
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

pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A fresh directory `dutyflow-test-<name>-…`, removed when dropped (see `scratch`).
pub fn temp_dir(name: &str) -> scratch::ScratchDir {
    scratch::dir(&format!("test-{name}"))
}

/// Accepted packages committed so far, read straight from the store.
pub fn committed_packages(db: &Path) -> i64 {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return 0;
    };
    conn.query_row("SELECT COALESCE(SUM(packages), 0) FROM totals", [], |r| r.get(0))
        .unwrap_or(0)
}

/// Accepted packages among the first manifests (by file mode).
pub fn expected_from_file_mode_lines(lines: &[String]) -> i64 {
    let dir = scratch::dir("prefix");
    let f = dir.join("prefix.jsonl");
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    expected_from_file_mode(&f).values().map(|v| v.0).sum()
}

/// A record read back from a topic: key, value, headers.
pub type Record = (Option<Vec<u8>>, Vec<u8>, BTreeMap<String, String>);

pub fn drain(addr: &str, topic: &str, partitions: i32, quiet: Duration) -> Vec<Record> {
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
            let headers = dutyflow_pipeline::dlq_admin::message_headers(&m);
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
