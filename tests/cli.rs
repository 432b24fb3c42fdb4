//! The user-facing verbs beyond `run`: `dutyflow demo`, `dutyflow dlq list|stats|export|replay`
//! and `dutyflow worksheet`, each run as a user would, checked against `dutyflow assess` on the
//! same input.

mod harness;

use dutyflow_loadtest::Generator;
use harness::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A number of the demo's summary, e.g. `accepted` → 4,902.
fn summary_number(text: &str, label: &str) -> i64 {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no `{label}` line in the summary:\n{text}"));
    line.trim_start()[label.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap()
}

fn totals_at(url: &str) -> Vec<Value> {
    let out = Command::new(BIN)
        .args(["totals", "--format", "json", "--store", url, "--config-dir"])
        .arg(config_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

#[test]
fn the_demo_runs_end_to_end_and_its_totals_match_file_mode() {
    let dir = temp_dir("demo");
    let db = dir.join("demo.db");
    let url = format!("sqlite://{}", db.display());
    let out = Command::new(BIN)
        .args([
            "demo",
            "--packages",
            "6000",
            "--seed",
            "77",
            "--store",
            &url,
            "--config-dir",
        ])
        .arg(config_dir())
        .env("DUTYFLOW_METRICS_LISTEN", "")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary_number(&text, "in"), 6000);
    assert_eq!(summary_number(&text, "committed"), 6000);
    let (accepted, rejected) = (summary_number(&text, "accepted"), summary_number(&text, "rejected"));
    assert_eq!(accepted + rejected, 6000);
    assert!(rejected > 0, "the generator makes a few percent of packages bad");
    assert!(text.contains("packages/s end to end"));
    assert!(text.contains("Monthly totals per carrier"));

    // The same manifests through file mode: the demo's store must hold exactly those totals.
    let input = dir.join("same.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    let mut generator = Generator::new(77, 0.02);
    let mut s = String::new();
    for _ in 0..120 {
        s.clear();
        generator.write_manifest(&mut s, 50);
        writeln!(f, "{s}").unwrap();
    }
    drop(f);
    let expected = expected_from_file_mode(&input);
    assert_eq!(expected.values().map(|v| v.0).sum::<i64>(), accepted);
    assert_eq!(summarize_totals(&totals_at(&url)), expected);
}

fn dlq(addr: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("dlq")
        .args(args)
        .env("DUTYFLOW_KAFKA_BROKERS", addr)
        .output()
        .unwrap()
}

fn replay(addr: &str, file: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["dlq", "replay"])
        .arg(file)
        .env("DUTYFLOW_KAFKA_BROKERS", addr)
        .output()
        .unwrap()
}

#[test]
fn dead_letters_are_listed_counted_exported_fixed_and_replayed() {
    let dir = temp_dir("dlq");
    let (_broker, addr) = broker_with(2);
    let db = dir.join("store.db");
    let _svc = service(&addr, &db, "dlq");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/examples");
    // Only the bad example: the valid one shares a tracking number with it, so a fixed replay
    // would rightly be a 12-month duplicate.
    produce(&addr, &examples.join("manifest-bad-packages.jsonl"));
    // All three of its packages are rejected: nothing reaches the totals yet.
    // stats: one record per rejected package, by code and stage.
    let mut stats = Value::Null;
    wait_for("three dead letters", Duration::from_secs(60), || {
        let out = dlq(&addr, &["stats", "--json"]);
        stats = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        stats["total"] == 3
    });
    let by_code: BTreeMap<String, (String, i64)> = stats["by_code"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["code"].as_str().unwrap().to_string(),
                (r["stage"].as_str().unwrap().to_string(), r["count"].as_i64().unwrap()),
            )
        })
        .collect();
    for code in ["TRACKING_CHECK_DIGIT", "INVALID_COUNTRY", "INVALID_VALUE"] {
        assert_eq!(by_code.get(code), Some(&("validate".to_string(), 1)), "{stats}");
    }

    // list: a table with one line per record, filterable by code.
    let out = dlq(&addr, &["list"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(table.lines().count(), 4, "header + 3 records:\n{table}");
    let out = dlq(&addr, &["list", "--code", "INVALID_COUNTRY"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.contains("INVALID_COUNTRY"));

    // export → fix the bad origin country → replay: the package is accepted and counted once.
    let out = dlq(&addr, &["export", "--code", "INVALID_COUNTRY"]);
    assert!(out.status.success());
    let exported = String::from_utf8(out.stdout).unwrap();
    let mut record: Value = serde_json::from_str(exported.lines().next().unwrap()).unwrap();
    assert_eq!(record["replay_count"], 0);
    let manifest = &mut record["manifest"];
    assert_eq!(manifest["packages"].as_array().unwrap().len(), 1);
    let mut fixed_items = 0;
    for item in manifest["packages"][0]["items"].as_array_mut().unwrap() {
        let country = item["origin_country"].as_str().unwrap();
        if country.len() != 2 || country == "XX" || country == "ZZ" {
            item["origin_country"] = Value::from("DE");
            fixed_items += 1;
        }
    }
    assert!(fixed_items > 0, "no bad country found in {manifest}");
    let fixed = dir.join("fixed.jsonl");
    std::fs::write(&fixed, format!("{record}\n")).unwrap();
    let out = replay(&addr, &fixed);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("the replayed package", Duration::from_secs(60), || {
        summarize_totals(&totals(&db)).values().map(|v| v.0).sum::<i64>() == 1
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(summarize_totals(&totals(&db)).values().map(|v| v.0).sum::<i64>(), 1);
    assert_eq!(
        totals(&db)[0]["rejected_packages"],
        2,
        "the replayed package is no longer rejected"
    );

    // A record already replayed the maximum number of times is refused, and nothing is sent.
    record["replay_count"] = Value::from(3);
    let tired = dir.join("tired.jsonl");
    std::fs::write(&tired, format!("{record}\n")).unwrap();
    let out = replay(&addr, &tired);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_replays is 3"), "{err}");
    assert!(err.contains("replayed 0 record(s)"), "{err}");
}

#[test]
fn the_worksheet_pages_add_up_to_the_totals() {
    let dir = temp_dir("worksheet");
    let (_broker, addr) = broker_with(2);
    let input = dir.join("in.jsonl");
    write_manifests(&input, 24, 6_000_000, false);
    let expected = expected_from_file_mode(&input);
    let db = dir.join("store.db");
    let _svc = service(&addr, &db, "worksheet");
    produce(&addr, &input);
    wait_for("the totals", Duration::from_secs(60), || {
        summarize_totals(&totals(&db)) == expected
    });
    let url = format!("sqlite://{}", db.display());
    let sheet = |format: &str, carrier: &str, month: &str| {
        Command::new(BIN)
            .args([
                "worksheet",
                "--store",
                &url,
                "--carrier",
                carrier,
                "--month",
                month,
                "--format",
                format,
            ])
            .arg("--config-dir")
            .arg(config_dir())
            .output()
            .unwrap()
    };
    for ((carrier, month, _, _), _) in expected.iter() {
        let out = sheet("json", carrier, month);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let w: Value = serde_json::from_slice(&out.stdout).unwrap();
        let (packages, duty): (i64, i64) = expected
            .iter()
            .filter(|(k, _)| &k.0 == carrier && &k.1 == month)
            .fold((0, 0), |acc, (_, v)| (acc.0 + v.0, acc.1 + v.1));
        assert_eq!(w["page1"]["packages"], packages);
        assert_eq!(cents(w["page1"]["total_duty_usd"].as_str().unwrap()), duty);
        let lines = w["page2"].as_array().unwrap();
        let line_duty: i64 = lines.iter().map(|l| cents(l["duty_usd"].as_str().unwrap())).sum();
        assert_eq!(line_duty, duty, "page 2 must add up to page 1");
        let tracking: std::collections::BTreeSet<&str> =
            lines.iter().map(|l| l["tracking_number"].as_str().unwrap()).collect();
        assert_eq!(tracking.len() as i64, packages);
        assert!(
            w["page1"]["qualified_party"].is_string(),
            "carriers.csv names {carrier}"
        );
        assert!(w["page1"]["due_date"].as_str().unwrap().starts_with("2026-"));
    }
    // March 2026 arrivals are due on the 7th business day of April 2026: Thursday 9 April.
    let out = sheet("text", "LH", "2026-03");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("due               2026-04-09"), "{text}");
    assert!(text.contains("Page 2"));
    let out = sheet("json", "LH", "2031-01");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no totals for carrier LH in 2031-01"));
}
