//! The exactly-once batch commit, written once for every backend.

use super::backend::{args, lock_key, Backend, Tx};
use super::records::{AcceptedRecord, CommitOutcome, ManifestRecord, PackageRecord, PartitionRange, StoreRejection};
use anyhow::{Context, Result};
use std::collections::BTreeMap;

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
pub(super) fn commit_batch(
    conn: &mut dyn Backend,
    group: &str,
    ranges: &[PartitionRange],
    manifests: &mut [ManifestRecord],
    publish: impl FnOnce(&[ManifestRecord], &[StoreRejection]) -> Result<()>,
) -> Result<CommitOutcome> {
    let mut decisions = Decisions::default();
    let outcome = commit_in_transaction(conn, group, ranges, manifests, &mut decisions, publish);
    if !matches!(outcome, Ok(CommitOutcome::Committed)) {
        decisions.undo(manifests);
    }
    outcome
}

fn commit_in_transaction(
    conn: &mut dyn Backend,
    group: &str,
    ranges: &[PartitionRange],
    manifests: &mut [ManifestRecord],
    decisions: &mut Decisions,
    publish: impl FnOnce(&[ManifestRecord], &[StoreRejection]) -> Result<()>,
) -> Result<CommitOutcome> {
    let mut tx = Tx::begin(conn)?;
    if let Some(fenced) = claim_partitions(&mut tx, group, ranges)? {
        return Ok(fenced);
    }
    tx.lock(&carrier_locks(manifests))?;
    let mut deltas = BTreeMap::new();
    for (mi, m) in manifests.iter_mut().enumerate() {
        apply_manifest(&mut tx, mi, m, &mut deltas, decisions)?;
    }
    for ((carrier, month, regime, method), d) in &deltas {
        if d.is_zero() {
            continue;
        }
        tx.execute(
            "INSERT INTO totals (carrier, month, regime, method, packages, item_lines, value_cents, duty_cents, fees_cents)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (carrier, month, regime, method) DO UPDATE SET
               packages = totals.packages + excluded.packages,
               item_lines = totals.item_lines + excluded.item_lines,
               value_cents = totals.value_cents + excluded.value_cents,
               duty_cents = totals.duty_cents + excluded.duty_cents,
               fees_cents = totals.fees_cents + excluded.fees_cents",
            args![carrier, month, regime, *method, d.packages, d.item_lines, d.value, d.duty, d.fees],
        )?;
    }
    publish(manifests, &decisions.rejections)?;
    for r in ranges {
        tx.execute(
            "UPDATE offsets SET next_offset = $4 WHERE consumer_group = $1 AND topic = $2 AND partition_id = $3",
            args![group, &r.topic, r.partition, r.next],
        )?;
    }
    tx.commit().context("store commit failed")?;
    Ok(CommitOutcome::Committed)
}

/// The compare of the offsets' compare-and-set: locks each partition's offset row, in topic and
/// partition order, and checks that it still holds the offset the batch starts from.
fn claim_partitions(tx: &mut Tx<'_>, group: &str, ranges: &[PartitionRange]) -> Result<Option<CommitOutcome>> {
    let mut order: Vec<&PartitionRange> = ranges.iter().collect();
    order.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    for r in order {
        // An upsert that changes nothing: it returns the stored offset (-1: none yet) and holds
        // the row's lock to the end of the transaction, also for a partition never committed
        // (the row it inserts goes with a rollback; a commit always moves it to `next`).
        let stored = tx
            .first(
                "INSERT INTO offsets (consumer_group, topic, partition_id, next_offset) VALUES ($1, $2, $3, -1)
                 ON CONFLICT (consumer_group, topic, partition_id) DO UPDATE SET next_offset = offsets.next_offset
                 RETURNING next_offset",
                args![group, &r.topic, r.partition],
                |row| row.int(0),
            )?
            .context("the offset claim returned no row")?;
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

/// Removes the stored contribution of a whole manifest, or of one tracking number of it, from
/// the totals and the tables.
fn remove_contribution(
    tx: &mut Tx<'_>,
    carrier: &str,
    manifest_id: &str,
    tracking: Option<&str>,
    deltas: &mut BTreeMap<TotalsKey, Delta>,
) -> Result<()> {
    let stored = tx.rows(
        "SELECT month, regime, method, COUNT(*), CAST(SUM(item_lines) AS BIGINT), CAST(SUM(value_cents) AS BIGINT),
                CAST(SUM(duty_cents) AS BIGINT), CAST(SUM(fees_cents) AS BIGINT)
         FROM packages WHERE carrier = $1 AND manifest_id = $2 AND (CAST($3 AS TEXT) IS NULL OR tracking_number = $3)
         GROUP BY month, regime, method",
        args![carrier, manifest_id, tracking],
        |r| {
            let key = (carrier.to_string(), r.text(0)?, r.text(1)?, method_name(&r.text(2)?));
            let d = Delta {
                packages: r.int(3)?,
                item_lines: r.int(4)?,
                value: r.int(5)?,
                duty: r.int(6)?,
                fees: r.int(7)?,
            };
            Ok((key, d))
        },
    )?;
    for (key, d) in stored {
        deltas.entry(key).or_default().add(-1, d);
    }
    for sql in [
        "DELETE FROM item_lines WHERE carrier = $1 AND manifest_id = $2 AND (CAST($3 AS TEXT) IS NULL OR tracking_number = $3)",
        "DELETE FROM packages WHERE carrier = $1 AND manifest_id = $2 AND (CAST($3 AS TEXT) IS NULL OR tracking_number = $3)",
        "DELETE FROM rejected_packages WHERE carrier = $1 AND manifest_id = $2 AND (CAST($3 AS TEXT) IS NULL OR tracking_number = $3)",
    ] {
        tx.execute(sql, args![carrier, manifest_id, tracking])?;
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

/// Applies one manifest: replaces an earlier version's contribution (all of it, or for a
/// dead-letter replay the replayed packages only), rejects tracking numbers accepted in another
/// manifest of the carrier within 12 months, and records the rest.
fn apply_manifest(
    tx: &mut Tx<'_>,
    mi: usize,
    m: &mut ManifestRecord,
    deltas: &mut BTreeMap<TotalsKey, Delta>,
    decisions: &mut Decisions,
) -> Result<()> {
    let exists = tx
        .first(
            "SELECT 1 FROM manifests WHERE carrier = $1 AND manifest_id = $2",
            args![&m.carrier, &m.manifest_id],
            |_| Ok(()),
        )?
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
    tx.execute(
        "INSERT INTO manifests (carrier, manifest_id, month, packages, versions, source_topic, source_partition, source_offset)
         VALUES ($1, $2, $3, $4, 1, $5, $6, $7)
         ON CONFLICT (carrier, manifest_id) DO UPDATE SET
           month = excluded.month, versions = manifests.versions + 1,
           packages = CASE WHEN $8 THEN manifests.packages ELSE excluded.packages END,
           source_topic = excluded.source_topic, source_partition = excluded.source_partition, source_offset = excluded.source_offset",
        args![
            &m.carrier,
            &m.manifest_id,
            &m.month,
            m.packages.len() as i64,
            &m.source_topic,
            m.source_partition,
            m.source_offset,
            m.replay
        ],
    )?;

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
            let other = tx.first(
                "SELECT manifest_id, arrival_date FROM packages
                 WHERE carrier = $1 AND tracking_number = $2 AND manifest_id <> $3 AND arrival_date > $4 AND arrival_date < $5
                 LIMIT 1",
                args![&m.carrier, tracking, &m.manifest_id, &lo, &hi],
                |r| Ok((r.text(0)?, r.text(1)?)),
            )?;
            if let Some((other_manifest_id, other_arrival_date)) = other {
                let rejection = StoreRejection {
                    manifest: mi,
                    package: pi,
                    other_manifest_id,
                    other_arrival_date,
                };
                decisions.reject(rejection, p);
            } else {
                tx.execute(
                    "INSERT INTO packages (carrier, manifest_id, tracking_number, trip_number, port_of_arrival, arrival_date, month, regime, method,
                                           item_lines, value_cents, duty_cents, fees_cents, rates_version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                    args![
                        &m.carrier,
                        &m.manifest_id,
                        tracking,
                        &m.trip_number,
                        &m.port_of_arrival,
                        &arrival,
                        &m.month,
                        &acc.regime,
                        acc.method,
                        acc.lines.len() as i64,
                        acc.value_cents,
                        acc.duty_cents,
                        acc.fees_cents,
                        &acc.rates_version
                    ],
                )?;
                for l in &acc.lines {
                    tx.execute(
                        "INSERT INTO item_lines (carrier, manifest_id, tracking_number, item, origin_country, hts, value_cents, rate, duty_cents)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                        args![
                            &m.carrier,
                            &m.manifest_id,
                            tracking,
                            l.item,
                            &l.origin_country,
                            &l.hts,
                            l.value_cents,
                            &l.rate,
                            l.duty_cents
                        ],
                    )?;
                }
                let key = (m.carrier.clone(), m.month.clone(), acc.regime.clone(), acc.method);
                let added = Delta {
                    packages: 1,
                    item_lines: acc.lines.len() as i64,
                    value: acc.value_cents,
                    duty: acc.duty_cents,
                    fees: acc.fees_cents,
                };
                deltas.entry(key).or_default().add(1, added);
                continue;
            }
        }
        if let Some(code) = p.rejected_code {
            let index = if m.replay {
                -1 - i64::from(p.index)
            } else {
                i64::from(p.index)
            };
            tx.execute(
                "INSERT INTO rejected_packages (carrier, manifest_id, package_index, tracking_number, month, code) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (carrier, manifest_id, package_index) DO UPDATE SET tracking_number = excluded.tracking_number, code = excluded.code",
                args![&m.carrier, &m.manifest_id, index, &p.tracking_number, &m.month, code],
            )?;
        }
    }
    Ok(())
}
