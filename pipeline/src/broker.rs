//! The embedded broker: librdkafka's mock cluster, which speaks the real Kafka protocol.
//! It keeps only about 5 MB per partition, so it is for development, tests and demos.

use anyhow::{Context, Result};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    /// Starts a mock cluster with `brokers` brokers and creates `topics` with `partitions` each.
    pub fn start(brokers: i32, topics: &[&str], partitions: i32) -> Result<Self> {
        let cluster = MockCluster::new(brokers).context("cannot start the embedded broker")?;
        for t in topics {
            cluster
                .create_topic(t, partitions, 1)
                .with_context(|| format!("cannot create topic {t} on the embedded broker"))?;
        }
        Ok(EmbeddedBroker { cluster })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}
