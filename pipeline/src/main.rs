//! The `dutyflow` binary: a thin command line over the operators and the pipeline.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dutyflow_operators::Operators;
use dutyflow_pipeline::{broker, demo, dlq_admin, file_mode, service, settings, store, totals, worksheet};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc for the binary's Rust allocations. With glibc's malloc, 15% of the service's CPU
/// flat out was in malloc and free (BENCHMARKS.md §4, session 6): a batch's records are many
/// small allocations made by the assess workers and freed by the commit thread.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "dutyflow",
    version,
    about = "Assesses US duty on international mail manifests, streaming from Kafka."
)]
struct Cli {
    /// Directory of rate, reference and risk data (default: $DUTYFLOW_CONFIG_DIR, ./config,
    /// or the source tree's config/).
    #[arg(long, global = true, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole pipeline on an embedded broker and a fresh store, fed by a built-in generator
    /// of realistic manifests (a few percent bad on purpose); prints a summary. No setup.
    Demo {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Stop after this many packages.
        #[arg(long, default_value_t = 200_000)]
        packages: u64,
        /// Stop producing after this many seconds.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Packages per second to produce (0: as fast as the service takes them).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 50)]
        packages_per_manifest: usize,
        /// Share of packages made invalid on purpose.
        #[arg(long, default_value_t = 0.02)]
        bad_rate: f64,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// The store (recreated at the start of each demo when it is a SQLite file).
        #[arg(long, default_value = "sqlite://dutyflow-demo.db", value_name = "URL")]
        store: String,
    },
    /// File mode: manifests as JSON Lines (or one pretty-printed document) → assessment/v1
    /// objects on stdout, one per line, in input order. `-` or no file reads stdin.
    Assess {
        #[arg(value_name = "FILE")]
        files: Vec<String>,
    },
    /// The streaming service: consume manifests, publish assessments and dead letters, and
    /// accumulate monthly totals exactly once.
    Run {
        /// Service configuration (TOML); environment variables DUTYFLOW_* override it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// A standalone local Kafka-protocol broker (librdkafka's mock cluster) that prints its
    /// bootstrap address and runs until stopped.
    DevBroker {
        /// Partitions of each topic.
        #[arg(long, default_value_t = 8)]
        partitions: i32,
        /// Number of mock brokers.
        #[arg(long, default_value_t = 1)]
        brokers: i32,
        /// Topics to create.
        #[arg(long, value_delimiter = ',', default_value = "manifests,assessments,manifests.dlq")]
        topics: Vec<String>,
    },
    /// Sends manifests (JSON Lines, one per line) to the input topic of a running broker.
    Produce {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(value_name = "FILE")]
        files: Vec<String>,
    },
    /// Monthly totals from the store, per carrier, month, regime and method.
    Totals {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The store (default: store.url of the configuration).
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// Only this carrier.
        #[arg(long)]
        carrier: Option<String>,
        /// Only this month (YYYY-MM).
        #[arg(long)]
        month: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = totals::Format::Table)]
        format: totals::Format,
    },
    /// The monthly International Mail Duty worksheet of one carrier: page 1 (summary, due
    /// date) and page 2 (one row per item line).
    Worksheet {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The store (default: store.url of the configuration).
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// Carrier code (IATA, ICAO or SCAC), as in the manifests.
        #[arg(long)]
        carrier: String,
        /// Month of arrival (YYYY-MM).
        #[arg(long)]
        month: String,
        #[arg(long, value_enum, default_value_t = worksheet::Format::Text)]
        format: worksheet::Format,
    },
    /// Dead-letter records: list, count, export, and replay fixed records.
    Dlq {
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// One line per record: coordinates, code, stage, replay count, tracking number, message.
    List {
        /// Only records with this error code.
        #[arg(long)]
        code: Option<String>,
        /// At most this many records.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Print the dlq/v1 values as JSON Lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Records counted by error code and stage.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// The dlq/v1 values as JSON Lines on stdout, to fix and replay.
    Export {
        /// Only records with this error code.
        #[arg(long)]
        code: Option<String>,
    },
    /// Sends fixed dlq/v1 records (JSON Lines; `-` or none: stdin) back to the input topic as
    /// one-package manifests with dutyflow.replay.count + 1; refuses records past
    /// dlq.max_replays.
    Replay {
        #[arg(value_name = "FILE")]
        files: Vec<String>,
    },
}

/// Set when SIGINT or SIGTERM arrives.
fn shutdown_flag() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone()).context("cannot install the signal handler")?;
    }
    Ok(flag)
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DUTYFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn,postgres=warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load_operators(dir: Option<PathBuf>) -> Result<Operators> {
    let dir = dir.unwrap_or_else(dutyflow_operators::default_config_dir);
    Operators::load(&dir).with_context(|| {
        format!(
            "cannot load the data files in {}; fix the file named below and start again",
            dir.display()
        )
    })
}

/// The operators and an existing store (`--store` if given, else the configuration's
/// `store.url`), for the read-only finance verbs.
fn open_for_reading(
    config_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    flag: Option<String>,
) -> Result<(Operators, store::Store)> {
    let settings = settings::Settings::load(config.as_deref())?;
    let url = match flag {
        Some(url) => store::StoreUrl::parse(&url)?,
        None => settings.store_url()?,
    };
    Ok((load_operators(config_dir)?, store::Store::open_existing(&url)?))
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    // First: on a CPU without what the build assumes, a clear refusal (best effort:
    // operators/src/cpu.rs).
    if let Err(refusal) = dutyflow_operators::cpu::check("dutyflow") {
        eprintln!("{refusal}");
        return ExitCode::from(2);
    }
    std::panic::set_hook(Box::new(|info| {
        eprintln!("dutyflow: internal error ({info}); please report it with the input that caused it");
    }));
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) if broken_pipe(&e) => {
            // The reader went away (`dutyflow totals | head`): nothing left to say.
            ExitCode::SUCCESS
        }
        Err(e) => {
            let causes: Vec<String> = e.chain().map(ToString::to_string).collect();
            eprintln!("dutyflow: {}", causes.join(": "));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Assess { files } => {
            let ops = load_operators(cli.config_dir)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            let counts = file_mode::run(&ops, &files, &mut out)?;
            eprintln!(
                "dutyflow: {} message(s): {} package(s) accepted, {} rejected",
                counts.messages, counts.accepted, counts.rejected
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            config,
            packages,
            duration,
            rate,
            packages_per_manifest,
            bad_rate,
            seed,
            store,
        } => {
            let settings = settings::Settings::load(config.as_deref())?;
            if std::env::var_os("DUTYFLOW_LOG").is_some() {
                init_logging(settings.metrics.log_format == "json");
            }
            let ops = std::sync::Arc::new(load_operators(cli.config_dir)?);
            let opts = demo::DemoOptions {
                packages,
                duration: std::time::Duration::from_secs(duration),
                rate,
                packages_per_manifest,
                bad_rate,
                seed,
                store: store::StoreUrl::parse(&store)?,
            };
            let stdout = std::io::stdout();
            demo::run(&settings, ops, &opts, shutdown_flag()?, &mut stdout.lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worksheet {
            config,
            store,
            carrier,
            month,
            format,
        } => {
            let (ops, store) = open_for_reading(cli.config_dir, config, store)?;
            let sheet = worksheet::build(&store, &ops, &carrier, &month)?;
            sheet.print(&mut std::io::stdout().lock(), format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq { config, command } => {
            let settings = settings::Settings::load(config.as_deref())?;
            let mut out = std::io::stdout().lock();
            match command {
                DlqCommand::List { code, limit, json } => {
                    let n = dlq_admin::list(&settings, code.as_deref(), limit, json, &mut out)?;
                    eprintln!(
                        "dutyflow: {n} dead-letter record(s) listed from {}",
                        settings.kafka.dlq_topic
                    );
                }
                DlqCommand::Stats { json } => dlq_admin::stats(&settings, json, &mut out)?,
                DlqCommand::Export { code } => {
                    let n = dlq_admin::export(&settings, code.as_deref(), &mut out)?;
                    eprintln!(
                        "dutyflow: exported {n} dead-letter record(s); fix them, then `dutyflow dlq replay FILE`"
                    );
                }
                DlqCommand::Replay { files } => {
                    let report = dlq_admin::replay(&settings, &files)?;
                    for (at, why) in &report.refused {
                        eprintln!("dutyflow: refused {at}: {why}");
                    }
                    eprintln!(
                        "dutyflow: replayed {} record(s) to {}; refused {}",
                        report.replayed,
                        settings.kafka.input_topic,
                        report.refused.len()
                    );
                    if !report.refused.is_empty() {
                        return Ok(ExitCode::from(1));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            let settings = settings::Settings::load(config.as_deref())?;
            init_logging(settings.metrics.log_format == "json");
            let ops = std::sync::Arc::new(load_operators(cli.config_dir)?);
            let shutdown = shutdown_flag()?;
            let k = &settings.kafka;
            let embedded = if k.brokers.is_empty() {
                let b = broker::EmbeddedBroker::start(
                    1,
                    &[&k.input_topic, &k.assessments_topic, &k.dlq_topic],
                    k.embedded_partitions,
                )?;
                tracing::info!(bootstrap = %b.bootstrap_servers(), "no brokers configured: started an embedded broker");
                Some(b)
            } else {
                None
            };
            let brokers = embedded
                .as_ref()
                .map_or_else(|| k.brokers.clone(), broker::EmbeddedBroker::bootstrap_servers);
            if settings.pipeline.workers > 0 {
                let _ = rayon::ThreadPoolBuilder::new()
                    .num_threads(settings.pipeline.workers)
                    .build_global();
            }
            let stats = std::sync::Arc::new(service::Stats::default());
            let _endpoint = service::start_metrics(&settings, &stats)?;
            service::run(&settings, ops, &brokers, shutdown, stats)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DevBroker {
            partitions,
            brokers,
            topics,
        } => {
            let shutdown = shutdown_flag()?;
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            let b = broker::EmbeddedBroker::start(brokers, &names, partitions)?;
            println!("{}", b.bootstrap_servers());
            eprintln!(
                "dutyflow dev-broker: listening on {} with topics {} ({partitions} partitions each); Ctrl-C stops it",
                b.bootstrap_servers(),
                topics.join(", ")
            );
            use std::io::Write;
            let _ = std::io::stdout().flush();
            while !shutdown.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Produce { config, files } => {
            let settings = settings::Settings::load(config.as_deref())?;
            if settings.kafka.brokers.is_empty() {
                anyhow::bail!(
                    "no brokers configured; set DUTYFLOW_KAFKA_BROKERS to the address `dutyflow dev-broker` printed"
                );
            }
            let n = service::produce_files(&settings, &files)?;
            eprintln!("dutyflow: sent {n} manifest(s) to {}", settings.kafka.input_topic);
            Ok(ExitCode::SUCCESS)
        }
        Command::Totals {
            config,
            store,
            carrier,
            month,
            format,
        } => {
            let (ops, store) = open_for_reading(cli.config_dir, config, store)?;
            let rows = store.totals(carrier.as_deref(), month.as_deref())?;
            let mut out = std::io::stdout().lock();
            totals::print(&mut out, &rows, &ops, format)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
