//! `dutyflow dlq list|stats|export|replay`: what exception handlers use to drain the
//! dead-letter topic. Reading never joins a consumer group and never moves anyone's offsets: it
//! reads every partition from its low to its high watermark as of the start.
//!
//! The fix-and-replay loop: `export` writes the `dlq/v1` values as JSON Lines; the handler fixes
//! the `manifest` (or `raw_text`) of the records in an editor or a script; `replay` sends each
//! fixed record back to the input topic as a one-package manifest whose
//! `dutyflow.replay.count` header is the record's count + 1, and refuses records past
//! `dlq.max_replays`.

use crate::dlq::{H_CODE, H_REPLAY, H_STAGE};
use crate::service::{self, client_config};
use crate::settings::Settings;
use anyhow::{bail, Context, Result};
use base64::Engine;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

/// One dead-letter record as read from the topic.
#[derive(Debug, Clone)]
pub struct DlqRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub value: Vec<u8>,
}

impl DlqRecord {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
    pub fn code(&self) -> &str {
        self.header(H_CODE)
    }
    pub fn stage(&self) -> &str {
        self.header(H_STAGE)
    }
}

/// The broker to read from or send to: `kafka.brokers`, which must be set.
fn brokers(settings: &Settings) -> Result<&str> {
    if settings.kafka.brokers.is_empty() {
        bail!("no brokers configured; set kafka.brokers or DUTYFLOW_KAFKA_BROKERS to the cluster that holds the dead-letter topic");
    }
    Ok(&settings.kafka.brokers)
}

/// Calls `f` with every record of the dead-letter topic present when it starts, in partition
/// and offset order within each partition.
pub fn for_each(settings: &Settings, mut f: impl FnMut(DlqRecord) -> Result<()>) -> Result<()> {
    let topic = settings.kafka.dlq_topic.as_str();
    let consumer: BaseConsumer = client_config(
        settings,
        brokers(settings)?,
        &[
            ("group.id", format!("{}-dlq-reader", settings.kafka.group_id)),
            ("enable.auto.commit", "false".into()),
            ("enable.partition.eof", "false".into()),
            ("fetch.queue.backoff.ms", crate::service::FETCH_QUEUE_BACKOFF_MS.into()),
        ],
    )
    .create()
    .context("cannot create the Kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("cannot read the metadata of topic {topic}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic {topic} does not exist on {}", settings.kafka.brokers);
    }
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .with_context(|| format!("cannot read the offsets of {topic} partition {p}"))?;
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
        }
    }
    consumer
        .assign(&tpl)
        .context("cannot assign the dead-letter partitions")?;
    let mut last_progress = Instant::now();
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            None => {
                if last_progress.elapsed() > Duration::from_secs(30) {
                    bail!("reading {topic} stalled for 30 s; is the broker reachable?");
                }
            }
            Some(Err(e)) => return Err(e).with_context(|| format!("cannot read {topic}")),
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let (p, offset) = (m.partition(), m.offset());
                let Some(&end) = ends.get(&p) else { continue };
                if offset >= end - 1 {
                    ends.remove(&p);
                }
                if offset >= end {
                    continue;
                }
                let headers = message_headers(&m);
                f(DlqRecord {
                    partition: p,
                    offset,
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    headers,
                    value: m.payload().unwrap_or_default().to_vec(),
                })?;
            }
        }
    }
    Ok(())
}

/// A message's headers as text (values that are not UTF-8 are shown lossily).
pub fn message_headers(m: &impl Message) -> BTreeMap<String, String> {
    m.headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn first_message(value: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(value)
        .ok()
        .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `dlq list`: one line per record (or one JSON object per line).
pub fn list(settings: &Settings, code: Option<&str>, limit: usize, json: bool, out: &mut dyn Write) -> Result<usize> {
    let mut shown = 0;
    if !json {
        writeln!(
            out,
            "{:<14} {:<28} {:<9} {:>6} {:<15} message",
            "partition:off", "code", "stage", "replay", "tracking"
        )?;
    }
    for_each(settings, |r| {
        if shown >= limit || code.is_some_and(|c| c != r.code()) {
            return Ok(());
        }
        shown += 1;
        if json {
            out.write_all(&r.value)?;
            writeln!(out)?;
        } else {
            let mut message = first_message(&r.value);
            if message.chars().count() > 100 {
                message = message.chars().take(99).collect::<String>() + "…";
            }
            writeln!(
                out,
                "{:<14} {:<28} {:<9} {:>6} {:<15} {}",
                format!("{}:{}", r.partition, r.offset),
                r.code(),
                r.stage(),
                r.header(H_REPLAY),
                r.key.as_deref().unwrap_or("-"),
                message
            )?;
        }
        Ok(())
    })?;
    Ok(shown)
}

/// `dlq stats`: counts by code and stage.
pub fn stats(settings: &Settings, json: bool, out: &mut dyn Write) -> Result<()> {
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut total = 0u64;
    for_each(settings, |r| {
        *counts.entry((r.code().to_string(), r.stage().to_string())).or_insert(0) += 1;
        total += 1;
        Ok(())
    })?;
    if json {
        let rows: Vec<serde_json::Value> = counts
            .iter()
            .map(|((code, stage), n)| serde_json::json!({"code": code, "stage": stage, "count": n}))
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"total": total, "by_code": rows}))?
        )?;
    } else {
        let mut rows: Vec<_> = counts.into_iter().collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        writeln!(out, "{:<30} {:<9} {:>10}", "code", "stage", "records")?;
        for ((code, stage), n) in rows {
            writeln!(out, "{code:<30} {stage:<9} {n:>10}")?;
        }
        writeln!(out, "{:<30} {:<9} {total:>10}", "total", "")?;
    }
    Ok(())
}

/// `dlq export`: the `dlq/v1` values as JSON Lines, ready to fix and replay.
pub fn export(settings: &Settings, code: Option<&str>, out: &mut dyn Write) -> Result<usize> {
    let mut n = 0;
    for_each(settings, |r| {
        if code.is_none_or(|c| c == r.code()) {
            out.write_all(&r.value)?;
            writeln!(out)?;
            n += 1;
        }
        Ok(())
    })?;
    Ok(n)
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub replayed: usize,
    /// (file:line, why) of every record refused.
    pub refused: Vec<(String, String)>,
}

/// The message a record replays as: its (fixed) one-package manifest exactly as written, or for
/// an undecodable message its (fixed) raw text or bytes; the key; and the next replay count.
fn replay_message(line: &str, max_replays: u32) -> Result<(Vec<u8>, Option<String>, u32), String> {
    #[derive(serde::Deserialize)]
    struct Record<'a> {
        schema: String,
        #[serde(borrow)]
        manifest: Option<&'a serde_json::value::RawValue>,
        raw_text: Option<String>,
        raw_base64: Option<String>,
        tracking_number: Option<String>,
        replay_count: u32,
    }
    let record: Record<'_> = serde_json::from_str(line)
        .map_err(|e| format!("not a dlq/v1 record ({e}); export records with `dutyflow dlq export`"))?;
    if record.schema != "dlq/v1" {
        return Err(format!("schema is \"{}\", not dlq/v1", record.schema));
    }
    let next = record.replay_count + 1;
    if next > max_replays {
        return Err(format!(
            "already replayed {} time(s); dlq.max_replays is {max_replays}, so it needs a manual fix upstream",
            record.replay_count
        ));
    }
    let payload = match (record.manifest, record.raw_text, record.raw_base64) {
        (Some(m), _, _) if m.get() != "null" => m.get().as_bytes().to_vec(),
        (_, Some(text), _) => text.into_bytes(),
        (_, None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("raw_base64 is not base64 ({e})"))?,
        _ => return Err("the record holds neither a manifest nor raw bytes".into()),
    };
    Ok((payload, record.tracking_number, next))
}

/// `dlq replay FILE…`: sends every record of the files (JSON Lines of `dlq/v1`, `-` for stdin)
/// back to the input topic.
pub fn replay(settings: &Settings, files: &[String]) -> Result<ReplayReport> {
    let producer = service::producer(settings, brokers(settings)?)?;
    let mut report = ReplayReport::default();
    let stdin = ["-".to_string()];
    let files = if files.is_empty() { &stdin[..] } else { files };
    for f in files {
        let reader: Box<dyn BufRead> = if f == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(std::io::BufReader::new(
                std::fs::File::open(f).with_context(|| format!("cannot open {f}"))?,
            ))
        };
        for (i, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("cannot read {f}"))?;
            if line.trim().is_empty() {
                continue;
            }
            let (payload, key, count) = match replay_message(&line, settings.dlq.max_replays) {
                Ok(m) => m,
                Err(why) => {
                    report.refused.push((format!("{f}:{}", i + 1), why));
                    continue;
                }
            };
            let count = count.to_string();
            let headers = OwnedHeaders::new().insert(Header {
                key: H_REPLAY,
                value: Some(count.as_bytes()),
            });
            let mut record = BaseRecord::<[u8], [u8]>::to(&settings.kafka.input_topic)
                .payload(&payload)
                .headers(headers);
            if let Some(k) = &key {
                record = record.key(k.as_bytes());
            }
            service::send(&producer, record)?;
            report.replayed += 1;
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .context("producer flush timed out")?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::replay_message;

    #[test]
    fn replays_the_manifest_exactly_as_written_with_the_next_count() {
        let line = r#"{"schema":"dlq/v1","code":"INVALID_VALUE","manifest":{"a":19.990,"packages":[{"v":"1e2"}]},"tracking_number":"RR473124829DE","source":{"topic":"manifests","partition":0,"offset":5,"key":null},"replay_count":1}"#;
        let (payload, key, next) = replay_message(line, 3).unwrap();
        assert_eq!(payload, br#"{"a":19.990,"packages":[{"v":"1e2"}]}"#);
        assert_eq!(key.as_deref(), Some("RR473124829DE"));
        assert_eq!(next, 2);
    }

    #[test]
    fn refuses_past_the_maximum() {
        let line = r#"{"schema":"dlq/v1","manifest":{},"tracking_number":null,"replay_count":3}"#;
        let why = replay_message(line, 3).unwrap_err();
        assert!(why.contains("max_replays is 3"), "{why}");
        assert!(replay_message(line, 4).is_ok());
    }

    #[test]
    fn undecodable_messages_replay_their_raw_text_or_bytes() {
        let line = r#"{"schema":"dlq/v1","manifest":null,"raw_text":"{fixed}","raw_base64":"eA==","tracking_number":null,"replay_count":0}"#;
        assert_eq!(replay_message(line, 3).unwrap().0, b"{fixed}");
        let line = r#"{"schema":"dlq/v1","raw_text":null,"raw_base64":"/w==","tracking_number":null,"replay_count":0}"#;
        assert_eq!(replay_message(line, 3).unwrap().0, vec![0xff]);
    }

    #[test]
    fn rejects_what_is_not_a_dead_letter() {
        assert!(replay_message("{\"schema\":\"manifest/v1\",\"replay_count\":0}", 3).is_err());
        assert!(replay_message("not json", 3)
            .unwrap_err()
            .contains("dutyflow dlq export"));
    }
}
