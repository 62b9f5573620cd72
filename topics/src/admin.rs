//! Topic creation on a real Kafka cluster through the Admin API.
//!
//! The development broker (librdkafka's mock cluster) does not implement
//! CreateTopics; it creates its topics itself (see [`crate::dev_broker`]).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::spec::TopicSpec;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("kafka admin client: {0}")]
    Client(#[from] KafkaError),
    #[error("creating topic {topic}: {code}")]
    Create { topic: String, code: RDKafkaErrorCode },
}

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn create_topics(brokers: &str, specs: &[TopicSpec]) -> Result<(), AdminError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let retention: Vec<String> = specs.iter().map(|s| s.retention_ms.to_string()).collect();
    let topics: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&retention)
        .map(|(s, r)| {
            NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(s.replication)).set("retention.ms", r)
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&topics, &opts).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, "topic created"),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => tracing::info!(%topic, "topic exists"),
            Err((topic, code)) => return Err(AdminError::Create { topic, code }),
        }
    }
    Ok(())
}

/// Every partition of `topics` with its (low, high) watermarks. Blocking:
/// call it off the async workers.
pub fn watermarks<C: rdkafka::consumer::ConsumerContext>(
    client: &rdkafka::consumer::BaseConsumer<C>,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<(String, i32, i64, i64)>, KafkaError> {
    use rdkafka::consumer::Consumer;
    let mut out = Vec::new();
    for topic in topics {
        let metadata = client.fetch_metadata(Some(topic), timeout)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (low, high) = client.fetch_watermarks(topic, p.id(), timeout)?;
                out.push((topic.clone(), p.id(), low, high));
            }
        }
    }
    Ok(out)
}

/// End offset of every partition of `topics`, keyed by (topic, partition),
/// read off the async workers. `client` carries the bootstrap and security
/// settings; cutover's lag gate and `consumer status` use it with
/// `cluster::fence::report`.
pub async fn end_offsets(
    client: &ClientConfig,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<((String, i32), i64)>, KafkaError> {
    let client = client.clone();
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let consumer = standalone_consumer(&client, "status")?;
        let parts = watermarks(&consumer, &topics, timeout)?;
        Ok(parts.into_iter().map(|(topic, partition, _, high)| ((topic, partition), high)).collect())
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "end offset lookup task failed");
        Err(KafkaError::Canceled)
    })
}

/// A consumer outside any consumer group's work (no subscription, nothing
/// committed), for reading watermarks and single messages. `purpose` names its
/// group id so brokers' logs tell the tools apart.
pub fn standalone_consumer(
    client: &ClientConfig,
    purpose: &str,
) -> Result<rdkafka::consumer::BaseConsumer, KafkaError> {
    client.clone().set("group.id", format!("dualwrite-{purpose}")).set("enable.auto.commit", "false").create()
}
