//! `dutyflow-loadtest null-pipeline`: the ceiling the service is compared with.
//!
//! The same transport as the service (a group consumer on the input topic, an idempotent lz4
//! producer with the service's settings) and nothing else: every input message is copied as
//! it is to the output topic, with its headers and `dutyflow.source.timestamp` added. No
//! parsing, no store, no per-batch flush. Runs until it is killed.

use crate::drive::H_SOURCE_TS;
use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
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
        .create()
        .context("cannot create the Kafka consumer")?;
    consumer
        .subscribe(&[&cfg.input_topic])
        .context("cannot subscribe to the input topic")?;
    // The service's output producer settings.
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", &cfg.compression)
        .set("message.timeout.ms", "30000")
        .create()
        .context("cannot create the Kafka producer")?;
    eprintln!(
        "dutyflow-loadtest null-pipeline: {} → {} on {}",
        cfg.input_topic, cfg.output_topic, cfg.brokers
    );
    let mut copied = 0u64;
    let mut last_report = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => eprintln!("dutyflow-loadtest null-pipeline: consumer error: {e}"),
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
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            record = r;
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err((e, _)) => return Err(e).context("cannot queue a copy"),
                    }
                }
                copied += 1;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            eprintln!("dutyflow-loadtest null-pipeline: {copied} messages copied");
            last_report = Instant::now();
        }
    }
}
