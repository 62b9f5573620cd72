//! Collectors: fetch each gate's input through the reader of the job that owns it.
//!
//! - verify: `verify::history` (the comparators' tables in the new cluster's control database);
//! - shadow reads: the routers' counts in the same database;
//! - consumer lag: each cluster's fences against the topics' end offsets (`topics::admin`);
//! - retention: `retention::assess` (both clusters' fences and partitions);
//! - copier: `copier::status::streams` on the new cluster, plus a stopped stream for every old shard without one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use copier::status::{Phase, StreamStatus};
use mysql_async::Pool;
use retention::Readiness;
use verify::history::{self, DifferentWindows};
use verify::VerifyError;

use crate::gates::{GateInputs, GroupLag, LagInput, PartitionLag, ShadowInput, VerifyInput};
use crate::group::Groups;

/// Where the collectors look.
#[derive(Clone)]
pub struct CollectConfig {
    pub old: ClusterConfig,
    pub new: ClusterConfig,
    /// The new cluster's control database (routing state, verify results).
    pub control: Pool,
    /// Kafka settings, for the groups' lag; `Err` says why there are none
    /// (the lag gate then shows it).
    pub kafka: Result<topics::kafka::KafkaConfig, String>,
    pub topic_prefix: String,
    /// How far back shadow counts are summed.
    pub shadow_period: Duration,
    /// The read table groups (both clusters'): whose tables the copier fills.
    pub groups: Groups,
}

/// Collects every input concurrently; a collector's failure becomes its gate's `Err`.
pub async fn collect(config: &CollectConfig) -> GateInputs {
    let now = Utc::now();
    let lag = async {
        let kafka = config.kafka.as_ref().map_err(Clone::clone)?;
        lag_input(&config.old, &config.new, kafka, &config.topic_prefix, now).await
    };
    let copied = config.groups.all_copied_tables();
    let (verify, shadow, copier, retention, lag) = tokio::join!(
        verify_input(&config.control, &copied),
        shadow_input(&config.control, config.shadow_period, now),
        copier_streams(&config.old, &config.new, &copied),
        retention_input(&config.old, &config.new),
        lag
    );
    GateInputs {
        now,
        retention,
        verify: verify.map_err(|e| format!("reading verify results: {e}")),
        copier,
        shadow: shadow.map_err(|e| format!("reading shadow counts: {e}")),
        lag,
    }
}

/// How long the broker may take to answer the end-offset lookups.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Both groups' lag: their fences against the topics' end offsets.
pub async fn lag_input(
    old: &ClusterConfig,
    new: &ClusterConfig,
    kafka: &topics::kafka::KafkaConfig,
    topic_prefix: &str,
    now: DateTime<Utc>,
) -> Result<LagInput, String> {
    let topics = new.pipeline.topic_names(topic_prefix);
    let ends = topics::admin::end_offsets(&kafka.client(), &topics, BROKER_TIMEOUT)
        .await
        .map_err(|e| format!("end offsets of {} from {}: {e}", topics.join(", "), kafka.bootstrap))?;
    let (old_lag, new_lag) = tokio::join!(group_lag(old, &ends, now), group_lag(new, &ends, now));
    Ok(LagInput { old: old_lag?, new: new_lag? })
}

async fn group_lag(
    cluster: &ClusterConfig,
    ends: &[((String, i32), i64)],
    now: DateTime<Utc>,
) -> Result<GroupLag, String> {
    let pools = ShardPools::new(cluster);
    let fences = cluster::fence::progress(&pools).await;
    // who holds each partition: a lagging partition no live member holds is
    // the liveness failure an operator looks for here first
    let members = match pools.control() {
        Some(control) => cluster::members::live(control, &cluster.name, cluster::members::LIVE_WITHIN)
            .await
            .map_err(|e| format!("members' heartbeats of cluster {}: {e}", cluster.name)),
        None => Err(format!("cluster {} has no [control]: owners unknown", cluster.name)),
    };
    pools.disconnect().await;
    let fences = fences.map_err(|e| format!("fences of cluster {}: {e}", cluster.name))?;
    let owners = members.as_deref().map(cluster::members::owner_names).unwrap_or_default();
    let partitions = ends
        .iter()
        .map(|((topic, partition), end)| {
            let fence = fences.iter().find(|f| &f.topic == topic && f.partition == *partition);
            let (lag_messages, lag_seconds) = match fence {
                Some(f) => {
                    let (messages, seconds) = cluster::fence::lag(f, *end, now.timestamp_millis());
                    (Some(messages), Some(seconds))
                }
                None => (None, None),
            };
            PartitionLag {
                topic: topic.clone(),
                partition: *partition,
                end_offset: *end,
                next_offset: fence.map(|f| f.next_offset),
                lag_messages,
                lag_seconds,
                covered_from_ms: fence.map(|f| f.covered_from_ms),
                owner: owners.get(&(topic.clone(), *partition)).cloned(),
            }
        })
        .collect();
    Ok(GroupLag { cluster: cluster.name.clone(), partitions, owners_unknown: members.err() })
}

/// Retention readiness of the new cluster, from the retention crate.
pub async fn retention_input(old: &ClusterConfig, new: &ClusterConfig) -> Result<Readiness, String> {
    retention::assess(old, new).await.map_err(|e| format!("retention readiness: {e}"))
}

/// Copier streams feeding the new cluster, one per copied table and old
/// shard. An old shard with no stream at all is reported as a stopped stream,
/// so a copy started for only some shards never passes the gate.
pub async fn copier_streams(
    old: &ClusterConfig,
    new: &ClusterConfig,
    copied_tables: &[String],
) -> Result<Vec<StreamStatus>, String> {
    let streams = copier::status::streams(new).await.map_err(|e| e.to_string())?;
    let mut out = streams;
    for table in copied_tables {
        for shard in &old.shards {
            let source_shard = shard.range.to_string();
            if !out.iter().any(|s| &s.table == table && s.source_shard == source_shard) {
                out.push(never_started(table, source_shard));
            }
        }
    }
    Ok(out)
}

/// The stopped stream standing for an old shard the copier never read.
fn never_started(table: &str, source_shard: String) -> StreamStatus {
    StreamStatus {
        table: table.to_owned(),
        source_shard,
        phase: Phase::Stopped,
        copy_done: false,
        rows_copied: 0,
        rows_total: None,
        rows_per_sec: None,
        eta_seconds: None,
        events_applied: 0,
        lag_events: None,
        lag_seconds: None,
        binlog_position: None,
        gtid: None,
        error: Some("never started from this old shard: run dualwrite-copier start".to_owned()),
        error_kind: Some("not_started".to_owned()),
        updated_at: Utc::now(),
    }
}

async fn shadow_input(control: &Pool, period: Duration, now: DateTime<Utc>) -> Result<ShadowInput, String> {
    let since = now.timestamp() - i64::try_from(period.as_secs()).unwrap_or(i64::MAX / 2);
    let totals = crate::state::shadow_totals(control, since).await.map_err(|e| e.to_string())?;
    Ok(ShadowInput { period, totals })
}

/// Reads the comparators' results through `verify::history`.
pub async fn verify_input(control: &Pool, copied_tables: &[String]) -> Result<VerifyInput, VerifyError> {
    match read_verify(control, copied_tables).await {
        Err(VerifyError::Control(mysql_async::Error::Server(e))) if e.code == cluster::retry::ER_NO_SUCH_TABLE => {
            Ok(VerifyInput {
                windows_run: None,
                different: DifferentWindows::default(),
                table_runs: copied_tables.iter().map(|t| (t.clone(), None)).collect(),
            })
        }
        other => other,
    }
}

async fn read_verify(control: &Pool, copied_tables: &[String]) -> Result<VerifyInput, VerifyError> {
    let windows_run = history::latest_finished_run(control, "windows", "windows").await?;
    let different = history::different_windows(control, 5).await?;
    let mut table_runs = Vec::new();
    for table in copied_tables {
        table_runs.push((table.clone(), history::latest_finished_run(control, "table", table).await?));
    }
    Ok(VerifyInput { windows_run, different, table_runs })
}
