//! `dutyflow assess` on the shared examples gives the expected assessments (checked by hand:
//! EUR 240.00 × 1.16464 = 279.51 USD, × 10 % = 27.95; the $40 gift is exempt; the bad manifest's
//! three packages fail TRACKING_CHECK_DIGIT, INVALID_COUNTRY and INVALID_VALUE), in input order.

mod scratch;

use std::path::Path;
use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO_BIN_EXE_dutyflow"))
        .current_dir(&root)
        .arg("assess")
        .args(args)
        .arg("--config-dir")
        .arg(root.join("config"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Replaces the rates fingerprint, which changes with any rate file, by a placeholder.
fn normalise(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("\"rates_version\":\"") {
            Some(i) => {
                let start = i + "\"rates_version\":\"".len();
                let end = start + l[start..].find('"').unwrap();
                format!("{}VERSION{}", &l[..start], &l[end..])
            }
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn examples_give_the_expected_assessments() {
    for (input, expected) in [
        ("tests/fixtures/examples/manifest-valid.jsonl", "manifest-valid"),
        ("tests/fixtures/examples/manifest-valid.json", "manifest-valid"),
        (
            "tests/fixtures/examples/manifest-bad-packages.jsonl",
            "manifest-bad-packages",
        ),
        (
            "tests/fixtures/examples/manifest-bad-packages.json",
            "manifest-bad-packages",
        ),
        ("tests/fixtures/examples/not-json.txt", "not-json"),
    ] {
        let (ok, out, _) = run(&[input]);
        assert!(ok, "{input}");
        let want = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../tests/fixtures/expected/{expected}.assessments.jsonl")),
        )
        .unwrap();
        assert_eq!(normalise(&out), normalise(&want), "{input}");
    }
}

#[test]
fn several_files_keep_input_order_and_a_missing_file_is_a_clear_error() {
    let (ok, out, _) = run(&[
        "tests/fixtures/examples/manifest-bad-packages.jsonl",
        "tests/fixtures/examples/manifest-valid.jsonl",
    ]);
    assert!(ok);
    let tracking: Vec<&str> = out
        .lines()
        .map(|l| &l[l.find("\"tracking_number\":\"").unwrap() + 19..][..13])
        .collect();
    assert_eq!(
        tracking,
        [
            "RR473124828DE",
            "CP200000023DE",
            "LX100000017DE",
            "RR473124829DE",
            "CP200000023DE",
            "LX100000017DE"
        ]
    );
    let (ok, out, err) = run(&["no/such/file.jsonl"]);
    assert!(!ok && out.is_empty());
    assert!(err.starts_with("dutyflow: cannot open no/such/file.jsonl"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn large_input_uses_chunks_and_keeps_order() {
    // 5,000 copies of the valid manifest (more than one parallel chunk): output order must
    // follow input order exactly.
    let dir = scratch::dir("order");
    let line = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/examples/manifest-valid.jsonl"),
    )
    .unwrap();
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&line.trim().replace("LH-20260302-LH400-01", &format!("M{i}")));
        text.push('\n');
    }
    let file = dir.join("big.jsonl");
    std::fs::write(&file, text).unwrap();
    let (ok, out, _) = run(&[file.to_str().unwrap()]);
    assert!(ok);
    let ids: Vec<String> = out.lines().map(|l| l.split('"').nth(7).unwrap().to_string()).collect();
    assert_eq!(ids.len(), 15000);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(id, &format!("M{}", i / 3));
    }
}
