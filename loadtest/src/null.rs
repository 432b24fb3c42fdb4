//! `dutyflow-loadtest null-pipeline`: the ceiling the service is compared with.
//!
//! The same transport as the service (a group consumer on the input topic, an idempotent lz4
//! producer with the service's settings) and nothing else: every input message is copied as
//! it is to the output topic, with its headers and `dutyflow.source.timestamp` added. No
//! parsing, no store, no per-batch flush. Runs until it is killed.
//!
//! With `--fan-out` it publishes what the service's output shape costs the transport instead:
//! one record per package (contract §2), each a slice of the manifest's bytes (the manifest cut
//! into as many equal parts as `H_PACKAGES` says it holds packages, ~480 bytes for the load
//! test's manifests, against ~600–700 for an assessment), each under a key of its own (input
//! partition, offset and package: spread over the partitions as tracking numbers are; keyed by
//! their own first bytes, slices of manifests alike in shape shared keys and crowded into a few
//! partitions), with only `dutyflow.source.timestamp`, through a producer
//! set as the service's (`linger.ms` 1, failed deliveries reported only). The load test counts
//! each such record as one package.

use crate::drive::{H_PACKAGES, H_SOURCE_TS};
use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use std::fmt::Write;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct NullConfig {
    pub brokers: String,
    pub input_topic: String,
    pub output_topic: String,
    pub group_id: String,
    pub compression: String,
    /// `fetch.wait.max.ms` of the consumer (librdkafka's default: 500).
    pub fetch_wait_max_ms: u32,
    /// One record per package instead of one copy per manifest (see the module's doc).
    pub fan_out: bool,
}

pub fn run(cfg: &NullConfig) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("auto.offset.reset", "earliest")
        .set("queued.max.messages.kbytes", "16384")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", cfg.fetch_wait_max_ms.to_string())
        // As the service's consumer: librdkafka's default pauses a partition's fetches for 1 s
        // once the prefetch queue is full, and the fan-out, slower than the fetches, sat idle
        // for most of each second (~50 k packages/s, against ~180 k with 10 ms).
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .context("cannot create the Kafka consumer")?;
    consumer
        .subscribe(&[&cfg.input_topic])
        .context("cannot subscribe to the input topic")?;
    // The service's output producer settings.
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", &cfg.compression)
        .set("message.timeout.ms", "30000");
    if cfg.fan_out {
        config.set("linger.ms", "1").set("delivery.report.only.error", "true");
    }
    let producer: ThreadedProducer<_> = config.create().context("cannot create the Kafka producer")?;
    eprintln!(
        "dutyflow-loadtest null-pipeline: {} → {} on {}{}",
        cfg.input_topic,
        cfg.output_topic,
        cfg.brokers,
        if cfg.fan_out { ", a record per package" } else { "" }
    );
    let mut copied = 0u64;
    let mut last_report = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => eprintln!("dutyflow-loadtest null-pipeline: consumer error: {e}"),
            Some(Ok(m)) if cfg.fan_out => {
                let payload = m.payload().unwrap_or_default();
                let source_ts = m.timestamp().to_millis().unwrap_or(0).to_string();
                let packages = m
                    .headers()
                    .and_then(|hs| hs.iter().find(|h| h.key == H_PACKAGES))
                    .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<usize>().ok())
                    .unwrap_or(1);
                let mut key = String::new();
                for (i, part) in slices(payload, packages).enumerate() {
                    let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
                        key: H_SOURCE_TS,
                        value: Some(source_ts.as_bytes()),
                    });
                    key.clear();
                    let _ = write!(key, "{}-{}-{i}", m.partition(), m.offset());
                    let record = BaseRecord::<[u8], [u8]>::to(&cfg.output_topic)
                        .key(key.as_bytes())
                        .payload(part)
                        .headers(headers);
                    send(&producer, record)?;
                }
                copied += 1;
            }
            Some(Ok(m)) => {
                let payload = m.payload().unwrap_or_default().to_vec();
                let key = m.key().map(<[u8]>::to_vec);
                let source_ts = m.timestamp().to_millis().unwrap_or(0).to_string();
                let mut headers = OwnedHeaders::new_with_capacity(m.headers().map_or(0, |h| h.count()) + 1);
                if let Some(hs) = m.headers() {
                    for h in hs.iter() {
                        headers = headers.insert(h);
                    }
                }
                headers = headers.insert(Header {
                    key: H_SOURCE_TS,
                    value: Some(source_ts.as_bytes()),
                });
                let mut record = BaseRecord::<[u8], [u8]>::to(&cfg.output_topic)
                    .payload(&payload)
                    .headers(headers);
                if let Some(k) = &key {
                    record = record.key(k);
                }
                send(&producer, record)?;
                copied += 1;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            eprintln!("dutyflow-loadtest null-pipeline: {copied} messages copied");
            last_report = Instant::now();
        }
    }
}

/// Queues `record`, waiting while the producer's queue is full.
fn send(producer: &ThreadedProducer<DefaultProducerContext>, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e).context("cannot queue a copy"),
        }
    }
}

/// `bytes` cut into `parts` contiguous slices of (nearly) equal length, none empty unless
/// `bytes` is (then one empty slice): fewer parts when there are fewer bytes than that.
fn slices(bytes: &[u8], parts: usize) -> impl Iterator<Item = &[u8]> {
    let parts = parts.clamp(1, bytes.len().max(1));
    (0..parts).map(move |i| &bytes[i * bytes.len() / parts..(i + 1) * bytes.len() / parts])
}

#[cfg(test)]
mod tests {
    use super::slices;

    #[test]
    fn a_manifest_is_cut_into_one_slice_per_package_covering_every_byte() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(24_001).collect();
        let parts: Vec<&[u8]> = slices(&bytes, 50).collect();
        assert_eq!(parts.len(), 50);
        assert!(
            parts.iter().all(|p| (480..=481).contains(&p.len())),
            "{:?}",
            parts.iter().map(|p| p.len()).collect::<Vec<_>>()
        );
        assert_eq!(parts.concat(), bytes);
        assert_eq!(slices(b"abc", 50).count(), 3);
        assert_eq!(slices(b"", 5).collect::<Vec<_>>(), [b"" as &[u8]]);
        assert_eq!(slices(b"abcdef", 0).collect::<Vec<_>>(), [b"abcdef" as &[u8]]);
    }
}
