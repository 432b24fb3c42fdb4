//! Service configuration: the TOML file, then environment overrides, then checks.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The documented defaults (config/dutyflow.toml, compiled in).
const DEFAULTS: &str = include_str!("../../config/dutyflow.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub kafka: Kafka,
    pub store: StoreSettings,
    pub pipeline: Pipeline,
    pub dlq: Dlq,
    pub metrics: Metrics,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kafka {
    pub brokers: String,
    pub group_id: String,
    pub input_topic: String,
    pub assessments_topic: String,
    pub dlq_topic: String,
    pub embedded_partitions: i32,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub batch_max_messages: usize,
    pub batch_max_wait_ms: u64,
    /// Batches in flight (handed to the assess stage, not committed yet) below which a batch
    /// closes at `batch_max_wait_ms`; with as many or more, the open batch grows.
    pub batches_ahead: usize,
    pub max_in_flight_batches: usize,
    /// Assessed batches merged into one store commit at most (1: no group commit).
    pub max_group_batches: usize,
    /// Packages of one group commit at most (a single larger batch still commits alone).
    pub max_group_packages: u64,
    pub workers: usize,
    pub consumer_queue_kbytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dlq {
    pub max_replays: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub listen: String,
    pub log_format: String,
}

impl Settings {
    /// Defaults, overlaid by `file` (if any), overlaid by `DUTYFLOW_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut table: toml::Table = DEFAULTS.parse().context("built-in defaults")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the config file {}", path.display()))?;
            let overlay: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
            merge(&mut table, overlay);
        }
        apply_env(&mut table, std::env::vars())?;
        let settings: Settings = table
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("configuration: {}", e.message()))?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<()> {
        if self.pipeline.batch_max_messages == 0 || self.pipeline.max_in_flight_batches == 0 {
            bail!("pipeline.batch_max_messages and pipeline.max_in_flight_batches must be at least 1");
        }
        if self.pipeline.batches_ahead == 0 {
            bail!("pipeline.batches_ahead must be at least 1 (1: a batch closes on time only when none is in flight)");
        }
        if self.pipeline.max_group_batches == 0 {
            bail!("pipeline.max_group_batches must be at least 1 (1: every batch commits alone)");
        }
        if !matches!(self.metrics.log_format.as_str(), "text" | "json") {
            bail!("metrics.log_format must be \"text\" or \"json\"");
        }
        self.store_url()?;
        Ok(())
    }

    /// Where the store lives (`store.url`).
    pub fn store_url(&self) -> Result<crate::store::StoreUrl> {
        crate::store::StoreUrl::parse(&self.store.url)
    }
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// `DUTYFLOW_<SECTION>_<KEY>=value` sets a known key, typed like its default;
/// `DUTYFLOW_RDKAFKA_<NAME>` sets a librdkafka property.
fn apply_env(table: &mut toml::Table, vars: impl Iterator<Item = (String, String)>) -> Result<()> {
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("DUTYFLOW_") else {
            continue;
        };
        if let Some(prop) = rest.strip_prefix("RDKAFKA_") {
            let key = prop.to_lowercase().replace('_', ".");
            if let Some(toml::Value::Table(kafka)) = table.get_mut("kafka") {
                let props = kafka
                    .entry("properties")
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(props) = props {
                    props.insert(key, toml::Value::String(value));
                }
            }
            continue;
        }
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        let (section, key) = (section.to_lowercase(), key.to_lowercase());
        let Some(toml::Value::Table(sec)) = table.get_mut(&section) else {
            continue;
        };
        let Some(current) = sec.get(&key) else {
            continue;
        };
        let parsed = match current {
            toml::Value::Integer(_) => {
                toml::Value::Integer(value.parse().with_context(|| format!("{name} must be an integer"))?)
            }
            toml::Value::Boolean(_) => {
                toml::Value::Boolean(value.parse().with_context(|| format!("{name} must be true or false"))?)
            }
            _ => toml::Value::String(value),
        };
        sec.insert(key, parsed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_env_overrides_apply() {
        let mut table: toml::Table = DEFAULTS.parse().unwrap();
        apply_env(
            &mut table,
            vec![
                ("DUTYFLOW_KAFKA_BROKERS".to_string(), "kafka:9092".to_string()),
                ("DUTYFLOW_PIPELINE_BATCH_MAX_MESSAGES".to_string(), "64".to_string()),
                ("DUTYFLOW_RDKAFKA_SECURITY_PROTOCOL".to_string(), "SASL_SSL".to_string()),
                ("UNRELATED".to_string(), "x".to_string()),
            ]
            .into_iter(),
        )
        .unwrap();
        let s: Settings = table.try_into().unwrap();
        assert_eq!(s.kafka.brokers, "kafka:9092");
        assert_eq!(s.pipeline.batch_max_messages, 64);
        assert_eq!(
            s.kafka.properties.get("security.protocol").map(String::as_str),
            Some("SASL_SSL")
        );
        assert_eq!(s.kafka.input_topic, "manifests");
    }

    #[test]
    fn a_wrongly_typed_override_is_a_clear_error() {
        let mut table: toml::Table = DEFAULTS.parse().unwrap();
        let err = apply_env(
            &mut table,
            vec![("DUTYFLOW_PIPELINE_WORKERS".to_string(), "many".to_string())].into_iter(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("DUTYFLOW_PIPELINE_WORKERS"));
    }
}
