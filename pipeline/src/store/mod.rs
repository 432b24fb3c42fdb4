//! The monthly accumulation store (contract §4): SQLite by default, or PostgreSQL for several
//! service processes sharing one store.
//!
//! Exactly once: [`Store::commit_batch`] applies a batch's manifests and moves the input
//! offsets it covers in one transaction. The offset move is a compare-and-set: a batch only
//! commits if the stored offset of each of its partitions is still where the batch started,
//! so a consumer that lost a partition in a rebalance can never commit over its new owner.
//!
//! One logic, two backends. The schema, the queries and the commit are written once in
//! portable SQL (`INSERT … ON CONFLICT … DO UPDATE`, `RETURNING`, numbered parameters, integer
//! cents, `CAST(SUM(…) AS BIGINT)`) against the small [`backend::Backend`] interface. What
//! differs per backend is only how a write transaction starts and how it locks: SQLite has one
//! writer at a time (`BEGIN IMMEDIATE`); PostgreSQL locks the batch's offset rows and its
//! carriers (see `postgres.rs`). Schema changes are versioned files under `migrations/`, the
//! same files for both.

mod backend;
mod bulk;
mod commit;
mod filter;
mod migrate;
mod packed;
mod postgres;
mod records;
mod runs;
mod sqlite;

pub use records::{
    AcceptedRecord, CommitOutcome, LineRecord, ManifestRecord, PackageRecord, PartitionRange, StoreRejection,
    TotalsRow, WorksheetLine,
};
pub use runs::RunInfo;

use anyhow::{bail, Result};
use backend::{args, Backend};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The store: one connection to its database. Not shared between threads; open one per thread.
pub struct Store {
    /// Reads take `&self` but a PostgreSQL client needs `&mut` for every statement.
    conn: RefCell<Box<dyn Backend>>,
    /// See [`Store::set_tracking_fan_in`].
    fan_in: usize,
    /// See [`Store::set_tracking_merge_slice`].
    min_slice: usize,
    /// Which tracking numbers each carrier certainly does not have (`filter.rs`).
    filters: filter::Filters,
}

/// This process's in-memory duplicate filters, one per carrier it has committed (`filter.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DuplicateFilters {
    /// Memory they take, the tables being built included, and the most they may take.
    pub bytes: usize,
    pub max_bytes: usize,
    /// Carriers whose filter answers from one table.
    pub filtered: usize,
    /// Carriers whose filter is full and a larger table is being built beside it.
    pub growing: usize,
    /// Carriers whose filter did not fit: each of their numbers is searched in the store.
    pub store_only: usize,
}

/// Where the store lives, parsed from `store.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://PATH`: one file, the embedded default.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`: a libpq connection URL.
    Postgres(String),
}

impl StoreUrl {
    pub fn parse(url: &str) -> Result<Self> {
        if let Some(p) = url.strip_prefix("sqlite://") {
            if !p.is_empty() {
                return Ok(StoreUrl::Sqlite(PathBuf::from(p)));
            }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_string()));
        }
        bail!("store.url \"{url}\" is not supported; use sqlite://PATH or postgres://USER@HOST/DB")
    }
}

impl Store {
    /// Opens (creating if needed) the store at `url` and applies pending migrations. A
    /// PostgreSQL database must exist; its tables are created on first use.
    pub fn open(url: &StoreUrl) -> Result<Self> {
        match url {
            StoreUrl::Sqlite(path) => Self::open_sqlite(path),
            StoreUrl::Postgres(url) => {
                Self::with_backend(Box::new(postgres::Postgres::connect(url)?), migrate::Dialect::Postgres)
            }
        }
    }

    /// Opens a store that must already exist (for read-only verbs such as `totals`).
    pub fn open_existing(url: &StoreUrl) -> Result<Self> {
        if let StoreUrl::Sqlite(path) = url {
            if !path.exists() {
                bail!("no store at {}; run the service first or set store.url", path.display());
            }
        }
        Self::open(url)
    }

    /// Opens (creating if needed) the SQLite store at `path` and applies pending migrations.
    pub fn open_sqlite(path: &Path) -> Result<Self> {
        Self::with_backend(Box::new(sqlite::Sqlite::open(path)?), migrate::Dialect::Sqlite)
    }

    fn with_backend(mut conn: Box<dyn Backend>, dialect: migrate::Dialect) -> Result<Self> {
        migrate::migrate(conn.as_mut(), dialect)?;
        Ok(Store {
            conn: RefCell::new(conn),
            fan_in: runs::FAN_IN,
            min_slice: runs::MIN_SLICE,
            filters: filter::Filters::default(),
        })
    }

    /// The schema version of the store (the last migration applied).
    pub fn schema_version(&self) -> Result<i64> {
        migrate::schema_version(self.conn.borrow_mut().as_mut())
    }

    /// Stored next offsets of a consumer group (missing partitions: none stored).
    pub fn offsets(&self, group: &str, topic: &str) -> Result<HashMap<i32, i64>> {
        let rows = self.conn.borrow_mut().rows(
            "SELECT partition_id, next_offset FROM offsets WHERE consumer_group = $1 AND topic = $2",
            args![group, topic],
            |r| Ok((i32::try_from(r.int(0)?)?, r.int(1)?)),
        )?;
        Ok(rows.into_iter().collect())
    }

    /// Applies a batch and moves its offsets, atomically. `publish` runs inside the transaction,
    /// after the store decided every package and before the commit: it must deliver the
    /// batch's outputs (an error rolls everything back, to be retried).
    ///
    /// The store marks the packages it rejects as 12-month duplicates in `manifests`. Any
    /// outcome but `Committed` leaves the store and `manifests` as they were, so the batch may be
    /// retried as it is; on PostgreSQL that includes a lost connection, re-opened by the next call.
    pub fn commit_batch(
        &mut self,
        group: &str,
        ranges: &[PartitionRange],
        manifests: &mut [ManifestRecord],
        publish: impl FnOnce(&[ManifestRecord], &[StoreRejection]) -> Result<()>,
    ) -> Result<CommitOutcome> {
        self.commit_batch_with(group, ranges, manifests, publish, || Ok(()))
    }

    /// [`commit_batch`](Self::commit_batch) with delivery in two steps, so that the broker
    /// acknowledges the outputs while the store writes: `send` runs once every package is
    /// decided (it queues the outputs), `delivered` runs after the store's rows are written and
    /// before the offsets move and the transaction commits (it waits for the acknowledgements).
    /// An error from either rolls everything back.
    pub fn commit_batch_with(
        &mut self,
        group: &str,
        ranges: &[PartitionRange],
        manifests: &mut [ManifestRecord],
        send: impl FnOnce(&[ManifestRecord], &[StoreRejection]) -> Result<()>,
        delivered: impl FnOnce() -> Result<()>,
    ) -> Result<CommitOutcome> {
        commit::commit_batch(
            self.conn.get_mut().as_mut(),
            self.fan_in,
            self.min_slice,
            &mut self.filters,
            group,
            ranges,
            manifests,
            send,
            delivered,
        )
    }

    /// How many runs of tracking numbers of one level a carrier holds before a batch merges
    /// them (see `runs.rs`). Tests lower it to exercise merges; the default suits production.
    #[doc(hidden)]
    pub fn set_tracking_fan_in(&mut self, runs: usize) {
        self.fan_in = runs.max(2);
    }

    /// The smallest slice of a merge of tracking-number runs a batch writes, in entries (see
    /// `runs.rs`). Tests lower it to exercise merges over several batches.
    #[doc(hidden)]
    pub fn set_tracking_merge_slice(&mut self, entries: usize) {
        self.min_slice = entries.max(1);
    }

    /// What this process's duplicate filters hold (see `filter.rs`), for the metrics.
    pub fn duplicate_filters(&self) -> DuplicateFilters {
        self.filters.summary()
    }

    /// The smallest duplicate filter, in tracking numbers, and the slice of the scan that builds
    /// a full one again, in entries, whatever a batch adds (see `filter.rs`). Tests lower them to
    /// exercise filters that fill and grow over several batches.
    #[doc(hidden)]
    pub fn set_tracking_filter_sizes(&mut self, first_capacity: usize, min_scan_slice: usize) {
        self.filters.set_sizes(first_capacity, min_scan_slice);
    }

    /// A carrier's duplicate filter in this process: the tracking numbers it holds, how many it
    /// is built for, and whether a larger one is being built. For tests.
    #[doc(hidden)]
    pub fn tracking_filter(&self, carrier: &str) -> Option<(usize, usize, bool)> {
        self.filters.state(carrier)
    }

    /// A carrier's runs of tracking numbers, by level and age. For tests.
    #[doc(hidden)]
    pub fn tracking_runs(&self, carrier: &str) -> Result<Vec<RunInfo>> {
        let mut conn = self.conn.borrow_mut();
        let mut tx = backend::Tx::begin(conn.as_mut())?;
        runs::runs(&mut tx, carrier)
    }

    /// Monthly totals, with the rejected-package count of each carrier and month.
    pub fn totals(&self, carrier: Option<&str>, month: Option<&str>) -> Result<Vec<TotalsRow>> {
        self.conn.borrow_mut().rows(
            "SELECT t.carrier, t.month, t.regime, t.method, t.packages, t.item_lines, t.value_cents, t.duty_cents, t.fees_cents,
                    (SELECT COUNT(*) FROM rejected_packages r WHERE r.carrier = t.carrier AND r.month = t.month)
             FROM totals t
             WHERE (CAST($1 AS TEXT) IS NULL OR t.carrier = $1) AND (CAST($2 AS TEXT) IS NULL OR t.month = $2) AND t.packages <> 0
             ORDER BY t.carrier, t.month, t.regime, t.method",
            args![carrier, month],
            |r| {
                Ok(TotalsRow {
                    carrier: r.text(0)?,
                    month: r.text(1)?,
                    regime: r.text(2)?,
                    method: r.text(3)?,
                    packages: r.int(4)?,
                    item_lines: r.int(5)?,
                    value_cents: r.int(6)?,
                    duty_cents: r.int(7)?,
                    fees_cents: r.int(8)?,
                    rejected_packages: r.int(9)?,
                })
            },
        )
    }

    /// Page 2 of the worksheet: one row per item line of a carrier's month, by arrival date,
    /// trip, tracking number and item.
    pub fn worksheet_lines(&self, carrier: &str, month: &str) -> Result<Vec<WorksheetLine>> {
        let contributions = self.conn.borrow_mut().rows(
            "SELECT m.contribution FROM manifest_months mm
             JOIN manifests m ON m.carrier = mm.carrier AND m.manifest_id = mm.manifest_id
             WHERE mm.carrier = $1 AND mm.month = $2",
            args![carrier, month],
            |r| r.text(0),
        )?;
        let mut lines = Vec::new();
        for contribution in &contributions {
            for p in packed::packages(contribution) {
                let p = p?;
                if p.month != month {
                    continue;
                }
                for l in packed::lines(&p)? {
                    let row = WorksheetLine {
                        carrier: carrier.to_string(),
                        trip_number: p.trip_number.to_string(),
                        tracking_number: p.tracking_number.to_string(),
                        port_of_arrival: p.port_of_arrival.to_string(),
                        arrival_date: p.arrival_date.to_string(),
                        value_cents: l.value_cents,
                        origin_country: l.origin_country.to_string(),
                        rate: l.rate.to_string(),
                        duty_cents: l.duty_cents,
                    };
                    lines.push((l.item, row));
                }
            }
        }
        lines.sort_by(|(ia, a), (ib, b)| {
            (&a.arrival_date, &a.trip_number, &a.tracking_number, ia).cmp(&(
                &b.arrival_date,
                &b.trip_number,
                &b.tracking_number,
                ib,
            ))
        });
        Ok(lines.into_iter().map(|(_, row)| row).collect())
    }
}
