//! Shared helpers for the integration tests: the operators loaded once from `config/`, a small
//! manifest builder producing valid `manifest/v1` documents, and runners that turn a message into
//! an `Outcome` (leaking the buffers, which is fine in tests) or into parsed `assessment/v1` lines.

#![allow(dead_code)]

#[path = "../scratch/mod.rs"]
mod scratch;

use dutyflow_operators::decode::Decoder;
use dutyflow_operators::error::Issue;
use dutyflow_operators::outcome::{ManifestOutcome, Outcome, PackageOutcome};
use dutyflow_operators::risk::AccountHistory;
use dutyflow_operators::Operators;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The `config/` directory of the source tree.
pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

/// The operators, loaded once from the shipped `config/`.
pub fn ops() -> &'static Operators {
    static OPS: OnceLock<Operators> = OnceLock::new();
    OPS.get_or_init(|| Operators::load(&config_dir()).expect("config/ loads"))
}

/// The UPU S10 check digit, computed independently of the operators: weights 8,6,4,2,3,5,9,7
/// over the 8 serial digits; C = 11 - (sum mod 11), 10 -> 0, 11 -> 5.
pub fn s10_check(serial: u32) -> u32 {
    assert!(serial < 100_000_000);
    let digits = format!("{serial:08}");
    let weights = [8u32, 6, 4, 2, 3, 5, 9, 7];
    let sum: u32 = digits.bytes().zip(weights).map(|(d, w)| u32::from(d - b'0') * w).sum();
    match 11 - sum % 11 {
        10 => 0,
        11 => 5,
        c => c,
    }
}

/// A valid S10 number: `RR`, the serial, its check digit, `DE`.
pub fn s10(serial: u32) -> String {
    format!("RR{serial:08}{}DE", s10_check(serial))
}

/// A valid S10 number with a chosen service indicator and issuing country.
pub fn s10_with(prefix: &str, serial: u32, country: &str) -> String {
    format!("{prefix}{serial:08}{}{country}", s10_check(serial))
}

/// A wrong check digit for `serial` (the right one plus one, mod 10).
pub fn s10_bad_check(serial: u32) -> String {
    format!("RR{serial:08}{}DE", (s10_check(serial) + 1) % 10)
}

/// One item line: a cotton T-shirt (HTS 6109100012) of `origin`, `value` in `currency`.
pub fn item(origin: &str, value: &str, currency: &str) -> Value {
    json!({
        "description": "Men's cotton T-shirt",
        "hts": "6109100012",
        "origin_country": origin,
        "quantity": 1,
        "value": value,
        "currency": currency
    })
}

/// One USD item line.
pub fn usd(origin: &str, value: &str) -> Value {
    item(origin, value, "USD")
}

/// A package with its own consignee (so no split-shipment signal), shipped from Germany by a
/// German shipper, weighing 0.05 kg (below the undervaluation threshold of risk.toml).
pub fn package(serial: u32, items: Vec<Value>) -> Value {
    json!({
        "tracking_number": s10(serial),
        "category": "merchandise",
        "shipper": { "name": format!("Shipper {serial}"), "country": "DE" },
        "consignee": {
            "name": format!("Consignee {serial}"),
            "address": {
                "line1": "12 Main St",
                "city": "Albany",
                "state": "NY",
                "postal_code": "12207",
                "country": "US"
            }
        },
        "weight_kg": "0.050",
        "items": items
    })
}

/// A manifest from `carrier` (IATA), departing Germany, arriving at port 4701 at `arrival`.
pub fn manifest(carrier: &str, arrival: &str, packages: Vec<Value>) -> Value {
    json!({
        "schema": "manifest/v1",
        "manifest_id": format!("{carrier}-TEST-1"),
        "carrier": { "code": carrier, "code_type": "iata" },
        "trip": {
            "number": format!("{carrier}400"),
            "departure_country": "DE",
            "port_of_arrival": "4701",
            "arrival_time": arrival
        },
        "packages": packages
    })
}

/// Runs raw bytes through the operators. The buffers are leaked so the outcome is `'static`.
pub fn run_bytes(raw: Vec<u8>) -> Outcome<'static> {
    run_bytes_with(ops(), raw)
}

/// Runs raw bytes through the given operators (e.g. loaded from a modified config copy).
pub fn run_bytes_with(ops: &Operators, raw: Vec<u8>) -> Outcome<'static> {
    let raw: &'static [u8] = Box::leak(raw.into_boxed_slice());
    let scratch: &'static mut Vec<u8> = Box::leak(Box::default());
    let mut decoder = Decoder::default();
    ops.assess_message(&mut decoder, raw, scratch)
}

/// Runs a manifest (without account history).
pub fn run(m: &Value) -> Outcome<'static> {
    run_bytes(serde_json::to_vec(m).unwrap())
}

/// Runs a manifest through the given operators.
pub fn run_with(ops: &Operators, m: &Value) -> Outcome<'static> {
    run_bytes_with(ops, serde_json::to_vec(m).unwrap())
}

/// Copies `config/` to a fresh temporary directory, applies `edits` (file relative to the
/// config dir, text to find, replacement; the text must occur; an empty text to find replaces
/// the whole file) and loads operators from it.
pub fn ops_with_edits(tag: &str, edits: &[(&str, &str, &str)]) -> Operators {
    let dir = scratch::dir(&format!("tests-{tag}"));
    copy_dir(&config_dir(), &dir);
    for (file, from, to) in edits {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let new = if from.is_empty() {
            to.to_string()
        } else {
            assert!(text.contains(from), "{file} does not contain {from:?}");
            text.replacen(from, to, 1)
        };
        std::fs::write(&path, new).unwrap();
    }
    Operators::load(&dir).expect("modified config loads")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Runs a manifest and applies (and updates) account history.
pub fn run_with_history(history: &mut AccountHistory, m: &Value) -> Outcome<'static> {
    let mut outcome = run(m);
    ops().apply_history(history, &mut outcome);
    outcome
}

/// The manifest outcome, or a panic naming the message-level issue.
pub fn manifest_outcome(outcome: Outcome<'static>) -> ManifestOutcome<'static> {
    match outcome {
        Outcome::Manifest(m) => m,
        Outcome::Message(issue) => panic!("expected a manifest outcome, got {issue:?}"),
    }
}

/// The message-level issue, or a panic.
pub fn message_issue<'o>(outcome: &'o Outcome<'_>) -> &'o Issue {
    match outcome {
        Outcome::Message(issue) => issue,
        Outcome::Manifest(m) => panic!(
            "expected a message-level rejection, got {} package outcomes",
            m.packages.len()
        ),
    }
}

/// Runs a manifest that must be decodable and returns its package outcomes.
pub fn packages(m: &Value) -> Vec<PackageOutcome<'static>> {
    manifest_outcome(run(m)).packages
}

/// The only package of a one-package manifest, which must be accepted.
pub fn accepted_one(m: &Value) -> PackageOutcome<'static> {
    let mut p = packages(m);
    assert_eq!(p.len(), 1, "one package expected");
    let p = p.remove(0);
    assert!(p.accepted(), "package rejected: {:?}", p.package.errors);
    p
}

/// `(code, field)` pairs of a package's errors.
pub fn errors(p: &PackageOutcome<'_>) -> Vec<(&'static str, String)> {
    p.package
        .errors
        .iter()
        .map(|i| (i.code.as_str(), i.field.to_string()))
        .collect()
}

/// Encodes an outcome and parses every line as JSON.
pub fn encoded(outcome: &Outcome<'_>) -> Vec<Value> {
    let mut out = Vec::new();
    ops().encode_lines(outcome, &mut out);
    let text = String::from_utf8(out).expect("assessments are UTF-8");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A decimal from text.
pub fn dec(s: &str) -> rust_decimal::Decimal {
    s.parse().unwrap()
}
