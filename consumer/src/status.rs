//! `dualwrite-consumer status`: per partition, how far a cluster has applied
//! the topics, what it covers and what is settled (`cluster::fence::report`
//! over the fences and the broker's end offsets).

use std::time::Duration;

use cluster::config::ClusterConfig;
use cluster::fence::{progress, report, StatusReport};
use cluster::pool::ShardPools;
use rdkafka::config::ClientConfig;

const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("reading fences: {0}")]
    Fences(#[from] mysql_async::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
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
    let fences = fences?;
    let ends = match brokers {
        Some(brokers) => Some(
            topics::admin::end_offsets(ClientConfig::new().set("bootstrap.servers", brokers), topics, BROKER_TIMEOUT)
                .await?,
        ),
        None => None,
    };
    Ok(report(&cluster.name, fences, ends.as_ref(), lateness_ms, chrono::Utc::now().timestamp_millis()))
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
