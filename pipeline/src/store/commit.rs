//! The exactly-once batch commit, written once for every backend.

use super::backend::{args, lock_key, Backend, Tx};
use super::bulk::{query_in, Insert, Pending};
use super::filter::{Check, Filters};
use super::packed::{self, Arrival, Packer};
use super::records::{AcceptedRecord, CommitOutcome, ManifestRecord, PackageRecord, PartitionRange, StoreRejection};
use super::runs::{self, Entry};
use ahash::{AHashMap, AHashSet};
use anyhow::{Context, Result};
use dutyflow_operators::small::SmallList;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A row of the totals: carrier, month, regime, method.
type TotalsKey = (String, String, String, &'static str);

/// A change to one row of the totals.
#[derive(Default, Clone, Copy)]
struct Delta {
    packages: i64,
    item_lines: i64,
    value: i64,
    duty: i64,
    fees: i64,
}

impl Delta {
    fn add(&mut self, sign: i64, d: Delta) {
        self.packages += sign * d.packages;
        self.item_lines += sign * d.item_lines;
        self.value += sign * d.value;
        self.duty += sign * d.duty;
        self.fees += sign * d.fees;
    }

    fn is_zero(&self) -> bool {
        self.packages == 0 && self.item_lines == 0 && self.value == 0 && self.duty == 0 && self.fees == 0
    }
}

/// Packages the store rejected as 12-month duplicates, and what the operators had decided for
/// each, so that a batch that does not commit goes back to the caller as it came.
#[derive(Default)]
struct Decisions {
    rejections: Vec<StoreRejection>,
    before: Vec<(Option<AcceptedRecord>, Option<&'static str>)>,
}

impl Decisions {
    fn reject(&mut self, rejection: StoreRejection, p: &mut PackageRecord) {
        self.before
            .push((p.accepted.take(), p.rejected_code.replace("DUPLICATE_TRACKING_NUMBER")));
        self.rejections.push(rejection);
    }

    fn undo(self, manifests: &mut [ManifestRecord]) {
        for (r, (accepted, code)) in self.rejections.iter().zip(self.before) {
            let p = &mut manifests[r.manifest].packages[r.package];
            p.accepted = accepted;
            p.rejected_code = code;
        }
    }
}

/// See [`Store::commit_batch`](super::Store::commit_batch).
#[allow(clippy::too_many_arguments)]
pub(super) fn commit_batch(
    conn: &mut dyn Backend,
    fan_in: usize,
    min_slice: usize,
    filters: &mut Filters,
    group: &str,
    ranges: &[PartitionRange],
    manifests: &mut [ManifestRecord],
    send: impl FnOnce(&[ManifestRecord], &[StoreRejection]) -> Result<()>,
    delivered: impl FnOnce() -> Result<()>,
) -> Result<CommitOutcome> {
    let mut decisions = Decisions::default();
    let outcome = (|| -> Result<CommitOutcome> {
        let mut tx = Tx::begin(conn)?;
        if let Some(fenced) = claim_partitions(&mut tx, group, ranges)? {
            return Ok(fenced);
        }
        tx.lock(&carrier_locks(manifests))?;
        let arrivals: Vec<String> = manifests.iter().map(|m| m.arrival_date.to_string()).collect();
        let planned = read_versions(&mut tx, manifests)?;
        let plan = plan_batch(&mut tx, filters, &planned, manifests, &arrivals)?;
        for rejection in plan.duplicates {
            let p = &mut manifests[rejection.manifest].packages[rejection.package];
            decisions.reject(rejection, p);
        }
        // Every package is decided: the outputs go out while the store writes.
        send(manifests, &decisions.rejections)?;
        let Changes { deltas, added } = write_manifests(&mut tx, manifests, &arrivals, plan.held)?;
        let mut totals = Pending::new(&TOTALS);
        for ((carrier, month, regime, method), d) in deltas.iter().filter(|(_, d)| !d.is_zero()) {
            totals.push(args![
                carrier,
                month,
                regime,
                *method,
                d.packages,
                d.item_lines,
                d.value,
                d.duty,
                d.fees
            ]);
        }
        totals.flush(&mut *tx)?;
        // Each carrier's accepted numbers as a run, merges a slice on, and its version after.
        let mut after: BTreeMap<&str, i64> = BTreeMap::new();
        for (carrier, entries) in added {
            after.insert(carrier, runs::add(&mut tx, carrier, entries, fan_in, min_slice)?);
        }
        delivered()?;
        for r in ranges {
            tx.execute(
                "UPDATE offsets SET next_offset = $4 WHERE consumer_group = $1 AND topic = $2 AND partition_id = $3",
                args![group, &r.topic, r.partition, r.next],
            )?;
        }
        tx.commit().context("store commit failed")?;
        for (carrier, &planned) in &planned {
            let version = after.get(carrier.as_str()).copied().unwrap_or(planned);
            let added = manifests
                .iter()
                .filter(|m| m.carrier == *carrier)
                .flat_map(|m| &m.packages)
                .filter(|p| p.accepted.is_some())
                .filter_map(|p| p.tracking_number.as_deref());
            filters.committed(carrier, planned, version, added);
        }
        Ok(CommitOutcome::Committed)
    })();
    // Any outcome but `Committed` gives the packages back as they came.
    if !matches!(outcome, Ok(CommitOutcome::Committed)) {
        decisions.undo(manifests);
    }
    outcome
}

/// Each carrier's `numbers_version` (see `filter.rs` and `runs.rs`), read under the batch's carrier locks;
/// 0 for a carrier without a row.
fn read_versions(tx: &mut Tx<'_>, manifests: &[ManifestRecord]) -> Result<BTreeMap<String, i64>> {
    let mut versions: BTreeMap<String, i64> = manifests.iter().map(|m| (m.carrier.clone(), 0)).collect();
    let carriers: Vec<&str> = versions.keys().map(String::as_str).collect();
    let mut read = Vec::new();
    query_in(
        &mut **tx,
        "SELECT carrier, numbers_version FROM tracking_versions WHERE carrier IN ($keys)",
        &[],
        &carriers,
        &mut |r| {
            read.push((r.text(0)?, r.int(1)?));
            Ok(())
        },
    )?;
    versions.extend(read);
    Ok(versions)
}

/// Offset rows of the batch's partitions: an upsert that changes nothing. It holds each row's
/// lock to the end of the transaction, also for a partition never committed (the row it inserts,
/// at -1, goes with a rollback; a commit always moves it to `next`). Several rows per statement,
/// and no `RETURNING`: SQLite collects returned rows in a temporary B-tree it opens and sets up
/// for each statement, which cost the commit thread ~5% at half rate with one statement per
/// partition (BENCHMARKS.md §4, session 10). On PostgreSQL a batch's N partitions take two round
/// trips instead of N.
static OFFSET_CLAIMS: Insert = Insert::new(
    "offsets (consumer_group, topic, partition_id, next_offset)",
    4,
    "ON CONFLICT (consumer_group, topic, partition_id) DO UPDATE SET next_offset = offsets.next_offset",
);

/// The compare of the offsets' compare-and-set: locks each partition's offset row, in topic and
/// partition order, then checks that each still holds the offset the batch starts from.
fn claim_partitions(tx: &mut Tx<'_>, group: &str, ranges: &[PartitionRange]) -> Result<Option<CommitOutcome>> {
    let mut order: Vec<&PartitionRange> = ranges.iter().collect();
    order.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    // The rows go in that order, statement after statement, so two processes sharing a
    // PostgreSQL store always lock them in the same order. A row goes once: PostgreSQL refuses
    // an upsert that would change one row twice.
    let mut rows: Vec<(&str, i32)> = order.iter().map(|r| (r.topic.as_str(), r.partition)).collect();
    rows.dedup();
    let mut claims = Pending::new(&OFFSET_CLAIMS);
    for &(topic, partition) in &rows {
        claims.push(args![group, topic, partition, -1i64]);
    }
    claims.flush(&mut **tx)?;
    let mut topics: Vec<&str> = rows.iter().map(|&(topic, _)| topic).collect();
    topics.dedup();
    // Read under those locks, a query per topic (a batch nearly always has one; an `IN` list
    // would cost SQLite a temporary B-tree again). PostgreSQL runs the store's transactions at
    // READ COMMITTED, so each read sees a row as the last transaction to commit it left it.
    let mut stored: HashMap<(&str, i64), i64> = HashMap::new();
    for topic in topics {
        tx.query(
            "SELECT partition_id, next_offset FROM offsets WHERE consumer_group = $1 AND topic = $2",
            args![group, topic],
            &mut |row| {
                stored.insert((topic, row.int(0)?), row.int(1)?);
                Ok(())
            },
        )?;
    }
    for r in order {
        let stored = *stored
            .get(&(r.topic.as_str(), i64::from(r.partition)))
            .context("the offset claim left no row")?;
        if stored != r.expected {
            return Ok(Some(CommitOutcome::Fenced {
                topic: r.topic.clone(),
                partition: r.partition,
                stored,
            }));
        }
    }
    Ok(None)
}

/// One lock per carrier of the batch, in key order: every row a batch touches besides its
/// offsets belongs to one of its carriers.
fn carrier_locks(manifests: &[ManifestRecord]) -> Vec<i64> {
    let mut keys: Vec<i64> = manifests
        .iter()
        .map(|m| lock_key(&format!("dutyflow:carrier:{}", m.carrier)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

pub(super) fn method_name(m: &str) -> &'static str {
    match m {
        "specific" => "specific",
        "exempt" => "exempt",
        _ => "ad_valorem",
    }
}

/// New rows of the totals: one statement per chunk, each row a distinct key.
static TOTALS: Insert = Insert::new(
    "totals (carrier, month, regime, method, packages, item_lines, value_cents, duty_cents, fees_cents)",
    9,
    "ON CONFLICT (carrier, month, regime, method) DO UPDATE SET
        packages = totals.packages + excluded.packages,
        item_lines = totals.item_lines + excluded.item_lines,
        value_cents = totals.value_cents + excluded.value_cents,
        duty_cents = totals.duty_cents + excluded.duty_cents,
        fees_cents = totals.fees_cents + excluded.fees_cents",
);

/// Manifests the store did not hold before the batch (a stored one is updated on its own, see
/// [`write_manifests`]).
static NEW_MANIFESTS: Insert = Insert::new(
    "manifests (carrier, manifest_id, month, packages, versions, source_topic, source_partition, source_offset, contribution)",
    9,
    "",
);

pub(super) static MANIFEST_MONTHS: Insert = Insert::new(
    "manifest_months (carrier, month, manifest_id)",
    3,
    "ON CONFLICT (carrier, month, manifest_id) DO NOTHING",
);

/// A replayed package may be rejected again under the index it had.
static REJECTED_PACKAGES: Insert = Insert::new(
    "rejected_packages (carrier, manifest_id, package_index, tracking_number, month, code)",
    6,
    "ON CONFLICT (carrier, manifest_id, package_index) DO UPDATE SET
        tracking_number = excluded.tracking_number, code = excluded.code",
);

/// Rejected packages waiting for their multi-row INSERT. Within one flush every row has its own
/// key: a manifest's packages have distinct indexes, and a manifest that comes back in the batch
/// flushes what waits before it removes its earlier rows.
struct NewRows<'a> {
    rejected: Pending<'a>,
}

impl NewRows<'_> {
    fn flush(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        self.rejected.flush(&mut **tx)
    }
}

/// What the batch decided before writing anything.
struct Plan {
    /// The batch's manifests the store held before the batch, by carrier and manifest id.
    held: HashMap<(String, String), HeldManifest>,
    /// The accepted packages whose tracking number another manifest of the carrier accepted
    /// within 12 months, in batch order.
    duplicates: Vec<StoreRejection>,
}

/// The window of the 12-month duplicate check around an arrival date, exclusive: dates as the
/// store holds them (`YYYY-MM-DD`, which order as text as they do as dates).
fn duplicate_window(date: chrono::NaiveDate) -> (String, String) {
    let months = chrono::Months::new(12);
    let lo = date.checked_sub_months(months).unwrap_or(date);
    let hi = date.checked_add_months(months).unwrap_or(date);
    (lo.to_string(), hi.to_string())
}

/// Decides, for the whole batch at once, which manifests the store holds and which accepted
/// packages are 12-month duplicates, as if the manifests were written one after another: a
/// tracking number accepted earlier in the batch counts (the first accepted wins), a
/// contribution that an amendment or a replay removes earlier in the batch no longer does.
///
/// It reads the store in a few queries per carrier, under the carrier locks: what it reads
/// cannot change before the commit, except by this batch, which it follows in memory.
fn plan_batch(
    tx: &mut Tx<'_>,
    filters: &mut Filters,
    versions: &BTreeMap<String, i64>,
    manifests: &[ManifestRecord],
    arrivals: &[String],
) -> Result<Plan> {
    let held = read_held(tx, filters, versions, manifests)?;
    let mut stored: AHashSet<(&str, &str)> = held.manifests.keys().map(|(c, id)| (c.as_str(), id.as_str())).collect();
    // Accepted packages by carrier and tracking number: (manifest id, arrival date). Nearly
    // every number has one, held in place: no allocation per package.
    let packages = manifests.iter().map(|m| m.packages.len()).sum::<usize>();
    let mut accepted: AHashMap<(&str, &str), SmallList<(&str, &str), 1>> =
        AHashMap::with_capacity(packages + held.packages.len());
    for p in &held.packages {
        let key = (p.carrier.as_str(), p.tracking_number.as_str());
        accepted.entry(key).or_default().push((&p.manifest_id, &p.arrival_date));
    }
    let mut duplicates = Vec::new();
    for (mi, (m, arrival)) in manifests.iter().zip(arrivals).enumerate() {
        let carrier = m.carrier.as_str();
        let is_stored = !stored.insert((carrier, &m.manifest_id));
        if is_stored {
            // What `remove_contribution` will delete.
            let not_this_manifest = |v: &mut SmallList<(&str, &str), 1>| v.retain(|(id, _)| *id != m.manifest_id);
            if m.replay {
                for t in m.packages.iter().filter_map(|p| p.tracking_number.as_deref()) {
                    accepted.get_mut(&(carrier, t)).map(not_this_manifest);
                }
            } else {
                accepted
                    .iter_mut()
                    .filter(|((c, _), _)| *c == carrier)
                    .for_each(|(_, v)| not_this_manifest(v));
            }
        }
        let (lo, hi) = duplicate_window(m.arrival_date);
        for (pi, p) in m.packages.iter().enumerate() {
            let (Some(_), Some(tracking)) = (&p.accepted, &p.tracking_number) else {
                continue;
            };
            let earlier = accepted.entry((carrier, tracking)).or_default();
            let other = earlier
                .iter()
                .find(|&&(id, date)| id != m.manifest_id && date > lo.as_str() && date < hi.as_str());
            match other {
                Some(&(other_manifest_id, other_arrival_date)) => duplicates.push(StoreRejection {
                    manifest: mi,
                    package: pi,
                    other_manifest_id: other_manifest_id.to_string(),
                    other_arrival_date: other_arrival_date.to_string(),
                }),
                None => earlier.push((&m.manifest_id, arrival)),
            }
        }
    }
    Ok(Plan {
        held: held.manifests,
        duplicates,
    })
}

/// What the store holds of the batch's carriers that the plan depends on.
#[derive(Default)]
struct Held {
    /// The batch's manifests the store holds, by carrier and manifest id.
    manifests: HashMap<(String, String), HeldManifest>,
    /// Accepted packages with a tracking number of the batch, by arrival date. Whatever their
    /// date: the plan applies each manifest's window. (With the window in the query, a generic
    /// plan of PostgreSQL's scans the carrier's packages by date and filters the numbers.)
    packages: Vec<HeldPackage>,
}

/// A stored manifest's row, as an amendment or a replay of it needs it.
struct HeldManifest {
    packages: i64,
    contribution: String,
}

struct HeldPackage {
    carrier: String,
    tracking_number: String,
    manifest_id: String,
    arrival_date: String,
}

/// The batch's keys of one carrier.
#[derive(Default)]
struct CarrierKeys<'a> {
    manifest_ids: BTreeSet<&'a str>,
    /// Sorted and without repeats once gathered.
    tracking_numbers: Vec<&'a str>,
}

/// Reads what the store holds of the batch's manifests and of its accepted tracking numbers:
/// of the numbers, only those a carrier's filter may hold (see `filter.rs`); a carrier without a
/// filter gets one built here, from the store, under its lock, and a filter behind the store
/// catches up. Of the entries the runs hold, only those whose manifest still holds the package
/// count (see `runs.rs`: an amendment leaves the entries of the packages it removes).
fn read_held(
    tx: &mut Tx<'_>,
    filters: &mut Filters,
    versions: &BTreeMap<String, i64>,
    manifests: &[ManifestRecord],
) -> Result<Held> {
    let mut carriers: BTreeMap<&str, CarrierKeys<'_>> = BTreeMap::new();
    for m in manifests {
        let keys = carriers.entry(&m.carrier).or_default();
        keys.manifest_ids.insert(&m.manifest_id);
        let accepted = m.packages.iter().filter(|p| p.accepted.is_some());
        keys.tracking_numbers
            .extend(accepted.filter_map(|p| p.tracking_number.as_deref()));
    }
    for keys in carriers.values_mut() {
        runs::sort_by_text(&mut keys.tracking_numbers, |t| t);
        keys.tracking_numbers.dedup();
    }
    let mut held = Held::default();
    for (carrier, keys) in &carriers {
        let ids: Vec<&str> = keys.manifest_ids.iter().copied().collect();
        query_in(
            &mut **tx,
            "SELECT manifest_id, packages, contribution FROM manifests WHERE carrier = $1 AND manifest_id IN ($keys)",
            args![*carrier],
            &ids,
            &mut |r| {
                let manifest = HeldManifest {
                    packages: r.int(1)?,
                    contribution: r.text(2)?,
                };
                held.manifests.insert((carrier.to_string(), r.text(0)?), manifest);
                Ok(())
            },
        )?;
        let version = versions[*carrier];
        match filters.check(carrier, version) {
            Check::Filter | Check::Store { rebuild: false } => {}
            Check::Store { rebuild: true } => rebuild_filter(tx, filters, carrier, version)?,
            Check::CatchUp { since } => {
                // A catch-up adds again what merged runs hold: past half the filter, a rebuild
                // reads less (and leaves the filter less full).
                let newer = runs::count_since(tx, carrier, since)?;
                if newer as usize > filters.keys(carrier) / 2 {
                    rebuild_filter(tx, filters, carrier, version)?;
                } else {
                    filters.catch_up(carrier, version, |add| runs::numbers(tx, carrier, since, add))?;
                }
            }
        }
        if let Some((since, scan)) = filters.scan_due(carrier, version) {
            let entries = filters.scan_slice_entries(keys.tracking_numbers.len());
            let swapped = filters.scan_slice(carrier, |add| {
                runs::scan_numbers(tx, carrier, since, &scan, entries, add)
            })?;
            if swapped {
                filters.set_keys(carrier, runs::count_since(tx, carrier, -1)? as usize);
            }
        }
        let tracking = filters.maybe_held(carrier, version, keys.tracking_numbers.iter().copied());
        // The entries found, by manifest: number and arrival date (an entry held by two runs
        // comes twice).
        let mut found: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
        runs::lookup(tx, carrier, &tracking, &mut |e| {
            found
                .entry(e.manifest_id.to_string())
                .or_default()
                .insert((e.tracking_number.to_string(), e.arrival_date.to_string()));
        })?;
        if found.is_empty() {
            continue;
        }
        // An entry counts while its manifest still holds the package, with that arrival date.
        let ids: Vec<&str> = found.keys().map(String::as_str).collect();
        query_in(
            &mut **tx,
            "SELECT manifest_id, contribution FROM manifests WHERE carrier = $1 AND manifest_id IN ($keys)",
            args![*carrier],
            &ids,
            &mut |r| {
                let manifest_id = r.text(0)?;
                let Some(entries) = found.get(&manifest_id) else {
                    return Ok(());
                };
                for p in packed::packages(&r.text(1)?) {
                    let p = p?;
                    let counts = entries
                        .iter()
                        .any(|(t, date)| t == p.tracking_number && date == p.arrival_date);
                    if counts {
                        held.packages.push(HeldPackage {
                            carrier: carrier.to_string(),
                            tracking_number: p.tracking_number.to_string(),
                            manifest_id: manifest_id.clone(),
                            arrival_date: p.arrival_date.to_string(),
                        });
                    }
                }
                Ok(())
            },
        )?;
    }
    // The earliest other manifest is the one a duplicate's dead letter names.
    held.packages
        .sort_by(|a, b| (&a.arrival_date, &a.manifest_id).cmp(&(&b.arrival_date, &b.manifest_id)));
    Ok(held)
}

/// Builds `carrier`'s filter from every run of the carrier.
fn rebuild_filter(tx: &mut Tx<'_>, filters: &mut Filters, carrier: &str, version: i64) -> Result<()> {
    let started = std::time::Instant::now();
    let count = runs::count_since(tx, carrier, -1)?;
    filters.rebuild(carrier, version, count as usize, |add| {
        runs::numbers(tx, carrier, -1, add)
    })?;
    tracing::debug!(
        carrier,
        numbers = count,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "duplicate filter built from the store"
    );
    Ok(())
}

/// A manifest the batch writes: its row as the batch leaves it.
struct Written<'b> {
    /// The store held it before the batch: its row is updated, not inserted.
    held: bool,
    /// Its latest version in the batch.
    latest: &'b ManifestRecord,
    packages: i64,
    /// Versions the batch adds.
    versions: i64,
    contribution: String,
    /// Appends to `contribution`.
    packer: Packer,
}

/// What a batch's writes change besides its rows.
struct Changes<'b> {
    /// The change to the totals.
    deltas: BTreeMap<TotalsKey, Delta>,
    /// Each carrier's accepted tracking numbers, for its new run (`runs.rs`).
    added: BTreeMap<&'b str, Vec<Entry<'b>>>,
}

/// Writes the batch as planned, in batch order: replaces the earlier contribution of a manifest
/// seen before (all of it, or for a dead-letter replay the replayed packages only), and records
/// the manifests with their accepted packages, the accepted tracking numbers and the rejected
/// packages.
fn write_manifests<'b>(
    tx: &mut Tx<'_>,
    manifests: &'b [ManifestRecord],
    arrivals: &'b [String],
    mut held: HashMap<(String, String), HeldManifest>,
) -> Result<Changes<'b>> {
    let mut deltas = BTreeMap::new();
    let mut added_numbers: BTreeMap<&str, Vec<Entry<'_>>> = BTreeMap::new();
    let mut rows = NewRows {
        rejected: Pending::new(&REJECTED_PACKAGES),
    };
    // In first-seen order, so that the statements are the same from one run to the next.
    let mut written: Vec<Written<'_>> = Vec::with_capacity(manifests.len());
    let mut index: HashMap<(&str, &str), usize> = HashMap::with_capacity(manifests.len());
    let mut months: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
    for (m, arrival) in manifests.iter().zip(arrivals) {
        let key = (m.carrier.as_str(), m.manifest_id.as_str());
        let seen = match index.get(&key) {
            Some(&i) => Some(i),
            None => {
                let stored = held.remove(&(m.carrier.clone(), m.manifest_id.clone()));
                index.insert(key, written.len());
                let is_held = stored.is_some();
                let (packages, mut contribution) = stored.map_or((0, String::new()), |h| (h.packages, h.contribution));
                let packer = Packer::resume(&mut contribution)?;
                written.push(Written {
                    held: is_held,
                    latest: m,
                    packages,
                    versions: 0,
                    contribution,
                    packer,
                });
                written.last().filter(|w| w.held).map(|_| written.len() - 1)
            }
        };
        let w = match seen {
            Some(i) => {
                // The removal reads and deletes what earlier manifests of the batch wrote.
                rows.flush(tx)?;
                let w = &mut written[i];
                remove_contribution(tx, m, w, &mut deltas)?;
                w
            }
            None => written.last_mut().expect("just pushed"),
        };
        w.latest = m;
        w.versions += 1;
        if !(m.replay && seen.is_some()) {
            w.packages = m.packages.len() as i64;
        }
        let at = Arrival {
            month: &m.month,
            arrival_date: arrival,
            trip_number: &m.trip_number,
            port_of_arrival: &m.port_of_arrival,
        };
        // What the manifest adds to the totals, by regime and method (a manifest has one or
        // a few): summed here, added to the batch's totals once per manifest.
        let mut added: SmallList<((&str, &'static str), Delta), 2> = SmallList::new();
        let mut accepted = 0;
        // A package line is ~100 bytes: one allocation for the manifest's, not a doubling run.
        w.contribution.reserve(m.packages.len() * 128);
        for p in &m.packages {
            if let (Some(acc), Some(tracking)) = (&p.accepted, &p.tracking_number) {
                w.packer.push(&mut w.contribution, tracking, &at, acc)?;
                added_numbers.entry(&m.carrier).or_default().push(Entry {
                    tracking_number: tracking,
                    manifest_id: &m.manifest_id,
                    arrival_date: arrival,
                });
                accepted += 1;
                let package = Delta {
                    packages: 1,
                    item_lines: acc.lines.len() as i64,
                    value: acc.value_cents,
                    duty: acc.duty_cents,
                    fees: acc.fees_cents,
                };
                let key = (acc.regime.as_str(), acc.method);
                match added.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, d)) => d.add(1, package),
                    None => added.push((key, package)),
                }
            } else if let Some(code) = p.rejected_code {
                let index = if m.replay {
                    -1 - i64::from(p.index)
                } else {
                    i64::from(p.index)
                };
                rows.rejected.push(args![
                    &m.carrier,
                    &m.manifest_id,
                    index,
                    &p.tracking_number,
                    &m.month,
                    code
                ]);
            }
        }
        if accepted > 0 {
            months.insert((&m.carrier, &m.month, &m.manifest_id));
        }
        for &((regime, method), d) in added.iter() {
            let key = (m.carrier.clone(), m.month.clone(), regime.to_string(), method);
            deltas.entry(key).or_default().add(1, d);
        }
    }
    rows.flush(tx)?;
    let mut new_manifests = Pending::new(&NEW_MANIFESTS);
    for w in &written {
        let m = w.latest;
        // The UPDATE numbers its parameters in NEW_MANIFESTS' column order.
        let row = args![
            &m.carrier,
            &m.manifest_id,
            &m.month,
            w.packages,
            w.versions,
            &m.source_topic,
            m.source_partition,
            m.source_offset,
            &w.contribution
        ];
        if w.held {
            tx.execute(
                "UPDATE manifests SET month = $3, packages = $4, versions = versions + $5, source_topic = $6,
                   source_partition = $7, source_offset = $8, contribution = $9
                 WHERE carrier = $1 AND manifest_id = $2",
                row,
            )?;
        } else {
            new_manifests.push(row);
        }
    }
    new_manifests.flush(&mut **tx)?;
    let mut manifest_months = Pending::new(&MANIFEST_MONTHS);
    for (carrier, month, id) in months {
        manifest_months.push(args![carrier, month, id]);
    }
    manifest_months.flush(&mut **tx)?;
    Ok(Changes {
        deltas,
        added: added_numbers,
    })
}

/// Removes what a manifest seen before contributes, before its new version `m` is written: all
/// of it, or for a dead-letter replay only the replayed tracking numbers. Takes the packages out
/// of the contribution and of the totals, and deletes the manifest's rejected packages. (Their
/// tracking numbers' entries stay in the runs, where they no longer count: `read_held`.)
fn remove_contribution(
    tx: &mut Tx<'_>,
    m: &ManifestRecord,
    w: &mut Written<'_>,
    deltas: &mut BTreeMap<TotalsKey, Delta>,
) -> Result<()> {
    let replayed: Option<HashSet<&str>> = m
        .replay
        .then(|| m.packages.iter().filter_map(|p| p.tracking_number.as_deref()).collect());
    // A replay keeps the other packages' lines, each under its header line (a header line only
    // when a kept package follows it); an amendment keeps nothing.
    let mut kept = String::with_capacity(if replayed.is_some() { w.contribution.len() } else { 0 });
    let mut reader = packed::Reader::default();
    let mut header = None;
    for line in w.contribution.split_terminator('\n') {
        let Some(p) = reader.read(line)? else {
            header = Some(line);
            continue;
        };
        if replayed.as_ref().is_some_and(|r| !r.contains(p.tracking_number)) {
            for line in header.take().into_iter().chain([line]) {
                kept.push_str(line);
                kept.push('\n');
            }
            continue;
        }
        let key = (
            m.carrier.clone(),
            p.month.to_string(),
            p.regime.to_string(),
            method_name(p.method),
        );
        let d = Delta {
            packages: 1,
            item_lines: p.item_lines,
            value: p.value_cents,
            duty: p.duty_cents,
            fees: p.fees_cents,
        };
        deltas.entry(key).or_default().add(-1, d);
    }
    w.contribution = kept;
    // The header in force is now the last one kept, if any.
    w.packer = Packer::resume(&mut w.contribution)?;
    match &replayed {
        Some(r) => {
            let replayed: Vec<&str> = r.iter().copied().collect();
            if !replayed.is_empty() {
                query_in(
                    &mut **tx,
                    "DELETE FROM rejected_packages WHERE carrier = $1 AND manifest_id = $2 AND tracking_number IN ($keys)",
                    args![&m.carrier, &m.manifest_id],
                    &replayed,
                    &mut |_| Ok(()),
                )?;
            }
        }
        None => {
            tx.execute(
                "DELETE FROM rejected_packages WHERE carrier = $1 AND manifest_id = $2",
                args![&m.carrier, &m.manifest_id],
            )?;
        }
    }
    Ok(())
}
