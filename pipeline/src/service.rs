//! The streaming service (`dutyflow run`): consume manifests, assess, publish, and commit the
//! monthly totals exactly once.
//!
//! Three stages joined by bounded channels, so memory stays flat whatever the backlog:
//! 1. **consume** (this thread): polls the group consumer and closes batches; on assignment it
//!    seeks to the offsets held in the store; on revocation it waits until every in-flight
//!    batch has committed or been abandoned.
//! 2. **assess**: the operators on the rayon pool; account history in input order.
//! 3. **commit**: one store transaction per batch that checks and moves the batch's offsets,
//!    applies amendments, 12-month duplicates and totals, and publishes assessments and dead
//!    letters (delivered before the commit: outputs are at least once). Broker and store errors
//!    are retried with backoff; they never dead-letter a package. Batches already waiting when
//!    a commit starts are merged into it (a group commit: one transaction, one delivery wait),
//!    up to `pipeline.max_group_batches` and `pipeline.max_group_packages`.

use crate::batch::{self, AssessedBatch, Batch, InputMessage};
use crate::dlq::{Source, H_REPLAY, H_SOURCE_TIMESTAMP};
use crate::metrics::{self as mx, Health};
use crate::pace::{Ahead, Pace};
use crate::settings::{Pipeline, Settings};
use crate::store::{CommitOutcome, PartitionRange, Store, StoreUrl};
use anyhow::{Context, Result};
use dutyflow_operators::risk::{AccountHistory, Tier};
use dutyflow_operators::Operators;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Counters of what the service committed (the demo's summary reads them).
#[derive(Debug, Default)]
pub struct Stats {
    pub messages: AtomicU64,
    pub packages: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub batches: AtomicU64,
    /// Store transactions that committed batches (a group commit takes several).
    pub commits: AtomicU64,
    pub by_code: Mutex<HashMap<String, u64>>,
    /// Assignment and store reachability, for `/readyz`.
    pub health: Arc<Health>,
    /// Input offsets the consumer found missing (expired by the broker before being read).
    pub skipped_offsets: AtomicU64,
}

/// Batches handed to the assess stage and not yet committed or abandoned.
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    zero: Condvar,
}

impl InFlight {
    fn add(&self) {
        let mut c = self.count.lock().unwrap_or_else(|e| e.into_inner());
        *c += 1;
        metrics::gauge!(mx::IN_FLIGHT).set(*c as f64);
    }
    fn done(&self) {
        let mut c = self.count.lock().unwrap_or_else(|e| e.into_inner());
        *c = c.saturating_sub(1);
        metrics::gauge!(mx::IN_FLIGHT).set(*c as f64);
        if *c == 0 {
            self.zero.notify_all();
        }
    }
    fn count(&self) -> usize {
        *self.count.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn wait_zero(&self) {
        let mut c = self.count.lock().unwrap_or_else(|e| e.into_inner());
        while *c > 0 {
            c = self.zero.wait(c).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Consumer context: seeks to the store's offsets on assignment, drains on revocation.
struct GroupContext {
    store_url: StoreUrl,
    group: String,
    /// Next expected offset per partition (the store's, then advanced as batches close).
    positions: Mutex<HashMap<(String, i32), i64>>,
    generation: AtomicU64,
    in_flight: Arc<InFlight>,
    stats: Arc<Stats>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
                positions.clear();
                let stored = loop {
                    match self.stored_offsets(tpl) {
                        Ok(s) => break s,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read offsets from the store; retrying");
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    }
                };
                for elem in tpl.elements() {
                    let key = (elem.topic().to_string(), elem.partition());
                    let next = stored.get(&key).copied().unwrap_or(-1);
                    positions.insert(key, next);
                }
                for ((topic, partition), next) in positions.iter() {
                    let offset = if *next >= 0 {
                        Offset::Offset(*next)
                    } else {
                        Offset::Beginning
                    };
                    let _ = tpl.set_partition_offset(topic, *partition, offset);
                }
                self.generation.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "assigning partitions failed");
                }
                self.stats
                    .health
                    .assigned
                    .store(!positions.is_empty(), Ordering::SeqCst);
                metrics::counter!(mx::REBALANCES, "kind" => "assign").increment(1);
                metrics::gauge!(mx::ASSIGNED).set(positions.len() as f64);
                tracing::info!(
                    partitions = positions.len(),
                    "partitions assigned; resuming from the store's offsets"
                );
            }
            _ => {
                // Revocation (or a rebalance error): let every in-flight batch finish first.
                self.generation.fetch_add(1, Ordering::SeqCst);
                self.in_flight.wait_zero();
                self.positions.lock().unwrap_or_else(|e| e.into_inner()).clear();
                self.stats.health.assigned.store(false, Ordering::SeqCst);
                metrics::counter!(mx::REBALANCES, "kind" => "revoke").increment(1);
                metrics::gauge!(mx::ASSIGNED).set(0.0);
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(error = %e, "unassign failed");
                }
                tracing::info!("partitions revoked after in-flight batches drained");
            }
        }
    }
}

impl GroupContext {
    fn stored_offsets(&self, tpl: &TopicPartitionList) -> Result<HashMap<(String, i32), i64>> {
        let store = Store::open(&self.store_url)?;
        let mut out = HashMap::new();
        let mut topics: Vec<String> = tpl.elements().iter().map(|e| e.topic().to_string()).collect();
        topics.dedup();
        for topic in topics {
            for (p, next) in store.offsets(&self.group, &topic)? {
                out.insert((topic.clone(), p), next);
            }
        }
        Ok(out)
    }
}

/// Producer context: counts delivery failures, so a batch can be retried.
///
/// The service's producer reports only failures (`delivery.report.only.error`): a report per
/// output message, ~13,000 per batch flat out, was work for the producer's polling thread
/// that told nothing new. A batch instead waits until the producer holds no message
/// ([`wait_all_delivered`]): librdkafka frees an acknowledged message at once, and a failed one
/// only after its report has run, so an empty producer has reported every failure.
pub struct DeliveryContext {
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// How long a batch waits for its outputs' acknowledgements (see [`delivery_wait`]).
    wait: Duration,
}

impl DeliveryContext {
    /// The context of a producer made from `config`: its wait follows the config's timeout.
    fn for_config(config: &ClientConfig) -> Self {
        DeliveryContext {
            failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
            wait: delivery_wait(config),
        }
    }
}

/// The consumers' `fetch.queue.backoff.ms` (see where the service's consumer is made).
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// The service producer's `message.timeout.ms` unless the settings give one: how long
/// librdkafka keeps trying to deliver a message before it reports it failed.
const MESSAGE_TIMEOUT_MS: u64 = 30_000;

/// librdkafka's own `message.timeout.ms`, for a producer whose config names no timeout.
const LIBRDKAFKA_MESSAGE_TIMEOUT_MS: u64 = 300_000;

/// How much longer than the producer's message timeout a batch waits for its outputs, so that
/// a message that times out has been reported (and counted as failed) before the wait ends.
const DELIVERY_MARGIN: Duration = Duration::from_secs(5);

/// How long a batch waits for its outputs under `config`: the message timeout it sets plus the
/// margin. Set under both of librdkafka's names, either value may win when the producer is made
/// (the configuration is a map), so the longer one counts. 0 is librdkafka's "no limit": a
/// batch then waits for its outputs however long the broker takes, and so does a shutdown.
fn delivery_wait(config: &ClientConfig) -> Duration {
    let timeouts: Vec<u64> = ["message.timeout.ms", "delivery.timeout.ms"]
        .iter()
        .filter_map(|key| config.get(key)?.trim().parse().ok())
        .collect();
    if timeouts.contains(&0) {
        return Duration::MAX;
    }
    let timeout_ms = timeouts.into_iter().max().unwrap_or(LIBRDKAFKA_MESSAGE_TIMEOUT_MS);
    Duration::from_millis(timeout_ms) + DELIVERY_MARGIN
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::SeqCst);
            metrics::counter!(mx::PRODUCER_ERRORS).increment(1);
            *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
        }
    }
}

/// A librdkafka client configuration: dutyflow's `defaults`, then the settings' pass-through
/// properties (which win).
pub fn client_config(settings: &Settings, brokers: &str, defaults: &[(&str, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in defaults {
        c.set(*k, v);
    }
    for (k, v) in &settings.kafka.properties {
        c.set(k, v);
    }
    c
}

/// The service's producer of assessments and dead letters: idempotent, and reporting only
/// failed deliveries (see [`DeliveryContext`]).
fn service_producer(settings: &Settings, brokers: &str) -> Result<ThreadedProducer<DeliveryContext>> {
    let config = service_producer_config(settings, brokers);
    config
        .create_with_context(DeliveryContext::for_config(&config))
        .context("cannot create the Kafka producer")
}

fn service_producer_config(settings: &Settings, brokers: &str) -> ClientConfig {
    let mut config = client_config(
        settings,
        brokers,
        &[
            ("enable.idempotence", "true".into()),
            // A batch's outputs are queued at once and its commit waits for their
            // acknowledgements: a longer linger only delays them. 1 against 5 ms, two pairs at
            // 60,000 packages/s (BENCHMARKS.md §4, session 7): publish 4.8-5.5 against 8.1-8.2 ms
            // per batch, p99 74-88 against 90-113 ms.
            ("linger.ms", "1".into()),
            ("compression.type", "lz4".into()),
            ("message.timeout.ms", MESSAGE_TIMEOUT_MS.to_string()),
            ("delivery.report.only.error", "true".into()),
        ],
    );
    // `delivery.timeout.ms` is librdkafka's other name for `message.timeout.ms`: a timeout set
    // under that name replaces the default instead of racing it.
    let properties = &settings.kafka.properties;
    if properties.contains_key("delivery.timeout.ms") && !properties.contains_key("message.timeout.ms") {
        config.remove("message.timeout.ms");
    }
    config
}

/// Runs the service until `shutdown` is set. `brokers` is the resolved bootstrap list.
pub fn run(
    settings: &Settings,
    ops: Arc<Operators>,
    brokers: &str,
    shutdown: Arc<AtomicBool>,
    stats: Arc<Stats>,
) -> Result<()> {
    let store_url = settings.store_url()?;
    // Open once up front: creates the store and applies migrations, or fails clearly.
    let store = Store::open(&store_url)?;
    stats.health.store_ok.store(true, Ordering::SeqCst);
    metrics::gauge!(mx::UP).set(1.0);
    let in_flight = Arc::new(InFlight::default());
    let ctx = GroupContext {
        store_url: store_url.clone(),
        group: settings.kafka.group_id.clone(),
        positions: Mutex::new(HashMap::new()),
        generation: AtomicU64::new(0),
        in_flight: in_flight.clone(),
        stats: stats.clone(),
    };
    let consumer: Arc<BaseConsumer<GroupContext>> = Arc::new(
        client_config(
            settings,
            brokers,
            &[
                ("group.id", settings.kafka.group_id.clone()),
                ("enable.auto.commit", "false".into()),
                ("enable.auto.offset.store", "false".into()),
                ("auto.offset.reset", "earliest".into()),
                ("partition.assignment.strategy", "range,roundrobin".into()),
                (
                    "queued.max.messages.kbytes",
                    settings.pipeline.consumer_queue_kbytes.to_string(),
                ),
                // How long a partition's fetches pause once the prefetch queue is full
                // (librdkafka's default: 1 s). Draining a backlog, the service emptied its queue
                // well within that second and then waited with nothing to do (51 k against 96 k
                // packages/s on Tansu: BENCHMARKS.md §4, session 10).
                ("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS.into()),
                ("session.timeout.ms", "6000".into()),
                ("heartbeat.interval.ms", "500".into()),
            ],
        )
        .create_with_context(ctx)
        .context("cannot create the Kafka consumer")?,
    );
    consumer
        .subscribe(&[&settings.kafka.input_topic])
        .context("cannot subscribe to the input topic")?;
    let producer = Arc::new(service_producer(settings, brokers)?);

    let cap = settings.pipeline.max_in_flight_batches;
    let (to_assess, assess_rx): (SyncSender<Batch>, Receiver<Batch>) = sync_channel(cap);
    // Room for a whole group to queue while the previous group commits.
    let (to_commit, commit_rx): (SyncSender<AssessedBatch>, Receiver<AssessedBatch>) =
        sync_channel(settings.pipeline.max_group_batches);
    let resync = Arc::new(AtomicBool::new(false));
    let pace = Arc::new(Pace::default());

    let assess_ops = ops.clone();
    let assess_pace = pace.clone();
    let assess_stage = std::thread::Builder::new()
        .name("dutyflow-assess".into())
        .spawn(move || {
            let mut history = AccountHistory::default();
            for b in assess_rx {
                let started = Instant::now();
                let bytes = input_bytes(&b.messages);
                let assessed = batch::assess(&assess_ops, &mut history, b);
                let took = started.elapsed();
                assess_pace.assessed(bytes, took);
                metrics::histogram!(mx::STAGE_DURATION, "stage" => "assess").record(took.as_secs_f64());
                if to_commit.send(assessed).is_err() {
                    break;
                }
            }
        })?;

    let commit_stage = {
        let (settings, in_flight, resync, shutdown, stats, consumer, producer, pace) = (
            settings.clone(),
            in_flight.clone(),
            resync.clone(),
            shutdown.clone(),
            stats.clone(),
            consumer.clone(),
            producer.clone(),
            pace.clone(),
        );
        std::thread::Builder::new()
            .name("dutyflow-commit".into())
            .spawn(move || {
                let mut store = store;
                let mut held = None;
                while let Some((mut b, batches)) = next_group(&settings, &commit_rx, &mut held) {
                    if let Some(at) = b.assessed_at {
                        metrics::histogram!(mx::STAGE_DURATION, "stage" => "commit_wait")
                            .record(at.elapsed().as_secs_f64());
                    }
                    pace.commit_starts(input_bytes(&b.messages));
                    let mut took = None;
                    if !resync.load(Ordering::SeqCst) {
                        took = commit_with_retry(
                            &settings, &mut store, &producer, &consumer, &mut b, batches, &resync, &shutdown, &stats,
                        );
                    }
                    pace.commit_ends(took);
                    for _ in 0..batches {
                        in_flight.done();
                    }
                }
            })?
    };

    let stopped = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (settings, consumer, producer, stats, stopped) = (
            settings.clone(),
            consumer.clone(),
            producer.clone(),
            stats.clone(),
            stopped.clone(),
        );
        std::thread::Builder::new()
            .name("dutyflow-monitor".into())
            .spawn(move || monitor(&settings, &consumer, &producer, &stats, &stopped))?
    };

    consume_loop(settings, &consumer, &to_assess, &in_flight, &pace, &resync, &shutdown);
    drop(to_assess);
    let _ = assess_stage.join();
    let _ = commit_stage.join();
    stopped.store(true, Ordering::SeqCst);
    let _ = monitor.join();
    metrics::gauge!(mx::UP).set(0.0);
    // Leave the group cleanly: revocation runs with nothing in flight.
    consumer.unsubscribe();
    let _ = producer.flush(Duration::from_secs(10));
    tracing::info!("dutyflow stopped: in-flight batches committed, group left");
    Ok(())
}

/// Every two seconds: consumer lag per assigned partition (high watermark − the store's next
/// offset), the producer's queue depth, and whether the store answers (for `/readyz`).
fn monitor(
    settings: &Settings,
    consumer: &BaseConsumer<GroupContext>,
    producer: &ThreadedProducer<DeliveryContext>,
    stats: &Stats,
    stopped: &AtomicBool,
) {
    let url = consumer.context().store_url.clone();
    let topic = &settings.kafka.input_topic;
    let mut store: Option<Store> = None;
    let mut shown: Vec<i32> = Vec::new();
    while !stopped.load(Ordering::SeqCst) {
        metrics::gauge!(mx::PRODUCER_QUEUE).set(f64::from(producer.in_flight_count()));
        if store.is_none() {
            store = Store::open(&url)
                .map_err(|e| tracing::warn!(error = %e, "the store does not answer"))
                .ok();
        }
        let offsets = store.as_ref().map(|s| s.offsets(&settings.kafka.group_id, topic));
        match offsets {
            Some(Ok(stored)) => {
                stats.health.store_ok.store(true, Ordering::SeqCst);
                let assigned: Vec<i32> = consumer
                    .assignment()
                    .map(|a| a.elements_for_topic(topic).iter().map(|e| e.partition()).collect())
                    .unwrap_or_default();
                for &p in &assigned {
                    if let Ok((low, high)) = consumer.fetch_watermarks(topic, p, Duration::from_secs(1)) {
                        let next = stored.get(&p).copied().unwrap_or(low).max(low);
                        metrics::gauge!(mx::CONSUMER_LAG, "partition" => p.to_string())
                            .set((high - next).max(0) as f64);
                    }
                }
                for p in shown.iter().filter(|p| !assigned.contains(p)) {
                    metrics::gauge!(mx::CONSUMER_LAG, "partition" => p.to_string()).set(0.0);
                }
                shown = assigned;
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the store does not answer");
                stats.health.store_ok.store(false, Ordering::SeqCst);
                store = None;
            }
            None => stats.health.store_ok.store(false, Ordering::SeqCst),
        }
        for _ in 0..20 {
            if stopped.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Starts the metrics endpoint on `metrics.listen` (none when it is empty).
pub fn start_metrics(settings: &Settings, stats: &Stats) -> Result<Option<mx::Endpoint>> {
    let handle = mx::install()?;
    if settings.metrics.listen.is_empty() {
        return Ok(None);
    }
    let endpoint = mx::serve(&settings.metrics.listen, handle, stats.health.clone())?;
    tracing::info!(address = %endpoint.addr, "metrics on /metrics, health on /healthz and /readyz");
    Ok(Some(endpoint))
}

fn consume_loop(
    settings: &Settings,
    consumer: &BaseConsumer<GroupContext>,
    to_assess: &SyncSender<Batch>,
    in_flight: &InFlight,
    pace: &Pace,
    resync: &AtomicBool,
    shutdown: &AtomicBool,
) {
    let ctx = consumer.context();
    let mut batch = Batch::default();
    let mut opened: Option<Instant> = None;
    let mut generation = ctx.generation.load(Ordering::SeqCst);
    while !shutdown.load(Ordering::SeqCst) {
        if resync.load(Ordering::SeqCst) {
            // Another member moved one of our offsets: drop what we hold, wait for the
            // pipeline to drain, and start again from the store.
            batch = Batch::default();
            opened = None;
            in_flight.wait_zero();
            reseek(consumer);
            generation = ctx.generation.load(Ordering::SeqCst);
            resync.store(false, Ordering::SeqCst);
        }
        let polled = consumer.poll(poll_timeout(&settings.pipeline, opened.map(|t| t.elapsed())));
        let current = ctx.generation.load(Ordering::SeqCst);
        if current != generation {
            // The assignment changed while we held messages: they belong to the old one.
            batch = Batch::default();
            opened = None;
            generation = current;
        }
        match polled {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error; librdkafka retries"),
            Some(Ok(m)) => {
                metrics::counter!(mx::MESSAGES_RECEIVED).increment(1);
                let key = (m.topic().to_string(), m.partition());
                let mut positions = ctx.positions.lock().unwrap_or_else(|e| e.into_inner());
                let Some(expected) = positions.get(&key).copied() else {
                    continue;
                };
                positions.insert(key.clone(), m.offset() + 1);
                drop(positions);
                // `expected` is the offset after the previous message of this partition.
                if expected >= 0 && m.offset() > expected {
                    // The broker no longer holds these offsets (retention expired them before
                    // they were consumed) or they are transaction markers: never silent.
                    let skipped = (m.offset() - expected) as u64;
                    ctx.stats.skipped_offsets.fetch_add(skipped, Ordering::Relaxed);
                    metrics::counter!(mx::INPUT_OFFSETS_SKIPPED).increment(skipped);
                    tracing::error!(
                        topic = %key.0,
                        partition = key.1,
                        from = expected,
                        to = m.offset() - 1,
                        "input offsets were skipped: the broker no longer holds them (retention) or they are transaction markers"
                    );
                }
                match batch
                    .ranges
                    .iter_mut()
                    .find(|r| r.topic == key.0 && r.partition == key.1)
                {
                    Some(r) => r.next = m.offset() + 1,
                    None => batch.ranges.push(PartitionRange {
                        topic: key.0.clone(),
                        partition: key.1,
                        expected,
                        next: m.offset() + 1,
                    }),
                }
                let replay_count = m
                    .headers()
                    .and_then(|h| {
                        h.iter()
                            .find(|h| h.key == H_REPLAY)
                            .and_then(|h| h.value)
                            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                    })
                    .unwrap_or(0);
                batch.messages.push(InputMessage {
                    source: Source {
                        topic: key.0,
                        partition: key.1,
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        replay_count,
                    },
                    payload: m.payload().unwrap_or_default().to_vec(),
                    timestamp_ms: m.timestamp().to_millis(),
                });
                opened.get_or_insert_with(Instant::now);
            }
        }
        let waited = opened.map(|t| t.elapsed());
        if batch_due(
            &settings.pipeline,
            batch.messages.len(),
            waited,
            in_flight.count(),
            || pace.ahead(input_bytes(&batch.messages)),
        ) {
            in_flight.add();
            pace.handed(input_bytes(&batch.messages));
            if to_assess.send(std::mem::take(&mut batch)).is_err() {
                in_flight.done();
                return;
            }
            opened = None;
        }
    }
    if !batch.messages.is_empty() {
        in_flight.add();
        pace.handed(input_bytes(&batch.messages));
        if to_assess.send(batch).is_err() {
            in_flight.done();
        }
    }
}

/// Whether the open batch closes now. It closes when full; or once it has waited
/// `batch_max_wait_ms` since its first message, if fewer than `batches_ahead` batches are in
/// flight (handed to the assess stage, not committed yet) and the commit thread is expected to
/// be free by the time the batch is assessed (`ahead`, see `pace.rs`). Otherwise it grows while
/// the commit stage is busy: a busy store then commits fewer, larger batches (each commit has a
/// fixed cost), instead of queueing small ones behind each other, which at a steady rate near
/// the store's small-batch capacity made every message wait for a queue of commits.
fn batch_due(
    p: &Pipeline,
    messages: usize,
    waited: Option<Duration>,
    in_flight: usize,
    ahead: impl FnOnce() -> Ahead,
) -> bool {
    let on_time = waited.is_some_and(|w| w >= Duration::from_millis(p.batch_max_wait_ms));
    messages > 0 && (messages >= p.batch_max_messages || (on_time && in_flight < p.batches_ahead && ahead().in_time()))
}

/// How long the consumer waits for a message: with no batch open, 50 ms (the loop also watches
/// for shutdown and resyncs); with one open, no later than when it will have waited
/// `batch_max_wait_ms`; past that (it waits for room, or for the commit thread), 2 ms, so that
/// it closes soon after it may even when no message arrives.
fn poll_timeout(p: &Pipeline, waited: Option<Duration>) -> Duration {
    const IDLE: Duration = Duration::from_millis(50);
    const RECHECK: Duration = Duration::from_millis(2);
    match waited {
        None => IDLE,
        Some(w) => Duration::from_millis(p.batch_max_wait_ms)
            .saturating_sub(w)
            .clamp(RECHECK, IDLE),
    }
}

/// Input bytes of `messages`: what the pace of the stages is measured against.
fn input_bytes(messages: &[InputMessage]) -> u64 {
    messages.iter().map(|m| m.payload.len() as u64).sum()
}

/// Seeks every assigned partition back to the store's offset.
fn reseek(consumer: &BaseConsumer<GroupContext>) {
    let ctx = consumer.context();
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    let stored = match ctx.stored_offsets(&assignment) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read offsets for resync");
            return;
        }
    };
    let mut positions = ctx.positions.lock().unwrap_or_else(|e| e.into_inner());
    for elem in assignment.elements() {
        let key = (elem.topic().to_string(), elem.partition());
        let next = stored.get(&key).copied().unwrap_or(-1);
        let offset = if next >= 0 {
            Offset::Offset(next)
        } else {
            Offset::Beginning
        };
        if let Err(e) = consumer.seek(&key.0, key.1, offset, Duration::from_secs(5)) {
            tracing::warn!(error = %e, partition = key.1, "seek failed");
        }
        positions.insert(key, next);
    }
    tracing::info!("resynchronised with the store after another member committed our partitions");
}

/// The next batch to commit (`held` first, else from the channel, waiting) with the batches
/// already waiting behind it merged in, and how many batches it holds; `None` when the assess
/// stage has stopped. A waiting batch that does not follow the group, or would take it past
/// `pipeline.max_group_packages`, is left in `held` for the next group.
fn next_group(
    settings: &Settings,
    commit_rx: &Receiver<AssessedBatch>,
    held: &mut Option<AssessedBatch>,
) -> Option<(AssessedBatch, usize)> {
    let mut group = match held.take() {
        Some(b) => b,
        None => commit_rx.recv().ok()?,
    };
    let (mut batches, mut packages) = (1, group.packages());
    while batches < settings.pipeline.max_group_batches {
        let Ok(next) = commit_rx.try_recv() else {
            break;
        };
        let more = next.packages();
        if packages + more > settings.pipeline.max_group_packages {
            *held = Some(next);
            break;
        }
        if let Err(next) = group.merge(next) {
            *held = Some(next);
            break;
        }
        batches += 1;
        packages += more;
    }
    Some((group, batches))
}

/// Commits `b` (`batches` batches merged), retrying store and broker errors until it commits,
/// is fenced (then `resync` is set) or the service shuts down. Returns how long the attempt
/// that committed took; `None` when none did.
#[allow(clippy::too_many_arguments)]
fn commit_with_retry(
    settings: &Settings,
    store: &mut Store,
    producer: &ThreadedProducer<DeliveryContext>,
    consumer: &BaseConsumer<GroupContext>,
    b: &mut AssessedBatch,
    batches: usize,
    resync: &AtomicBool,
    shutdown: &AtomicBool,
    stats: &Stats,
) -> Option<Duration> {
    let mut backoff = Duration::from_millis(100);
    loop {
        // The store decides on the records while the closure below changes the outputs: the
        // records leave the batch for the attempt and come back after it.
        let mut records = std::mem::take(&mut b.records);
        let ranges = b.ranges.clone();
        let started = Instant::now();
        // Shared by the two steps of the delivery.
        let publishing = Cell::new(Duration::ZERO);
        let publish_failed = Cell::new(false);
        // The outputs are queued on a thread of their own, while this one writes the store's
        // rows: the commit thread is the service's one serial stage, and queueing a record with
        // librdkafka (a copy, an allocation, a lock) took a fifth of its time. That thread
        // borrows the batch, so whatever becomes of it (an error, a panic, a thread that could
        // not start) the batch stays whole for the retry; the scope ends the borrow.
        let assessed: &mut AssessedBatch = b;
        let outcome = std::thread::scope(|scope| {
            let sending: RefCell<Option<Sending<'_>>> = RefCell::new(None);
            let (sending_ref, publish_failed_ref) = (&sending, &publish_failed);
            // Outputs go out once the store has decided every package; the store writes its rows
            // while they are queued and the broker acknowledges them, and commits after the last
            // acknowledgement.
            let outcome = store.commit_batch_with(
                &settings.kafka.group_id,
                &ranges,
                &mut records,
                move |records, rejections| {
                    batch::undo_store_rejections(assessed);
                    for r in rejections {
                        batch::apply_store_rejection(assessed, records, r);
                    }
                    let assessed: &AssessedBatch = assessed;
                    // Read before anything of this attempt is queued: any failure of its
                    // outputs is counted after it.
                    let failed_before = producer.context().failed.load(Ordering::SeqCst);
                    let handle = std::thread::Builder::new()
                        .name("dutyflow-publish".into())
                        .spawn_scoped(scope, move || {
                            publish(settings, producer, &assessed.messages, &assessed.results)
                        });
                    match handle {
                        Ok(h) => {
                            *sending_ref.borrow_mut() = Some((h, failed_before));
                            Ok(())
                        }
                        Err(e) => {
                            publish_failed_ref.set(true);
                            Err(anyhow::Error::new(e).context("cannot start the thread that queues the outputs"))
                        }
                    }
                },
                || {
                    let wait_started = Instant::now();
                    let delivered =
                        join_sending(&sending).and_then(|failed_before| await_delivery(producer, failed_before));
                    publishing.set(wait_started.elapsed());
                    publish_failed.set(delivered.is_err());
                    delivered
                },
            );
            // A store error between the two steps: the thread is joined here (whatever it
            // queued is delivered at least once; the retry queues the batch again).
            if sending.borrow().is_some() {
                if let Err(e) = join_sending(&sending) {
                    tracing::warn!(error = %e, "queueing the outputs of a failed attempt failed too");
                }
            }
            outcome
        });
        let (publishing, publish_failed) = (publishing.get(), publish_failed.get());
        b.records = records;
        let storing = started.elapsed().saturating_sub(publishing).as_secs_f64();
        match outcome {
            Ok(CommitOutcome::Committed) => {
                metrics::histogram!(mx::STAGE_DURATION, "stage" => "publish").record(publishing.as_secs_f64());
                metrics::histogram!(mx::STAGE_DURATION, "stage" => "store_commit").record(storing);
                metrics::histogram!(mx::STORE_COMMIT).record(storing);
                stats.health.store_ok.store(true, Ordering::SeqCst);
                record_stats(stats, b, batches);
                let filters = store.duplicate_filters();
                metrics::gauge!(mx::FILTER_BYTES).set(filters.bytes as f64);
                for (state, carriers) in [
                    ("filtered", filters.filtered),
                    ("growing", filters.growing),
                    ("store_only", filters.store_only),
                ] {
                    metrics::gauge!(mx::FILTER_CARRIERS, "state" => state).set(carriers as f64);
                }
                let mut tpl = TopicPartitionList::new();
                for r in &b.ranges {
                    let _ = tpl.add_partition_offset(&r.topic, r.partition, Offset::Offset(r.next));
                }
                // Kafka commits only feed lag dashboards; the store's offsets are the truth.
                let _ = consumer.commit(&tpl, CommitMode::Async);
                return Some(started.elapsed());
            }
            Ok(CommitOutcome::Fenced {
                topic,
                partition,
                stored,
            }) => {
                tracing::warn!(%topic, partition, stored, batches, "batch abandoned: another member committed this partition");
                resync.store(true, Ordering::SeqCst);
                return None;
            }
            Err(e) => {
                if !publish_failed {
                    metrics::counter!(mx::STORE_ERRORS).increment(1);
                    stats.health.store_ok.store(false, Ordering::SeqCst);
                }
                if shutdown.load(Ordering::SeqCst) {
                    tracing::warn!(error = %e, "batch abandoned at shutdown; it will be reprocessed from the store's offsets");
                    return None;
                }
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "store or broker error; retrying the batch");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Counts a committed batch (`batches` merged) in the demo's stats and in the metrics.
fn record_stats(stats: &Stats, b: &AssessedBatch, batches: usize) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    stats.batches.fetch_add(batches as u64, Ordering::Relaxed);
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats.messages.fetch_add(b.messages.len() as u64, Ordering::Relaxed);
    let (mut packages, mut accepted, mut rejected) = (0, 0, 0);
    let mut tiers = [0u64; 4];
    let mut by_code = stats.by_code.lock().unwrap_or_else(|e| e.into_inner());
    for (msg, r) in b.messages.iter().zip(&b.results) {
        packages += r.packages;
        accepted += r.accepted;
        rejected += r.dead_letters.len() as u64;
        for (t, n) in tiers.iter_mut().zip(r.tiers) {
            *t += n;
        }
        for d in &r.dead_letters {
            *by_code.entry(d.code.to_string()).or_insert(0) += 1;
            metrics::counter!(mx::DEAD_LETTERS, "code" => d.code, "stage" => d.stage).increment(1);
        }
        if let Some(ts) = msg.timestamp_ms {
            let latency = now.as_millis() as i64 - ts;
            metrics::histogram!(mx::END_TO_END).record(latency.max(0) as f64 / 1000.0);
        }
    }
    drop(by_code);
    stats.packages.fetch_add(packages, Ordering::Relaxed);
    stats.accepted.fetch_add(accepted, Ordering::Relaxed);
    stats.rejected.fetch_add(rejected, Ordering::Relaxed);
    metrics::counter!(mx::PACKAGES_RECEIVED).increment(packages);
    metrics::counter!(mx::PACKAGES, "outcome" => "accepted").increment(accepted);
    metrics::counter!(mx::PACKAGES, "outcome" => "rejected").increment(rejected);
    for (tier, n) in Tier::ALL.iter().zip(tiers) {
        if n > 0 {
            metrics::counter!(mx::RISK_TIER, "tier" => tier.as_str()).increment(n);
        }
    }
    // Duty per carrier and regime: summed per batch first, so the labelled counters are touched
    // once per combination rather than once per package.
    let mut duty: HashMap<(&str, &str), u64> = HashMap::new();
    for record in &b.records {
        for p in &record.packages {
            if let Some(a) = &p.accepted {
                *duty.entry((record.carrier.as_str(), a.regime.as_str())).or_insert(0) += a.duty_cents.max(0) as u64;
            }
        }
    }
    for ((carrier, regime), cents) in duty {
        metrics::counter!(mx::DUTY_CENTS, "carrier" => carrier.to_string(), "regime" => regime.to_string())
            .increment(cents);
    }
    metrics::histogram!(mx::BATCH_MESSAGES).record(b.messages.len() as f64);
    metrics::histogram!(mx::BATCH_PACKAGES).record(packages as f64);
    metrics::gauge!(mx::LAST_COMMIT).set(now.as_secs_f64());
}

/// The thread queueing a batch's outputs, and the producer's failure count before it started.
type Sending<'scope> = (std::thread::ScopedJoinHandle<'scope, Result<()>>, u64);

/// Waits for the thread in `sending`; the failure count before it started, if it queued every
/// output.
fn join_sending(sending: &RefCell<Option<Sending<'_>>>) -> Result<u64> {
    let Some((handle, failed_before)) = sending.borrow_mut().take() else {
        anyhow::bail!("the batch's outputs were not queued");
    };
    match handle.join() {
        Ok(queued) => queued.map(|()| failed_before),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            anyhow::bail!("the thread queueing the batch's outputs panicked: {what}")
        }
    }
}

/// Queues every output of a batch's messages for sending (see [`await_delivery`]).
fn publish(
    settings: &Settings,
    producer: &ThreadedProducer<DeliveryContext>,
    messages: &[InputMessage],
    results: &[batch::MessageResult],
) -> Result<()> {
    for (msg, result) in messages.iter().zip(results) {
        let source_ts = msg.timestamp_ms.map(|t| t.to_string());
        let source_header = || {
            let h = OwnedHeaders::new_with_capacity(7);
            match &source_ts {
                Some(t) => h.insert(Header {
                    key: H_SOURCE_TIMESTAMP,
                    value: Some(t.as_bytes()),
                }),
                None => h,
            }
        };
        for (key, payload) in &result.assessments {
            let mut record = BaseRecord::<[u8], [u8]>::to(&settings.kafka.assessments_topic)
                .payload(payload)
                .headers(source_header());
            if let Some(k) = key {
                record = record.key(k.as_bytes());
            }
            send(producer, record)?;
        }
        for dl in &result.dead_letters {
            let mut headers = source_header();
            for (k, v) in dl.headers(&msg.source) {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let record = BaseRecord::<[u8], [u8]>::to(&settings.kafka.dlq_topic)
                .key(&dl.key)
                .payload(&dl.value)
                .headers(headers);
            send(producer, record)?;
        }
    }
    Ok(())
}

/// Waits until the broker has acknowledged every output sent, and fails if any delivery failed
/// since the producer's failure count was `failed_before`.
fn await_delivery(producer: &ThreadedProducer<DeliveryContext>, failed_before: u64) -> Result<()> {
    let wait = producer.context().wait;
    if !wait_all_delivered(producer, wait) {
        anyhow::bail!(
            "the broker did not acknowledge the batch's outputs within {} s",
            wait.as_secs()
        );
    }
    if producer.context().failed.load(Ordering::SeqCst) != failed_before {
        let last = producer
            .context()
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        anyhow::bail!("delivery failed: {}", last.unwrap_or_default());
    }
    Ok(())
}

/// Waits until `producer` holds no message (each acknowledged, or failed with its report run;
/// see [`DeliveryContext`]); false on timeout. Polls the producer's count, sleeping 50 µs at
/// first and up to 1 ms between looks: the acknowledgements of a batch take milliseconds.
fn wait_all_delivered(producer: &ThreadedProducer<DeliveryContext>, timeout: Duration) -> bool {
    let started = Instant::now();
    let mut pause = Duration::from_micros(50);
    loop {
        if producer.in_flight_count() == 0 {
            return true;
        }
        if started.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

pub fn send<'a>(producer: &ThreadedProducer<DeliveryContext>, mut record: BaseRecord<'a, [u8], [u8]>) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e).context("cannot queue an output message"),
        }
    }
}

/// An idempotent producer for input messages (`produce`, the demo's generator).
pub fn producer(settings: &Settings, brokers: &str) -> Result<ThreadedProducer<DeliveryContext>> {
    let config = client_config(
        settings,
        brokers,
        &[
            ("enable.idempotence", "true".into()),
            ("linger.ms", "5".into()),
            ("compression.type", "lz4".into()),
        ],
    );
    config
        .create_with_context(DeliveryContext::for_config(&config))
        .context("cannot create the Kafka producer")
}

/// Sends every non-empty line of `files` as one message to the input topic; returns the count.
pub fn produce_files(settings: &Settings, files: &[String]) -> Result<u64> {
    use std::io::BufRead;
    let producer = producer(settings, &settings.kafka.brokers)?;
    let mut n = 0;
    for f in files {
        let file = std::fs::File::open(f).with_context(|| format!("cannot open {f}"))?;
        for line in std::io::BufReader::new(file).split(b'\n') {
            let line = line.with_context(|| format!("cannot read {f}"))?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            send(
                &producer,
                BaseRecord::<[u8], [u8]>::to(&settings.kafka.input_topic).payload(&line),
            )?;
            n += 1;
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .context("producer flush timed out")?;
    if producer.context().failed.load(Ordering::SeqCst) > 0 {
        anyhow::bail!(
            "some manifests were not delivered: {}",
            producer
                .context()
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default()
        );
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(20);

    fn pipeline(batches_ahead: usize) -> Pipeline {
        let mut p = Settings::load(None).unwrap().pipeline;
        (p.batch_max_messages, p.batch_max_wait_ms, p.batches_ahead) = (256, 20, batches_ahead);
        p
    }

    /// A batch waits for its outputs longer than librdkafka may take to deliver them (its
    /// message timeout, under either name, plus a margin), so that a message that times out is
    /// reported and counted before the wait gives up; the default applies only when the
    /// settings give no timeout.
    #[test]
    fn a_batch_waits_longer_than_its_messages_may_take() {
        let producer_with = |properties: &[(&str, &str)]| {
            let mut settings = Settings::load(None).unwrap();
            for (k, v) in properties {
                settings.kafka.properties.insert(k.to_string(), v.to_string());
            }
            let config = service_producer_config(&settings, "127.0.0.1:9");
            let named = |key| config.get(key).map(str::to_string);
            let timeouts = (named("message.timeout.ms"), named("delivery.timeout.ms"));
            let producer = service_producer(&settings, "127.0.0.1:9").unwrap();
            (producer.context().wait, timeouts)
        };
        let some = |v: &str| Some(v.to_string());
        assert_eq!(producer_with(&[]), (Duration::from_secs(35), (some("30000"), None)));
        assert_eq!(
            producer_with(&[("message.timeout.ms", "120000")]),
            (Duration::from_secs(125), (some("120000"), None))
        );
        assert_eq!(
            producer_with(&[("delivery.timeout.ms", "90000")]),
            (Duration::from_secs(95), (None, some("90000")))
        );
        assert_eq!(producer_with(&[("message.timeout.ms", "0")]).0, Duration::MAX);
        let both = [("message.timeout.ms", "40000"), ("delivery.timeout.ms", "70000")];
        assert_eq!(producer_with(&both).0, Duration::from_secs(75));
    }

    /// The wait for a batch's outputs ends only once the broker holds every message, and a
    /// failed delivery is counted by the time it ends (the producer reports only failures).
    #[test]
    fn a_batch_waits_for_every_acknowledgement_and_sees_every_failure() {
        use rdkafka::mocking::MockCluster;
        use rdkafka::types::RDKafkaApiKey;
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("out", 4, 1).unwrap();
        let brokers = cluster.bootstrap_servers();
        let settings = Settings::load(None).unwrap();
        let producer = service_producer(&settings, &brokers).unwrap();
        let payload = vec![b'x'; 300];
        for i in 0..5_000u32 {
            let key = i.to_string();
            send(
                &producer,
                BaseRecord::to("out").key(key.as_bytes()).payload(&payload[..]),
            )
            .unwrap();
        }
        assert!(wait_all_delivered(&producer, Duration::from_secs(60)));
        assert_eq!(producer.context().failed.load(Ordering::SeqCst), 0);
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
        let held: i64 = (0..4)
            .map(|p| consumer.fetch_watermarks("out", p, Duration::from_secs(10)).unwrap().1)
            .sum();
        assert_eq!(held, 5_000, "the wait ended before the broker held every message");

        // The broker refuses the next produce requests for good: the message fails, and the
        // wait ends with its failure counted.
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 4],
        );
        send(&producer, BaseRecord::to("out").key(&b"k"[..]).payload(&payload[..])).unwrap();
        assert!(wait_all_delivered(&producer, Duration::from_secs(60)));
        assert_eq!(producer.context().failed.load(Ordering::SeqCst), 1);
        assert!(producer.context().last_error.lock().unwrap().is_some());
    }

    /// A batch whose outputs the broker refuses is committed by a later attempt, once: the retry
    /// publishes every output again (from the thread that queues them, which borrows the
    /// batch), with the store's duplicates rejected again and not twice, the store holds the
    /// batch's totals and offsets once, and the committed batch is counted whole.
    #[test]
    fn a_batch_whose_delivery_fails_is_committed_once_by_its_retry() {
        use crate::store::PartitionRange;
        use dutyflow_operators::risk::AccountHistory;
        use rdkafka::mocking::MockCluster;
        use rdkafka::types::RDKafkaApiKey;
        let settings = Settings::load(None).unwrap();
        let cluster = MockCluster::new(1).unwrap();
        for topic in [&settings.kafka.assessments_topic, &settings.kafka.dlq_topic] {
            cluster.create_topic(topic, 2, 1).unwrap();
        }
        let brokers = cluster.bootstrap_servers();
        let producer = service_producer(&settings, &brokers).unwrap();
        let dir = crate::scratch::dir("service-retry");
        let url = StoreUrl::Sqlite(dir.join("store.db"));
        let mut store = Store::open(&url).unwrap();

        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/examples");
        let valid = std::fs::read_to_string(examples.join("manifest-valid.jsonl")).unwrap();
        // The same packages again under another manifest id: the store rejects each as a
        // 12-month duplicate, so every attempt undoes and applies its rejections again.
        let reused = valid.replace("LH-20260302-LH400-01", "LH-20260302-LH400-91");
        assert_ne!(reused, valid, "the fixture's manifest id changed");
        let text = std::fs::read_to_string(examples.join("manifest-bad-packages.jsonl")).unwrap() + &valid + &reused;
        let messages: Vec<InputMessage> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, line)| InputMessage {
                source: Source {
                    topic: "manifests".into(),
                    partition: 0,
                    offset: i as i64,
                    key: None,
                    replay_count: 0,
                },
                payload: line.as_bytes().to_vec(),
                timestamp_ms: None,
            })
            .collect();
        let n = messages.len() as i64;
        let ranges = vec![PartitionRange {
            topic: "manifests".into(),
            partition: 0,
            expected: -1,
            next: n,
        }];
        let ops = Operators::load(&dutyflow_operators::default_config_dir()).unwrap();
        let mut b = batch::assess(&ops, &mut AccountHistory::default(), Batch { messages, ranges });
        let packages = b.packages();
        // The operators accept the reused manifest's packages; the store will not.
        let reused_accepted = b.results.last().unwrap().accepted;
        let accepted: u64 = b.results.iter().map(|r| r.accepted).sum::<u64>() - reused_accepted;
        let outputs: usize = b
            .results
            .iter()
            .map(|r| r.assessments.len() + r.dead_letters.len())
            .sum();
        assert!(
            reused_accepted > 0 && accepted > 0,
            "the fixtures hold accepted packages"
        );
        assert!(
            packages > accepted + reused_accepted,
            "the fixtures hold rejected packages"
        );

        let stats = Arc::new(Stats::default());
        let context = GroupContext {
            store_url: url.clone(),
            group: settings.kafka.group_id.clone(),
            positions: Mutex::default(),
            generation: AtomicU64::new(0),
            in_flight: Arc::default(),
            stats: stats.clone(),
        };
        let consumer: BaseConsumer<GroupContext> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &settings.kafka.group_id)
            .create_with_context(context)
            .unwrap();
        // The broker refuses the first produce request for good: the first attempt fails.
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
        );
        let (resync, shutdown) = (AtomicBool::new(false), AtomicBool::new(false));
        commit_with_retry(
            &settings, &mut store, &producer, &consumer, &mut b, 1, &resync, &shutdown, &stats,
        );

        assert!(
            producer.context().failed.load(Ordering::SeqCst) >= 1,
            "the first attempt's delivery did not fail"
        );
        assert_eq!(stats.commits.load(Ordering::SeqCst), 1);
        assert_eq!(stats.packages.load(Ordering::SeqCst), packages);
        assert_eq!(stats.accepted.load(Ordering::SeqCst), accepted);
        assert_eq!(stats.rejected.load(Ordering::SeqCst), packages - accepted);
        assert_eq!(
            stats.by_code.lock().unwrap()["DUPLICATE_TRACKING_NUMBER"],
            reused_accepted
        );
        assert_eq!((b.messages.len() as i64, b.results.len() as i64), (n, n));
        let totalled: i64 = store.totals(None, None).unwrap().iter().map(|r| r.packages).sum();
        assert_eq!(totalled, accepted as i64, "the store counted the batch other than once");
        assert_eq!(store.offsets(&settings.kafka.group_id, "manifests").unwrap()[&0], n);
        let watermarks: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
        // Every package's assessment, and a dead letter for each rejected one, the store's too.
        let outputs = outputs + reused_accepted as usize;
        let held: i64 = [&settings.kafka.assessments_topic, &settings.kafka.dlq_topic]
            .iter()
            .flat_map(|t| (0..2).map(|p| watermarks.fetch_watermarks(t, p, Duration::from_secs(10)).unwrap().1))
            .sum();
        assert!(
            held >= outputs as i64,
            "the topics hold {held} records, fewer than the batch's {outputs} outputs"
        );
    }

    #[test]
    fn a_batch_closes_when_full_whatever_is_in_flight() {
        assert!(batch_due(&pipeline(2), 256, Some(Duration::ZERO), 9, busy));
        assert!(!batch_due(&pipeline(2), 255, Some(Duration::ZERO), 0, clear));
    }

    #[test]
    fn a_batch_that_waited_closes_only_with_room_in_the_pipeline() {
        for ahead in [1, 2] {
            let p = pipeline(ahead);
            assert!(batch_due(&p, 3, Some(WAIT), 0, clear));
            assert!(batch_due(&p, 3, Some(WAIT), ahead - 1, clear));
            assert!(!batch_due(&p, 3, Some(WAIT * 10), ahead, clear));
            assert!(!batch_due(&p, 3, Some(WAIT - Duration::from_millis(1)), 0, clear));
        }
    }

    #[test]
    fn a_batch_that_waited_closes_once_the_commit_thread_frees_within_its_assessment() {
        let p = pipeline(2);
        let ahead = |commit_busy_ms, assess_ms| {
            move || Ahead {
                commit_busy: Duration::from_millis(commit_busy_ms),
                assess: Duration::from_millis(assess_ms),
            }
        };
        assert!(!batch_due(&p, 3, Some(WAIT), 1, ahead(20, 8)));
        assert!(batch_due(&p, 3, Some(WAIT), 1, ahead(8, 8)));
        assert!(batch_due(&p, 3, Some(WAIT), 1, ahead(0, 8)));
        // Not before it has waited, and never past the room in the pipeline.
        assert!(!batch_due(&p, 3, Some(WAIT / 2), 1, ahead(0, 8)));
        assert!(!batch_due(&p, 3, Some(WAIT), 2, ahead(0, 8)));
        // Full, it closes whatever lies ahead.
        assert!(batch_due(&p, 256, None, 1, ahead(500, 1)));
    }

    fn clear() -> Ahead {
        Ahead {
            commit_busy: Duration::ZERO,
            assess: Duration::ZERO,
        }
    }

    fn busy() -> Ahead {
        Ahead {
            commit_busy: Duration::from_secs(1),
            assess: Duration::ZERO,
        }
    }

    #[test]
    fn an_open_batch_is_looked_at_again_by_when_it_may_close() {
        let p = pipeline(2);
        assert_eq!(poll_timeout(&p, None), Duration::from_millis(50));
        assert_eq!(poll_timeout(&p, Some(Duration::ZERO)), WAIT);
        assert_eq!(
            poll_timeout(&p, Some(Duration::from_millis(15))),
            Duration::from_millis(5)
        );
        assert_eq!(poll_timeout(&p, Some(WAIT)), Duration::from_millis(2));
        assert_eq!(poll_timeout(&p, Some(WAIT * 10)), Duration::from_millis(2));
        let mut slow = pipeline(2);
        slow.batch_max_wait_ms = 1_000;
        assert_eq!(poll_timeout(&slow, Some(Duration::ZERO)), Duration::from_millis(50));
    }

    #[test]
    fn an_empty_batch_never_closes() {
        assert!(!batch_due(&pipeline(2), 0, None, 0, clear));
        assert!(!batch_due(&pipeline(2), 0, Some(WAIT), 0, clear));
    }
}
