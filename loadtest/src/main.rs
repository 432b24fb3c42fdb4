//! `dutyflow-loadtest`: drives a running dutyflow service (or the null pipeline) through Kafka
//! with generated manifests and measures throughput, latency, dead letters and memory.
//!
//!   dutyflow-loadtest run --brokers B --packages 2000000 --service-pid PID --report out.json
//!   dutyflow-loadtest null-pipeline --brokers B --input null.in --output null.out
//!
//! `loadtest/run.sh` runs the whole measurement (null pipeline, then the service flat out,
//! then at half its rate) on a local `dutyflow dev-broker`.

mod drive;
mod measure;
mod null;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "dutyflow-loadtest", about = "Load test for the dutyflow streaming service.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce generated manifests to the input topic and measure what comes out.
    Run {
        /// Bootstrap servers.
        #[arg(long)]
        brokers: String,
        /// Stop producing after this many packages.
        #[arg(long)]
        packages: Option<u64>,
        /// Stop producing after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        duration: Option<f64>,
        /// Target packages per second; 0 = as fast as the pipeline drains them.
        #[arg(long, default_value_t = 0.0, value_name = "PKGS_PER_S")]
        rate: f64,
        #[arg(long, default_value_t = 50)]
        packages_per_manifest: usize,
        /// Share of packages made invalid on purpose.
        #[arg(long, default_value_t = 0.02)]
        bad_rate: f64,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// At most this many packages produced and not yet answered (0: no bound). Keeps a
        /// flat-out run within the mock broker's ~5 MB per partition.
        #[arg(long, default_value_t = 200_000)]
        max_backlog: u64,
        /// Compression of the produced manifests.
        #[arg(long, default_value = "lz4")]
        compression: String,
        /// Process whose memory (VmRSS) and CPU are sampled every second.
        #[arg(long)]
        service_pid: Option<u32>,
        /// Read the pid of the process to sample from this file, once it exists (for a service
        /// started during the run).
        #[arg(long, value_name = "FILE")]
        service_pid_file: Option<PathBuf>,
        /// The broker's process, for its CPU use.
        #[arg(long)]
        broker_pid: Option<u32>,
        /// Give up after this many seconds without output while packages are outstanding.
        #[arg(long, default_value_t = 30)]
        idle_timeout: u64,
        #[arg(long, default_value = "manifests")]
        input_topic: String,
        #[arg(long, default_value = "assessments")]
        output_topic: String,
        /// Dead-letter topic ("" for none).
        #[arg(long, default_value = "manifests.dlq")]
        dlq_topic: String,
        /// Name of this run in the report.
        #[arg(long, default_value = "run")]
        label: String,
        /// Write the report as JSON here.
        #[arg(long, value_name = "FILE.json")]
        report: Option<PathBuf>,
    },
    /// Consume → copy → produce with no parsing and no store: the ceiling.
    NullPipeline {
        #[arg(long)]
        brokers: String,
        #[arg(long, default_value = "manifests")]
        input: String,
        #[arg(long)]
        output: String,
        #[arg(long, default_value = "dutyflow-null")]
        group: String,
        #[arg(long, default_value = "lz4")]
        compression: String,
        /// The consumer's `fetch.wait.max.ms`. The mock broker holds a fetch that finds no data
        /// for this long even when data arrives meanwhile (a real broker answers at once).
        #[arg(long, default_value_t = 500)]
        fetch_wait_max_ms: u32,
        /// Publish one record per package, as the service must (contract §2), instead of one
        /// copy per manifest: the transport's ceiling for the service's output shape.
        #[arg(long)]
        fan_out: bool,
    },
    /// Create topics on a broker (an existing topic is left as it is).
    CreateTopics {
        #[arg(long)]
        brokers: String,
        #[arg(long, default_value_t = 16)]
        partitions: i32,
        /// Topic names.
        #[arg(required = true)]
        topics: Vec<String>,
    },
}

fn main() -> ExitCode {
    if let Err(refusal) = dutyflow_operators::cpu::check("dutyflow-loadtest") {
        eprintln!("{refusal}");
        return ExitCode::from(2);
    }
    let result = match Cli::parse().command {
        Command::Run {
            brokers,
            packages,
            duration,
            rate,
            packages_per_manifest,
            bad_rate,
            seed,
            max_backlog,
            compression,
            service_pid,
            service_pid_file,
            broker_pid,
            idle_timeout,
            input_topic,
            output_topic,
            dlq_topic,
            label,
            report,
        } => drive::run(drive::RunConfig {
            label,
            brokers,
            input_topic,
            output_topic,
            dlq_topic,
            packages,
            duration: duration.map(Duration::from_secs_f64),
            rate,
            packages_per_manifest: packages_per_manifest.max(1),
            bad_rate,
            seed,
            max_backlog,
            compression,
            service_pid,
            service_pid_file,
            broker_pid,
            idle_timeout: Duration::from_secs(idle_timeout),
            report,
        })
        .map(|complete| if complete { ExitCode::SUCCESS } else { ExitCode::from(1) }),
        Command::NullPipeline {
            brokers,
            input,
            output,
            group,
            compression,
            fetch_wait_max_ms,
            fan_out,
        } => null::run(&null::NullConfig {
            brokers,
            input_topic: input,
            output_topic: output,
            group_id: group,
            compression,
            fetch_wait_max_ms,
            fan_out,
        })
        .map(|()| ExitCode::SUCCESS),
        Command::CreateTopics {
            brokers,
            partitions,
            topics,
        } => create_topics(&brokers, partitions, &topics).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        let causes: Vec<String> = e.chain().map(ToString::to_string).collect();
        eprintln!("dutyflow-loadtest: {}", causes.join(": "));
        ExitCode::from(2)
    })
}

/// Creates `topics` with `partitions` partitions each, replication 1, through the Kafka admin API.
fn create_topics(brokers: &str, partitions: i32, topics: &[String]) -> anyhow::Result<()> {
    use anyhow::Context;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create the Kafka admin client")?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let results = runtime
        .block_on(admin.create_topics(&new, &options))
        .context("the broker did not answer the topic creation")?;
    for result in results {
        match result {
            Ok(topic) => println!("created {topic} ({partitions} partitions)"),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => println!("{topic} exists already"),
            Err((topic, code)) => anyhow::bail!("cannot create {topic}: {code}"),
        }
    }
    Ok(())
}
