//! Prometheus metrics (the catalogue is docs/metrics.md) and the HTTP endpoint that serves them
//! with `/healthz` and `/readyz`.
//!
//! The endpoint is a deliberately small HTTP/1.1 server on its own thread: one request per
//! connection, GET only, bounded request size and read time. It never touches the hot path; the
//! pipeline only bumps counters and histograms.

use anyhow::{Context, Result};
use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub const MESSAGES_RECEIVED: &str = "dutyflow_messages_received_total";
pub const INPUT_OFFSETS_SKIPPED: &str = "dutyflow_input_offsets_skipped_total";
pub const PACKAGES_RECEIVED: &str = "dutyflow_packages_received_total";
pub const PACKAGES: &str = "dutyflow_packages_total";
pub const DEAD_LETTERS: &str = "dutyflow_dead_letters_total";
pub const DUTY_CENTS: &str = "dutyflow_duty_assessed_cents_total";
pub const RISK_TIER: &str = "dutyflow_risk_tier_total";
pub const STAGE_DURATION: &str = "dutyflow_stage_duration_seconds";
pub const END_TO_END: &str = "dutyflow_end_to_end_latency_seconds";
pub const BATCH_MESSAGES: &str = "dutyflow_batch_messages";
pub const BATCH_PACKAGES: &str = "dutyflow_batch_packages";
pub const STORE_COMMIT: &str = "dutyflow_store_commit_duration_seconds";
pub const STORE_ERRORS: &str = "dutyflow_store_errors_total";
pub const PRODUCER_ERRORS: &str = "dutyflow_producer_errors_total";
pub const PRODUCER_QUEUE: &str = "dutyflow_producer_queue_messages";
pub const CONSUMER_LAG: &str = "dutyflow_consumer_lag_messages";
pub const REBALANCES: &str = "dutyflow_rebalances_total";
pub const ASSIGNED: &str = "dutyflow_assigned_partitions";
pub const IN_FLIGHT: &str = "dutyflow_in_flight_batches";
pub const LAST_COMMIT: &str = "dutyflow_last_commit_timestamp_seconds";
pub const FILTER_BYTES: &str = "dutyflow_store_duplicate_filter_bytes";
pub const FILTER_CARRIERS: &str = "dutyflow_store_duplicate_filter_carriers";
pub const UP: &str = "dutyflow_up";

const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const MESSAGE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];
const PACKAGE_BUCKETS: &[f64] = &[
    50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0, 50000.0,
];

/// What `/readyz` looks at: set by the consumer (assignment) and the store checks.
#[derive(Debug, Default)]
pub struct Health {
    pub assigned: AtomicBool,
    pub store_ok: AtomicBool,
}

impl Health {
    /// `Ok` when ready, else the reason.
    pub fn ready(&self) -> Result<(), &'static str> {
        if !self.store_ok.load(Ordering::SeqCst) {
            return Err("the store is not reachable");
        }
        if !self.assigned.load(Ordering::SeqCst) {
            return Err("the consumer holds no input partition yet");
        }
        Ok(())
    }
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once (later calls return the same handle).
pub fn install() -> Result<PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_MESSAGES.into()), MESSAGE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_PACKAGES.into()), PACKAGE_BUCKETS)?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    describe();
    let _ = HANDLE.set(handle.clone());
    Ok(HANDLE.get().cloned().unwrap_or(handle))
}

fn describe() {
    describe_counter!(MESSAGES_RECEIVED, "Input messages (manifests) taken from Kafka.");
    describe_counter!(PACKAGES_RECEIVED, "Packages in committed input messages.");
    describe_counter!(
        INPUT_OFFSETS_SKIPPED,
        "Input offsets never delivered to the consumer: expired by the broker's retention before being read, or transaction markers."
    );
    describe_counter!(
        PACKAGES,
        "Packages by outcome (accepted or rejected), counted at the store commit."
    );
    describe_counter!(DEAD_LETTERS, "Dead-letter records published, by error code and stage.");
    describe_counter!(
        DUTY_CENTS,
        "Duty assessed on accepted packages, in US cents, by carrier and regime."
    );
    describe_counter!(RISK_TIER, "Scored packages per risk tier.");
    describe_histogram!(
        STAGE_DURATION,
        Unit::Seconds,
        "Time per batch (assess) or per store commit (publish, store_commit) in each pipeline stage."
    );
    describe_histogram!(
        END_TO_END,
        Unit::Seconds,
        "From the input message's Kafka timestamp to its store commit."
    );
    describe_histogram!(BATCH_MESSAGES, "Messages per committed batch.");
    describe_histogram!(BATCH_PACKAGES, "Packages per committed batch.");
    describe_histogram!(
        STORE_COMMIT,
        Unit::Seconds,
        "One store transaction: totals and offsets."
    );
    describe_counter!(STORE_ERRORS, "Failed store transactions; each batch is retried.");
    describe_counter!(
        PRODUCER_ERRORS,
        "Failed deliveries to the output topics; the batch is retried."
    );
    describe_gauge!(PRODUCER_QUEUE, "Messages waiting in the producer's queue.");
    describe_gauge!(
        CONSUMER_LAG,
        "High watermark minus the store's next offset, per assigned input partition."
    );
    describe_counter!(REBALANCES, "Consumer-group rebalances seen by this member, by kind.");
    describe_gauge!(ASSIGNED, "Input partitions held by this member.");
    describe_gauge!(IN_FLIGHT, "Batches between the consumer and the store commit.");
    describe_gauge!(LAST_COMMIT, "Unix time of the last successful store commit.");
    describe_gauge!(
        FILTER_BYTES,
        "Memory of the 12-month duplicate check's in-memory filters (bound: 64 MiB)."
    );
    describe_gauge!(
        FILTER_CARRIERS,
        "Carriers by the state of their duplicate filter: filtered, growing, store_only (every number searched in the store: slow)."
    );
    describe_gauge!(UP, "1 while the service runs.");
    // Series that alerts use start at zero, so `increase()` and `rate()` see their first event.
    for c in [
        MESSAGES_RECEIVED,
        PACKAGES_RECEIVED,
        INPUT_OFFSETS_SKIPPED,
        STORE_ERRORS,
        PRODUCER_ERRORS,
    ] {
        metrics::counter!(c).absolute(0);
    }
    for outcome in ["accepted", "rejected"] {
        metrics::counter!(PACKAGES, "outcome" => outcome).absolute(0);
    }
}

/// The running HTTP endpoint.
pub struct Endpoint {
    pub addr: SocketAddr,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listen` until the process exits, and runs
/// the recorder's upkeep.
pub fn serve(listen: &str, handle: PrometheusHandle, health: Arc<Health>) -> Result<Endpoint> {
    let listener = TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen} for metrics; set metrics.listen to a free address"))?;
    let addr = listener.local_addr()?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("dutyflow-metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            upkeep.run_upkeep();
        })?;
    std::thread::Builder::new()
        .name("dutyflow-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        if let Err(e) = answer(stream, &handle, &health) {
                            tracing::debug!(error = %e, "metrics request failed");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "metrics accept failed"),
                }
            }
        })?;
    Ok(Endpoint { addr })
}

fn answer(mut stream: TcpStream, handle: &PrometheusHandle, health: &Health) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 8192];
    let mut len = 0;
    while len < buf.len() {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let request = String::from_utf8_lossy(&buf[..len]);
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", handle.render()),
        ("GET", "/healthz") => ("200 OK", "text/plain; charset=utf-8", "ok\n".to_string()),
        ("GET", "/readyz") => match health.ready() {
            Ok(()) => ("200 OK", "text/plain; charset=utf-8", "ready\n".to_string()),
            Err(why) => (
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                format!("not ready: {why}\n"),
            ),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found; try /metrics, /healthz or /readyz\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET is served\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
