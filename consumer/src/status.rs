//! `dualwrite-consumer status`: per partition, how far a cluster has applied
//! the topics, what it covers and what is settled.

use std::collections::BTreeMap;
use std::time::Duration;

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use rdkafka::config::ClientConfig;
use serde::Serialize;

use crate::coverage::{progress, PartitionProgress};

const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("reading fences: {0}")]
    Fences(#[from] mysql_async::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("internal: {0}")]
    Internal(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    /// `None`: the cluster has never applied this partition.
    pub progress: Option<PartitionProgress>,
    /// The partition's end on the broker, when a broker was given.
    pub end_offset: Option<i64>,
    pub lag_messages: Option<i64>,
    /// Age of the newest applied message while behind; 0 when caught up.
    pub lag_seconds: Option<f64>,
    pub settled_through_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub cluster: String,
    pub partitions: Vec<PartitionStatus>,
    /// Every window starting at or after this is covered (None: not all partitions started).
    pub covered_from_ms: Option<i64>,
    /// Every window ending (plus lateness) at or before this is settled.
    pub settled_through_ms: Option<i64>,
}

/// Builds the report; `brokers` adds end offsets and lag.
pub async fn status(
    cluster: &ClusterConfig,
    brokers: Option<&str>,
    topics: &[String],
    lateness_ms: i64,
) -> Result<StatusReport, StatusError> {
    let pools = ShardPools::new(cluster);
    let fences = progress(&pools).await;
    pools.disconnect().await;
    let mut rows: BTreeMap<(String, i32), PartitionStatus> = BTreeMap::new();
    for p in fences? {
        let settled = Some(p.settled_through_ms(lateness_ms));
        rows.insert(
            (p.topic.clone(), p.partition),
            PartitionStatus {
                topic: p.topic.clone(),
                partition: p.partition,
                progress: Some(p),
                end_offset: None,
                lag_messages: None,
                lag_seconds: None,
                settled_through_ms: settled,
            },
        );
    }
    if let Some(brokers) = brokers {
        for ((topic, partition), end) in broker_ends(brokers, topics).await? {
            let row = rows.entry((topic.clone(), partition)).or_insert_with(|| PartitionStatus {
                topic,
                partition,
                progress: None,
                end_offset: None,
                lag_messages: None,
                lag_seconds: None,
                settled_through_ms: None,
            });
            row.end_offset = Some(end);
            if let Some(p) = &row.progress {
                let lag = (end - p.next_offset).max(0);
                row.lag_messages = Some(lag);
                let now = chrono::Utc::now().timestamp_millis();
                row.lag_seconds = Some(if lag == 0 { 0.0 } else { (now - p.max_message_ms).max(0) as f64 / 1000.0 });
            }
        }
    }
    let partitions: Vec<PartitionStatus> = rows.into_values().collect();
    // A partition with messages that the cluster never started leaves the cluster uncovered.
    let started_all = partitions.iter().all(|p| p.progress.is_some() || p.end_offset == Some(0));
    let covered_from_ms = started_all
        .then(|| partitions.iter().filter_map(|p| p.progress.as_ref().map(|g| g.covered_from_ms)).max())
        .flatten();
    let settled_through_ms =
        started_all.then(|| partitions.iter().filter_map(|p| p.settled_through_ms).min()).flatten();
    Ok(StatusReport { cluster: cluster.name.clone(), partitions, covered_from_ms, settled_through_ms })
}

/// End offset per (topic, partition).
pub type Ends = Vec<((String, i32), i64)>;

/// End offset of every partition of `topics`.
pub async fn broker_ends(brokers: &str, topics: &[String]) -> Result<Ends, StatusError> {
    let brokers = brokers.to_string();
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || -> Result<Ends, StatusError> {
        let client =
            topics::admin::standalone_consumer(ClientConfig::new().set("bootstrap.servers", &brokers), "status")?;
        let parts = topics::admin::watermarks(&client, &topics, BROKER_TIMEOUT)?;
        let out = parts.into_iter().map(|(topic, partition, _, high)| ((topic, partition), high)).collect();
        Ok(out)
    })
    .await
    .map_err(|e| StatusError::Internal(e.to_string()))?
}

/// A fixed-width table for terminals.
pub fn render(report: &StatusReport) -> String {
    let time = |ms: Option<i64>| -> String {
        ms.and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| "-".into())
    };
    let mut out = format!(
        "cluster {}: covered from {}, settled through {}\n{:<32} {:>4} {:<20} {:>10} {:>10} {:>8} {:>8} {:<20} {:<20}\n",
        report.cluster,
        time(report.covered_from_ms),
        time(report.settled_through_ms),
        "topic",
        "part",
        "group",
        "applied",
        "end",
        "lag",
        "lag_s",
        "covered_from",
        "settled_through"
    );
    for p in &report.partitions {
        let g = p.progress.as_ref();
        out.push_str(&format!(
            "{:<32} {:>4} {:<20} {:>10} {:>10} {:>8} {:>8} {:<20} {:<20}\n",
            p.topic,
            p.partition,
            g.map_or("-", |g| g.consumer_group.as_str()),
            g.map_or("-".into(), |g| g.next_offset.to_string()),
            p.end_offset.map_or("-".into(), |e| e.to_string()),
            p.lag_messages.map_or("-".into(), |l| l.to_string()),
            p.lag_seconds.map_or("-".into(), |l| format!("{l:.1}")),
            time(g.map(|g| g.covered_from_ms)),
            time(p.settled_through_ms),
        ));
    }
    out
}
