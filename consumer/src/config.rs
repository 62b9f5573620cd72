//! Everything one consumer process needs, validated before it connects anywhere.

use std::time::Duration;

use cluster::config::ClusterConfig;
use rdkafka::config::ClientConfig;
use topics::Codec;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{field}: {why}")]
    Invalid { field: &'static str, why: String },
}

pub use crate::start::StartPosition;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Kafka consumer group; one group feeds exactly one cluster.
    pub group: String,
    /// Brokers, security protocol, SASL and TLS (`[kafka]` / `--kafka-config`).
    pub kafka: topics::kafka::KafkaConfig,
    pub cluster: ClusterConfig,
    /// Prepended to the topic names (tests use a unique prefix per test).
    pub topic_prefix: String,
    /// A batch is cut at this many messages...
    pub batch_max_messages: usize,
    /// ...or at this many bytes of message keys and values, whichever comes
    /// first; the poll channel holds at most twice this. Memory is then
    /// bounded in bytes whatever the message sizes (see the README's RSS figure).
    pub batch_max_bytes: usize,
    /// ...or this long after its first message, whichever comes first.
    pub batch_max_wait: Duration,
    /// Where a partition starts when neither this cluster's fences nor the
    /// group's committed offsets say.
    pub start: StartPosition,
    /// Decodes messages. With a registry, start from
    /// `topics::registry::consumer_codec` (it knows no id the registry did not give it).
    pub codec: Codec,
    /// Where writer schemas of ids the codec does not know are fetched
    /// (once per id per process); `None`: the codec's schema directory is all there is.
    pub registry: Option<topics::registry::Registry>,
    /// Extra librdkafka properties (security settings, timeouts), applied last.
    pub kafka_overrides: Vec<(String, String)>,
    /// How long this member may hold no partition while its cluster lags, or
    /// a lagging partition's fences may stand still, before it is reported
    /// (`crate::liveness`).
    pub liveness_bound: Duration,
}

impl ConsumerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, why: &str| Err(ConfigError::Invalid { field, why: why.to_string() });
        if self.group.trim().is_empty() {
            return invalid("group", "must not be empty");
        }
        if self.kafka.bootstrap.trim().is_empty() {
            return invalid("brokers", "must not be empty (host:port[,host:port])");
        }
        if self.liveness_bound < crate::liveness::CHECK_EVERY {
            return invalid("liveness_bound", "must be at least the liveness check interval (5s)");
        }
        if self.batch_max_messages == 0 {
            return invalid("batch_max_messages", "must be at least 1");
        }
        if self.batch_max_bytes < 1 << 20 {
            return invalid("batch_max_bytes", "must be at least 1 MiB (one message of the largest size)");
        }
        if self.batch_max_wait.is_zero() {
            return invalid("batch_max_wait", "must be positive");
        }
        // These carry the exactly-once protocol; overriding them would commit
        // offsets before the writes are durable or read uncommitted data.
        const PROTECTED: [&str; 5] =
            ["enable.auto.offset.store", "enable.auto.commit", "isolation.level", "group.id", "bootstrap.servers"];
        if let Some((k, _)) = self.kafka_overrides.iter().find(|(k, _)| PROTECTED.contains(&k.as_str())) {
            return Err(ConfigError::Invalid {
                field: "kafka",
                why: format!("{k} is set by the consumer and cannot be overridden"),
            });
        }
        // --kafka k=v is on argv, which `ps` shows to every user of the host.
        if let Some((k, _)) = self.kafka_overrides.iter().find(|(k, _)| k.contains("password") || k.contains("secret"))
        {
            return Err(ConfigError::Invalid {
                field: "kafka",
                why: format!("{k} holds a secret: set it in [kafka] (sasl_password_file or _env), never on argv"),
            });
        }
        if self.cluster.control.is_none() {
            return invalid("cluster.control", "the cluster file needs a [control] dsn for dead letters");
        }
        Ok(())
    }

    /// The pipeline's topics under the deployment's prefix: what the group consumes.
    pub fn topics(&self) -> Vec<String> {
        self.cluster.pipeline.topics.iter().map(|t| format!("{}{}", self.topic_prefix, t.name)).collect()
    }

    pub fn kafka_client_config(&self) -> ClientConfig {
        let mut c = self.kafka.client();
        c.set("group.id", &self.group)
            .set("client.id", format!("dualwrite-consumer-{}", self.cluster.name))
            // Offsets are stored by hand once every shard has committed; librdkafka
            // then commits what was stored, periodically and on revoke/close.
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set(
                "auto.offset.reset",
                match self.start {
                    StartPosition::Latest => "latest",
                    _ => "earliest",
                },
            )
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", "10000")
            // The poll thread stops polling while a batch waits on a shard; see source.rs.
            .set("max.poll.interval.ms", "600000")
            // Statistics carry the high watermarks used for lag and settlement.
            .set("statistics.interval.ms", "1000")
            // Bounds librdkafka's prefetch per process while fetching is paused or slow.
            .set("queued.max.messages.kbytes", "16384");
        for (k, v) in &self.kafka_overrides {
            c.set(k, v);
        }
        c
    }
}
