//! The monthly accumulation store (contract §4), SQLite by default.
//!
//! Exactly once: [`Store::commit_batch`] applies a batch's manifests and moves the input
//! offsets it covers in one transaction. The offset move is a compare-and-set: a batch only
//! commits if the stored offset of each of its partitions is still where the batch started,
//! so a consumer that lost a partition in a rebalance can never commit over its new owner.
//!
//! The SQL is portable (SQLite and PostgreSQL): `INSERT … ON CONFLICT … DO UPDATE`, numbered
//! parameters, integer cents. Schema changes are versioned files under `migrations/`.

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Migrations, in order; each runs once, recorded in `schema_migrations`.
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/0001_init.sql"))];

/// One item line of an accepted package.
#[derive(Debug, Clone)]
pub struct LineRecord {
    pub item: u32,
    pub origin_country: String,
    pub hts: Option<String>,
    pub value_cents: i64,
    pub rate: String,
    pub duty_cents: i64,
}

/// What an accepted package adds to the totals.
#[derive(Debug, Clone)]
pub struct AcceptedRecord {
    pub regime: String,
    pub method: &'static str,
    pub value_cents: i64,
    pub duty_cents: i64,
    pub fees_cents: i64,
    pub rates_version: String,
    pub lines: Vec<LineRecord>,
}

#[derive(Debug, Clone)]
pub struct PackageRecord {
    pub index: u32,
    pub tracking_number: Option<String>,
    /// `Some` when accepted by the operators (the store may still reject it as a duplicate).
    pub accepted: Option<AcceptedRecord>,
    /// The primary error code when rejected.
    pub rejected_code: Option<&'static str>,
}

/// One manifest of a batch, as the store needs it (owned, detached from message buffers).
#[derive(Debug, Clone)]
pub struct ManifestRecord {
    pub carrier: String,
    pub manifest_id: String,
    pub trip_number: String,
    pub port_of_arrival: String,
    pub arrival_date: chrono::NaiveDate,
    pub month: String,
    /// A dead-letter replay: it replaces one package of the original manifest, not the whole.
    pub replay: bool,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub packages: Vec<PackageRecord>,
}

/// Offsets a batch covers on one partition: it starts where the previous batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRange {
    pub topic: String,
    pub partition: i32,
    /// The stored next offset this batch expects (-1: nothing stored yet).
    pub expected: i64,
    /// The next offset after this batch.
    pub next: i64,
}

/// A package the store rejected: its tracking number was accepted in another manifest of the
/// same carrier within 12 months.
#[derive(Debug, Clone)]
pub struct StoreRejection {
    pub manifest: usize,
    pub package: usize,
    pub other_manifest_id: String,
    pub other_arrival_date: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// Another consumer moved this partition's offset: the batch was not applied.
    Fenced {
        topic: String,
        partition: i32,
        stored: i64,
    },
}

/// One row of the monthly totals.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TotalsRow {
    pub carrier: String,
    pub month: String,
    pub regime: String,
    pub method: String,
    pub packages: i64,
    pub item_lines: i64,
    pub value_cents: i64,
    pub duty_cents: i64,
    pub fees_cents: i64,
    pub rejected_packages: i64,
}

#[derive(Default, Clone, Copy)]
struct Delta {
    packages: i64,
    item_lines: i64,
    value: i64,
    duty: i64,
    fees: i64,
}

pub struct Store {
    conn: Connection,
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
    /// Opens (creating if needed) the store at `url` and applies pending migrations.
    pub fn open(url: &StoreUrl) -> Result<Self> {
        match url {
            StoreUrl::Sqlite(path) => Self::open_sqlite(path),
            StoreUrl::Postgres(_) => bail!("the PostgreSQL store is not built yet; use sqlite://PATH"),
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
        let conn = Connection::open(path).with_context(|| format!("cannot open the store {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let mut store = Store { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
        )?;
        let current: i64 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| {
            r.get(0)
        })?;
        for &(version, sql) in MIGRATIONS {
            if version > current {
                tx.execute_batch(sql)
                    .with_context(|| format!("store migration {version} failed"))?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, datetime('now'))",
                    params![version],
                )?;
            }
        }
        let latest = MIGRATIONS.last().map_or(0, |m| m.0);
        if current > latest {
            bail!("the store is at schema version {current}, newer than this dutyflow ({latest}); upgrade dutyflow");
        }
        tx.commit()?;
        Ok(())
    }

    /// Stored next offsets of a consumer group (missing partitions: none stored).
    pub fn offsets(&self, group: &str, topic: &str) -> Result<HashMap<i32, i64>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT partition_id, next_offset FROM offsets WHERE consumer_group = $1 AND topic = $2")?;
        let rows = stmt.query_map(params![group, topic], |r| {
            Ok((r.get::<_, i32>(0)?, r.get::<_, i64>(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Applies a batch and moves its offsets, atomically. `publish` runs inside the transaction,
    /// after the store decided every package and before the commit: it must deliver the
    /// batch's outputs (an error rolls everything back, to be retried).
    pub fn commit_batch(
        &mut self,
        group: &str,
        ranges: &[PartitionRange],
        manifests: &mut [ManifestRecord],
        publish: impl FnOnce(&[ManifestRecord], &[StoreRejection]) -> Result<()>,
    ) -> Result<CommitOutcome> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for r in ranges {
            let stored: i64 = tx
                .prepare_cached(
                    "SELECT next_offset FROM offsets WHERE consumer_group = $1 AND topic = $2 AND partition_id = $3",
                )?
                .query_row(params![group, r.topic, r.partition], |row| row.get(0))
                .optional()?
                .unwrap_or(-1);
            if stored != r.expected {
                return Ok(CommitOutcome::Fenced {
                    topic: r.topic.clone(),
                    partition: r.partition,
                    stored,
                });
            }
        }
        let mut deltas: HashMap<(String, String, String, &'static str), Delta> = HashMap::new();
        let mut rejections = Vec::new();
        for (mi, m) in manifests.iter_mut().enumerate() {
            apply_manifest(&tx, mi, m, &mut deltas, &mut rejections)?;
        }
        for ((carrier, month, regime, method), d) in &deltas {
            if d.packages == 0 && d.value == 0 && d.duty == 0 && d.fees == 0 && d.item_lines == 0 {
                continue;
            }
            tx.prepare_cached(
                "INSERT INTO totals (carrier, month, regime, method, packages, item_lines, value_cents, duty_cents, fees_cents)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (carrier, month, regime, method) DO UPDATE SET
                   packages = totals.packages + excluded.packages,
                   item_lines = totals.item_lines + excluded.item_lines,
                   value_cents = totals.value_cents + excluded.value_cents,
                   duty_cents = totals.duty_cents + excluded.duty_cents,
                   fees_cents = totals.fees_cents + excluded.fees_cents",
            )?
            .execute(params![carrier, month, regime, method, d.packages, d.item_lines, d.value, d.duty, d.fees])?;
        }
        publish(manifests, &rejections)?;
        for r in ranges {
            tx.prepare_cached(
                "INSERT INTO offsets (consumer_group, topic, partition_id, next_offset) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (consumer_group, topic, partition_id) DO UPDATE SET next_offset = excluded.next_offset",
            )?
            .execute(params![group, r.topic, r.partition, r.next])?;
        }
        tx.commit().context("store commit failed")?;
        Ok(CommitOutcome::Committed)
    }

    /// Monthly totals, with the rejected-package count of each carrier and month.
    pub fn totals(&self, carrier: Option<&str>, month: Option<&str>) -> Result<Vec<TotalsRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT t.carrier, t.month, t.regime, t.method, t.packages, t.item_lines, t.value_cents, t.duty_cents, t.fees_cents,
                    (SELECT COUNT(*) FROM rejected_packages r WHERE r.carrier = t.carrier AND r.month = t.month)
             FROM totals t
             WHERE ($1 IS NULL OR t.carrier = $1) AND ($2 IS NULL OR t.month = $2) AND t.packages <> 0
             ORDER BY t.carrier, t.month, t.regime, t.method",
        )?;
        let rows = stmt.query_map(params![carrier, month], |r| {
            Ok(TotalsRow {
                carrier: r.get(0)?,
                month: r.get(1)?,
                regime: r.get(2)?,
                method: r.get(3)?,
                packages: r.get(4)?,
                item_lines: r.get(5)?,
                value_cents: r.get(6)?,
                duty_cents: r.get(7)?,
                fees_cents: r.get(8)?,
                rejected_packages: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Page 2 of the worksheet: one row per item line of a carrier's month.
    pub fn worksheet_lines(&self, carrier: &str, month: &str) -> Result<Vec<WorksheetLine>> {
        let mut stmt = self.conn.prepare(
            "SELECT p.carrier, p.trip_number, p.tracking_number, p.port_of_arrival, p.arrival_date, l.value_cents, l.origin_country, l.rate, l.duty_cents
             FROM packages p JOIN item_lines l
               ON l.carrier = p.carrier AND l.manifest_id = p.manifest_id AND l.tracking_number = p.tracking_number
             WHERE p.carrier = $1 AND p.month = $2
             ORDER BY p.arrival_date, p.trip_number, p.tracking_number, l.item",
        )?;
        let rows = stmt.query_map(params![carrier, month], |r| {
            Ok(WorksheetLine {
                carrier: r.get(0)?,
                trip_number: r.get(1)?,
                tracking_number: r.get(2)?,
                port_of_arrival: r.get(3)?,
                arrival_date: r.get(4)?,
                value_cents: r.get(5)?,
                origin_country: r.get(6)?,
                rate: r.get(7)?,
                duty_cents: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WorksheetLine {
    pub carrier: String,
    pub trip_number: String,
    pub tracking_number: String,
    pub port_of_arrival: String,
    pub arrival_date: String,
    pub value_cents: i64,
    pub origin_country: String,
    pub rate: String,
    pub duty_cents: i64,
}

/// Removes the stored contribution of packages matching `filter` (a whole manifest, or one
/// tracking number of it) from the totals and the tables.
fn remove_contribution(
    tx: &rusqlite::Transaction<'_>,
    carrier: &str,
    manifest_id: &str,
    tracking: Option<&str>,
    deltas: &mut HashMap<(String, String, String, &'static str), Delta>,
) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "SELECT month, regime, method, COUNT(*), SUM(item_lines), SUM(value_cents), SUM(duty_cents), SUM(fees_cents)
         FROM packages WHERE carrier = $1 AND manifest_id = $2 AND ($3 IS NULL OR tracking_number = $3)
         GROUP BY month, regime, method",
    )?;
    let rows = stmt.query_map(params![carrier, manifest_id, tracking], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, i64>(6)?,
            r.get::<_, i64>(7)?,
        ))
    })?;
    for row in rows {
        let (month, regime, method, n, lines, value, duty, fees) = row?;
        let method = method_name(&method);
        let d = deltas.entry((carrier.to_string(), month, regime, method)).or_default();
        d.packages -= n;
        d.item_lines -= lines;
        d.value -= value;
        d.duty -= duty;
        d.fees -= fees;
    }
    for sql in [
        "DELETE FROM item_lines WHERE carrier = $1 AND manifest_id = $2 AND ($3 IS NULL OR tracking_number = $3)",
        "DELETE FROM packages WHERE carrier = $1 AND manifest_id = $2 AND ($3 IS NULL OR tracking_number = $3)",
        "DELETE FROM rejected_packages WHERE carrier = $1 AND manifest_id = $2 AND ($3 IS NULL OR tracking_number = $3)",
    ] {
        tx.prepare_cached(sql)?.execute(params![carrier, manifest_id, tracking])?;
    }
    Ok(())
}

fn method_name(m: &str) -> &'static str {
    match m {
        "specific" => "specific",
        "exempt" => "exempt",
        _ => "ad_valorem",
    }
}

fn apply_manifest(
    tx: &rusqlite::Transaction<'_>,
    mi: usize,
    m: &mut ManifestRecord,
    deltas: &mut HashMap<(String, String, String, &'static str), Delta>,
    rejections: &mut Vec<StoreRejection>,
) -> Result<()> {
    let exists: bool = tx
        .prepare_cached("SELECT 1 FROM manifests WHERE carrier = $1 AND manifest_id = $2")?
        .query_row(params![m.carrier, m.manifest_id], |_| Ok(()))
        .optional()?
        .is_some();
    if exists {
        if m.replay {
            for p in &m.packages {
                if let Some(t) = &p.tracking_number {
                    remove_contribution(tx, &m.carrier, &m.manifest_id, Some(t), deltas)?;
                }
            }
        } else {
            remove_contribution(tx, &m.carrier, &m.manifest_id, None, deltas)?;
        }
    }
    tx.prepare_cached(
        "INSERT INTO manifests (carrier, manifest_id, month, packages, versions, source_topic, source_partition, source_offset)
         VALUES ($1, $2, $3, $4, 1, $5, $6, $7)
         ON CONFLICT (carrier, manifest_id) DO UPDATE SET
           month = excluded.month, versions = manifests.versions + 1,
           packages = CASE WHEN $8 THEN manifests.packages ELSE excluded.packages END,
           source_topic = excluded.source_topic, source_partition = excluded.source_partition, source_offset = excluded.source_offset",
    )?
    .execute(params![m.carrier, m.manifest_id, m.month, m.packages.len() as i64, m.source_topic, m.source_partition, m.source_offset, m.replay])?;

    let date = m.arrival_date;
    let lo = date
        .checked_sub_months(chrono::Months::new(12))
        .unwrap_or(date)
        .to_string();
    let hi = date
        .checked_add_months(chrono::Months::new(12))
        .unwrap_or(date)
        .to_string();
    let arrival = date.to_string();
    for (pi, p) in m.packages.iter_mut().enumerate() {
        if let (Some(acc), Some(tracking)) = (&p.accepted, &p.tracking_number) {
            let other: Option<(String, String)> = tx
                .prepare_cached(
                    "SELECT manifest_id, arrival_date FROM packages
                     WHERE carrier = $1 AND tracking_number = $2 AND manifest_id <> $3 AND arrival_date > $4 AND arrival_date < $5
                     LIMIT 1",
                )?
                .query_row(params![m.carrier, tracking, m.manifest_id, lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((other_manifest_id, other_arrival_date)) = other {
                rejections.push(StoreRejection {
                    manifest: mi,
                    package: pi,
                    other_manifest_id,
                    other_arrival_date,
                });
                p.accepted = None;
                p.rejected_code = Some("DUPLICATE_TRACKING_NUMBER");
            } else {
                tx.prepare_cached(
                    "INSERT INTO packages (carrier, manifest_id, tracking_number, trip_number, port_of_arrival, arrival_date, month, regime, method,
                                           item_lines, value_cents, duty_cents, fees_cents, rates_version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )?
                .execute(params![
                    m.carrier,
                    m.manifest_id,
                    tracking,
                    m.trip_number,
                    m.port_of_arrival,
                    arrival,
                    m.month,
                    acc.regime,
                    acc.method,
                    acc.lines.len() as i64,
                    acc.value_cents,
                    acc.duty_cents,
                    acc.fees_cents,
                    acc.rates_version
                ])?;
                let mut line_stmt = tx.prepare_cached(
                    "INSERT INTO item_lines (carrier, manifest_id, tracking_number, item, origin_country, hts, value_cents, rate, duty_cents)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )?;
                for l in &acc.lines {
                    line_stmt.execute(params![
                        m.carrier,
                        m.manifest_id,
                        tracking,
                        l.item,
                        l.origin_country,
                        l.hts,
                        l.value_cents,
                        l.rate,
                        l.duty_cents
                    ])?;
                }
                let d = deltas
                    .entry((m.carrier.clone(), m.month.clone(), acc.regime.clone(), acc.method))
                    .or_default();
                d.packages += 1;
                d.item_lines += acc.lines.len() as i64;
                d.value += acc.value_cents;
                d.duty += acc.duty_cents;
                d.fees += acc.fees_cents;
                continue;
            }
        }
        if let Some(code) = p.rejected_code {
            tx.prepare_cached(
                "INSERT INTO rejected_packages (carrier, manifest_id, package_index, tracking_number, month, code) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (carrier, manifest_id, package_index) DO UPDATE SET tracking_number = excluded.tracking_number, code = excluded.code",
            )?
            .execute(params![m.carrier, m.manifest_id, if m.replay { -1 - i64::from(p.index) } else { i64::from(p.index) }, p.tracking_number, m.month, code])?;
        }
    }
    Ok(())
}
