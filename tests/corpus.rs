//! The bad-input corpus: every file under `tests/corpus/` goes through the operators and must
//! give the rejection listed for it in `tests/corpus/expected.tsv` (code, field and scope),
//! without panicking, with exactly one outcome per package, and with `assessment/v1` lines that
//! follow contract §2. The files are written by `tests/corpus/generate.py`.

mod support;

use dutyflow_operators::error::Code;
use dutyflow_operators::outcome::Outcome;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use support::*;

/// Corpus files that make the operators panic (a real bug; see the ignored test below).
const PANICS: &[&str] = &["74-postal-code-non-ascii.json"];
/// Corpus files whose outcome is right but whose `assessment/v1` lines are not (see below).
const BAD_ENCODING: &[&str] = &["52-arrival-year-0000.json"];

#[derive(Debug, Clone, PartialEq)]
enum Scope {
    Message,
    Package(usize),
    AllPackages,
}

#[derive(Debug, Clone)]
struct Row {
    line: usize,
    file: String,
    /// An error code, or `ACCEPTED`.
    code: String,
    field: Option<String>,
    scope: Scope,
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus")
}

fn rows() -> Vec<Row> {
    let text = std::fs::read_to_string(corpus_dir().join("expected.tsv")).unwrap();
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 4, "expected.tsv line {}: 4 tab-separated fields", n + 1);
        let scope = match f[3] {
            "message" => Scope::Message,
            "all-packages" => Scope::AllPackages,
            s => Scope::Package(
                s.strip_prefix("package:")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("expected.tsv line {}: bad scope {s}", n + 1)),
            ),
        };
        if f[1] != "ACCEPTED" {
            assert!(
                Code::from_name(f[1]).is_some(),
                "expected.tsv line {}: unknown code {}",
                n + 1,
                f[1]
            );
        }
        rows.push(Row {
            line: n + 1,
            file: f[0].to_string(),
            code: f[1].to_string(),
            field: (f[2] != "-").then(|| f[2].to_string()),
            scope,
        });
    }
    rows
}

/// The corpus files (`*.json`), sorted.
fn files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(corpus_dir().join(name)).unwrap()
}

/// Counts the elements of the top-level `packages` array by scanning the text, independently
/// of both the operators and serde_json (which refuses very deep documents).
fn scan_package_count(raw: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut last_key: Option<&[u8]> = None;
    let mut in_packages = false;
    let (mut commas, mut any) = (0usize, false);
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < raw.len() && raw[i] != b'"' {
                    if raw[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if depth == 1 {
                    last_key = Some(&raw[start..i.min(raw.len())]);
                }
                if in_packages && depth == 2 {
                    any = true;
                }
            }
            b'{' | b'[' => {
                if in_packages && depth == 2 {
                    any = true;
                }
                if b == b'[' && depth == 1 && last_key == Some(b"packages".as_slice()) {
                    in_packages = true;
                    commas = 0;
                    any = false;
                }
                depth += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if in_packages && depth == 1 {
                    return Some(if any { commas + 1 } else { 0 });
                }
            }
            b',' => {
                if in_packages && depth == 2 {
                    commas += 1;
                }
                if depth == 1 {
                    last_key = None;
                }
            }
            b' ' | b'\n' | b'\r' | b'\t' | b':' => {}
            _ => {
                if in_packages && depth == 2 {
                    any = true;
                }
            }
        }
        i += 1;
    }
    None
}

/// Number of packages the message holds, when it is a JSON object with a `packages` array.
fn package_count(raw: &[u8]) -> Option<usize> {
    let scanned = scan_package_count(raw);
    if let Ok(v) = serde_json::from_slice::<Value>(raw) {
        let n = v.get("packages").and_then(Value::as_array).map(Vec::len);
        assert_eq!(n, scanned, "the scanner disagrees with serde_json");
    }
    scanned
}

fn run_guarded(name: &str) -> Result<Outcome<'static>, String> {
    let raw = read(name);
    catch_unwind(AssertUnwindSafe(|| run_bytes(raw))).map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("{name}: the operators panicked: {msg}")
    })
}

/// Checks one file against its rows; returns every discrepancy.
fn check_file(name: &str, rows: &[&Row]) -> Vec<String> {
    let mut problems = Vec::new();
    let outcome = match run_guarded(name) {
        Ok(o) => o,
        Err(e) => return vec![e],
    };
    let raw = read(name);
    match &outcome {
        Outcome::Message(issue) => {
            for r in rows {
                if r.scope != Scope::Message {
                    problems.push(format!(
                        "{name} (line {}): expected {} at {:?}, got the message-level {} at {}: {}",
                        r.line,
                        r.code,
                        r.scope,
                        issue.code.as_str(),
                        issue.field,
                        issue.message
                    ));
                } else if issue.code.as_str() != r.code || r.field.as_deref().is_some_and(|f| f != issue.field) {
                    problems.push(format!(
                        "{name} (line {}): expected {} at {:?}, got {} at {}",
                        r.line,
                        r.code,
                        r.field,
                        issue.code.as_str(),
                        issue.field
                    ));
                }
            }
        }
        Outcome::Manifest(m) => {
            // Every package of a decodable manifest yields exactly one outcome, in order.
            match package_count(&raw) {
                Some(n) if n == m.packages.len() => {}
                other => problems.push(format!(
                    "{name}: {} package outcomes for {other:?} packages in the message",
                    m.packages.len()
                )),
            }
            for (i, p) in m.packages.iter().enumerate() {
                if p.package.index as usize != i {
                    problems.push(format!("{name}: outcome {i} is for package {}", p.package.index));
                }
                if p.accepted() != (p.duty.is_some() && p.risk.is_some()) {
                    problems.push(format!(
                        "{name}: package {i} accepted={} but duty/risk set={}/{}",
                        p.accepted(),
                        p.duty.is_some(),
                        p.risk.is_some()
                    ));
                }
            }
            let has = |i: usize, code: &str, field: &Option<String>| {
                m.packages.get(i).is_some_and(|p| {
                    p.package
                        .errors
                        .iter()
                        .any(|e| e.code.as_str() == code && field.as_deref().is_none_or(|f| f == e.field))
                })
            };
            for r in rows {
                let ok = match (&r.scope, r.code.as_str()) {
                    (Scope::Message, _) => false,
                    (Scope::Package(i), "ACCEPTED") => m.packages.get(*i).is_some_and(|p| p.accepted()),
                    (Scope::Package(i), code) => has(*i, code, &r.field),
                    (Scope::AllPackages, code) => {
                        !m.packages.is_empty() && (0..m.packages.len()).all(|i| has(i, code, &r.field))
                    }
                };
                if !ok {
                    let got: Vec<_> = m.packages.iter().map(errors).collect();
                    problems.push(format!(
                        "{name} (line {}): expected {} at {:?} ({:?}); package errors: {got:?}",
                        r.line, r.code, r.field, r.scope
                    ));
                }
            }
        }
    }
    problems
}

fn by_file() -> BTreeMap<String, Vec<Row>> {
    let mut map: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for r in rows() {
        map.entry(r.file.clone()).or_default().push(r);
    }
    map
}

#[test]
fn corpus_is_indexed_and_large_enough() {
    let files = files();
    let index = by_file();
    assert!(files.len() >= 45, "only {} corpus files", files.len());
    for f in &files {
        assert!(index.contains_key(f), "{f} has no row in expected.tsv");
        let (nn, rest) = f.split_once('-').expect("NN-short-name.json");
        assert!(
            nn.len() == 2 && nn.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty(),
            "{f}"
        );
    }
    for name in index.keys() {
        assert!(files.contains(name), "expected.tsv names a missing file {name}");
    }
    let mut seen = HashSet::new();
    for f in &files {
        assert!(seen.insert(read(f)), "{f} duplicates another corpus file");
    }
}

#[test]
fn every_corpus_file_gives_its_expected_rejection() {
    let mut problems = Vec::new();
    for (file, rows) in by_file() {
        if PANICS.contains(&file.as_str()) {
            continue;
        }
        let rows: Vec<&Row> = rows.iter().collect();
        problems.extend(check_file(&file, &rows));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn non_ascii_postal_code_is_rejected_without_panicking() {
    let index = by_file();
    let mut problems = Vec::new();
    for file in PANICS {
        let rows: Vec<&Row> = index[*file].iter().collect();
        problems.extend(check_file(file, &rows));
        problems.extend(check_encoding(file));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

fn is_money(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        let (int, frac) = s.split_once('.').unwrap_or(("", ""));
        !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.len() == 2
            && frac.bytes().all(|b| b.is_ascii_digit())
    })
}

fn is_rate(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.split_once('.').is_some_and(|(i, f)| {
            !i.is_empty() && !f.is_empty() && (i.bytes().chain(f.bytes())).all(|b| b.is_ascii_digit())
        })
    })
}

fn is_date(v: &Value) -> bool {
    v.is_null()
        || v.as_str().is_some_and(|s| {
            let b = s.as_bytes();
            b.len() == 10
                && b[4] == b'-'
                && b[7] == b'-'
                && b.iter()
                    .enumerate()
                    .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        })
}

fn is_month(v: &Value) -> bool {
    v.is_null()
        || v.as_str().is_some_and(|s| {
            let b = s.as_bytes();
            b.len() == 7 && b[4] == b'-' && b.iter().enumerate().all(|(i, c)| i == 4 || c.is_ascii_digit())
        })
}

/// Checks one `assessment/v1` object against contract §2.
fn check_assessment(v: &Value) -> Result<(), String> {
    let o = v.as_object().ok_or("not an object")?;
    for key in [
        "schema",
        "manifest_id",
        "carrier",
        "trip_number",
        "port_of_arrival",
        "arrival_date",
        "month",
        "tracking_number",
        "status",
        "errors",
        "warnings",
        "risk",
        "duty",
    ] {
        if !o.contains_key(key) {
            return Err(format!("missing {key}"));
        }
    }
    if v["schema"] != "assessment/v1" {
        return Err("schema is not assessment/v1".into());
    }
    if !(v["tracking_number"].is_string() || v["tracking_number"].is_null()) {
        return Err("tracking_number is neither a string nor null".into());
    }
    if !is_date(&v["arrival_date"]) || !is_month(&v["month"]) {
        return Err(format!(
            "arrival_date {} / month {} not YYYY-MM-DD / YYYY-MM",
            v["arrival_date"], v["month"]
        ));
    }
    for list in ["errors", "warnings"] {
        let issues = v[list].as_array().ok_or(format!("{list} is not an array"))?;
        for e in issues {
            let code = e["code"].as_str().ok_or("issue without code")?;
            if Code::from_name(code).is_none() || !code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                return Err(format!("unknown or malformed code {code}"));
            }
            if !e["field"].as_str().is_some_and(|f| f.starts_with('$')) {
                return Err(format!("field {} is not a JSON path", e["field"]));
            }
            if e["message"].as_str().is_none_or(str::is_empty) {
                return Err("empty message".into());
            }
            if e.as_object().map(|o| o.len()) != Some(3) {
                return Err("an issue has other keys than code, field, message".into());
            }
        }
    }
    let n_errors = v["errors"].as_array().map_or(0, Vec::len);
    match v["status"].as_str() {
        Some("rejected") => {
            if n_errors == 0 {
                return Err("rejected without errors".into());
            }
            if !v["duty"].is_null() {
                return Err("rejected with a duty".into());
            }
        }
        Some("accepted") => {
            if n_errors != 0 {
                return Err("accepted with errors".into());
            }
            let d = &v["duty"];
            if !d["regime"].is_string() || d["rates_version"].as_str().is_none_or(str::is_empty) {
                return Err("duty without regime or rates_version".into());
            }
            if !matches!(d["method"].as_str(), Some("ad_valorem" | "specific" | "exempt")) {
                return Err(format!("method {}", d["method"]));
            }
            for k in ["value_usd", "fees_usd", "total_usd"] {
                if !is_money(&d[k]) {
                    return Err(format!("duty.{k} {} is not money", d[k]));
                }
            }
            for l in d["lines"].as_array().ok_or("no lines")? {
                if !is_money(&l["value_usd"]) || !is_money(&l["duty_usd"]) || !is_rate(&l["rate"]) {
                    return Err(format!("bad line {l}"));
                }
            }
            let r = &v["risk"];
            if r["score"].as_u64().is_none_or(|s| s > 100)
                || !matches!(r["tier"].as_str(), Some("low" | "medium" | "high" | "critical"))
                || !r["reasons"].is_array()
            {
                return Err(format!("bad risk {r}"));
            }
        }
        other => return Err(format!("status {other:?}")),
    }
    Ok(())
}

/// Encodes one corpus file and checks every line; returns the problems found.
fn check_encoding(name: &str) -> Vec<String> {
    let outcome = match run_guarded(name) {
        Ok(o) => o,
        Err(e) => return vec![e],
    };
    let mut out = Vec::new();
    ops().encode_lines(&outcome, &mut out);
    let Ok(text) = String::from_utf8(out) else {
        return vec![format!("{name}: output is not UTF-8")];
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    if lines.len() != outcome.len() || !text.ends_with('\n') {
        problems.push(format!("{name}: {} lines for {} outcomes", lines.len(), outcome.len()));
    }
    let input: Option<Value> = serde_json::from_slice(&read(name)).ok();
    for (i, line) in lines.iter().enumerate() {
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{name} line {i}: not JSON ({e}): {line}"));
                continue;
            }
        };
        if let Err(e) = check_assessment(&v) {
            problems.push(format!("{name} line {i}: {e}: {line}"));
        }
        match &outcome {
            Outcome::Message(_) => {
                if !v["tracking_number"].is_null()
                    || v["status"] != "rejected"
                    || v["errors"].as_array().map(Vec::len) != Some(1)
                {
                    problems.push(format!(
                        "{name}: a message failure must be one rejection with tracking_number null: {line}"
                    ));
                }
            }
            Outcome::Manifest(_) => {
                // The tracking number is echoed as sent (when it was a string).
                if let Some(sent) = input.as_ref().and_then(|m| m["packages"].get(i)) {
                    let expected = match &sent["tracking_number"] {
                        Value::String(s) => json!(s),
                        _ => Value::Null,
                    };
                    if v["tracking_number"] != expected {
                        problems.push(format!(
                            "{name} line {i}: tracking_number {} but {expected} was sent",
                            v["tracking_number"]
                        ));
                    }
                }
            }
        }
    }
    problems
}

#[test]
fn every_assessment_line_is_json_per_contract() {
    let mut problems = Vec::new();
    for file in files() {
        if PANICS.contains(&file.as_str()) || BAD_ENCODING.contains(&file.as_str()) {
            continue;
        }
        problems.extend(check_encoding(&file));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn arrival_date_before_year_one_is_not_encoded_as_garbage() {
    let problems: Vec<String> = BAD_ENCODING.iter().flat_map(|f| check_encoding(f)).collect();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn one_package_with_several_problems_reports_all_of_them() {
    // Shipper country XX (not ISO), a negative value, and a currency that is not ISO 4217:
    // three errors on one package, each at its own field, and nothing else.
    let mut pkg = package(47312482, vec![item("VN", "-5.00", "EURO")]);
    pkg["shipper"]["country"] = json!("XX");
    let m = manifest(
        "LH",
        "2026-03-02T13:05:00-05:00",
        vec![pkg, package(10000001, vec![usd("VN", "85.00")])],
    );
    let p = packages(&m);
    let mut got = errors(&p[0]);
    got.sort();
    let mut want = vec![
        ("INVALID_COUNTRY", "$.packages[0].shipper.country".to_string()),
        ("INVALID_CURRENCY", "$.packages[0].items[0].currency".to_string()),
        ("INVALID_VALUE", "$.packages[0].items[0].value".to_string()),
    ];
    want.sort();
    assert_eq!(got, want);
    // The other package of the manifest is not affected.
    assert!(p[1].accepted(), "{:?}", errors(&p[1]));
}

#[test]
fn every_item_problem_of_every_item_is_reported() {
    // Two items with five problems between them: all are reported with their item index.
    let mut bad0 = usd("ZZ", "NaN");
    bad0["quantity"] = json!(0);
    bad0["origin_country"] = json!("ZZ");
    let mut bad1 = usd("VN", "85.00");
    bad1["description"] = json!("ab");
    bad1["hts"] = json!("61.09");
    let m = manifest(
        "LH",
        "2026-03-02T13:05:00-05:00",
        vec![package(47312482, vec![bad0, bad1])],
    );
    let p = packages(&m);
    let mut got = errors(&p[0]);
    got.sort();
    let mut want = vec![
        ("INVALID_COUNTRY", "$.packages[0].items[0].origin_country".to_string()),
        ("INVALID_QUANTITY", "$.packages[0].items[0].quantity".to_string()),
        ("INVALID_VALUE", "$.packages[0].items[0].value".to_string()),
        ("INVALID_DESCRIPTION", "$.packages[0].items[1].description".to_string()),
        ("INVALID_HTS", "$.packages[0].items[1].hts".to_string()),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn exactly_10000_packages_are_accepted_one_outcome_each() {
    // The upper bound of contract §1 (1-10,000 packages) is inclusive; 10,001 is the corpus
    // file 17. Each package is valid and distinct.
    let pkgs: Vec<Value> = (0..10_000u32)
        .map(|i| package(20_000_000 + i, vec![usd("VN", "1.00")]))
        .collect();
    let m = manifest("LH", "2026-03-02T13:05:00-05:00", pkgs);
    let out = manifest_outcome(run(&m));
    assert_eq!(out.packages.len(), 10_000);
    for (i, p) in out.packages.iter().enumerate() {
        assert!(p.accepted(), "package {i}: {:?}", errors(p));
        // 1.00 × 0.10 = 0.10 under section122_postal_2026.
        assert_eq!(p.duty.as_ref().unwrap().total_usd, dec("0.10"));
    }
}

#[test]
fn every_package_slice_is_the_package_as_sent() {
    // Contract §3: a dead-letter record carries the offending package as sent; the operators
    // keep each package's byte offset, and `value_slice` cuts it out of the message.
    let mut checked = 0;
    for file in files() {
        if PANICS.contains(&file.as_str()) {
            continue;
        }
        let raw = read(&file);
        let Ok(input) = serde_json::from_slice::<Value>(&raw) else {
            continue;
        };
        let Outcome::Manifest(m) = run_guarded(&file).unwrap() else {
            continue;
        };
        for (i, p) in m.packages.iter().enumerate() {
            let slice = dutyflow_operators::decode::value_slice(&raw, p.package.raw_start as usize);
            let sent: Value =
                serde_json::from_slice(slice).unwrap_or_else(|e| panic!("{file} package {i}: slice is not JSON ({e})"));
            assert_eq!(sent, input["packages"][i], "{file} package {i}");
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} packages checked");
}
