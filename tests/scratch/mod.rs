//! Scratch directories for the tests and benches: `dutyflow-<name>-<random>` under the system
//! temp dir, removed when dropped, so also when a test panics. With `DUTYFLOW_KEEP_TEST_DIRS=1`
//! they are kept and each one's path is printed on stderr (which `cargo test` shows for a
//! failing test, or with `--nocapture`).
//!
//! One file for the workspace, included by path (`#[path = "…/tests/scratch/mod.rs"] mod
//! scratch;`) by the test crates, the pipeline crate's unit tests, the store bench and the load
//! test's tests; each uses part of it.
#![allow(dead_code)]

use std::ops::Deref;
use std::path::Path;

/// Set it to 1 to keep the scratch directories.
pub const KEEP_VAR: &str = "DUTYFLOW_KEEP_TEST_DIRS";

/// Whether scratch directories are kept (`DUTYFLOW_KEEP_TEST_DIRS=1`).
pub fn keep() -> bool {
    std::env::var_os(KEEP_VAR).is_some_and(|v| v == "1")
}

/// A fresh, empty directory `dutyflow-<name>-<random>` under the system temp dir.
pub fn dir(name: &str) -> ScratchDir {
    let keep = keep();
    let dir = tempfile::Builder::new()
        .prefix(&format!("dutyflow-{name}-"))
        .disable_cleanup(keep)
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a scratch directory dutyflow-{name}-…: {e}"));
    if keep {
        eprintln!("{KEEP_VAR}=1: keeping {}", dir.path().display());
    }
    ScratchDir(dir)
}

/// A scratch directory, removed with its contents when dropped unless kept; derefs to its path.
pub struct ScratchDir(tempfile::TempDir);

impl Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}
