//! `loadtest/stages.py`: what a load-test step added to the service's histograms, from two
//! scrapes of its `/metrics`.

#[path = "../../tests/scratch/mod.rs"]
mod scratch;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The exposition of one stage's duration histogram: its counts at or under 10, 50 and 100 ms
/// (the last is every observation, as `+Inf`), and their sum in seconds.
fn histogram(stage: &str, at_or_under: [u32; 3], sum: f64) -> String {
    let name = "dutyflow_stage_duration_seconds";
    let [ten_ms, fifty_ms, all] = at_or_under;
    let mut text = String::new();
    for (le, n) in [("0.01", ten_ms), ("0.05", fifty_ms), ("0.1", all), ("+Inf", all)] {
        text += &format!("{name}_bucket{{stage=\"{stage}\",le=\"{le}\"}} {n}\n");
    }
    text += &format!("{name}_sum{{stage=\"{stage}\"}} {sum}\n{name}_count{{stage=\"{stage}\"}} {all}\n");
    text
}

fn before() -> String {
    let commits = histogram("store_commit", [10, 18, 20], 0.5);
    let assess = histogram("assess", [20, 20, 20], 0.1);
    format!("# TYPE dutyflow_stage_duration_seconds histogram\n{commits}{assess}dutyflow_up 1\n")
}

/// Ten more commits (sum +0.3 s): four of them over 10 ms, one of those over 50 ms, none over
/// 100 ms. No assess batch added. A plain counter is not listed.
fn after() -> String {
    let commits = histogram("store_commit", [16, 27, 30], 0.8);
    let assess = histogram("assess", [20, 20, 20], 0.1);
    format!("# TYPE dutyflow_stage_duration_seconds histogram\n{commits}{assess}dutyflow_messages_received_total 99\ndutyflow_up 1\n")
}

fn run(before: &Path, after: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("stages.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(before)
        .arg(after)
        .output()
        .expect("python3 runs (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "stages.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a scrape");
    path
}

#[test]
fn reports_what_the_step_added_per_series() {
    let dir = scratch::dir("stages");
    let before = write(&dir, "before.prom", &before());
    let after = write(&dir, "after.prom", &after());

    let lines: Vec<String> = run(&before, &after).lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        ["dutyflow_stage_duration_seconds{stage=\"store_commit\"} n=10 mean=0.03 >0.01:4 >0.05:1"],
        "only the series the step added to, with its count, mean and exceedances"
    );

    // From the service's start: everything in the second scrape.
    let from_start = run(Path::new("/dev/null"), &after);
    assert!(
        from_start.contains("{stage=\"store_commit\"} n=30 mean=0.02667 >0.01:14 >0.05:3"),
        "{from_start}"
    );
    assert!(
        from_start.contains("{stage=\"assess\"} n=20 mean=0.005"),
        "{from_start}"
    );
}
