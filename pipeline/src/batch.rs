//! One batch of input messages, and the assess stage that turns it into owned results:
//! assessments to publish, dead letters, and the records the store applies.

use crate::dlq::{self, DeadLetter, Source};
use crate::store::{AcceptedRecord, LineRecord, ManifestRecord, PackageRecord, PartitionRange, StoreRejection};
use dutyflow_operators::decode::Decoder;
use dutyflow_operators::encode;
use dutyflow_operators::error::{Code, Issue};
use dutyflow_operators::outcome::Outcome;
use dutyflow_operators::risk::{AccountHistory, Tier};
use dutyflow_operators::Operators;
use rayon::prelude::*;
use rust_decimal::Decimal;
use smol_str::{SmolStr, ToSmolStr};

/// An input message, detached from the consumer.
#[derive(Debug, Clone)]
pub struct InputMessage {
    pub source: Source,
    pub payload: Vec<u8>,
    /// Kafka timestamp (ms since the epoch), for end-to-end latency.
    pub timestamp_ms: Option<i64>,
}

/// A batch as the consumer closed it: messages in partition order, and the offsets it covers.
#[derive(Debug, Default)]
pub struct Batch {
    pub messages: Vec<InputMessage>,
    pub ranges: Vec<PartitionRange>,
}

/// What one message yields.
#[derive(Debug, Default)]
pub struct MessageResult {
    /// `assessment/v1` per package (key = tracking number), in package order.
    pub assessments: Vec<(Option<SmolStr>, Vec<u8>)>,
    pub dead_letters: Vec<DeadLetter>,
    /// Index into `AssessedBatch::records`, when the store records this manifest.
    pub record: Option<usize>,
    pub packages: u64,
    pub accepted: u64,
    pub tiers: [u64; 4],
    /// Byte offsets kept to build dead letters for packages the store rejects.
    pub packages_at: usize,
    pub package_starts: Vec<usize>,
    /// Packages the store rejected in the current commit attempt, with the assessment the
    /// operators had written for each (their dead letters are the last of `dead_letters`).
    store_rejected: Vec<(usize, Vec<u8>)>,
}

/// A batch after the operators ran, or several consecutive ones merged into one commit.
#[derive(Debug, Default)]
pub struct AssessedBatch {
    pub messages: Vec<InputMessage>,
    pub ranges: Vec<PartitionRange>,
    pub results: Vec<MessageResult>,
    pub records: Vec<ManifestRecord>,
    /// For each record, the index of its message.
    pub record_message: Vec<usize>,
    /// When the operators finished (the first batch's, for a merged group).
    pub assessed_at: Option<std::time::Instant>,
}

impl AssessedBatch {
    /// Packages of the batch's manifests.
    pub fn packages(&self) -> u64 {
        self.results.iter().map(|r| r.packages).sum()
    }

    /// Whether `next` starts, on every partition the two share, where this batch ends: then
    /// committing both at once is committing one after the other.
    pub fn is_followed_by(&self, next: &AssessedBatch) -> bool {
        next.ranges.iter().all(|n| {
            self.ranges
                .iter()
                .find(|r| r.topic == n.topic && r.partition == n.partition)
                .is_none_or(|r| r.next == n.expected)
        })
    }

    /// Appends `next` (for a group commit: one transaction, one publish, one delivery wait for
    /// both), or gives it back when it does not follow this batch on one of their partitions
    /// (after a rebalance or a resync): such a batch must be committed on its own. (The batch
    /// given back is moved, not copied: its size is a few vectors' headers, once per group.)
    #[allow(clippy::result_large_err)]
    pub fn merge(&mut self, next: AssessedBatch) -> Result<(), AssessedBatch> {
        if !self.is_followed_by(&next) {
            return Err(next);
        }
        let AssessedBatch {
            messages,
            ranges,
            results,
            records,
            record_message,
            assessed_at: _,
        } = next;
        for n in ranges {
            match self
                .ranges
                .iter_mut()
                .find(|r| r.topic == n.topic && r.partition == n.partition)
            {
                Some(r) => r.next = n.next,
                None => self.ranges.push(n),
            }
        }
        let (message_base, record_base) = (self.messages.len(), self.records.len());
        self.messages.extend(messages);
        self.results.extend(results.into_iter().map(|mut r| {
            if let Some(i) = r.record.as_mut() {
                *i += record_base;
            }
            r
        }));
        self.records.extend(records);
        self.record_message
            .extend(record_message.into_iter().map(|m| m + message_base));
        Ok(())
    }
}

fn cents(d: Decimal) -> i64 {
    let mut d = d;
    d.rescale(2);
    d.mantissa() as i64
}

/// Runs the operators over a batch: parallel decode/validate/assess/score, history in order,
/// parallel encode.
pub fn assess(ops: &Operators, history: &mut AccountHistory, batch: Batch) -> AssessedBatch {
    let Batch { messages, ranges } = batch;
    let mut scratch: Vec<Vec<u8>> = messages.iter().map(|_| Vec::new()).collect();
    let mut outcomes: Vec<Outcome<'_>> = messages
        .par_iter()
        .zip(scratch.par_iter_mut())
        .map_init(Decoder::default, |decoder, (m, s)| {
            ops.assess_message(decoder, &m.payload, s)
        })
        .collect();
    for o in &mut outcomes {
        ops.apply_history(history, o);
    }
    let converted: Vec<(MessageResult, Option<ManifestRecord>)> = messages
        .par_iter()
        .zip(outcomes.par_iter())
        .map(|(m, o)| convert(ops, m, o))
        .collect();
    drop(outcomes);
    let mut out = AssessedBatch {
        ranges,
        ..AssessedBatch::default()
    };
    for (i, (mut result, record)) in converted.into_iter().enumerate() {
        if let Some(r) = record {
            result.record = Some(out.records.len());
            out.records.push(r);
            out.record_message.push(i);
        }
        out.results.push(result);
    }
    out.messages = messages;
    out.assessed_at = Some(std::time::Instant::now());
    out
}

fn convert(ops: &Operators, msg: &InputMessage, outcome: &Outcome<'_>) -> (MessageResult, Option<ManifestRecord>) {
    let mut result = MessageResult::default();
    let m = match outcome {
        Outcome::Message(issue) => {
            result.packages = 0;
            result
                .dead_letters
                .push(dlq::message_record(&msg.source, &msg.payload, issue));
            return (result, None);
        }
        Outcome::Manifest(m) => m,
    };
    result.packages = m.packages.len() as u64;
    result.packages_at = m.packages_at as usize;
    let h = &m.header;
    // The store records a manifest when it can be keyed: valid carrier, manifest_id and date.
    let keyed = h.errors.iter().all(|e| {
        !matches!(
            e.code,
            Code::MissingField
                | Code::InvalidCarrierCode
                | Code::InvalidManifestId
                | Code::SchemaViolation
                | Code::InvalidDate
        )
    }) && h.carrier.is_some()
        && h.manifest_id.is_some()
        && h.arrival_date.is_some();
    let mut record = keyed.then(|| ManifestRecord {
        carrier: h.carrier.unwrap_or_default().to_string(),
        manifest_id: h.manifest_id.unwrap_or_default().to_string(),
        trip_number: h.trip_number.unwrap_or_default().to_string(),
        port_of_arrival: h.port_of_arrival.unwrap_or_default().to_string(),
        arrival_date: h.arrival_date.unwrap_or_default(),
        month: h.month.map(|mo| mo.to_string()).unwrap_or_default(),
        replay: msg.source.replay_count > 0,
        source_topic: msg.source.topic.clone(),
        source_partition: msg.source.partition,
        source_offset: msg.source.offset,
        packages: Vec::with_capacity(m.packages.len()),
    });
    // The packages array's place, found at the first rejected package (most manifests have
    // none).
    let last_start = m.packages.last().map(|p| p.package.raw_start as usize);
    let mut array = None;
    // The manifest's part of every assessment, and the text its packages share, written once.
    let mut head = Vec::with_capacity(256);
    encode::manifest_part(&mut head, m);
    let mut text = encode::ManifestText::default();
    for p in &m.packages {
        let mut buf = Vec::with_capacity(head.len() + 640);
        buf.extend_from_slice(&head);
        encode::package_part_with(&mut buf, ops, p, &mut text);
        let tracking = p.package.tracking_number.map(SmolStr::new);
        result.package_starts.push(p.package.raw_start as usize);
        if p.accepted() {
            result.accepted += 1;
            if let Some(risk) = &p.risk {
                let tier = risk.tier(&ops.risk);
                result.tiers[Tier::ALL.iter().position(|t| *t == tier).unwrap_or(0)] += 1;
            }
        } else {
            let array = array
                .get_or_insert_with(|| dlq::packages_array(&msg.payload, m.packages_at as usize, last_start))
                .clone();
            result.dead_letters.push(dlq::package_record(
                &msg.source,
                &msg.payload,
                array,
                p.package.index,
                p.package.raw_start as usize,
                p.package.tracking_number,
                &p.package.errors,
                None,
            ));
        }
        if let Some(r) = record.as_mut() {
            let accepted = p.duty.as_ref().map(|d| AcceptedRecord {
                regime: SmolStr::new(&ops.rates.regimes[d.regime].id),
                method: d.method.as_str(),
                value_cents: cents(d.value_usd),
                duty_cents: cents(d.total_usd - d.fees_usd),
                fees_cents: cents(d.fees_usd),
                rates_version: SmolStr::new(&ops.rates.version),
                lines: d
                    .lines
                    .iter()
                    .map(|l| LineRecord {
                        item: l.item,
                        origin_country: SmolStr::new(l.origin.as_str()),
                        hts: l.hts.map(SmolStr::new),
                        value_cents: cents(l.value_usd),
                        rate: l.rate.to_smolstr(),
                        duty_cents: cents(l.duty_usd),
                    })
                    .collect(),
            });
            r.packages.push(PackageRecord {
                index: p.package.index,
                tracking_number: tracking.clone(),
                accepted,
                rejected_code: p.primary_error().map(|e| e.code.as_str()),
            });
        }
        result.assessments.push((tracking, buf));
    }
    (result, record)
}

/// Turns a package the store rejected as a 12-month duplicate into a rejected assessment and a
/// dead letter, replacing what the operators produced. `records` are the batch's records as
/// the store decided them (taken out of the batch while it commits).
pub fn apply_store_rejection(batch: &mut AssessedBatch, records: &[ManifestRecord], rejection: &StoreRejection) {
    let mi = batch.record_message[rejection.manifest];
    let record = &records[rejection.manifest];
    let p = &record.packages[rejection.package];
    let (other_manifest, other_date) = (&rejection.other_manifest_id, &rejection.other_arrival_date);
    let tracking = p.tracking_number.clone().unwrap_or_default();
    let issue = Issue::new(
        Code::DuplicateTrackingNumber,
        format!("$.packages[{}].tracking_number", p.index),
        format!("{tracking} was already accepted in manifest {other_manifest} of carrier {} (arrival {other_date}); a tracking number may not be reused within 12 months", record.carrier),
    );
    let mut buf = Vec::with_capacity(512);
    buf.extend_from_slice(b"{\"schema\":\"assessment/v1\",\"manifest_id\":");
    encode::write_str(&mut buf, &record.manifest_id);
    buf.extend_from_slice(b",\"carrier\":");
    encode::write_str(&mut buf, &record.carrier);
    buf.extend_from_slice(b",\"trip_number\":");
    encode::write_str(&mut buf, &record.trip_number);
    buf.extend_from_slice(b",\"port_of_arrival\":");
    encode::write_str(&mut buf, &record.port_of_arrival);
    buf.extend_from_slice(b",\"arrival_date\":\"");
    encode::write_date(&mut buf, record.arrival_date);
    buf.extend_from_slice(b"\",\"month\":");
    encode::write_str(&mut buf, &record.month);
    buf.extend_from_slice(b",\"tracking_number\":");
    encode::write_str(&mut buf, &tracking);
    buf.extend_from_slice(b",\"status\":\"rejected\",\"errors\":[{\"code\":\"DUPLICATE_TRACKING_NUMBER\",\"field\":");
    encode::write_str(&mut buf, &issue.field);
    buf.extend_from_slice(b",\"message\":");
    encode::write_str(&mut buf, &issue.message);
    buf.extend_from_slice(b"}],\"warnings\":[],\"risk\":null,\"duty\":null}");
    let msg = &batch.messages[mi];
    let result = &mut batch.results[mi];
    let array = dlq::packages_array(&msg.payload, result.packages_at, result.package_starts.last().copied());
    let dl = dlq::package_record(
        &msg.source,
        &msg.payload,
        array,
        p.index,
        result.package_starts[p.index as usize],
        Some(&tracking),
        std::slice::from_ref(&issue),
        Some("store"),
    );
    let operators = std::mem::replace(&mut result.assessments[p.index as usize].1, buf);
    result.store_rejected.push((p.index as usize, operators));
    result.accepted -= 1;
    result.dead_letters.push(dl);
}

/// Gives back what the operators decided for the packages the store rejected in an attempt
/// that did not commit: the next attempt starts from the operators' outputs again.
pub fn undo_store_rejections(batch: &mut AssessedBatch) {
    for result in &mut batch.results {
        while let Some((index, operators)) = result.store_rejected.pop() {
            result.assessments[index].1 = operators;
            result.accepted += 1;
            result.dead_letters.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(partition: i32, expected: i64, next: i64) -> PartitionRange {
        PartitionRange {
            topic: "manifests".into(),
            partition,
            expected,
            next,
        }
    }

    /// A batch of messages at `offsets` of partition 0, each a manifest the store records but
    /// the first, which is a message-level rejection.
    fn batch(ranges: Vec<PartitionRange>, offsets: std::ops::Range<i64>) -> AssessedBatch {
        let mut b = AssessedBatch {
            ranges,
            ..AssessedBatch::default()
        };
        for (i, offset) in offsets.enumerate() {
            let source = Source {
                topic: "manifests".into(),
                partition: 0,
                offset,
                key: None,
                replay_count: 0,
            };
            let mut result = MessageResult {
                packages: 2,
                ..MessageResult::default()
            };
            if i > 0 {
                result.record = Some(b.records.len());
                b.record_message.push(i);
                b.records.push(ManifestRecord {
                    carrier: "LH".into(),
                    manifest_id: format!("M-{offset}"),
                    trip_number: String::new(),
                    port_of_arrival: String::new(),
                    arrival_date: chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
                    month: "2026-03".into(),
                    replay: false,
                    source_topic: source.topic.clone(),
                    source_partition: 0,
                    source_offset: offset,
                    packages: Vec::new(),
                });
            }
            b.messages.push(InputMessage {
                source,
                payload: Vec::new(),
                timestamp_ms: None,
            });
            b.results.push(result);
        }
        b
    }

    /// Each package's assessment is what the operators' encoder writes for it alone, though the
    /// manifest's part is written once per message.
    #[test]
    fn assessments_are_the_encoders_whatever_is_shared() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let ops = Operators::load(&dir).unwrap();
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/examples");
        let mut messages = Vec::new();
        for name in ["manifest-valid.jsonl", "manifest-bad-packages.jsonl"] {
            let text = std::fs::read(fixtures.join(name)).unwrap();
            for (offset, line) in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate() {
                messages.push(InputMessage {
                    source: Source {
                        topic: "manifests".into(),
                        partition: 0,
                        offset: offset as i64,
                        key: None,
                        replay_count: 0,
                    },
                    payload: line.to_vec(),
                    timestamp_ms: None,
                });
            }
        }
        let mut decoder = Decoder::default();
        let mut history = AccountHistory::default();
        let mut compared = 0;
        for msg in &messages {
            let mut scratch = Vec::new();
            let mut outcome = ops.assess_message(&mut decoder, &msg.payload, &mut scratch);
            ops.apply_history(&mut history, &mut outcome);
            let Outcome::Manifest(m) = &outcome else { continue };
            let (result, _) = convert(&ops, msg, &outcome);
            assert_eq!(result.assessments.len(), m.packages.len());
            for (p, (_, written)) in m.packages.iter().zip(&result.assessments) {
                let mut alone = Vec::new();
                encode::assessment(&mut alone, &ops, m, p);
                assert_eq!(String::from_utf8_lossy(written), String::from_utf8_lossy(&alone));
                compared += 1;
            }
        }
        assert!(compared >= 4, "{compared} assessments compared");
    }

    #[test]
    fn a_following_batch_merges_with_its_offsets_and_indexes_carried_on() {
        let mut first = batch(vec![range(0, 10, 13), range(1, -1, 4)], 10..13);
        let next = batch(vec![range(0, 13, 15), range(2, 7, 9)], 13..15);
        first.merge(next).unwrap();
        assert_eq!(first.ranges, [range(0, 10, 15), range(1, -1, 4), range(2, 7, 9)]);
        assert_eq!(first.messages.len(), 5);
        assert_eq!(first.packages(), 10);
        // Every message's record, and every record's message, still point at each other.
        assert_eq!(first.records.len(), 3);
        for (ri, &mi) in first.record_message.iter().enumerate() {
            assert_eq!(first.results[mi].record, Some(ri));
            assert_eq!(first.records[ri].source_offset, first.messages[mi].source.offset);
        }
        assert_eq!(first.results[3].record, None, "the second batch's rejected message");
    }

    #[test]
    fn a_batch_that_does_not_follow_on_a_shared_partition_is_given_back() {
        let mut first = batch(vec![range(0, 10, 13), range(1, 4, 6)], 10..13);
        // Partition 1 starts again at 4 (after a resync): committing both at once would skip
        // the compare-and-set of the second.
        let next = batch(vec![range(0, 13, 15), range(1, 4, 5)], 13..15);
        assert!(!first.is_followed_by(&next));
        let next = first.merge(next).unwrap_err();
        assert_eq!(next.ranges, [range(0, 13, 15), range(1, 4, 5)]);
        assert_eq!(first.ranges, [range(0, 10, 13), range(1, 4, 6)]);
        assert_eq!((first.messages.len(), first.records.len()), (3, 2));
        // A gap is refused as well as an overlap.
        assert!(!first.is_followed_by(&batch(vec![range(0, 14, 15)], 14..15)));
    }
}
