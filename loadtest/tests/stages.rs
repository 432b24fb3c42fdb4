//! `loadtest/stages.py`: what a load-test step added to the service's histograms, from two
//! scrapes of its `/metrics`.

use std::path::{Path, PathBuf};
use std::process::Command;

const BEFORE: &str = r#"# TYPE dutyflow_stage_duration_seconds histogram
dutyflow_stage_duration_seconds_bucket{stage="store_commit",le="0.01"} 10
dutyflow_stage_duration_seconds_bucket{stage="store_commit",le="0.05"} 18
dutyflow_stage_duration_seconds_bucket{stage="store_commit",le="0.1"} 20
dutyflow_stage_duration_seconds_bucket{stage="store_commit",le="+Inf"} 20
dutyflow_stage_duration_seconds_sum{stage="store_commit"} 0.5
dutyflow_stage_duration_seconds_count{stage="store_commit"} 20
dutyflow_stage_duration_seconds_bucket{stage="assess",le="0.01"} 20
dutyflow_stage_duration_seconds_bucket{stage="assess",le="0.05"} 20
dutyflow_stage_duration_seconds_bucket{stage="assess",le="0.1"} 20
dutyflow_stage_duration_seconds_bucket{stage="assess",le="+Inf"} 20
dutyflow_stage_duration_seconds_sum{stage="assess"} 0.1
dutyflow_stage_duration_seconds_count{stage="assess"} 20
dutyflow_up 1
"#;

// Ten more commits (sum +0.3 s): four of them over 10 ms, one of those over 50 ms, none over
// 100 ms. No assess batch added. A counter without buckets is not a histogram.
const AFTER: &str = r#"# TYPE dutyflow_stage_duration_seconds histogram
dutyflow_stage_duration_seconds_bucket{stage="store_commit",le="0.01"} 16
dutyflow_stage_duration_seconds_bucket{stage="store_commit",le="0.05"} 27
dutyflow_stage_duration_seconds_bucket{stage="store_commit",le="0.1"} 30
dutyflow_stage_duration_seconds_bucket{stage="store_commit",le="+Inf"} 30
dutyflow_stage_duration_seconds_sum{stage="store_commit"} 0.8
dutyflow_stage_duration_seconds_count{stage="store_commit"} 30
dutyflow_stage_duration_seconds_bucket{stage="assess",le="0.01"} 20
dutyflow_stage_duration_seconds_bucket{stage="assess",le="0.05"} 20
dutyflow_stage_duration_seconds_bucket{stage="assess",le="0.1"} 20
dutyflow_stage_duration_seconds_bucket{stage="assess",le="+Inf"} 20
dutyflow_stage_duration_seconds_sum{stage="assess"} 0.1
dutyflow_stage_duration_seconds_count{stage="assess"} 20
dutyflow_messages_received_total 99
dutyflow_up 1
"#;

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
    let dir = std::env::temp_dir().join(format!("dutyflow-stages-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let before = write(&dir, "before.prom", BEFORE);
    let after = write(&dir, "after.prom", AFTER);

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
    std::fs::remove_dir_all(&dir).ok();
}
