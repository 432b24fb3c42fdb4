//! Store benchmark: one exactly-once batch commit, as the service's commit stage runs it
//! (offset compare-and-set, amendment check, 12-month duplicate check, package and item line
//! rows, totals, offset move, commit), without the broker, on SQLite and on PostgreSQL.
//!
//!   CARGO_TARGET_DIR=/work/target-bench cargo bench -p dutyflow-benches --bench store
//!
//! Each iteration commits a fresh batch of generated manifests (`BATCH_SIZES`) of `PACKAGES`
//! packages (new manifest ids and tracking numbers, so no amendments), spread over `PARTITIONS`
//! partitions whose offsets advance from batch to batch so that the compare-and-set passes. The
//! records are built by the service's own assess stage (`dutyflow_pipeline::batch::assess`);
//! building them is setup and is not timed. The store grows over the run (a fresh store per
//! benchmark), as a real store does. Throughput is in packages/s.
//!
//! SQLite, two measurements of the same work: `store/…` is wall-clock time; `store_cpu/…` is
//! the CPU time of the committing thread (`CLOCK_THREAD_CPUTIME_ID`: user + system, including
//! the kernel's share of SQLite's reads, writes and fsyncs), which other processes on a shared
//! machine disturb much less. Their difference is time spent waiting (for the disk, or for a
//! CPU).
//!
//! PostgreSQL, `store_postgres/…`, wall-clock time only (the server does most of the work, in
//! other processes). The store is `DUTYFLOW_BENCH_PG_URL` when set (an empty database the bench
//! may fill), else a throwaway local server started by `scripts/pg-test-server.sh` (fsync off,
//! as for the tests) and stopped at the end. Without either, the PostgreSQL bench is skipped.

#[path = "../../tests/scratch/mod.rs"]
mod scratch;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use dutyflow_loadtest::Generator;
use dutyflow_operators::risk::AccountHistory;
use dutyflow_operators::Operators;
use dutyflow_pipeline::batch::{self, Batch, InputMessage};
use dutyflow_pipeline::dlq::Source;
use dutyflow_pipeline::store::{CommitOutcome, ManifestRecord, PartitionRange, Store, StoreUrl};
use scratch::ScratchDir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Manifests per batch: the service's full batch (`batch_max_messages`), and a batch as 20 ms
/// of traffic at ~20 k packages/s closes it, where a commit's fixed costs show.
const BATCH_SIZES: [usize; 2] = [256, 8];
const PACKAGES: usize = 50;
const PARTITIONS: usize = 16;
const SEED: u64 = 2026;
const BAD_RATE: f64 = 0.02;
const GROUP: &str = "dutyflow";
const TOPIC: &str = "manifests";

fn load_operators() -> Operators {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    Operators::load(&dir).unwrap_or_else(|e| panic!("cannot load {}: {e}", dir.display()))
}

/// Batches as the consumer would close them, one after another.
struct Feed {
    ops: Operators,
    generator: Generator,
    history: AccountHistory,
    /// The store's next offset per partition (-1: none stored yet).
    stored: Vec<i64>,
    text: String,
}

impl Feed {
    fn new() -> Self {
        Feed {
            ops: load_operators(),
            generator: Generator::new(SEED, BAD_RATE),
            history: AccountHistory::default(),
            stored: vec![-1; PARTITIONS],
            text: String::with_capacity(40_000),
        }
    }

    /// The next batch's records and offset ranges (assumes the previous batch committed).
    fn next(&mut self, manifests: usize) -> (Vec<PartitionRange>, Vec<ManifestRecord>) {
        let mut next: Vec<i64> = self.stored.iter().map(|&s| s.max(0)).collect();
        let mut messages = Vec::with_capacity(manifests);
        for i in 0..manifests {
            let partition = i % PARTITIONS;
            self.text.clear();
            self.generator.write_manifest(&mut self.text, PACKAGES);
            messages.push(InputMessage {
                source: Source {
                    topic: TOPIC.to_string(),
                    partition: partition as i32,
                    offset: next[partition],
                    key: None,
                    replay_count: 0,
                },
                payload: self.text.as_bytes().to_vec(),
                timestamp_ms: None,
            });
            next[partition] += 1;
        }
        let ranges: Vec<PartitionRange> = (0..PARTITIONS)
            .filter(|&p| next[p] != self.stored[p].max(0))
            .map(|p| PartitionRange {
                topic: TOPIC.to_string(),
                partition: p as i32,
                expected: self.stored[p],
                next: next[p],
            })
            .collect();
        for r in &ranges {
            self.stored[r.partition as usize] = r.next;
        }
        let assessed = batch::assess(
            &self.ops,
            &mut self.history,
            Batch {
                messages,
                ranges: ranges.clone(),
            },
        );
        (ranges, assessed.records)
    }
}

/// CPU time of the calling thread, in nanoseconds.
struct ThreadCpu {
    wall: WallTime,
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, started: u64) -> u64 {
        thread_cpu_ns().saturating_sub(started)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    /// Nanoseconds, like wall time: the same units and throughput display.
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

/// A store for one benchmark, and what to clean up after it (fields drop in order: the store
/// is closed first).
struct BenchStore {
    store: Store,
    /// The directory of a SQLite file (and its WAL), removed when dropped.
    _sqlite: Option<ScratchDir>,
    /// The bench's own PostgreSQL server, if it started one.
    _pg_server: Option<PgServer>,
}

/// A throwaway PostgreSQL server in its directory, stopped (which removes the directory) when
/// dropped; left running with `DUTYFLOW_KEEP_TEST_DIRS=1`.
struct PgServer(ScratchDir);

impl Drop for PgServer {
    fn drop(&mut self) {
        if scratch::keep() {
            eprintln!(
                "PostgreSQL server left running: scripts/pg-test-server.sh stop {}",
                self.0.display()
            );
        } else {
            let _ = Command::new(pg_script()).arg("stop").arg(&*self.0).status();
        }
    }
}

fn sqlite_store(name: &str) -> BenchStore {
    let dir = scratch::dir(&format!("bench-{name}"));
    let path = dir.join("store.db");
    let store = Store::open_sqlite(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    BenchStore {
        store,
        _sqlite: Some(dir),
        _pg_server: None,
    }
}

fn pg_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-test-server.sh")
}

/// The PostgreSQL store of the bench, or why there is none.
fn postgres_store() -> Result<BenchStore, String> {
    let (url, pg_server) = match std::env::var("DUTYFLOW_BENCH_PG_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let dir = scratch::dir("bench-pg");
            let out = Command::new(pg_script())
                .arg("start")
                .arg(&*dir)
                .output()
                .map_err(|e| format!("cannot run scripts/pg-test-server.sh: {e}"))?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
            }
            (
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
                Some(PgServer(dir)),
            )
        }
    };
    let opened = Store::open(&StoreUrl::Postgres(url.clone()));
    let bench = BenchStore {
        store: opened.map_err(|e| format!("cannot open the store {url}: {e:#}"))?,
        _sqlite: None,
        _pg_server: pg_server,
    };
    let stored = bench.store.offsets(GROUP, TOPIC).map_err(|e| format!("{e:#}"))?;
    if !stored.is_empty() {
        return Err(format!("{url} is not empty: the bench needs a database of its own"));
    }
    Ok(bench)
}

fn commit_batch<M: Measurement>(c: &mut Criterion<M>, name: &str, mut bench: BenchStore) {
    let mut feed = Feed::new();
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(15));
    for manifests in BATCH_SIZES {
        group.throughput(Throughput::Elements((manifests * PACKAGES) as u64));
        group.bench_function(format!("commit_batch/{manifests}x{PACKAGES}"), |b| {
            b.iter_batched(
                || feed.next(manifests),
                |(ranges, mut records)| {
                    let outcome = bench
                        .store
                        .commit_batch(GROUP, &ranges, &mut records, |_, _| Ok(()))
                        .expect("commit failed");
                    assert_eq!(outcome, CommitOutcome::Committed);
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn wall(c: &mut Criterion) {
    commit_batch(c, "store", sqlite_store("store"));
}

fn cpu(c: &mut Criterion<ThreadCpu>) {
    commit_batch(c, "store_cpu", sqlite_store("store_cpu"));
}

fn postgres(c: &mut Criterion) {
    match postgres_store() {
        Ok(bench) => commit_batch(c, "store_postgres", bench),
        Err(why) => eprintln!("store_postgres: skipped, no PostgreSQL store: {why}"),
    }
}

/// A fixed sequence of `batches` batches of `manifests` manifests (full batches, 256, unless
/// `DUTYFLOW_BENCH_STORE_MANIFESTS` says otherwise: 32 is a batch at half the service's rate,
/// where a commit's fixed costs show) into a fresh SQLite store, the same for every build (the
/// feed's seed fixes the batches, so the store's merges come at the same batches too): prints
/// the committing thread's CPU time in all and per batch, and the bytes the process wrote
/// meanwhile. For comparing two builds run after run, where criterion's samples, each on a
/// store of a different size, vary more than the change.
///
///   DUTYFLOW_BENCH_STORE_BATCHES=80 [DUTYFLOW_BENCH_STORE_MANIFESTS=32] target/release/deps/store-… --bench
fn fixed_sequence(batches: usize, manifests: usize) {
    let packages = manifests * PACKAGES;
    let mut feed = Feed::new();
    let mut bench = sqlite_store("fixed");
    let mut per_batch = Vec::with_capacity(batches);
    let wrote = bytes_written();
    for _ in 0..batches {
        let (ranges, mut records) = feed.next(manifests);
        let cpu = thread_cpu_ns();
        let outcome = bench
            .store
            .commit_batch(GROUP, &ranges, &mut records, |_, _| Ok(()))
            .expect("commit failed");
        per_batch.push(thread_cpu_ns() - cpu);
        assert_eq!(outcome, CommitOutcome::Committed);
    }
    // By every thread (the checkpointer's copies included, as far as they have gone).
    let written = bytes_written() - wrote;
    let total: u64 = per_batch.iter().sum();
    let mut sorted = per_batch;
    sorted.sort_unstable();
    let ms = |ns: u64| ns as f64 / 1e6;
    println!(
        "store_fixed: {batches} batches of {manifests}x{PACKAGES}: commit thread CPU {:.1} ms in all, {:.2} ms per batch \
         (median {:.2}, p90 {:.2}, max {:.2}), {:.2} us per package; {:.0} bytes written per package",
        ms(total),
        ms(total) / batches as f64,
        ms(sorted[batches / 2]),
        ms(sorted[batches * 9 / 10]),
        ms(sorted[batches - 1]),
        total as f64 / 1e3 / (batches * packages) as f64,
        written as f64 / (batches * packages) as f64,
    );
}

/// Bytes this process has written (`wchar` of /proc/self/io), 0 where there is none.
fn bytes_written() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

criterion_group!(wall_time, wall, postgres);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(ThreadCpu { wall: WallTime });
    targets = cpu
}

fn main() {
    if let Ok(batches) = std::env::var("DUTYFLOW_BENCH_STORE_BATCHES") {
        let count = |name: &str, value: &str| -> usize {
            value
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .unwrap_or_else(|| panic!("{name} must be a count, not {value:?}"))
        };
        let manifests = std::env::var("DUTYFLOW_BENCH_STORE_MANIFESTS")
            .map(|m| count("DUTYFLOW_BENCH_STORE_MANIFESTS", &m))
            .unwrap_or(BATCH_SIZES[0]);
        fixed_sequence(count("DUTYFLOW_BENCH_STORE_BATCHES", &batches), manifests);
        return;
    }
    wall_time();
    cpu_time();
    Criterion::default().configure_from_args().final_summary();
}
