//! The operations files, checked as part of `cargo test`:
//! - `scripts/check-ops.sh`: alert rules and their unit tests, the Prometheus config, the
//!   compose file, the Dockerfile's binaries, the Grafana provisioning and dashboard, and that
//!   every series they use is in docs/metrics.md;
//! - `scripts/prometheus-smoke.sh`: a real Prometheus scraping a real `dutyflow demo`.
//!
//! They need promtool, prometheus and docker-compose, which `scripts/setup.sh` installs. When a
//! tool is missing the scripts exit non-zero and these tests fail: they never skip.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("pipeline/ has a parent directory")
        .to_path_buf()
}

/// Runs `bash <script> <args>` from the repository root with DUTYFLOW_BIN set to the binary
/// cargo built for this test, and fails the test with the script's whole output unless it
/// exits 0.
fn run_script(script: &str, args: &[&str]) -> String {
    let root = repo_root();
    let output = Command::new("bash")
        .arg(root.join(script))
        .args(args)
        .current_dir(&root)
        .env("DUTYFLOW_BIN", env!("CARGO_BIN_EXE_dutyflow"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash {script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}).\n---- stdout ----\n{stdout}\n---- stderr ----\n{stderr}",
        output.status
    );
    format!("{stdout}{stderr}")
}

#[test]
fn ops_files_pass_check_ops() {
    let out = run_script("scripts/check-ops.sh", &[]);
    assert!(
        out.contains("check-ops: all checks passed"),
        "unexpected output:\n{out}"
    );
}

#[test]
fn prometheus_scrapes_a_running_demo() {
    let out = run_script("scripts/prometheus-smoke.sh", &[]);
    assert!(out.contains("prometheus-smoke: passed"), "unexpected output:\n{out}");
}
