//! `dualwrite-consumer status`: per partition, how far a cluster has applied
//! the topics, what it covers and what is settled (`cluster::fence::report`
//! over the fences and the broker's end offsets), which live member owns it
//! (from the members' heartbeats, `cluster::members`: librdkafka's mock
//! broker answers no DescribeGroups) and, while it lags, how long its fences
//! have stood still.

use std::time::Duration;

use cluster::config::ClusterConfig;
use cluster::fence::{progress, report, StatusReport};
use cluster::members::Member;
use cluster::pool::ShardPools;
use serde::Serialize;

const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("reading fences: {0}")]
    Fences(#[from] mysql_async::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// The fence report with each partition's owner, and the live members.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerStatus {
    #[serde(flatten)]
    pub report: StatusReport,
    /// Members heard from within `cluster::members::LIVE_WITHIN`;
    /// `None` when the heartbeats could not be read (no control database, or
    /// a schema without `dw_consumer_members`): owners are then unknown.
    pub members: Option<Vec<Member>>,
}

/// Builds the report; `kafka` adds end offsets and lag.
pub async fn status(
    cluster: &ClusterConfig,
    kafka: Option<&topics::kafka::KafkaConfig>,
    topics: &[String],
    lateness_ms: i64,
) -> Result<ConsumerStatus, StatusError> {
    let pools = ShardPools::new(cluster);
    let fences = progress(&pools).await;
    let members = match pools.control() {
        Some(control) => match cluster::members::live(control, &cluster.name, cluster::members::LIVE_WITHIN).await {
            Ok(members) => Some(members),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the members' heartbeats: owners unknown");
                None
            }
        },
        None => None,
    };
    pools.disconnect().await;
    let fences = fences?;
    let ends = match kafka {
        Some(kafka) => Some(topics::admin::end_offsets(&kafka.client(), topics, BROKER_TIMEOUT).await?),
        None => None,
    };
    let mut report = report(&cluster.name, fences, ends.as_ref(), lateness_ms, chrono::Utc::now().timestamp_millis());
    if let Some(members) = &members {
        let owners = cluster::members::owner_names(members);
        for p in &mut report.partitions {
            p.owner = owners.get(&(p.topic.clone(), p.partition)).cloned();
        }
    }
    Ok(ConsumerStatus { report, members })
}

/// A fixed-width table for terminals; `owner` is `none` when no live member
/// holds the partition, `?` when the heartbeats could not be read;
/// `stale_s` is how long a lagging partition's fences have stood still.
pub fn render(status: &ConsumerStatus) -> String {
    let report = &status.report;
    let time = |ms: Option<i64>| -> String {
        ms.and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| "-".into())
    };
    let mut out = format!(
        "cluster {}: covered from {}, settled through {}\n{:<32} {:>4} {:<20} {:<24} {:>10} {:>10} {:>8} {:>8} {:>8} {:<20} {:<20}\n",
        report.cluster,
        time(report.covered_from_ms),
        time(report.settled_through_ms),
        "topic",
        "part",
        "group",
        "owner",
        "applied",
        "end",
        "lag",
        "lag_s",
        "stale_s",
        "covered_from",
        "settled_through"
    );
    for p in &report.partitions {
        let g = p.progress.as_ref();
        out.push_str(&format!(
            "{:<32} {:>4} {:<20} {:<24} {:>10} {:>10} {:>8} {:>8} {:>8} {:<20} {:<20}\n",
            p.topic,
            p.partition,
            g.map_or("-", |g| g.consumer_group.as_str()),
            match (&status.members, &p.owner) {
                (None, _) => "?",
                (Some(_), None) => "none",
                (Some(_), Some(owner)) => owner.as_str(),
            },
            g.map_or("-".into(), |g| g.next_offset.to_string()),
            p.end_offset.map_or("-".into(), |e| e.to_string()),
            p.lag_messages.map_or("-".into(), |l| l.to_string()),
            p.lag_seconds.map_or("-".into(), |l| format!("{l:.1}")),
            p.unapplied_ms.map_or("-".into(), |ms| format!("{:.1}", ms as f64 / 1000.0)),
            time(g.map(|g| g.covered_from_ms)),
            time(p.settled_through_ms),
        ));
    }
    if let Some(members) = &status.members {
        for m in members {
            out.push_str(&format!(
                "member {} of group {}: {} partitions, heard from {:.1} s ago\n",
                m.member,
                m.consumer_group,
                m.partitions.len(),
                m.heartbeat_age_ms as f64 / 1000.0
            ));
        }
        let orphans: Vec<String> = report
            .partitions
            .iter()
            .filter(|p| p.owner.is_none() && p.lag_messages.unwrap_or(0) > 0)
            .map(|p| format!("{}/{}", p.topic, p.partition))
            .collect();
        if !orphans.is_empty() {
            out.push_str(&format!(
                "{} partitions with messages to apply and no live owner: {}\n",
                orphans.len(),
                orphans.join(" ")
            ));
        }
    }
    out
}
