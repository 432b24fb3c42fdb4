//! One batch of input messages, and the assess stage that turns it into owned results:
//! assessments to publish, dead letters, and the records the store applies.

use crate::dlq::{self, DeadLetter, Source};
use crate::store::{AcceptedRecord, LineRecord, ManifestRecord, PackageRecord, PartitionRange};
use dutyflow_operators::decode::Decoder;
use dutyflow_operators::encode;
use dutyflow_operators::error::{Code, Issue};
use dutyflow_operators::outcome::Outcome;
use dutyflow_operators::risk::{AccountHistory, Tier};
use dutyflow_operators::Operators;
use rayon::prelude::*;
use rust_decimal::Decimal;

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
    pub assessments: Vec<(Option<String>, Vec<u8>)>,
    pub dead_letters: Vec<DeadLetter>,
    /// Index into `AssessedBatch::records`, when the store records this manifest.
    pub record: Option<usize>,
    pub packages: u64,
    pub accepted: u64,
    pub tiers: [u64; 4],
    /// Byte offsets kept to build dead letters for packages the store rejects.
    pub packages_at: usize,
    pub package_starts: Vec<usize>,
}

/// A batch after the operators ran.
#[derive(Debug, Default)]
pub struct AssessedBatch {
    pub messages: Vec<InputMessage>,
    pub ranges: Vec<PartitionRange>,
    pub results: Vec<MessageResult>,
    pub records: Vec<ManifestRecord>,
    /// For each record, the index of its message.
    pub record_message: Vec<usize>,
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
    for p in &m.packages {
        let mut buf = Vec::with_capacity(768);
        encode::assessment(&mut buf, ops, m, p);
        let tracking = p.package.tracking_number.map(str::to_string);
        result.package_starts.push(p.package.raw_start as usize);
        if p.accepted() {
            result.accepted += 1;
            if let Some(risk) = &p.risk {
                let tier = risk.tier(&ops.risk);
                result.tiers[Tier::ALL.iter().position(|t| *t == tier).unwrap_or(0)] += 1;
            }
        } else {
            result.dead_letters.push(dlq::package_record(
                &msg.source,
                &msg.payload,
                m.packages_at as usize,
                p.package.index,
                p.package.raw_start as usize,
                p.package.tracking_number,
                &p.package.errors,
                None,
            ));
        }
        if let Some(r) = record.as_mut() {
            let accepted = p.duty.as_ref().map(|d| AcceptedRecord {
                regime: ops.rates.regimes[d.regime].id.clone(),
                method: d.method.as_str(),
                value_cents: cents(d.value_usd),
                duty_cents: cents(d.total_usd - d.fees_usd),
                fees_cents: cents(d.fees_usd),
                rates_version: ops.rates.version.clone(),
                lines: d
                    .lines
                    .iter()
                    .map(|l| LineRecord {
                        item: l.item,
                        origin_country: l.origin.as_str().to_string(),
                        hts: l.hts.map(str::to_string),
                        value_cents: cents(l.value_usd),
                        rate: l.rate.to_string(),
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
/// dead letter, replacing what the operators produced.
pub fn apply_store_rejection(
    batch: &mut AssessedBatch,
    record_index: usize,
    package: usize,
    other_manifest: &str,
    other_date: &str,
) {
    let mi = batch.record_message[record_index];
    let record = &batch.records[record_index];
    let p = &record.packages[package];
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
    let dl = dlq::package_record(
        &msg.source,
        &msg.payload,
        result.packages_at,
        p.index,
        result.package_starts[p.index as usize],
        Some(&tracking),
        std::slice::from_ref(&issue),
        Some("store"),
    );
    result.assessments[p.index as usize].1 = buf;
    result.accepted -= 1;
    result.dead_letters.push(dl);
}
