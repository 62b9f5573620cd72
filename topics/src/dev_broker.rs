//! The development broker: librdkafka's mock cluster, hosted in this process.
//!
//! It speaks the Kafka protocol on 127.0.0.1 so every job and `kcat` can use
//! it, but it is not Kafka: it keeps about 5 MiB per partition (older data is
//! dropped, as if by retention), cannot look offsets up by time, does not
//! serve CreateTopics or group listing, and loses everything when it stops.
//! Point production jobs at a real cluster's bootstrap address instead.

use std::path::PathBuf;

use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

use crate::spec::default_topics;

#[derive(Debug, Clone)]
pub struct DevBrokerConfig {
    /// Several brokers so leader moves and broker outages can be rehearsed.
    pub brokers: i32,
    pub partitions: i32,
    pub replication: i32,
    /// Topic name prefix (empty in the local stack).
    pub topic_prefix: String,
    /// Where to write the bootstrap address for other processes.
    pub bootstrap_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum DevBrokerError {
    #[error("starting the mock cluster: {0}")]
    Kafka(#[from] KafkaError),
    #[error("writing the bootstrap file {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Runs the broker until `shutdown` fires.
pub async fn run(config: DevBrokerConfig, shutdown: CancellationToken) -> Result<(), DevBrokerError> {
    let cluster = MockCluster::new(config.brokers)?;
    for spec in default_topics(&config.topic_prefix, config.partitions, config.replication) {
        cluster.create_topic(&spec.name, spec.partitions, spec.replication)?;
        tracing::info!(topic = %spec.name, partitions = spec.partitions, "topic created");
    }
    let bootstrap = cluster.bootstrap_servers();
    if let Some(path) = &config.bootstrap_file {
        // Written atomically so a waiting script never reads half an address.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &bootstrap).map_err(|e| DevBrokerError::Io(tmp.clone(), e))?;
        std::fs::rename(&tmp, path).map_err(|e| DevBrokerError::Io(path.clone(), e))?;
    }
    println!("{bootstrap}");
    tracing::info!(%bootstrap, brokers = config.brokers, "dev broker up (librdkafka mock cluster: ~5 MiB kept per partition, no offset lookup by time)");
    shutdown.cancelled().await;
    if let Some(path) = &config.bootstrap_file {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("dev broker stopped");
    Ok(())
}
