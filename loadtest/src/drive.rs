//! `dutyflow-loadtest run`: drives a pipeline through Kafka and measures it from the outside.
//!
//! Three threads: a producer that generates manifests and sends them to the input topic (at a
//! target rate, or as fast as the pipeline drains them while keeping at most `max_backlog`
//! packages unanswered), a consumer that reads the output topics from their end, and this
//! thread, which samples counts, the pipeline's memory and CPU every 200 ms and decides when
//! the run is over.
//!
//! A package is done when its `assessment/v1` arrives (the service publishes one per package,
//! accepted or rejected), or, for the null pipeline's copies, when the copy of its manifest
//! arrives (`H_PACKAGES` says how many packages it carries). Dead letters are counted by
//! `dutyflow.error.code`; a message-level dead letter stands for every package of its manifest.
//!
//! Latency of a package: the time the output record reached this consumer minus the input
//! message's Kafka timestamp (set by this producer when it sends). The service copies that
//! timestamp into the header `H_SOURCE_TS`; without the header, the manifest is found by the
//! `manifest_id` in the output's JSON and its send time looked up.

use crate::measure::{cpu_seconds, now_ms, rss_kib, Histogram};
use anyhow::{bail, Context, Result};
use dutyflow_loadtest::Generator;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Header the producer sets on every manifest: how many packages it carries (decimal text).
pub const H_PACKAGES: &str = "dutyflow.loadtest.packages";
/// Header on every output record: the input message's Kafka timestamp in ms (decimal text).
pub const H_SOURCE_TS: &str = "dutyflow.source.timestamp";
/// The dead-letter header holding the error code.
const H_CODE: &str = "dutyflow.error.code";
/// Codes of dead letters that stand for a whole message (no package could be read).
const MESSAGE_LEVEL: &[&str] = &["MALFORMED_JSON", "SCHEMA_VIOLATION", "UNSUPPORTED_SCHEMA"];

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub label: String,
    pub brokers: String,
    pub input_topic: String,
    pub output_topic: String,
    /// Empty: the pipeline has no dead-letter topic (the null pipeline).
    pub dlq_topic: String,
    /// Stop producing after this many packages.
    pub packages: Option<u64>,
    /// Stop producing after this long.
    pub duration: Option<Duration>,
    /// Packages per second; 0 = as fast as the pipeline drains them.
    pub rate: f64,
    pub packages_per_manifest: usize,
    pub bad_rate: f64,
    pub seed: u64,
    /// At most this many packages produced and not yet answered (0 = no bound). The mock broker
    /// keeps ~5 MB per partition, so an unbounded flat-out producer would overrun it.
    pub max_backlog: u64,
    pub compression: String,
    pub service_pid: Option<u32>,
    /// A file the service's pid will be written to, for a service started during the run
    /// (the backlog test starts it once the backlog is produced).
    pub service_pid_file: Option<PathBuf>,
    pub broker_pid: Option<u32>,
    /// Give up when no output arrived for this long while packages are outstanding.
    pub idle_timeout: Duration,
    pub report: Option<PathBuf>,
}

/// Counters shared by the producer, the consumer and the sampler.
#[derive(Default)]
struct Shared {
    produced_manifests: AtomicU64,
    produced_packages: AtomicU64,
    produced_bytes: AtomicU64,
    delivery_failures: AtomicU64,
    /// Packages with an outcome.
    done: AtomicU64,
    outputs: AtomicU64,
    dead_letters: AtomicU64,
    producing: AtomicBool,
    stop: AtomicBool,
    /// Set once an output carried `H_SOURCE_TS`: the producer stops recording send times.
    header_seen: AtomicBool,
    /// manifest_id → send time (ms), for outputs without `H_SOURCE_TS`.
    sent_at: Mutex<HashMap<Vec<u8>, i64>>,
}

struct DeliveryCounter {
    shared: Arc<Shared>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.shared.delivery_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The value of `"manifest_id":"…"`, the first occurrence in a JSON document.
pub fn manifest_id(json: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"manifest_id\":\"";
    let start = json.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = json[start..].iter().position(|&b| b == b'"')?;
    Some(&json[start..start + len])
}

fn header_value<'a, H: Headers>(headers: Option<&'a H>, key: &str) -> Option<&'a [u8]> {
    headers?.iter().find(|h| h.key == key).and_then(|h| h.value)
}

fn parse_i64(v: Option<&[u8]>) -> Option<i64> {
    std::str::from_utf8(v?).ok()?.trim().parse().ok()
}

/// What the consumer thread measured.
#[derive(Default)]
struct Received {
    /// Produce → this consumer.
    latency: Histogram,
    /// Produce → the output record's own timestamp (when the pipeline's producer sent it).
    to_publish: Histogram,
    by_code: BTreeMap<String, u64>,
    consumer_errors: u64,
}

/// One sample of the run, every 200 ms (memory and CPU every second).
#[derive(Debug, Clone, Copy)]
struct Sample {
    t: f64,
    produced: u64,
    done: u64,
}

#[derive(Debug, Clone, Copy)]
struct ProcSample {
    t: f64,
    rss_kib: Option<u64>,
    service_cpu: Option<f64>,
    broker_cpu: Option<f64>,
    self_cpu: Option<f64>,
}

fn consumer_for(cfg: &RunConfig) -> Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", format!("dutyflow-loadtest-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .context("cannot create the Kafka consumer")?;
    // Start every partition at its current end, before anything is produced.
    let mut tpl = TopicPartitionList::new();
    let topics: Vec<&str> = [cfg.output_topic.as_str(), cfg.dlq_topic.as_str()]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("cannot read the metadata of topic {topic} from {}", cfg.brokers))?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if partitions == 0 {
            bail!("topic {topic} does not exist on {}; create it first", cfg.brokers);
        }
        for p in 0..partitions as i32 {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .with_context(|| format!("cannot read the end offset of {topic}/{p}"))?;
            tpl.add_partition_offset(topic, p, Offset::Offset(high))?;
        }
    }
    consumer.assign(&tpl).context("cannot assign the output partitions")?;
    Ok(consumer)
}

fn produce(cfg: &RunConfig, shared: &Arc<Shared>, start: Instant) -> Result<()> {
    let producer: ThreadedProducer<DeliveryCounter> = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("linger.ms", "5")
        .set("compression.type", &cfg.compression)
        .set("queue.buffering.max.kbytes", "262144")
        .set("message.timeout.ms", "120000")
        .create_with_context(DeliveryCounter { shared: shared.clone() })
        .context("cannot create the Kafka producer")?;
    let per = cfg.packages_per_manifest as u64;
    let per_text = per.to_string();
    let mut generator = Generator::new(cfg.seed, cfg.bad_rate);
    let mut buf = String::with_capacity(700 * cfg.packages_per_manifest + 400);
    let manifests_per_s = cfg.rate / per as f64;
    let mut sent = 0u64;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        if cfg.packages.is_some_and(|max| sent * per >= max) || cfg.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        if manifests_per_s > 0.0 {
            let due = start + Duration::from_secs_f64(sent as f64 / manifests_per_s);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        if cfg.max_backlog > 0 {
            while sent * per > shared.done.load(Ordering::Relaxed) + cfg.max_backlog
                && !shared.stop.load(Ordering::Relaxed)
                && cfg.duration.is_none_or(|d| start.elapsed() < d)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        buf.clear();
        generator.write_manifest(&mut buf, cfg.packages_per_manifest);
        let ts = now_ms();
        if !shared.header_seen.load(Ordering::Relaxed) {
            if let Some(id) = manifest_id(buf.as_bytes()) {
                shared
                    .sent_at
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.to_vec(), ts);
            }
        }
        let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: H_PACKAGES,
            value: Some(per_text.as_bytes()),
        });
        let mut record = BaseRecord::<(), [u8]>::to(&cfg.input_topic)
            .payload(buf.as_bytes())
            .timestamp(ts)
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e).context("cannot queue a manifest"),
            }
        }
        sent += 1;
        shared.produced_manifests.fetch_add(1, Ordering::Relaxed);
        shared.produced_packages.fetch_add(per, Ordering::Relaxed);
        shared.produced_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
    }
    producer
        .flush(Duration::from_secs(120))
        .context("the producer could not deliver every manifest")?;
    Ok(())
}

fn consume(cfg: &RunConfig, shared: &Shared, consumer: &BaseConsumer) -> Received {
    let mut out = Received::default();
    let per = cfg.packages_per_manifest as u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let m = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(e)) => {
                out.consumer_errors += 1;
                if out.consumer_errors <= 3 {
                    eprintln!("\ndutyflow-loadtest: consumer error: {e}");
                }
                continue;
            }
            Some(Ok(m)) => m,
        };
        let now = now_ms();
        let headers = m.headers();
        if m.topic() == cfg.output_topic {
            let packages = parse_i64(header_value(headers, H_PACKAGES)).map_or(1, |n| n.max(0) as u64);
            let source = match parse_i64(header_value(headers, H_SOURCE_TS)) {
                Some(ts) => {
                    if !shared.header_seen.load(Ordering::Relaxed) {
                        shared.header_seen.store(true, Ordering::Relaxed);
                    }
                    Some(ts)
                }
                None => m.payload().and_then(manifest_id).and_then(|id| {
                    shared
                        .sent_at
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(id)
                        .copied()
                }),
            };
            if let Some(ts) = source {
                out.latency.record(now - ts);
                if let Some(created) = m.timestamp().to_millis() {
                    out.to_publish.record(created - ts);
                }
            }
            shared.outputs.fetch_add(1, Ordering::Relaxed);
            shared.done.fetch_add(packages, Ordering::Relaxed);
        } else {
            let code = header_value(headers, H_CODE)
                .and_then(|v| std::str::from_utf8(v).ok())
                .unwrap_or("(no code)");
            if MESSAGE_LEVEL.contains(&code) {
                shared.done.fetch_add(per, Ordering::Relaxed);
            }
            *out.by_code.entry(code.to_string()).or_insert(0) += 1;
            shared.dead_letters.fetch_add(1, Ordering::Relaxed);
        }
    }
    out
}

/// When `done` crossed `target`, interpolated between samples.
fn time_at(samples: &[Sample], target: f64) -> Option<f64> {
    let i = samples.iter().position(|s| s.done as f64 >= target)?;
    if i == 0 {
        return Some(samples[0].t);
    }
    let (a, b) = (samples[i - 1], samples[i]);
    let span = (b.done - a.done) as f64;
    Some(if span > 0.0 {
        a.t + (b.t - a.t) * (target - a.done as f64) / span
    } else {
        b.t
    })
}

/// Mean of a per-process CPU counter's rate (cores busy) between two times.
fn cores_between(procs: &[ProcSample], from: f64, to: f64, f: impl Fn(&ProcSample) -> Option<f64>) -> Option<f64> {
    let a = procs.iter().find(|p| p.t >= from)?;
    let b = procs.iter().rev().find(|p| p.t <= to)?;
    if b.t <= a.t {
        return None;
    }
    Some((f(b)? - f(a)?) / (b.t - a.t))
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl RunConfig {
    /// The service's pid: given, or read from the pid file once it holds one.
    fn service_pid(&self) -> Option<u32> {
        self.service_pid.or_else(|| {
            let text = std::fs::read_to_string(self.service_pid_file.as_ref()?).ok()?;
            text.trim().parse().ok()
        })
    }
}

pub fn run(cfg: RunConfig) -> Result<bool> {
    if cfg.packages.is_none() && cfg.duration.is_none() {
        bail!("give --packages or --duration (or both): the run must be bounded");
    }
    let shared = Arc::new(Shared {
        producing: AtomicBool::new(true),
        ..Shared::default()
    });
    let consumer = consumer_for(&cfg)?;
    let start = Instant::now();
    let wall_start_ms = now_ms();
    let consumer_thread = {
        let (cfg, shared) = (cfg.clone(), shared.clone());
        std::thread::Builder::new()
            .name("loadtest-consume".into())
            .spawn(move || consume(&cfg, &shared, &consumer))?
    };
    let producer_thread = {
        let (cfg, shared) = (cfg.clone(), shared.clone());
        std::thread::Builder::new()
            .name("loadtest-produce".into())
            .spawn(move || {
                let r = produce(&cfg, &shared, start);
                shared.producing.store(false, Ordering::SeqCst);
                r
            })?
    };

    let mut samples: Vec<Sample> = Vec::new();
    let mut procs: Vec<ProcSample> = Vec::new();
    let mut produce_end: Option<f64> = None;
    let mut last_done = 0;
    let mut last_progress = Instant::now();
    let mut max_backlog_seen = 0u64;
    let mut tick = 0u64;
    // Memory and CPU every fifth tick (every second).
    let mut next_proc_sample = 5u64;
    let self_pid = std::process::id();
    let timed_out = loop {
        std::thread::sleep(Duration::from_millis(200));
        tick += 1;
        let t = start.elapsed().as_secs_f64();
        let produced = shared.produced_packages.load(Ordering::Relaxed);
        let done = shared.done.load(Ordering::Relaxed);
        let producing = shared.producing.load(Ordering::SeqCst);
        samples.push(Sample { t, produced, done });
        max_backlog_seen = max_backlog_seen.max(produced.saturating_sub(done));
        if !producing && produce_end.is_none() {
            produce_end = Some(t);
        }
        let service_pid = cfg.service_pid();
        if tick >= next_proc_sample {
            next_proc_sample = tick + 5;
            let p = ProcSample {
                t,
                rss_kib: service_pid.and_then(rss_kib),
                service_cpu: service_pid.and_then(cpu_seconds),
                broker_cpu: cfg.broker_pid.and_then(cpu_seconds),
                self_cpu: cpu_seconds(self_pid),
            };
            procs.push(p);
            let recent = samples.len().saturating_sub(6);
            let rate = (done - samples[recent].done) as f64 / (t - samples[recent].t).max(0.001);
            eprint!(
                "\r[{}] {:6.1} s  produced {:>11}  done {:>11}  {:>9.0} pkg/s  backlog {:>8}  rss {:>6} MiB ",
                cfg.label,
                t,
                produced,
                done,
                rate,
                produced.saturating_sub(done),
                p.rss_kib.map_or("-".to_string(), |k| format!("{:.0}", mib(k)))
            );
            let _ = std::io::stderr().flush();
        }
        if done != last_done {
            last_done = done;
            last_progress = Instant::now();
        }
        if !producing && done >= produced {
            break false;
        }
        if let Some(pid) = service_pid.filter(|&pid| rss_kib(pid).is_none()) {
            eprintln!("\ndutyflow-loadtest: the service (pid {pid}) exited");
            break true;
        }
        let outstanding = produced > done;
        if outstanding && last_progress.elapsed() >= cfg.idle_timeout {
            eprintln!(
                "\ndutyflow-loadtest: no output for {} s with {} packages outstanding; giving up",
                cfg.idle_timeout.as_secs(),
                produced - done
            );
            break true;
        }
    };
    eprintln!();
    shared.stop.store(true, Ordering::SeqCst);
    let produce_result = producer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))?;
    let received = consumer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the consumer thread panicked"))?;
    produce_result?;

    // The steady window: between 5% and 95% of the packages done, away from start-up and tail.
    let total_done = shared.done.load(Ordering::Relaxed);
    let produced = shared.produced_packages.load(Ordering::Relaxed);
    let (t5, t95) = (
        time_at(&samples, 0.05 * total_done as f64),
        time_at(&samples, 0.95 * total_done as f64),
    );
    let steady = match (t5, t95) {
        (Some(a), Some(b)) if b > a => Some((a, b, 0.90 * total_done as f64 / (b - a))),
        _ => None,
    };
    let end_t = samples.last().map_or(0.0, |s| s.t);
    let produce_secs = produce_end.unwrap_or(end_t);
    let (w0, w1) = steady.map_or((0.0, end_t), |(a, b, _)| (a, b));
    let rss: Vec<(f64, u64)> = procs.iter().filter_map(|p| Some((p.t, p.rss_kib?))).collect();
    let in_window: Vec<(f64, u64)> = rss.iter().copied().filter(|(t, _)| *t >= w0 && *t <= w1).collect();
    let half = (w0 + w1) / 2.0;
    let max_of = |v: &mut dyn Iterator<Item = u64>| v.max();
    let rss_max = max_of(&mut rss.iter().map(|r| r.1));
    let first_half = max_of(&mut in_window.iter().filter(|r| r.0 < half).map(|r| r.1));
    let second_half = max_of(&mut in_window.iter().filter(|r| r.0 >= half).map(|r| r.1));
    let service_cores = cores_between(&procs, w0, w1, |p| p.service_cpu);
    let broker_cores = cores_between(&procs, w0, w1, |p| p.broker_cpu);
    let self_cores = cores_between(&procs, w0, w1, |p| p.self_cpu);

    let report = serde_json::json!({
        "label": cfg.label,
        "started_at_ms": wall_start_ms,
        "config": {
            "brokers": cfg.brokers,
            "input_topic": cfg.input_topic,
            "output_topic": cfg.output_topic,
            "dlq_topic": cfg.dlq_topic,
            "packages": cfg.packages,
            "duration_s": cfg.duration.map(|d| d.as_secs_f64()),
            "rate": cfg.rate,
            "packages_per_manifest": cfg.packages_per_manifest,
            "bad_rate": cfg.bad_rate,
            "seed": cfg.seed,
            "max_backlog": cfg.max_backlog,
            "compression": cfg.compression,
            "service_pid": cfg.service_pid(),
        },
        "complete": !timed_out && total_done >= produced,
        "produced": {
            "manifests": shared.produced_manifests.load(Ordering::Relaxed),
            "packages": produced,
            "bytes": shared.produced_bytes.load(Ordering::Relaxed),
            "seconds": round1(produce_secs),
            "packages_per_s": (produced as f64 / produce_secs.max(0.001)).round(),
            "delivery_failures": shared.delivery_failures.load(Ordering::Relaxed),
            "max_backlog_packages": max_backlog_seen,
        },
        "done": {
            "packages": total_done,
            "output_records": shared.outputs.load(Ordering::Relaxed),
            "dead_letters": shared.dead_letters.load(Ordering::Relaxed),
            "dead_letters_by_code": received.by_code,
            "missing_packages": produced.saturating_sub(total_done),
            "seconds": round1(end_t),
            "consumer_errors": received.consumer_errors,
        },
        "throughput": {
            "steady_packages_per_s": steady.map(|s| s.2.round()),
            "steady_window_s": steady.map(|s| [round1(s.0), round1(s.1)]),
            "overall_packages_per_s": (total_done as f64 / end_t.max(0.001)).round(),
        },
        "latency_ms": received.latency.to_json(),
        "latency_to_output_timestamp_ms": received.to_publish.to_json(),
        "service": {
            "rss_max_mib": rss_max.map(mib),
            "rss_steady_first_half_max_mib": first_half.map(mib),
            "rss_steady_second_half_max_mib": second_half.map(mib),
            "rss_end_mib": rss.last().map(|r| mib(r.1)),
            "cpu_cores_steady": service_cores.map(|c| (c * 100.0).round() / 100.0),
            "rss_series_mib": rss.iter().map(|(t, k)| [round1(*t), mib(*k)]).collect::<Vec<_>>(),
        },
        "broker_cpu_cores_steady": broker_cores.map(|c| (c * 100.0).round() / 100.0),
        "loadtest_cpu_cores_steady": self_cores.map(|c| (c * 100.0).round() / 100.0),
        "series": samples.iter().step_by(5).map(|s| [round1(s.t), s.produced as f64, s.done as f64]).collect::<Vec<_>>(),
    });

    if let Some(path) = &cfg.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    print_summary(&report);
    Ok(!timed_out && total_done >= produced)
}

fn print_summary(r: &serde_json::Value) {
    let get = |p: &str| r.pointer(p).cloned().unwrap_or(serde_json::Value::Null);
    let num = |p: &str| get(p).as_f64().map_or("-".to_string(), |v| format!("{v}"));
    println!("== {} ==", get("/label").as_str().unwrap_or(""));
    println!(
        "produced  {} packages in {} manifests, {} s ({} pkg/s offered; max backlog {} packages)",
        num("/produced/packages"),
        num("/produced/manifests"),
        num("/produced/seconds"),
        num("/produced/packages_per_s"),
        num("/produced/max_backlog_packages"),
    );
    println!(
        "done      {} packages ({} missing) in {} s; {} dead letters {}",
        num("/done/packages"),
        num("/done/missing_packages"),
        num("/done/seconds"),
        num("/done/dead_letters"),
        get("/done/dead_letters_by_code")
    );
    println!(
        "rate      steady {} pkg/s (window {} s), overall {} pkg/s",
        num("/throughput/steady_packages_per_s"),
        get("/throughput/steady_window_s"),
        num("/throughput/overall_packages_per_s"),
    );
    println!(
        "latency   p50 {} ms, p95 {} ms, p99 {} ms, max {} ms ({} samples; to the output's timestamp: p50 {} / p99 {} ms)",
        num("/latency_ms/p50_ms"),
        num("/latency_ms/p95_ms"),
        num("/latency_ms/p99_ms"),
        num("/latency_ms/max_ms"),
        num("/latency_ms/samples"),
        num("/latency_to_output_timestamp_ms/p50_ms"),
        num("/latency_to_output_timestamp_ms/p99_ms"),
    );
    println!(
        "service   rss max {} MiB (steady window: first half max {}, second half max {}, end {}); cpu {} cores",
        num("/service/rss_max_mib"),
        num("/service/rss_steady_first_half_max_mib"),
        num("/service/rss_steady_second_half_max_mib"),
        num("/service/rss_end_mib"),
        num("/service/cpu_cores_steady"),
    );
    println!(
        "others    broker cpu {} cores, load test cpu {} cores",
        num("/broker_cpu_cores_steady"),
        num("/loadtest_cpu_cores_steady"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_manifest_id() {
        let mut g = Generator::new(1, 0.0);
        let m = g.manifest(2);
        let id = manifest_id(m.as_bytes()).unwrap();
        assert!(std::str::from_utf8(id).unwrap().ends_with("-000001"));
        assert_eq!(
            manifest_id(br#"{"schema":"assessment/v1","manifest_id":"LH-1","carrier":"LH"}"#),
            Some(&b"LH-1"[..])
        );
        assert_eq!(manifest_id(b"{}"), None);
    }

    #[test]
    fn interpolates_the_steady_window() {
        let s = [
            Sample {
                t: 0.0,
                produced: 0,
                done: 0,
            },
            Sample {
                t: 1.0,
                produced: 0,
                done: 100,
            },
            Sample {
                t: 2.0,
                produced: 0,
                done: 300,
            },
        ];
        assert_eq!(time_at(&s, 200.0), Some(1.5));
        assert_eq!(time_at(&s, 0.0), Some(0.0));
        assert_eq!(time_at(&s, 301.0), None);
    }
}
