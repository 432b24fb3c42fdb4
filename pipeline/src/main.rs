//! The `dutyflow` binary: a thin command line over the operators and the pipeline.

mod file_mode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dutyflow_operators::Operators;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// File mode: manifests as JSON Lines (or one pretty-printed document) → assessment/v1
    /// objects on stdout, one per line, in input order. `-` or no file reads stdin.
    Assess {
        #[arg(value_name = "FILE")]
        files: Vec<String>,
    },
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

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "dutyflow: internal error ({info}); please report it with the input that caused it"
        );
    }));
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
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
    }
}
