//! Schema migrations: versioned SQL files under `migrations/`, the same files for both
//! backends, each applied once and recorded in `schema_migrations`. A migration may have a step
//! in Rust after its SQL, in the same transaction, for what portable SQL cannot do (version 2
//! packs version 1's rows).

use super::backend::{args, lock_key, Backend, Tx};
use super::bulk::Insert;
use super::bulk::Pending;
use super::commit::{method_name, MANIFEST_MONTHS};
use super::packed::{Arrival, Packer};
use super::records::{AcceptedRecord, LineRecord};
use super::runs;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};

/// Which SQL engine a migration runs on: the only difference is the table option SQLite has and
/// PostgreSQL has not (`/*WITHOUT ROWID*/`, a comment to PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

type Step = fn(&mut Tx<'_>) -> Result<()>;

/// Migrations, in order: version, SQL, and the Rust step that follows the SQL.
const MIGRATIONS: &[(i64, &str, Option<Step>)] = &[
    (1, include_str!("../../migrations/0001_init.sql"), None),
    (
        2,
        include_str!("../../migrations/0002_packed_contributions.sql"),
        Some(pack_version_1_rows),
    ),
    (
        3,
        include_str!("../../migrations/0003_recent_tracking_counts.sql"),
        None,
    ),
    (
        4,
        include_str!("../../migrations/0004_tracking_runs.sql"),
        Some(tracking_numbers_into_runs),
    ),
    (5, include_str!("../../migrations/0005_headed_contributions.sql"), None),
];

/// Version 2's accepted tracking numbers (until version 4).
static TRACKING_NUMBERS: Insert = Insert::new(
    "tracking_numbers_recent (carrier, tracking_number, manifest_id, arrival_date)",
    4,
    "",
);

/// Applies pending migrations, one process at a time.
pub(super) fn migrate(conn: &mut dyn Backend, dialect: Dialect) -> Result<()> {
    let mut tx = Tx::begin(conn)?;
    tx.lock(&[lock_key("dutyflow:migrations")])?;
    tx.execute_script(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    )?;
    let current = schema_version(&mut *tx)?;
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > latest {
        bail!("the store is at schema version {current}, newer than this dutyflow ({latest}); upgrade dutyflow");
    }
    for &(version, sql, step) in MIGRATIONS {
        if version > current {
            let sql = match dialect {
                Dialect::Sqlite => sql.replace("/*WITHOUT ROWID*/", "WITHOUT ROWID"),
                Dialect::Postgres => sql.to_string(),
            };
            tx.execute_script(&sql)
                .with_context(|| format!("store migration {version} failed"))?;
            if let Some(step) = step {
                step(&mut tx).with_context(|| format!("store migration {version} failed"))?;
            }
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, CURRENT_TIMESTAMP)",
                args![version],
            )?;
        }
    }
    tx.commit()
}

/// The schema version of a store (the last migration applied).
pub(super) fn schema_version(conn: &mut dyn Backend) -> Result<i64> {
    Ok(conn
        .first("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[], |r| {
            r.int(0)
        })?
        .unwrap_or(0))
}

/// A package of a version 1 store, with its item lines.
struct V1Package {
    carrier: String,
    manifest_id: String,
    tracking_number: String,
    trip_number: String,
    port_of_arrival: String,
    arrival_date: String,
    month: String,
    accepted: AcceptedRecord,
}

/// Version 2: packs each manifest's `packages` and `item_lines` rows into its `contribution`,
/// fills `tracking_numbers_recent` and `manifest_months`, and drops the two tables. Holds the version
/// 1 rows in memory while it runs.
fn pack_version_1_rows(tx: &mut Tx<'_>) -> Result<()> {
    let mut packages = tx.rows(
        "SELECT carrier, manifest_id, tracking_number, trip_number, port_of_arrival, arrival_date, month, regime, method,
                value_cents, duty_cents, fees_cents, rates_version
         FROM packages ORDER BY carrier, manifest_id, arrival_date, tracking_number",
        &[],
        |r| {
            Ok(V1Package {
                carrier: r.text(0)?,
                manifest_id: r.text(1)?,
                tracking_number: r.text(2)?,
                trip_number: r.text(3)?,
                port_of_arrival: r.text(4)?,
                arrival_date: r.text(5)?,
                month: r.text(6)?,
                accepted: AcceptedRecord {
                    regime: r.text(7)?.into(),
                    method: method_name(&r.text(8)?),
                    value_cents: r.int(9)?,
                    duty_cents: r.int(10)?,
                    fees_cents: r.int(11)?,
                    rates_version: r.text(12)?.into(),
                    lines: Vec::new(),
                },
            })
        },
    )?;
    let mut by_key: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for (i, p) in packages.iter().enumerate() {
        by_key.insert((p.carrier.clone(), p.manifest_id.clone(), p.tracking_number.clone()), i);
    }
    let lines = tx.rows(
        "SELECT carrier, manifest_id, tracking_number, item, origin_country, COALESCE(hts, ''), value_cents, rate, duty_cents
         FROM item_lines ORDER BY carrier, manifest_id, tracking_number, item",
        &[],
        |r| {
            let key = (r.text(0)?, r.text(1)?, r.text(2)?);
            let hts = r.text(5)?;
            let line = LineRecord {
                item: u32::try_from(r.int(3)?)?,
                origin_country: r.text(4)?.into(),
                hts: (!hts.is_empty()).then(|| hts.into()),
                value_cents: r.int(6)?,
                rate: r.text(7)?.into(),
                duty_cents: r.int(8)?,
            };
            Ok((key, line))
        },
    )?;
    for (key, line) in lines {
        let i = by_key
            .get(&key)
            .with_context(|| format!("an item line of {key:?} has no package"))?;
        packages[*i].accepted.lines.push(line);
    }
    let mut contributions: BTreeMap<(&str, &str), (String, Packer)> = BTreeMap::new();
    let mut tracking = Pending::new(&TRACKING_NUMBERS);
    let mut months: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
    for p in &packages {
        let at = Arrival {
            month: &p.month,
            arrival_date: &p.arrival_date,
            trip_number: &p.trip_number,
            port_of_arrival: &p.port_of_arrival,
        };
        let (text, packer) = contributions.entry((&p.carrier, &p.manifest_id)).or_default();
        packer.push(text, &p.tracking_number, &at, &p.accepted)?;
        tracking.push(args![&p.carrier, &p.tracking_number, &p.manifest_id, &p.arrival_date]);
        months.insert((&p.carrier, &p.month, &p.manifest_id));
    }
    tracking.flush(&mut **tx)?;
    let mut manifest_months = Pending::new(&MANIFEST_MONTHS);
    for (carrier, month, id) in months {
        manifest_months.push(args![carrier, month, id]);
    }
    manifest_months.flush(&mut **tx)?;
    for ((carrier, id), (text, _)) in &contributions {
        tx.execute(
            "UPDATE manifests SET contribution = $3 WHERE carrier = $1 AND manifest_id = $2",
            args![*carrier, *id, text],
        )?;
    }
    tx.execute_script("DROP TABLE item_lines; DROP TABLE packages;")
}

/// Rows of version 3's tracking numbers read at a time by the version 4 step.
const MIGRATION_PAGE: usize = 65_536;

/// Version 4: each carrier's tracking numbers of version 3 (both tables; a number is in one of
/// the two) become one run of the carrier, then the tables go. Reads a page of rows at a time,
/// by tracking number; a page ends before the rows of its last number, which start the next.
fn tracking_numbers_into_runs(tx: &mut Tx<'_>) -> Result<()> {
    let carriers = tx.rows(
        "SELECT carrier FROM tracking_numbers UNION SELECT carrier FROM tracking_numbers_recent ORDER BY 1",
        &[],
        |r| r.text(0),
    )?;
    for carrier in &carriers {
        let mut run = runs::SortedRun::start(tx, carrier)?;
        // Tracking numbers are never empty: "" is before every one.
        let mut from = String::new();
        loop {
            let mut rows = tx.rows(
                "SELECT tracking_number, manifest_id, arrival_date FROM (
                   SELECT tracking_number, manifest_id, arrival_date FROM tracking_numbers WHERE carrier = $1
                   UNION ALL
                   SELECT tracking_number, manifest_id, arrival_date FROM tracking_numbers_recent WHERE carrier = $1
                 ) AS numbers
                 WHERE tracking_number >= $2 ORDER BY tracking_number LIMIT $3",
                args![carrier, &from, MIGRATION_PAGE as i64],
                |r| Ok((r.text(0)?, r.text(1)?, r.text(2)?)),
            )?;
            let last_page = rows.len() < MIGRATION_PAGE;
            if !last_page {
                // The last number's rows may go on past the page: they start the next one.
                let last = rows.last().map(|r| r.0.clone()).unwrap_or_default();
                rows.retain(|r| r.0 != last);
                if rows.is_empty() {
                    bail!("tracking number {last} of {carrier} is held by {MIGRATION_PAGE} manifests or more");
                }
                from = last;
            }
            // In key order, as lines order (by bytes, whatever the database's collation).
            rows.sort_unstable();
            for (tracking_number, manifest_id, arrival_date) in &rows {
                let entry = runs::Entry {
                    tracking_number,
                    manifest_id,
                    arrival_date,
                };
                run.push(tx, entry)?;
            }
            if last_page {
                break;
            }
        }
        // At the level of its size: a merge of it with small runs would hold up every merge of
        // their level while it goes a slice at a time.
        let level = runs::level_of(run.entries());
        run.finish(tx, level)?;
    }
    tx.execute_script(
        "DROP TABLE tracking_numbers; DROP TABLE tracking_numbers_recent; DROP TABLE tracking_numbers_recent_counts;",
    )
}
