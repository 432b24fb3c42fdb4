//! The store's battery, run the same against SQLite and PostgreSQL: batch commits and totals,
//! offset fencing, amendments, 12-month duplicates, replays, rollback on a failed publish,
//! concurrent writers and concurrent migrations. PostgreSQL is a throwaway server per test
//! run (`scripts/pg-test-server.sh`), one database per test; the tests fail when its binaries
//! are missing. Last, the service end to end on PostgreSQL, whose totals must equal a SQLite
//! run's on the same input.

mod harness;

use dutyflow_pipeline::store::{
    AcceptedRecord, CommitOutcome, LineRecord, ManifestRecord, PackageRecord, PartitionRange, Store, StoreRejection,
    StoreUrl,
};
use harness::scratch::{self, ScratchDir};
use harness::{
    broker, config_dir, expected_from_file_mode, produce, service, service_cmd, summarize_totals, temp_dir, wait_for,
    Proc, BIN,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

const GROUP: &str = "dutyflow";
const TOPIC: &str = "manifests";

// ---------------------------------------------------------------------------------------------
// The stores under test

/// A fresh SQLite store file for one test, in `dir`.
fn sqlite_store(dir: &Path, name: &str) -> StoreUrl {
    StoreUrl::Sqlite(dir.join(format!("{name}.db")))
}

/// A fresh database for one test on this run's PostgreSQL server.
fn postgres_store(name: &str) -> StoreUrl {
    StoreUrl::Postgres(postgres_database(name))
}

/// The throwaway PostgreSQL server of this test run, stopped (and its directory removed) when
/// dropped; left running, in its kept directory, with `DUTYFLOW_KEEP_TEST_DIRS=1`.
struct PgServer {
    dir: ScratchDir,
    /// URL of its `dutyflow` database.
    url: String,
}

fn pg_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-test-server.sh")
}

impl PgServer {
    fn start() -> PgServer {
        let dir = scratch::dir("pg");
        let out = Command::new(pg_script())
            .arg("start")
            .arg(&*dir)
            .output()
            .expect("cannot run scripts/pg-test-server.sh");
        assert!(
            out.status.success(),
            "cannot start a PostgreSQL server for the store tests:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
        PgServer { dir, url }
    }

    /// Creates an empty database and returns its URL.
    fn database(&self, name: &str) -> String {
        let mut admin = ::postgres::Client::connect(&self.url, ::postgres::NoTls).unwrap();
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let (server, _) = self.url.rsplit_once('/').unwrap();
        format!("{server}/{name}")
    }
}

impl Drop for PgServer {
    /// The script stops the server and removes its directory (before `dir` is dropped).
    fn drop(&mut self) {
        if scratch::keep() {
            let (url, dir) = (&self.url, self.dir.display());
            eprintln!("PostgreSQL server {url} left running: scripts/pg-test-server.sh stop {dir}");
        } else {
            let _ = Command::new(pg_script()).arg("stop").arg(&*self.dir).status();
        }
    }
}

/// Started by the first test that needs it; shared by every test of the run.
static PG_SERVER: Mutex<Option<PgServer>> = Mutex::new(None);

/// A static is never dropped, so the server is dropped at process exit, however the tests
/// ended (the test harness exits through `exit`, which runs `atexit` handlers).
extern "C" fn stop_pg_server() {
    drop(PG_SERVER.lock().unwrap_or_else(PoisonError::into_inner).take());
}

fn postgres_database(name: &str) -> String {
    let mut server = PG_SERVER.lock().unwrap_or_else(PoisonError::into_inner);
    let server = match &mut *server {
        Some(s) => s,
        none => {
            let started = none.insert(PgServer::start());
            // SAFETY: registers a plain function with no arguments, as atexit requires.
            assert_eq!(unsafe { libc::atexit(stop_pg_server) }, 0);
            started
        }
    };
    server.database(name)
}

// ---------------------------------------------------------------------------------------------
// Records, built as the assess stage builds them (pipeline/src/batch.rs)

/// An accepted package with one item line per value (cents), at 10 % duty and no fees.
fn accepted(tracking: &str, values: &[i64]) -> PackageRecord {
    let lines: Vec<LineRecord> = values
        .iter()
        .zip(1..)
        .map(|(&value_cents, item)| LineRecord {
            item,
            origin_country: "CN".into(),
            hts: Some("6109100012".into()),
            value_cents,
            rate: "0.1".into(),
            duty_cents: value_cents / 10,
        })
        .collect();
    PackageRecord {
        index: 0,
        tracking_number: Some(tracking.into()),
        accepted: Some(AcceptedRecord {
            regime: "postal_entry_2026".into(),
            method: "ad_valorem",
            value_cents: lines.iter().map(|l| l.value_cents).sum(),
            duty_cents: lines.iter().map(|l| l.duty_cents).sum(),
            fees_cents: 0,
            rates_version: "test".into(),
            lines,
        }),
        rejected_code: None,
    }
}

fn rejected(tracking: &str, code: &'static str) -> PackageRecord {
    PackageRecord {
        index: 0,
        tracking_number: Some(tracking.into()),
        accepted: None,
        rejected_code: Some(code),
    }
}

/// A manifest arriving on `arrival` (YYYY-MM-DD); packages are numbered in order.
fn manifest(carrier: &str, id: &str, arrival: &str, packages: Vec<PackageRecord>) -> ManifestRecord {
    let arrival_date: chrono::NaiveDate = arrival.parse().unwrap();
    ManifestRecord {
        carrier: carrier.into(),
        manifest_id: id.into(),
        trip_number: format!("{carrier}400"),
        port_of_arrival: "4701".into(),
        arrival_date,
        month: arrival_date.format("%Y-%m").to_string(),
        replay: false,
        source_topic: TOPIC.into(),
        source_partition: 0,
        source_offset: 0,
        packages: packages
            .into_iter()
            .zip(0..)
            .map(|(p, index)| PackageRecord { index, ..p })
            .collect(),
    }
}

/// A manifest of one accepted package with one item line.
fn single(carrier: &str, id: &str, arrival: &str, tracking: &str, value_cents: i64) -> ManifestRecord {
    manifest(carrier, id, arrival, vec![accepted(tracking, &[value_cents])])
}

/// LH-1 of 2 March 2026: two accepted packages (three item lines, 35.00 of value, 3.50 of duty)
/// and a rejected one.
fn lh_1_mixed() -> ManifestRecord {
    manifest(
        "LH",
        "LH-1",
        "2026-03-02",
        vec![
            accepted("RR000000001DE", &[1000]),
            accepted("RR000000002DE", &[2000, 500]),
            rejected("RR000000003DE", "INVALID_HTS"),
        ],
    )
}

/// A dead-letter replay of package `index` of a manifest.
fn replay(carrier: &str, id: &str, arrival: &str, index: u32, package: PackageRecord) -> ManifestRecord {
    let mut m = manifest(carrier, id, arrival, vec![package]);
    m.replay = true;
    m.packages[0].index = index;
    m
}

fn range(partition: i32, expected: i64, next: i64) -> PartitionRange {
    PartitionRange {
        topic: TOPIC.into(),
        partition,
        expected,
        next,
    }
}

/// What the publish closure was given.
#[derive(Debug)]
struct Published {
    manifests: Vec<ManifestRecord>,
    rejections: Vec<StoreRejection>,
}

/// Commits one batch, which must not fail; returns the outcome and what was published.
fn commit(
    store: &mut Store,
    ranges: &[PartitionRange],
    mut manifests: Vec<ManifestRecord>,
) -> (CommitOutcome, Option<Published>) {
    let mut published = None;
    let outcome = store
        .commit_batch(GROUP, ranges, &mut manifests, |m, r| {
            published = Some(Published {
                manifests: m.to_vec(),
                rejections: r.to_vec(),
            });
            Ok(())
        })
        .unwrap();
    (outcome, published)
}

/// A totals row as (carrier month method, packages, item lines, value, duty, rejected).
type Summary = (String, i64, i64, i64, i64, i64);

fn row(key: &str, packages: i64, item_lines: i64, value: i64, duty: i64, rejected: i64) -> Summary {
    (key.to_string(), packages, item_lines, value, duty, rejected)
}

fn summary(store: &Store) -> Vec<Summary> {
    store
        .totals(None, None)
        .unwrap()
        .into_iter()
        .map(|t| {
            let key = format!("{} {} {}", t.carrier, t.month, t.method);
            (
                key,
                t.packages,
                t.item_lines,
                t.value_cents,
                t.duty_cents,
                t.rejected_packages,
            )
        })
        .collect()
}

/// Page 2 of the worksheet: tracking number, value and duty of each item line.
fn worksheet(store: &Store, carrier: &str, month: &str) -> Vec<(String, i64, i64)> {
    store
        .worksheet_lines(carrier, month)
        .unwrap()
        .into_iter()
        .map(|l| (l.tracking_number, l.value_cents, l.duty_cents))
        .collect()
}

fn offsets(store: &Store) -> BTreeMap<i32, i64> {
    store.offsets(GROUP, TOPIC).unwrap().into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// The battery

fn a_batch_adds_its_totals_and_moves_its_offsets(url: &StoreUrl) {
    let mut store = Store::open(url).unwrap();
    assert_eq!(store.schema_version().unwrap(), 5);
    let batch = vec![lh_1_mixed(), single("AF", "AF-1", "2026-04-10", "RR000000004DE", 700)];
    let (outcome, published) = commit(&mut store, &[range(0, -1, 2), range(1, -1, 1)], batch);
    assert_eq!(outcome, CommitOutcome::Committed);
    let published = published.expect("publish runs before the commit");
    assert_eq!(published.manifests.len(), 2);
    assert!(published.rejections.is_empty());
    let expected = vec![
        row("AF 2026-04 ad_valorem", 1, 1, 700, 70, 0),
        row("LH 2026-03 ad_valorem", 2, 3, 3500, 350, 1),
    ];
    assert_eq!(summary(&store), expected);
    assert_eq!(offsets(&store), BTreeMap::from([(0, 2), (1, 1)]));
    assert_eq!(store.offsets("another-group", TOPIC).unwrap(), HashMap::new());
    assert_eq!(store.totals(Some("AF"), None).unwrap().len(), 1);
    assert_eq!(store.totals(None, Some("2026-03")).unwrap()[0].carrier, "LH");
    let lines = worksheet(&store, "LH", "2026-03");
    assert_eq!(
        lines,
        [
            ("RR000000001DE".to_string(), 1000, 100),
            ("RR000000002DE".to_string(), 2000, 200),
            ("RR000000002DE".to_string(), 500, 50),
        ]
    );
    drop(store);
    // Reopened: the same store, its migrations not applied again.
    let store = Store::open_existing(url).unwrap();
    assert_eq!(store.schema_version().unwrap(), 5);
    assert_eq!(summary(&store), expected);
}

fn a_stale_expected_offset_is_fenced_and_changes_nothing(url: &StoreUrl) {
    let mut store = Store::open(url).unwrap();
    let first = single("LH", "LH-1", "2026-03-02", "RR000000001DE", 1000);
    assert_eq!(
        commit(&mut store, &[range(0, -1, 5)], vec![first]).0,
        CommitOutcome::Committed
    );
    let before = summary(&store);
    let other = || vec![single("LH", "LH-2", "2026-03-03", "RR000000002DE", 9000)];
    let fenced = |partition, stored| CommitOutcome::Fenced {
        topic: TOPIC.into(),
        partition,
        stored,
    };
    // Partition 0 moved to 5 under a batch that still expects nothing stored.
    let (outcome, published) = commit(&mut store, &[range(0, -1, 7)], other());
    assert_eq!(outcome, fenced(0, 5));
    assert!(published.is_none(), "a fenced batch is not published");
    // One stale partition fences the whole batch: the good one does not move either.
    let (outcome, _) = commit(&mut store, &[range(1, -1, 3), range(0, 3, 7)], other());
    assert_eq!(outcome, fenced(0, 5));
    // A batch expecting an offset on a partition nobody committed yet.
    assert_eq!(commit(&mut store, &[range(2, 4, 6)], other()).0, fenced(2, -1));
    assert_eq!(summary(&store), before);
    assert_eq!(offsets(&store), BTreeMap::from([(0, 5)]));
    // The owner's next batch commits.
    assert_eq!(
        commit(&mut store, &[range(0, 5, 6)], other()).0,
        CommitOutcome::Committed
    );
    assert_eq!(offsets(&store), BTreeMap::from([(0, 6)]));
    assert_eq!(summary(&store), [row("LH 2026-03 ad_valorem", 2, 2, 10_000, 1000, 0)]);
}

fn an_amendment_replaces_the_earlier_contribution(url: &StoreUrl) {
    let mut store = Store::open(url).unwrap();
    let v1 = lh_1_mixed();
    commit(&mut store, &[range(0, -1, 1)], vec![v1]);
    assert_eq!(summary(&store), [row("LH 2026-03 ad_valorem", 2, 3, 3500, 350, 1)]);
    // Version 2 keeps one package, at another value, and arrives a month later.
    let v2 = single("LH", "LH-1", "2026-04-05", "RR000000001DE", 4700);
    commit(&mut store, &[range(0, 1, 2)], vec![v2]);
    assert_eq!(summary(&store), [row("LH 2026-04 ad_valorem", 1, 1, 4700, 470, 0)]);
    assert!(store.worksheet_lines("LH", "2026-03").unwrap().is_empty());
    assert_eq!(store.worksheet_lines("LH", "2026-04").unwrap().len(), 1);
    // The package version 2 dropped is free again for another manifest.
    let (_, published) = commit(
        &mut store,
        &[range(0, 2, 3)],
        vec![single("LH", "LH-2", "2026-04-06", "RR000000002DE", 100)],
    );
    assert!(published.unwrap().rejections.is_empty());
    assert_eq!(summary(&store), [row("LH 2026-04 ad_valorem", 2, 2, 4800, 480, 0)]);
}

fn a_tracking_number_reused_within_12_months_is_a_duplicate(url: &StoreUrl) {
    let mut store = Store::open(url).unwrap();
    let reused = "RR000000001DE";
    commit(
        &mut store,
        &[range(0, -1, 1)],
        vec![single("LH", "LH-1", "2026-03-02", reused, 1000)],
    );
    // Another manifest of the carrier, six months later, in a batch of two manifests.
    let batch = vec![
        single("AF", "AF-1", "2026-09-01", reused, 1000),
        manifest(
            "LH",
            "LH-2",
            "2026-09-01",
            vec![accepted("RR000000002DE", &[300]), accepted(reused, &[1000])],
        ),
    ];
    let (_, published) = commit(&mut store, &[range(0, 1, 3)], batch);
    let published = published.unwrap();
    assert_eq!(published.rejections.len(), 1, "another carrier may use the number");
    let r = &published.rejections[0];
    assert_eq!((r.manifest, r.package), (1, 1));
    assert_eq!(
        (r.other_manifest_id.as_str(), r.other_arrival_date.as_str()),
        ("LH-1", "2026-03-02")
    );
    let p = &published.manifests[1].packages[1];
    assert!(p.accepted.is_none());
    assert_eq!(p.rejected_code, Some("DUPLICATE_TRACKING_NUMBER"));
    // One day short of 12 months is still a duplicate; 12 months to the day is not.
    let (_, published) = commit(
        &mut store,
        &[range(0, 3, 4)],
        vec![single("LH", "LH-3", "2027-03-01", reused, 1000)],
    );
    assert_eq!(published.unwrap().rejections.len(), 1);
    let (_, published) = commit(
        &mut store,
        &[range(0, 4, 5)],
        vec![single("LH", "LH-4", "2027-03-02", reused, 1000)],
    );
    assert!(published.unwrap().rejections.is_empty());
    assert_eq!(
        summary(&store),
        [
            row("AF 2026-09 ad_valorem", 1, 1, 1000, 100, 0),
            row("LH 2026-03 ad_valorem", 1, 1, 1000, 100, 0),
            row("LH 2026-09 ad_valorem", 1, 1, 300, 30, 1),
            row("LH 2027-03 ad_valorem", 1, 1, 1000, 100, 1),
        ]
    );
}

fn a_replay_replaces_one_package_of_its_manifest(url: &StoreUrl) {
    let mut store = Store::open(url).unwrap();
    let original = manifest(
        "LH",
        "LH-1",
        "2026-03-02",
        vec![
            accepted("RR000000001DE", &[1000]),
            rejected("RR000000002DE", "INVALID_HTS"),
        ],
    );
    commit(&mut store, &[range(0, -1, 1)], vec![original]);
    assert_eq!(summary(&store), [row("LH 2026-03 ad_valorem", 1, 1, 1000, 100, 1)]);
    // The dead letter of package 1, corrected and replayed; then the same replay redelivered.
    let fixed = || {
        vec![replay(
            "LH",
            "LH-1",
            "2026-03-02",
            1,
            accepted("RR000000002DE", &[3000]),
        )]
    };
    commit(&mut store, &[range(0, 1, 2)], fixed());
    let expected = [row("LH 2026-03 ad_valorem", 2, 2, 4000, 400, 0)];
    assert_eq!(summary(&store), expected);
    commit(&mut store, &[range(0, 2, 3)], fixed());
    assert_eq!(summary(&store), expected);
    let tracking: Vec<String> = store
        .worksheet_lines("LH", "2026-03")
        .unwrap()
        .into_iter()
        .map(|l| l.tracking_number)
        .collect();
    assert_eq!(tracking, ["RR000000001DE", "RR000000002DE"]);
}

fn a_failing_publish_rolls_everything_back(url: &StoreUrl) {
    let mut store = Store::open(url).unwrap();
    commit(
        &mut store,
        &[range(0, -1, 1)],
        vec![single("LH", "LH-1", "2026-03-02", "RR000000001DE", 1000)],
    );
    let before = summary(&store);
    let batch = || {
        vec![
            single("LH", "LH-1", "2026-03-02", "RR000000001DE", 5000),
            manifest(
                "LH",
                "LH-2",
                "2026-03-03",
                vec![accepted("RR000000002DE", &[300]), accepted("RR000000001DE", &[1000])],
            ),
        ]
    };
    let ranges = [range(0, 1, 2), range(1, -1, 1)];
    let mut manifests = batch();
    let failed = store.commit_batch(GROUP, &ranges, &mut manifests, |_, rejections| {
        assert_eq!(rejections.len(), 1);
        anyhow::bail!("the broker is down")
    });
    assert!(failed.unwrap_err().to_string().contains("the broker is down"));
    let duplicate = &manifests[1].packages[1];
    assert!(
        duplicate.accepted.is_some() && duplicate.rejected_code.is_none(),
        "the records come back as given"
    );
    assert_eq!(summary(&store), before);
    assert_eq!(offsets(&store), BTreeMap::from([(0, 1)]));
    // Sent, but not acknowledged: the store's rows are written by then, and go back too.
    let mut sent = false;
    let failed = store.commit_batch_with(
        GROUP,
        &ranges,
        &mut manifests,
        |_, _| {
            sent = true;
            Ok(())
        },
        || anyhow::bail!("delivery failed: timed out"),
    );
    assert!(failed.unwrap_err().to_string().contains("delivery failed"));
    assert!(sent);
    let duplicate = &manifests[1].packages[1];
    assert!(duplicate.accepted.is_some() && duplicate.rejected_code.is_none());
    assert_eq!(summary(&store), before);
    assert_eq!(offsets(&store), BTreeMap::from([(0, 1)]));
    assert_eq!(store.worksheet_lines("LH", "2026-03").unwrap().len(), 1);
    // The retry of the same batch commits, and decides the same.
    let (outcome, published) = commit(&mut store, &ranges, batch());
    assert_eq!(outcome, CommitOutcome::Committed);
    assert_eq!(published.unwrap().rejections.len(), 1);
    assert_eq!(summary(&store), [row("LH 2026-03 ad_valorem", 2, 2, 5300, 530, 1)]);
    assert_eq!(offsets(&store), BTreeMap::from([(0, 2), (1, 1)]));
}

/// Within one batch, manifests are decided in order, as if each were committed before the
/// next: the first to accept a tracking number wins, and an amendment earlier in the batch
/// frees the numbers it drops.
fn manifests_of_one_batch_are_decided_in_order(url: &StoreUrl) {
    let mut store = Store::open(url).unwrap();
    let batch = vec![
        manifest(
            "LH",
            "LH-1",
            "2026-03-02",
            vec![accepted("T1", &[1000]), accepted("T2", &[2000])],
        ),
        manifest(
            "LH",
            "LH-2",
            "2026-03-03",
            vec![accepted("T1", &[500]), accepted("T3", &[300])],
        ),
        // LH-1 amended: T1 dropped, so the next manifest may take it.
        single("LH", "LH-1", "2026-03-02", "T2", 2000),
        single("LH", "LH-3", "2026-03-04", "T1", 700),
        single("LH", "LH-4", "2026-03-05", "T3", 100),
        // Another carrier, the same number twice: the first of the batch wins.
        single("AF", "AF-2", "2026-03-06", "T9", 900),
        single("AF", "AF-1", "2026-03-01", "T9", 400),
    ];
    let (outcome, published) = commit(&mut store, &[range(0, -1, 7)], batch);
    assert_eq!(outcome, CommitOutcome::Committed);
    let rejections: Vec<(usize, usize, String, String)> = published
        .unwrap()
        .rejections
        .into_iter()
        .map(|r| (r.manifest, r.package, r.other_manifest_id, r.other_arrival_date))
        .collect();
    let rejection = |m, p, other: &str, date: &str| (m, p, other.to_string(), date.to_string());
    assert_eq!(
        rejections,
        [
            rejection(1, 0, "LH-1", "2026-03-02"),
            rejection(4, 0, "LH-2", "2026-03-03"),
            rejection(6, 0, "AF-2", "2026-03-06"),
        ]
    );
    assert_eq!(
        summary(&store),
        [
            row("AF 2026-03 ad_valorem", 1, 1, 900, 90, 1),
            row("LH 2026-03 ad_valorem", 3, 3, 3000, 300, 2),
        ]
    );
    let lines: Vec<(String, String)> = store
        .worksheet_lines("LH", "2026-03")
        .unwrap()
        .into_iter()
        .map(|l| (l.tracking_number, l.arrival_date))
        .collect();
    let line = |t: &str, d: &str| (t.to_string(), d.to_string());
    assert_eq!(
        lines,
        [
            line("T2", "2026-03-02"),
            line("T3", "2026-03-03"),
            line("T1", "2026-03-04")
        ]
    );
}

/// Batches larger than one statement may carry: more manifests, packages, item lines and
/// rejected packages than one multi-row INSERT takes, and more tracking numbers per carrier
/// than one duplicate-check query asks for, in chunks that end anywhere.
fn a_batch_larger_than_a_statement_is_written_in_chunks(url: &StoreUrl) {
    const MANIFESTS: usize = 2101;
    let mut store = Store::open(url).unwrap();
    let carrier = |i: usize| ["LH", "AF"][i % 2];
    // Two manifests in a hundred (one per carrier) repeat a tracking number of the manifest two
    // before (the same carrier): duplicates within the batch.
    let repeats = |i: usize| i % 100 >= 98;
    let first: Vec<ManifestRecord> = (0..MANIFESTS)
        .map(|i| {
            let second = if repeats(i) {
                format!("T{}a", i - 2)
            } else {
                format!("T{i}b")
            };
            let packages = vec![
                accepted(&format!("T{i}a"), &[100, 200]),
                accepted(&second, &[300, 400]),
                rejected(&format!("R{i}c"), "INVALID_HTS"),
                rejected(&format!("R{i}d"), "INVALID_HTS"),
            ];
            manifest(carrier(i), &format!("M{i}"), "2026-03-02", packages)
        })
        .collect();
    let duplicates = (0..MANIFESTS).filter(|&i| repeats(i)).count();
    let (outcome, published) = commit(&mut store, &[range(0, -1, 1)], first);
    assert_eq!(outcome, CommitOutcome::Committed);
    let rejections = published.unwrap().rejections;
    assert_eq!(rejections.len(), duplicates);
    assert!(rejections
        .iter()
        .all(|r| r.package == 1 && r.other_manifest_id == format!("M{}", r.manifest - 2)));
    let totals = |store: &Store| {
        let rows = store.totals(None, None).unwrap();
        let sum = |f: fn(&dutyflow_pipeline::store::TotalsRow) -> i64| rows.iter().map(f).sum::<i64>();
        (
            sum(|t| t.packages),
            sum(|t| t.item_lines),
            sum(|t| t.value_cents),
            sum(|t| t.rejected_packages),
        )
    };
    let accepted_packages = (2 * MANIFESTS - duplicates) as i64;
    let value = 1000 * MANIFESTS as i64 - 700 * duplicates as i64;
    let rejected_packages = (2 * MANIFESTS + duplicates) as i64;
    assert_eq!(
        totals(&store),
        (accepted_packages, 2 * accepted_packages, value, rejected_packages)
    );
    let lines = |store: &Store| {
        ["LH", "AF"]
            .iter()
            .map(|c| store.worksheet_lines(c, "2026-03").unwrap().len())
            .sum::<usize>()
    };
    assert_eq!(lines(&store), 2 * accepted_packages as usize);

    // Each second package again, in new manifests: all stored already, but for the numbers the
    // first batch rejected.
    let second: Vec<ManifestRecord> = (0..MANIFESTS)
        .map(|i| single(carrier(i), &format!("N{i}"), "2026-04-01", &format!("T{i}b"), 50))
        .collect();
    let (outcome, published) = commit(&mut store, &[range(0, 1, 2)], second);
    assert_eq!(outcome, CommitOutcome::Committed);
    let rejections = published.unwrap().rejections;
    assert_eq!(rejections.len(), MANIFESTS - duplicates);
    assert!(rejections.iter().all(|r| !repeats(r.manifest)
        && r.other_manifest_id == format!("M{}", r.manifest)
        && r.other_arrival_date == "2026-03-02"));
    assert_eq!(
        totals(&store),
        (
            accepted_packages + duplicates as i64,
            2 * accepted_packages + duplicates as i64,
            value + 50 * duplicates as i64,
            rejected_packages + (MANIFESTS - duplicates) as i64
        )
    );
    assert_eq!(offsets(&store), BTreeMap::from([(0, 2)]));
}

/// Two threads, each with its own connection to the store at `url`, run `round(store, thread,
/// round)` for rounds 0 to `rounds`, starting each round together; each thread's results, in
/// round order.
fn in_lockstep<T: Send + 'static>(url: &StoreUrl, rounds: i64, round: fn(&mut Store, usize, i64) -> T) -> [Vec<T>; 2] {
    Store::open(url).unwrap();
    let together = std::sync::Arc::new(std::sync::Barrier::new(2));
    let threads = [0, 1].map(|w| {
        let (url, together) = (url.clone(), together.clone());
        std::thread::spawn(move || {
            let mut store = Store::open(&url).unwrap();
            (0..rounds)
                .map(|b| {
                    together.wait();
                    round(&mut store, w, b)
                })
                .collect::<Vec<T>>()
        })
    });
    threads.map(|t| t.join().unwrap())
}

/// Two writers, each with its own connection and partition, commit batches at the same time
/// into the same totals rows. Each batch also amends a manifest of the writer's previous batch,
/// and both writers send one shared tracking number per round: exactly one of the two may win.
fn two_writers_on_disjoint_partitions_end_with_exact_totals(url: &StoreUrl) {
    const ROUNDS: i64 = 15;
    // Both writers start each round together, to race for the shared tracking number.
    in_lockstep(url, ROUNDS, |store, w, b| {
        let mut batch: Vec<ManifestRecord> = (0..4)
            .map(|i| {
                let carrier = ["LH", "AF"][i % 2];
                let mut packages = vec![
                    accepted(&format!("{carrier}-w{w}-b{b}-{i}-a"), &[1000]),
                    accepted(&format!("{carrier}-w{w}-b{b}-{i}-b"), &[250, 250]),
                ];
                if i == 1 {
                    packages.push(accepted(&format!("shared-b{b}"), &[300]));
                }
                manifest(carrier, &format!("{carrier}-w{w}-b{b}-{i}"), "2026-03-02", packages)
            })
            .collect();
        if b > 0 {
            let id = format!("LH-w{w}-b{}-0", b - 1);
            let package = accepted(&format!("LH-w{w}-b{}-0-a", b - 1), &[1000]);
            batch.push(manifest("LH", &id, "2026-03-02", vec![package]));
        }
        let ranges = [range(w as i32, if b == 0 { -1 } else { b }, b + 1)];
        let mut attempts = 0;
        loop {
            let outcome = store.commit_batch(GROUP, &ranges, &mut batch.clone(), |_, _| {
                std::thread::sleep(Duration::from_millis(5));
                Ok(())
            });
            match outcome {
                Ok(CommitOutcome::Committed) => break,
                Ok(fenced) => panic!("writer {w} fenced on its own partition: {fenced:?}"),
                // As the service does: a store error retries the batch.
                Err(e) => {
                    attempts += 1;
                    assert!(attempts < 20, "writer {w} keeps failing: {e:#}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    });
    let store = Store::open(url).unwrap();
    // Per writer and round: two manifests of each carrier with 2 packages (3 lines, 15.00 of
    // value); LH loses package b of an amended manifest after the first round; AF gains the
    // shared package once per round, and rejects it once.
    let (n, amended) = (2 * ROUNDS, 2 * (ROUNDS - 1));
    assert_eq!(
        summary(&store),
        [
            row(
                "AF 2026-03 ad_valorem",
                4 * n + ROUNDS,
                6 * n + ROUNDS,
                3000 * n + 300 * ROUNDS,
                300 * n + 30 * ROUNDS,
                ROUNDS
            ),
            row(
                "LH 2026-03 ad_valorem",
                4 * n - amended,
                6 * n - 2 * amended,
                3000 * n - 500 * amended,
                300 * n - 50 * amended,
                0
            ),
        ]
    );
    assert_eq!(offsets(&store), BTreeMap::from([(0, ROUNDS), (1, ROUNDS)]));
}

/// A partition's old and new owner (a rebalance in progress) commit batches from the same
/// offsets at the same moment, round after round, each holding its transaction open while it
/// publishes: in every round one commits and the other is fenced at the offsets the first moved
/// them to, and the totals count each round once.
fn two_owners_racing_for_one_partition_commit_each_batch_once(url: &StoreUrl) {
    const ROUNDS: i64 = 8;
    let [first, second] = in_lockstep(url, ROUNDS, |store, w, b| {
        let batch = vec![single(
            "LH",
            &format!("LH-{w}-{b}"),
            "2026-03-02",
            &format!("T{w}-{b}"),
            1000,
        )];
        let expected = if b == 0 { -1 } else { b };
        // Partitions 0 and 1 of the same input offsets, as both owners fetched them, in
        // opposite orders: the store must lock them in one order whatever it is given, or the
        // owners deadlock (an error here, which fails the test).
        let mut ranges = vec![range(0, expected, b + 1), range(1, expected, b + 1)];
        if w == 1 {
            ranges.reverse();
        }
        let outcome = store.commit_batch(GROUP, &ranges, &mut batch.clone(), |_, _| {
            std::thread::sleep(Duration::from_millis(20));
            Ok(())
        });
        outcome.unwrap_or_else(|e| panic!("owner {w}, round {b}: {e:#}"))
    });
    for (b, pair) in first.into_iter().zip(second).enumerate() {
        let fenced = CommitOutcome::Fenced {
            topic: TOPIC.into(),
            partition: 0,
            stored: b as i64 + 1,
        };
        assert!(
            pair == (CommitOutcome::Committed, fenced.clone()) || pair == (fenced, CommitOutcome::Committed),
            "round {b}: {pair:?}"
        );
    }
    let store = Store::open(url).unwrap();
    assert_eq!(
        summary(&store),
        [row(
            "LH 2026-03 ad_valorem",
            ROUNDS,
            ROUNDS,
            1000 * ROUNDS,
            100 * ROUNDS,
            0
        )]
    );
    assert_eq!(offsets(&store), BTreeMap::from([(0, ROUNDS), (1, ROUNDS)]));
}

/// Service processes starting together on a new store: one applies the migrations, the others
/// wait and find them applied.
fn concurrent_opens_migrate_once(url: &StoreUrl) {
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Store::open(&url).map(|s| s.schema_version().unwrap()))
        })
        .collect();
    for o in openers {
        assert_eq!(o.join().unwrap().unwrap(), 5);
    }
}

/// Writes `sql` (a store as an older dutyflow left it) into the database at `url`, then opens it,
/// migrating it.
/// Runs `sql` on the store's database directly, as another program (or an older dutyflow) would.
fn execute_directly(url: &StoreUrl, sql: &str) {
    match url {
        StoreUrl::Sqlite(path) => rusqlite::Connection::open(path).unwrap().execute_batch(sql).unwrap(),
        StoreUrl::Postgres(u) => ::postgres::Client::connect(u, ::postgres::NoTls)
            .unwrap()
            .batch_execute(sql)
            .unwrap(),
    }
}

/// A manifest's stored contribution, read directly.
fn stored_contribution(url: &StoreUrl, carrier: &str, id: &str) -> String {
    let sql = "SELECT contribution FROM manifests WHERE carrier = $1 AND manifest_id = $2";
    match url {
        StoreUrl::Sqlite(path) => rusqlite::Connection::open(path)
            .unwrap()
            .query_row(sql, [carrier, id], |r| r.get(0))
            .unwrap(),
        StoreUrl::Postgres(u) => ::postgres::Client::connect(u, ::postgres::NoTls)
            .unwrap()
            .query_one(sql, &[&carrier, &id])
            .unwrap()
            .get(0),
    }
}

fn open_written_by_older(url: &StoreUrl, sql: &str) -> Store {
    execute_directly(url, sql);
    Store::open(url).unwrap()
}

/// A store a newer dutyflow has migrated (here: a version past this one's) is refused, not
/// read in a format this dutyflow may not know (version 5's headed contributions, to a
/// dutyflow of version 4).
fn a_store_of_a_newer_schema_is_refused(url: &StoreUrl) {
    drop(Store::open(url).unwrap());
    execute_directly(url, "INSERT INTO schema_migrations VALUES (99, '2027-01-01 00:00:00')");
    let err = Store::open(url).err().expect("a store of schema 99 must be refused");
    assert!(format!("{err:#}").contains("newer than this dutyflow"), "{err:#}");
}

/// A store written by a dutyflow of schema version 1 (a row per package and per item line):
/// LH-1 of `lh_1_mixed` as that version stored it, and partition 0 at offset 1.
const VERSION_1_STORE: &str = "
    CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
    INSERT INTO schema_migrations VALUES (1, '2026-11-21 10:00:00');
    INSERT INTO offsets VALUES ('dutyflow', 'manifests', 0, 1);
    INSERT INTO manifests VALUES ('LH', 'LH-1', '2026-03', 3, 1, 'manifests', 0, 0);
    INSERT INTO packages VALUES
      ('LH', 'LH-1', 'RR000000001DE', 'LH400', '4701', '2026-03-02', '2026-03', 'postal_entry_2026', 'ad_valorem', 1, 1000, 100, 0, 'test'),
      ('LH', 'LH-1', 'RR000000002DE', 'LH400', '4701', '2026-03-02', '2026-03', 'postal_entry_2026', 'ad_valorem', 2, 2500, 250, 0, 'test');
    INSERT INTO item_lines VALUES
      ('LH', 'LH-1', 'RR000000001DE', 1, 'CN', '6109100012', 1000, '0.1', 100),
      ('LH', 'LH-1', 'RR000000002DE', 1, 'CN', NULL, 2000, '0.1', 200),
      ('LH', 'LH-1', 'RR000000002DE', 2, 'CN', '6109100012', 500, '0.1', 50);
    INSERT INTO rejected_packages VALUES ('LH', 'LH-1', 2, 'RR000000003DE', '2026-03', 'INVALID_HTS');
    INSERT INTO totals VALUES ('LH', '2026-03', 'postal_entry_2026', 'ad_valorem', 2, 3, 3500, 350, 0);
";

fn a_version_1_store_is_migrated(url: &StoreUrl) {
    let v1 = format!(
        "{}{VERSION_1_STORE}",
        include_str!("../pipeline/migrations/0001_init.sql")
    );
    let mut store = open_written_by_older(url, &v1);
    assert_eq!(store.schema_version().unwrap(), 5);
    let before = [row("LH 2026-03 ad_valorem", 2, 3, 3500, 350, 1)];
    assert_eq!(summary(&store), before);
    assert_eq!(offsets(&store), BTreeMap::from([(0, 1)]));
    // The packed packages' tracking numbers became one run of LH (schema version 4).
    assert_eq!(levels(&store), [(0, 2)]);
    let lines = worksheet(&store, "LH", "2026-03");
    let expected = [
        ("RR000000001DE", 1000, 100),
        ("RR000000002DE", 2000, 200),
        ("RR000000002DE", 500, 50),
    ];
    assert_eq!(lines, expected.map(|(t, v, d)| (t.to_string(), v, d)));
    // The migrated tracking numbers count for the 12-month check, and an amendment of the
    // migrated manifest takes its packed contribution out of the totals.
    let reuse = single("LH", "LH-2", "2026-03-09", "RR000000001DE", 4000);
    let amended = single("LH", "LH-1", "2026-03-02", "RR000000009DE", 700);
    let (outcome, published) = commit(&mut store, &[range(0, 1, 3)], vec![reuse, amended]);
    assert_eq!(outcome, CommitOutcome::Committed);
    let rejections = published.unwrap().rejections;
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].other_manifest_id, "LH-1");
    assert_eq!(summary(&store), [row("LH 2026-03 ad_valorem", 1, 1, 700, 70, 1)]);
}

/// A store of schema version 3: LH-1 with two accepted packages, one number in each tracking
/// table, and 70,000 numbers of LH-BULK (more than the migration reads at a time), one of them
/// also LH-1's, so that the migration's first page ends inside a number's rows.
fn version_3_store(url: &StoreUrl) -> String {
    let head = format!(
        "{}{}{}",
        include_str!("../pipeline/migrations/0001_init.sql"),
        include_str!("../pipeline/migrations/0002_packed_contributions.sql"),
        include_str!("../pipeline/migrations/0003_recent_tracking_counts.sql"),
    );
    let bulk = match url {
        StoreUrl::Sqlite(_) => {
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 69999)
             INSERT INTO tracking_numbers SELECT 'LH', printf('RR%09dDE', i), 'LH-BULK', '2025-06-01' FROM n;"
        }
        StoreUrl::Postgres(_) => {
            "INSERT INTO tracking_numbers SELECT 'LH', 'RR' || lpad(i::text, 9, '0') || 'DE', 'LH-BULK', '2025-06-01'
             FROM generate_series(0, 69999) AS i;"
        }
    };
    let line = |n: &str, value: i64| {
        format!("{n}\t2026-03\t2026-03-02\tLH400\t4701\tsection122_postal_2026\tad_valorem\ttest\t{value}\t{}\t0\t1,CN,,{value},0.1,{}\n", value / 10, value / 10)
    };
    let contribution = format!("{}{}", line("RR000065535DE", 1000), line("RR100000000DE", 2000));
    format!(
        "{head}
         CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
         INSERT INTO schema_migrations VALUES (1, '2026-11-21 10:00:00'), (2, '2026-11-22 10:00:00'), (3, '2026-11-22 12:00:00');
         INSERT INTO offsets VALUES ('dutyflow', 'manifests', 0, 1);
         INSERT INTO manifests VALUES ('LH', 'LH-1', '2026-03', 2, 1, 'manifests', 0, 0, '{contribution}');
         INSERT INTO manifest_months VALUES ('LH', '2026-03', 'LH-1');
         INSERT INTO totals VALUES ('LH', '2026-03', 'section122_postal_2026', 'ad_valorem', 2, 2, 3000, 300, 0);
         INSERT INTO tracking_numbers VALUES ('LH', 'RR000065535DE', 'LH-1', '2026-03-02');
         INSERT INTO tracking_numbers_recent VALUES ('LH', 'RR100000000DE', 'LH-1', '2026-03-02');
         INSERT INTO tracking_numbers_recent_counts VALUES ('LH', 1, NULL, NULL, 7);
         {bulk}"
    )
}

/// Schema 3's tracking numbers, in both tables, become one run per carrier, read a page at a
/// time; they still count for the 12-month check.
fn a_version_3_store_is_migrated(url: &StoreUrl) {
    let v3 = version_3_store(url);
    let mut store = open_written_by_older(url, &v3);
    assert_eq!(store.schema_version().unwrap(), 5);
    // One run, at the level of its size (8,192 × 8 entries or more: level 2), where it waits for
    // runs as large instead of holding up the merges of the batches' small runs.
    assert_eq!(levels(&store), [(2, 70_002)]);
    let runs = store.tracking_runs("LH").unwrap();
    // The run took the version after schema 3's.
    assert_eq!((runs[0].run_id, runs[0].newest_source), (8, 8));
    assert_eq!(summary(&store), [row("LH 2026-03 ad_valorem", 2, 2, 3000, 300, 0)]);
    // Both of LH-1's numbers count, the one at the page's end and the one from the small table.
    let mut partition = OnePartition { partition: 0, next: 1 };
    let rejections = partition.commit(
        &mut store,
        vec![
            single("LH", "LH-2", "2026-03-09", "RR000065535DE", 500),
            single("LH", "LH-3", "2026-03-09", "RR100000000DE", 500),
        ],
    );
    let others: Vec<&str> = rejections.iter().map(|r| r.other_manifest_id.as_str()).collect();
    assert_eq!(others, ["LH-1", "LH-1"]);
    // A replay of one of LH-1's packages: the contribution written in the flat format by
    // schema 3's code is rewritten in the headed one, the other package kept as it was.
    assert!(!stored_contribution(url, "LH", "LH-1").starts_with('='));
    let corrected = replay("LH", "LH-1", "2026-03-02", 1, accepted("RR100000000DE", &[2500]));
    assert!(partition.commit(&mut store, vec![corrected]).is_empty());
    assert!(stored_contribution(url, "LH", "LH-1").starts_with("=\t"));
    let headers = |url: &StoreUrl| {
        let text = stored_contribution(url, "LH", "LH-1");
        text.split_terminator('\n').filter(|l| l.starts_with("=\t")).count()
    };
    // LH-1's header, and the replayed package's (another regime).
    assert_eq!(headers(url), 2);
    let by_regime: Vec<(String, i64, i64, i64, i64)> = store
        .totals(None, None)
        .unwrap()
        .into_iter()
        .map(|t| (t.regime, t.packages, t.item_lines, t.value_cents, t.duty_cents))
        .collect();
    assert_eq!(
        by_regime,
        [
            ("postal_entry_2026".to_string(), 1, 1, 2500, 250),
            ("section122_postal_2026".to_string(), 1, 1, 1000, 100),
        ]
    );
    let expected = [("RR000065535DE", 1000, 100), ("RR100000000DE", 2500, 250)];
    assert_eq!(
        worksheet(&store, "LH", "2026-03"),
        expected.map(|(t, v, d)| (t.to_string(), v, d))
    );
    // Replayed again, under LH-1's header this time: the header line of the package it
    // replaces goes with it, so alternating replays do not pile up header lines.
    let mut under_lh_1 = accepted("RR100000000DE", &[2500]);
    if let Some(a) = under_lh_1.accepted.as_mut() {
        a.regime = "section122_postal_2026".into();
    }
    let again = replay("LH", "LH-1", "2026-03-02", 1, under_lh_1);
    assert!(partition.commit(&mut store, vec![again]).is_empty());
    assert_eq!(headers(url), 1);
    assert_eq!(summary(&store), [row("LH 2026-03 ad_valorem", 2, 2, 3500, 350, 2)]);
}

/// Tracking numbers merged from one run into another still count for the 12-month check; an
/// amendment takes its removed packages' numbers out of the check, though their entries stay in
/// the runs; an entry written twice is merged into one.
fn merged_tracking_numbers_count_and_go_with_an_amendment(url: &StoreUrl) {
    let mut store = Store::open(url).unwrap();
    store.set_tracking_fan_in(2);
    let number = |n: u32| format!("RR{n:09}DE");
    let lh_1 = |numbers: &[u32]| {
        let packages = numbers.iter().map(|&n| accepted(&number(n), &[1000])).collect();
        manifest("LH", "LH-1", "2026-03-02", packages)
    };
    let one = |id: &str, n: u32, value: i64| single("LH", id, "2026-03-09", &number(n), value);
    let mut partition = OnePartition::default();
    let mut batch = |store: &mut Store, manifests| {
        let rejections = partition.commit(store, manifests);
        rejections
            .into_iter()
            .map(|r| (r.manifest, r.other_manifest_id))
            .collect::<Vec<_>>()
    };
    // Two numbers of LH: a run of level 0.
    assert!(batch(&mut store, vec![lh_1(&[1, 2])]).is_empty());
    assert_eq!(levels(&store), [(0, 2)]);
    // A reuse of number 1, and number 3: the second run of level 0 merges with the first.
    let rejected = batch(&mut store, vec![one("LH-2", 1, 500), one("LH-3", 3, 500)]);
    assert_eq!(rejected, [(0, "LH-1".to_string())]);
    assert_eq!(levels(&store), [(1, 3)]);
    // LH-1 amended without number 1: its reuse is accepted, though the merged run still holds
    // LH-1's entry; number 3 still counts.
    let rejected = batch(&mut store, vec![lh_1(&[2]), one("LH-4", 1, 700), one("LH-5", 3, 700)]);
    assert_eq!(rejected, [(2, "LH-3".to_string())]);
    // LH-1 (one package), LH-3 and LH-4 accepted; the duplicates in LH-2 and LH-5 rejected.
    assert_eq!(summary(&store), [row("LH 2026-03 ad_valorem", 3, 3, 2200, 220, 2)]);
    // The amendment's run holds number 2 again (LH-1) and number 1 (LH-4).
    assert_eq!(levels(&store), [(0, 2), (1, 3)]);
    // Number 2 is LH-1's, held by two runs; number 8 is new: level 0 merges again.
    let rejected = batch(&mut store, vec![one("LH-6", 2, 500), one("LH-7", 8, 500)]);
    assert_eq!(rejected, [(0, "LH-1".to_string())]);
    assert_eq!(levels(&store), [(1, 3), (1, 3)]);
    // The next batch's run leaves level 0 as it is, and level 1 merges: LH-1's number 2, written
    // by both, is one entry; LH-1's stale number 1 stays.
    assert!(batch(&mut store, vec![one("LH-8", 9, 500)]).is_empty());
    assert_eq!(levels(&store), [(0, 1), (2, 5)]);
    // Every number counts, wherever it is, and number 1 is LH-4's.
    let rejected = batch(
        &mut store,
        vec![
            one("LH-9", 1, 500),
            one("LH-10", 2, 500),
            one("LH-11", 3, 500),
            one("LH-12", 8, 500),
            one("LH-13", 9, 500),
        ],
    );
    let others: Vec<&str> = rejected.iter().map(|(_, other)| other.as_str()).collect();
    assert_eq!(others, ["LH-4", "LH-1", "LH-3", "LH-7", "LH-8"]);
    assert_eq!(summary(&store), [row("LH 2026-03 ad_valorem", 5, 5, 3200, 320, 8)]);
}

/// Runs of many chunks: a merge streams through the chunks of each run in key order, and a
/// lookup finds a number wherever its chunk starts, in every run.
fn tracking_runs_of_many_chunks_merge_and_are_searched(url: &StoreUrl) {
    let mut store = Store::open(url).unwrap();
    store.set_tracking_fan_in(2);
    let number = |n: u32| format!("RR{n:09}DE");
    let packages = |numbers: &mut dyn Iterator<Item = u32>| numbers.map(|n| accepted(&number(n), &[1000])).collect();
    // Even numbers, then odd ones: 2 × 400, interleaved in key order, ~3 chunks a run.
    let even = manifest("LH", "LH-1", "2026-03-02", packages(&mut (0..400).map(|i| 2 * i)));
    assert_eq!(
        commit(&mut store, &[range(0, -1, 1)], vec![even]).0,
        CommitOutcome::Committed
    );
    let odd = manifest("LH", "LH-2", "2026-03-03", packages(&mut (0..400).map(|i| 2 * i + 1)));
    assert_eq!(
        commit(&mut store, &[range(0, 1, 2)], vec![odd]).0,
        CommitOutcome::Committed
    );
    assert_eq!(levels(&store), [(1, 800)]);
    // A third run, and reuses of every 7th number of both, and of numbers past both ends.
    let reuses: Vec<u32> = (0..800).step_by(7).chain([800, 801]).collect();
    let third = manifest("LH", "LH-3", "2026-03-04", packages(&mut reuses.iter().copied()));
    let (outcome, published) = commit(&mut store, &[range(0, 2, 3)], vec![third]);
    assert_eq!(outcome, CommitOutcome::Committed);
    let rejections = published.unwrap().rejections;
    let expected: Vec<(usize, &str)> = reuses
        .iter()
        .enumerate()
        .filter(|(_, &n)| n < 800)
        .map(|(i, &n)| (i, if n % 2 == 0 { "LH-1" } else { "LH-2" }))
        .collect();
    let got: Vec<(usize, &str)> = rejections
        .iter()
        .map(|r| (r.package, r.other_manifest_id.as_str()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(levels(&store), [(0, 2), (1, 800)]);
}

/// A merge larger than a batch's slice goes a slice per batch: the merged runs count until it
/// ends, a reuse is found wherever the merge stands, and it ends with one run holding them all.
fn a_merge_goes_a_slice_per_batch(url: &StoreUrl) {
    let mut store = Store::open(url).unwrap();
    store.set_tracking_fan_in(2);
    store.set_tracking_merge_slice(100);
    let number = |n: u32| format!("RR{n:09}DE");
    let mut partition = OnePartition::default();
    let mut batch = |store: &mut Store, manifests| {
        let rejections = partition.commit(store, manifests);
        rejections.into_iter().map(|r| r.other_manifest_id).collect::<Vec<_>>()
    };
    let one = |id: &str, day: u32, n: u32| single("LH", id, &format!("2026-03-{day:02}"), &number(n), 500);
    // 400 even numbers, then number 1: the two runs start a merge of 401 entries, of which this
    // batch writes 100 (numbers 0 to 196).
    let evens = (0..400).map(|i| accepted(&number(2 * i), &[1000])).collect();
    batch(&mut store, vec![manifest("LH", "LH-1", "2026-03-02", evens)]);
    assert!(batch(&mut store, vec![one("LH-2", 3, 1)]).is_empty());
    assert_eq!(levels(&store), [(0, 400), (0, 1)]);
    // Each batch reuses a number the merge has written and one it has not, and adds one: the
    // merge goes 100 entries on each time, and the batch's own run waits at level 0.
    for (day, written, ahead) in [(4, 10, 700), (5, 1, 798), (6, 300, 700)] {
        let others = batch(
            &mut store,
            vec![
                one(&format!("LH-{day}a"), day, written),
                one(&format!("LH-{day}b"), day, ahead),
                one(&format!("LH-{day}c"), day, 1000 + day),
            ],
        );
        let owner = |n: u32| if n & 1 == 0 { "LH-1" } else { "LH-2" };
        assert_eq!(others, [owner(written), owner(ahead)], "day {day}");
    }
    // 400 of the 401 written: still under way.
    assert_eq!(levels(&store), [(0, 400), (0, 1), (0, 1), (0, 1), (0, 1)]);
    // The next batch ends it: one run of the 401; then the level-0 runs merge in their turn.
    for day in 7..9 {
        assert!(batch(&mut store, vec![one(&format!("LH-{day}"), day, 1000 + day)]).is_empty());
    }
    let runs = levels(&store);
    assert!(runs.contains(&(1, 401)), "{runs:?}");
    assert_eq!(runs.iter().map(|r| r.1).sum::<i64>(), 406, "{runs:?}");
    // Every number counts once the merge is over.
    let rejected = batch(
        &mut store,
        vec![one("LH-20", 20, 0), one("LH-21", 20, 1), one("LH-22", 20, 1004)],
    );
    assert_eq!(rejected, ["LH-1", "LH-2", "LH-4c"]);
}

/// A manifest of LH arriving on `arrival`, of one accepted package per number `n` of `numbers`
/// (tracking number `RR{n:09}DE`).
fn lh_numbers(id: &str, arrival: &str, numbers: &[u32]) -> ManifestRecord {
    let packages = numbers
        .iter()
        .map(|&n| accepted(&format!("RR{n:09}DE"), &[1000]))
        .collect();
    manifest("LH", id, arrival, packages)
}

/// Asserts that the store rejected every package of a manifest reusing `numbers` (one package a
/// number, in order); returns the other manifest each rejection names, by package.
fn every_number_found(rejections: Vec<StoreRejection>, numbers: &[u32], what: &str) -> BTreeMap<usize, String> {
    let found: BTreeMap<usize, String> = rejections
        .into_iter()
        .map(|r| (r.package, r.other_manifest_id))
        .collect();
    let missed: Vec<u32> = (0..numbers.len())
        .filter(|i| !found.contains_key(i))
        .map(|i| numbers[i])
        .collect();
    assert!(
        missed.is_empty(),
        "{what}: {} of {} numbers not found, e.g. {:?}",
        missed.len(),
        numbers.len(),
        &missed[..missed.len().min(5)]
    );
    found
}

/// A carrier's duplicate filter, once full, is built again larger a slice per batch, by a scan of
/// the carrier's runs in key order while merges move numbers between runs: every number stays
/// found meanwhile, and each new filter holds every number once it replaces the old.
fn a_full_duplicate_filter_grows_a_slice_per_batch(url: &StoreUrl) {
    let mut store = Store::open(url).unwrap();
    store.set_tracking_fan_in(2);
    store.set_tracking_merge_slice(50);
    store.set_tracking_filter_sizes(64, 100);
    // Batch b holds manifest LH-b of numbers 3b, 3b + 100, 3b + 200, … (150 of them, so that
    // every run spans the key range and a scan of several slices meets merges under way), and
    // from the second batch on, a manifest reusing two numbers of earlier batches.
    let numbers_of = |b: u32| (0..150).map(move |i| 3 * b + 100 * i);
    let owner = |n: u32| {
        let b = (n % 100) / 3;
        assert_eq!(n % 100 % 3, 0);
        format!("LH-{b}")
    };
    let mut partition = OnePartition::default();
    let reuse_all = |partition: &mut OnePartition, store: &mut Store, batches: u32, id: &str| {
        let all: Vec<u32> = (0..batches).flat_map(numbers_of).collect();
        let rejections = partition.commit(store, vec![lh_numbers(id, "2026-03-04", &all)]);
        let found = every_number_found(rejections, &all, id);
        for (i, &n) in all.iter().enumerate() {
            assert_eq!(found[&i], owner(n), "{id}: number {n}");
        }
    };
    let (mut scanned_batches, mut swaps, mut capacities) = (0, 0, BTreeSet::new());
    let mut was_scanning = false;
    for b in 0..30u32 {
        let new: Vec<u32> = numbers_of(b).collect();
        let mut batch = vec![lh_numbers(&format!("LH-{b}"), "2026-03-02", &new)];
        let reused: Vec<u32> = if b == 0 {
            vec![]
        } else {
            vec![
                3 * (b / 2) + 100 * ((7 * b) % 150),
                3 * (b - 1) + 100 * ((11 * b) % 150),
            ]
        };
        if !reused.is_empty() {
            batch.push(lh_numbers(&format!("LH-r{b}"), "2026-03-03", &reused));
        }
        let others: Vec<String> = partition
            .commit(&mut store, batch)
            .into_iter()
            .map(|r| r.other_manifest_id)
            .collect();
        let owners: Vec<String> = reused.iter().map(|&n| owner(n)).collect();
        assert_eq!(others, owners, "batch {b}");
        let (_, capacity, scanning) = store.tracking_filter("LH").unwrap();
        scanned_batches += usize::from(scanning);
        capacities.insert(capacity);
        if was_scanning && !scanning {
            // The new filter has just replaced the old: it must hold every number.
            swaps += 1;
            reuse_all(&mut partition, &mut store, b + 1, &format!("LH-all{b}"));
        }
        was_scanning = scanning;
    }
    // It filled and grew several times, each time over several batches.
    assert!(capacities.len() >= 4 && swaps >= 3, "{capacities:?}, {swaps} swaps");
    assert!(scanned_batches >= 8, "{scanned_batches} batches with a scan under way");
}

/// Two processes commit numbers of one carrier while the filters each keeps of the carrier fill
/// and grow: each catches up with the other's runs, the table it is building takes those numbers
/// too, and every number either accepted stays a duplicate for both.
fn two_processes_growing_one_carrier_s_filters_both_see_its_duplicates(url: &StoreUrl) {
    let mut stores = [Store::open(url).unwrap(), Store::open(url).unwrap()];
    let mut partitions = [OnePartition::default(), OnePartition { partition: 1, next: 0 }];
    for store in &mut stores {
        store.set_tracking_fan_in(2);
        store.set_tracking_filter_sizes(64, 100);
    }
    // Manifest LH-m holds numbers m, m + 100, m + 200, … (80 of them).
    let numbers_of = |m: u32| (0..80).map(move |i| m + 100 * i);
    let owner = |n: u32| format!("LH-{}", n % 100);
    let (mut scanned, mut capacities) = (0, BTreeSet::new());
    for m in 0..40u32 {
        let p = (m % 2) as usize;
        let new: Vec<u32> = numbers_of(m).collect();
        let mut batch = vec![lh_numbers(&format!("LH-{m}"), "2026-03-02", &new)];
        // Two numbers of earlier manifests, the other process's among them.
        let reused: Vec<u32> = if m < 2 {
            vec![]
        } else {
            vec![(m - 1) + 100 * ((7 * m) % 80), (m / 2) + 100 * ((3 * m) % 80)]
        };
        if !reused.is_empty() {
            batch.push(lh_numbers(&format!("LH-r{m}"), "2026-03-04", &reused));
        }
        let others: Vec<String> = partitions[p]
            .commit(&mut stores[p], batch)
            .into_iter()
            .map(|r| r.other_manifest_id)
            .collect();
        assert_eq!(
            others,
            reused.iter().map(|&n| owner(n)).collect::<Vec<_>>(),
            "manifest {m}"
        );
        let (_, capacity, scanning) = stores[p].tracking_filter("LH").unwrap();
        scanned += usize::from(scanning);
        capacities.insert((p, capacity));
        if m % 10 == 9 {
            // Every number so far, reused through each process: all found.
            let all: Vec<u32> = (0..=m).flat_map(numbers_of).collect();
            for q in 0..2 {
                let id = format!("LH-all{m}-{q}");
                let rejections = partitions[q].commit(&mut stores[q], vec![lh_numbers(&id, "2026-03-04", &all)]);
                every_number_found(rejections, &all, &format!("process {q} after LH-{m}"));
            }
        }
    }
    // Both processes' filters grew, over several batches.
    for p in 0..2 {
        assert!(
            capacities.iter().filter(|(q, _)| *q == p).count() >= 3,
            "{capacities:?}"
        );
    }
    assert!(scanned >= 4, "{scanned} batches with a scan under way");
}

/// Two processes commit numbers of the same carrier: the in-memory filter each keeps of the
/// carrier's numbers goes stale when the other commits, and the duplicate check still finds
/// every number the other accepted.
fn two_processes_committing_one_carrier_both_see_its_duplicates(url: &StoreUrl) {
    let mut a = Store::open(url).unwrap();
    let mut b = Store::open(url).unwrap();
    let lh = |id: &str, day: u32, n: u32| single("LH", id, &format!("2026-03-{day:02}"), &format!("RR{n:09}DE"), 1000);
    let rejected = |store: &mut Store, ranges: &[PartitionRange], batch| {
        let (outcome, published) = commit(store, ranges, batch);
        assert_eq!(outcome, CommitOutcome::Committed);
        let rejections = published.unwrap().rejections;
        rejections.into_iter().map(|r| r.other_manifest_id).collect::<Vec<_>>()
    };
    // Each process accepts a number of LH, on a partition of its own.
    assert!(rejected(&mut a, &[range(0, -1, 1)], vec![lh("LH-1", 2, 1)]).is_empty());
    assert!(rejected(&mut b, &[range(1, -1, 1)], vec![lh("LH-2", 3, 2)]).is_empty());
    // Each reuses the other's number, then its own: all duplicates.
    assert_eq!(rejected(&mut a, &[range(0, 1, 2)], vec![lh("LH-3", 4, 2)]), ["LH-2"]);
    assert_eq!(rejected(&mut b, &[range(1, 1, 2)], vec![lh("LH-4", 5, 1)]), ["LH-1"]);
    assert_eq!(rejected(&mut a, &[range(0, 2, 3)], vec![lh("LH-5", 6, 1)]), ["LH-1"]);
    assert_eq!(rejected(&mut b, &[range(1, 2, 3)], vec![lh("LH-6", 7, 2)]), ["LH-2"]);
    // A new number accepted by one is a duplicate for the other.
    assert!(rejected(&mut a, &[range(0, 3, 4)], vec![lh("LH-7", 8, 7)]).is_empty());
    assert_eq!(rejected(&mut b, &[range(1, 3, 4)], vec![lh("LH-8", 9, 7)]), ["LH-7"]);
    assert_eq!(summary(&a), [row("LH 2026-03 ad_valorem", 3, 3, 3000, 300, 5)]);
}

/// Batches of one message per manifest on one partition (0 by default), committed one after
/// another.
#[derive(Default)]
struct OnePartition {
    partition: i32,
    next: i64,
}

impl OnePartition {
    /// Commits a batch (it must commit) and returns the store's rejections.
    fn commit(&mut self, store: &mut Store, manifests: Vec<ManifestRecord>) -> Vec<StoreRejection> {
        let n = manifests.len() as i64;
        let expected = if self.next == 0 { -1 } else { self.next };
        let (outcome, published) = commit(store, &[range(self.partition, expected, self.next + n)], manifests);
        assert_eq!(outcome, CommitOutcome::Committed);
        self.next += n;
        published.unwrap().rejections
    }
}

/// LH's runs of tracking numbers: level and entries, by level and age.
fn levels(store: &Store) -> Vec<(i64, i64)> {
    store
        .tracking_runs("LH")
        .unwrap()
        .into_iter()
        .map(|r| (r.level, r.entries))
        .collect()
}

/// The battery, once per backend: `sqlite::<case>` and `postgresql::<case>`.
macro_rules! battery {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $case() {
                let dir = super::temp_dir("store");
                super::$case(&super::sqlite_store(&dir, stringify!($case)));
            })*
        }
        mod postgresql {
            $(#[test] fn $case() { super::$case(&super::postgres_store(stringify!($case))); })*
        }
    };
}

battery!(
    a_batch_adds_its_totals_and_moves_its_offsets,
    a_stale_expected_offset_is_fenced_and_changes_nothing,
    an_amendment_replaces_the_earlier_contribution,
    a_tracking_number_reused_within_12_months_is_a_duplicate,
    a_replay_replaces_one_package_of_its_manifest,
    a_failing_publish_rolls_everything_back,
    manifests_of_one_batch_are_decided_in_order,
    a_batch_larger_than_a_statement_is_written_in_chunks,
    two_writers_on_disjoint_partitions_end_with_exact_totals,
    two_owners_racing_for_one_partition_commit_each_batch_once,
    concurrent_opens_migrate_once,
    a_version_1_store_is_migrated,
    a_version_3_store_is_migrated,
    a_store_of_a_newer_schema_is_refused,
    merged_tracking_numbers_count_and_go_with_an_amendment,
    tracking_runs_of_many_chunks_merge_and_are_searched,
    a_merge_goes_a_slice_per_batch,
    a_full_duplicate_filter_grows_a_slice_per_batch,
    two_processes_committing_one_carrier_both_see_its_duplicates,
    two_processes_growing_one_carrier_s_filters_both_see_its_duplicates,
);

/// The server ends the store's connection (a restart, a failover, an administrator) between
/// two batches: the next batch fails at most once, as a store error the service retries, and
/// then commits on a new connection.
#[test]
fn postgresql_a_lost_connection_is_reopened_between_batches() {
    let url = postgres_store("lost_connection");
    let mut store = Store::open(&url).unwrap();
    let batch = |b: i64| {
        let m = manifest(
            "LH",
            &format!("LH-{b}"),
            "2026-03-02",
            vec![accepted(&format!("T{b}"), &[1000])],
        );
        ([range(0, b - 1, b)], vec![m])
    };
    let (ranges, manifests) = batch(0);
    assert_eq!(commit(&mut store, &ranges, manifests).0, CommitOutcome::Committed);
    let StoreUrl::Postgres(database) = &url else {
        unreachable!()
    };
    let mut admin = ::postgres::Client::connect(database, ::postgres::NoTls).unwrap();
    let ended = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    assert_eq!(ended, 1, "the store's connection");
    let (ranges, mut manifests) = batch(1);
    let first = store.commit_batch(GROUP, &ranges, &mut manifests, |_, _| Ok(()));
    if first.is_err() {
        let (ranges, manifests) = batch(1);
        assert_eq!(commit(&mut store, &ranges, manifests).0, CommitOutcome::Committed);
    }
    assert_eq!(summary(&store), [row("LH 2026-03 ad_valorem", 2, 2, 2000, 200, 0)]);
    assert_eq!(offsets(&store), BTreeMap::from([(0, 1)]));
}

// ---------------------------------------------------------------------------------------------
// End to end

/// `dutyflow totals --format json` of the store at `store_url`, as printed.
fn totals_output(store_url: &str) -> Option<String> {
    let out = Command::new(BIN)
        .args(["totals", "--format", "json", "--config-dir"])
        .arg(config_dir())
        .env("DUTYFLOW_STORE_URL", store_url)
        .output()
        .unwrap();
    out.status.success().then(|| String::from_utf8(out.stdout).unwrap())
}

#[test]
fn the_service_on_postgresql_totals_the_examples_as_on_sqlite() {
    let dir = temp_dir("store-e2e");
    let (_broker, addr) = broker();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let all = dir.join("examples.jsonl");
    std::fs::write(
        &all,
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect::<String>(),
    )
    .unwrap();
    let expected = expected_from_file_mode(&all);
    assert!(!expected.is_empty());

    let db = dir.join("store.db");
    let sqlite_url = format!("sqlite://{}", db.display());
    let postgres_url = postgres_database("service_end_to_end");
    let _on_sqlite = service(&addr, &db, "store-e2e-sqlite");
    let mut on_postgres = service_cmd(&addr, &db, "store-e2e-postgres");
    let _on_postgres = Proc(on_postgres.env("DUTYFLOW_STORE_URL", &postgres_url).spawn().unwrap());
    for f in &files {
        produce(&addr, f);
    }
    let summary = |url: &str| {
        let rows: serde_json::Value = serde_json::from_str(&totals_output(url).unwrap_or_else(|| "[]".into())).unwrap();
        summarize_totals(rows.as_array().unwrap())
    };
    wait_for("the SQLite run's totals", Duration::from_secs(60), || {
        summary(&sqlite_url) == expected
    });
    wait_for("the PostgreSQL run's totals", Duration::from_secs(60), || {
        summary(&postgres_url) == expected
    });
    // Both complete: every field of every row, as printed, is the same.
    std::thread::sleep(Duration::from_secs(1));
    let on_postgres = totals_output(&postgres_url).unwrap();
    assert_eq!(on_postgres, totals_output(&sqlite_url).unwrap());
    let rows: serde_json::Value = serde_json::from_str(&on_postgres).unwrap();
    assert!(
        rows.as_array().unwrap().iter().all(|r| r["rejected_packages"] == 3),
        "{on_postgres}"
    );
}
