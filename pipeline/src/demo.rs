//! `dutyflow demo`: the whole pipeline on an embedded broker and a fresh store, fed by the
//! built-in generator of realistic manifests, then a summary a new user can read at a glance.
//!
//! The generator runs ahead of the service by a bounded window only: the embedded broker keeps
//! about 5 MB per partition and drops older data, so producing far ahead would lose input.

use crate::broker::EmbeddedBroker;
use crate::service::{self, Stats};
use crate::settings::Settings;
use crate::store::{Store, StoreUrl};
use crate::totals;
use anyhow::{Context, Result};
use dutyflow_loadtest::Generator;
use dutyflow_operators::Operators;
use rdkafka::producer::{BaseRecord, Producer};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to generate and for how long.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Stop after this many packages have been produced and committed.
    pub packages: u64,
    /// Stop producing after this long, whatever the count.
    pub duration: Duration,
    /// Packages per second to produce (0: as fast as the service takes them).
    pub rate: u64,
    pub packages_per_manifest: usize,
    pub bad_rate: f64,
    pub seed: u64,
    pub store: StoreUrl,
}

/// Packages the generator may run ahead of the commits: ≈ 6 MB of input in flight over all
/// partitions, so that even a partition the producer favours stays well under the embedded
/// broker's ~5 MB (a larger lead lost input in a release build, which produces faster than the
/// store commits).
const WINDOW_PACKAGES: u64 = 12_000;

/// Once production has ended, how long the demo waits for a commit before it stops waiting.
const STALL: Duration = Duration::from_secs(30);

/// What the demo did, for the summary.
pub struct DemoReport {
    pub manifests: u64,
    pub produced: u64,
    pub elapsed: Duration,
}

pub fn run(
    settings: &Settings,
    ops: Arc<Operators>,
    opts: &DemoOptions,
    shutdown: Arc<AtomicBool>,
    out: &mut dyn Write,
) -> Result<()> {
    if let StoreUrl::Sqlite(path) = &opts.store {
        // A fresh store each run, so the summary counts this run only.
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
    let mut settings = settings.clone();
    settings.store.url = url_text(&opts.store);
    let k = &settings.kafka;
    let broker = EmbeddedBroker::start(
        1,
        &[&k.input_topic, &k.assessments_topic, &k.dlq_topic],
        k.embedded_partitions,
    )?;
    let brokers = broker.bootstrap_servers();
    let stats = Arc::new(Stats::default());
    let endpoint = match service::start_metrics(&settings, &stats) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("dutyflow demo: metrics are off ({e:#})");
            None
        }
    };
    writeln!(
        out,
        "dutyflow demo: embedded broker at {brokers}, store {}{}",
        settings.store.url,
        endpoint
            .as_ref()
            .map(|e| format!(", metrics at http://{}/metrics", e.addr))
            .unwrap_or_default()
    )?;

    let stop_service = Arc::new(AtomicBool::new(false));
    let service = {
        let (settings, brokers, stats, stop) = (settings.clone(), brokers.clone(), stats.clone(), stop_service.clone());
        std::thread::Builder::new()
            .name("dutyflow-service".into())
            .spawn(move || service::run(&settings, ops, &brokers, stop, stats))?
    };

    let report = generate(&settings, &brokers, opts, &stats, &shutdown, &service);
    stop_service.store(true, Ordering::SeqCst);
    let served = service
        .join()
        .map_err(|_| anyhow::anyhow!("the service thread stopped unexpectedly"))?;
    eprintln!();
    served?;
    let report = report?;
    summary(out, &settings, &opts.store, &stats, &report)
}

/// Produces manifests until the count or the duration is reached, then waits for the service to
/// commit all of them (or for Ctrl-C).
fn generate(
    settings: &Settings,
    brokers: &str,
    opts: &DemoOptions,
    stats: &Stats,
    shutdown: &AtomicBool,
    service: &std::thread::JoinHandle<Result<()>>,
) -> Result<DemoReport> {
    let producer = service::producer(settings, brokers)?;
    let mut generator = Generator::new(opts.seed, opts.bad_rate);
    let mut text = String::new();
    let started = Instant::now();
    let (mut manifests, mut produced) = (0u64, 0u64);
    let mut last_progress = Instant::now();
    let (mut last_committed, mut last_commit_at) = (0u64, Instant::now());
    let per_manifest = opts.packages_per_manifest.max(1) as u64;
    loop {
        if shutdown.load(Ordering::SeqCst) || service.is_finished() {
            break;
        }
        let committed = stats.packages.load(Ordering::Relaxed);
        if committed != last_committed {
            (last_committed, last_commit_at) = (committed, Instant::now());
        }
        let producing = produced < opts.packages && started.elapsed() < opts.duration;
        if !producing && (committed >= produced || last_commit_at.elapsed() > STALL) {
            break;
        }
        let paced = opts.rate == 0 || produced * 1000 < opts.rate * started.elapsed().as_millis() as u64;
        if producing && paced && produced - committed.min(produced) < WINDOW_PACKAGES {
            let n = per_manifest.min(opts.packages - produced) as usize;
            text.clear();
            generator.write_manifest(&mut text, n);
            service::send(
                &producer,
                BaseRecord::<[u8], [u8]>::to(&settings.kafka.input_topic).payload(text.as_bytes()),
            )?;
            manifests += 1;
            produced += n as u64;
        } else {
            std::thread::sleep(Duration::from_millis(2));
        }
        if last_progress.elapsed() >= Duration::from_millis(500) {
            last_progress = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprint!(
                "\r  {:>6.1} s  produced {:>10}  committed {:>10}  ({:>8.0} packages/s)   ",
                secs,
                group(produced),
                group(committed),
                committed as f64 / secs.max(0.001)
            );
        }
    }
    producer
        .flush(Duration::from_secs(10))
        .context("cannot flush the generator")?;
    Ok(DemoReport {
        manifests,
        produced,
        elapsed: started.elapsed(),
    })
}

fn summary(out: &mut dyn Write, settings: &Settings, store: &StoreUrl, stats: &Stats, r: &DemoReport) -> Result<()> {
    let packages = stats.packages.load(Ordering::Relaxed);
    let accepted = stats.accepted.load(Ordering::Relaxed);
    let rejected = stats.rejected.load(Ordering::Relaxed);
    let secs = r.elapsed.as_secs_f64().max(0.001);
    writeln!(out)?;
    writeln!(out, "Packages")?;
    writeln!(
        out,
        "  in         {:>12}  ({} manifests)",
        group(r.produced),
        group(r.manifests)
    )?;
    writeln!(out, "  committed  {:>12}", group(packages))?;
    writeln!(
        out,
        "  accepted   {:>12}  → {} (one assessment each)",
        group(accepted),
        settings.kafka.assessments_topic
    )?;
    writeln!(
        out,
        "  rejected   {:>12}  → {} (one dead letter each)",
        group(rejected),
        settings.kafka.dlq_topic
    )?;
    let by_code: BTreeMap<String, u64> = stats
        .by_code
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let mut codes: Vec<_> = by_code.into_iter().collect();
    codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (code, n) in codes {
        writeln!(out, "    {code:<30} {:>8}", group(n))?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Throughput  {:.0} packages/s end to end ({} in {:.1} s: produced, assessed, published and committed)",
        packages as f64 / secs,
        group(packages),
        secs
    )?;
    if packages < r.produced {
        writeln!(
            out,
            "  stopped early: {} package(s) were produced but not committed",
            group(r.produced - packages)
        )?;
    }
    let skipped = stats.skipped_offsets.load(Ordering::Relaxed);
    if skipped > 0 {
        writeln!(
            out,
            "  {} input message(s) expired from the embedded broker before they were read; try a lower --rate",
            group(skipped)
        )?;
    }
    let rows = Store::open_existing(store)?.totals(None, None)?;
    let mut per_carrier: BTreeMap<&str, (i64, i64, i64, i64, usize)> = BTreeMap::new();
    for row in &rows {
        let e = per_carrier.entry(row.carrier.as_str()).or_default();
        e.0 += row.packages;
        e.1 += row.value_cents;
        e.2 += row.duty_cents;
        e.3 += row.rejected_packages;
        e.4 += 1;
    }
    writeln!(out)?;
    writeln!(out, "Monthly totals per carrier (all months of this run)")?;
    writeln!(
        out,
        "  {:<8} {:>10} {:>18} {:>16} {:>10} {:>6}",
        "carrier", "accepted", "value USD", "duty USD", "rejected", "rows"
    )?;
    for (carrier, (p, v, d, rej, n)) in &per_carrier {
        writeln!(
            out,
            "  {carrier:<8} {:>10} {:>18} {:>16} {:>10} {:>6}",
            group(*p as u64),
            totals::money(*v),
            totals::money(*d),
            group(*rej as u64),
            n
        )?;
    }
    writeln!(
        out,
        "\nPer month, regime and method, with due dates:  dutyflow totals --store {}",
        url_text(store)
    )?;
    Ok(())
}

fn url_text(url: &StoreUrl) -> String {
    match url {
        StoreUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
        StoreUrl::Postgres(u) => u.clone(),
    }
}

/// 1234567 → "1,234,567".
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_thousands() {
        assert_eq!(super::group(0), "0");
        assert_eq!(super::group(999), "999");
        assert_eq!(super::group(1000), "1,000");
        assert_eq!(super::group(1234567), "1,234,567");
    }
}
