//! The dutyflow pipeline: Kafka source and sinks, parallel execution, the exactly-once store,
//! dead letters, metrics and the command line's verbs. The `dutyflow` binary (`main.rs`) is a
//! thin command line over this library; benchmarks and load tests use it too.

pub mod batch;
pub mod broker;
pub mod demo;
pub mod dlq;
pub mod dlq_admin;
pub mod file_mode;
pub mod metrics;
pub mod pace;
pub mod service;
pub mod settings;
pub mod store;
pub mod totals;
pub mod worksheet;

/// The workspace's scratch directories, for the unit tests.
#[cfg(test)]
#[path = "../../tests/scratch/mod.rs"]
pub(crate) mod scratch;
