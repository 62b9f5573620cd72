//! Why a consumer stops. Retryable database errors never reach here (the
//! batcher backs off and retries them, see `cluster::retry`); what does is
//! fatal, and stops the consumer with offsets unmoved.

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The Kafka settings were refused at start (credentials, CA, protocol, topics).
    #[error(transparent)]
    KafkaSettings(#[from] topics::preflight::PreflightError),
    #[error("shard {shard} ({range}): {source}")]
    Shard { shard: usize, range: String, source: mysql_async::Error },
    #[error("control database (dead letters): {0}")]
    Control(mysql_async::Error),
    #[error("schema missing on shard {shard}: {source}; run `dualwrite-cluster schema --cluster <file>` first")]
    Schema { shard: String, source: mysql_async::Error },
    /// The shard's tables lack what the pipeline description says they hold
    /// (a column added to the description before the ALTER ran).
    #[error("shard {shard}: {why}")]
    Pipeline { shard: String, why: String },
    /// The registry refused this consumer (credentials, permissions): an
    /// unavailable registry is retried, never this.
    #[error(transparent)]
    Registry(#[from] topics::registry::RegistryError),
    #[error("internal: {0}")]
    Internal(String),
    #[error("start position: {0}")]
    Start(#[from] crate::start::StartError),
}
