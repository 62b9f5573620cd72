//! Cutover readiness, the first gate of read cutover: does the new cluster
//! hold every window the old one serves, and if not, when will it?
//!
//! The old cluster serves windows from `required_from`: the oldest window its
//! retention policy keeps at `now` (`floor(now - retention, partition)`), or
//! later if it physically holds less. The new cluster holds, exactly, every
//! window from `covered_from` on: the first hour window that every partition's
//! coverage start (recorded with the fences, see `cluster::fence`) is at or
//! before. A group B started with a replay has its coverage start at the
//! replayed messages' time, which is how a replay moves readiness earlier.
//! Ready when `covered_from <= required_from`; otherwise ready at
//! `ceil(covered_from, partition) + retention`, the moment the old cluster's
//! retention lets go of the last window the new one lacks.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cluster::config::ClusterConfig;
use cluster::fence::PartitionProgress;
use cluster::partitions;
use cluster::pool::ShardPools;
use serde::Serialize;

use crate::error::RetentionError;
use crate::execute::{read_layout, retained_from};
use crate::plan::TablePlan;

/// What one cluster keeps.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterRetention {
    pub cluster: String,
    pub retention_secs: i64,
    pub partition_secs: i64,
    /// Oldest window every table on every shard still holds (from the partitions).
    pub oldest_retained: Option<DateTime<Utc>>,
    /// Oldest window the retention policy keeps at `now`.
    pub policy_oldest: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub now: DateTime<Utc>,
    pub ready: bool,
    /// When the new cluster holds (or held) every window the old one serves;
    /// `None` when it cannot be predicted (no coverage yet, shorter retention).
    pub ready_at: Option<DateTime<Utc>>,
    /// Oldest window reads are served from on the old cluster now.
    pub required_from: DateTime<Utc>,
    /// First window the new cluster fully covers.
    pub covered_from: Option<DateTime<Utc>>,
    /// Partitions (topic/partition) the new cluster has no coverage of yet.
    pub uncovered_partitions: Vec<String>,
    pub old: ClusterRetention,
    pub new: ClusterRetention,
    pub explanation: String,
}

/// Reads both clusters and evaluates readiness at the current time.
pub async fn assess(old: &ClusterConfig, new: &ClusterConfig) -> Result<Readiness, RetentionError> {
    let (old_pools, new_pools) = (ShardPools::new(old), ShardPools::new(new));
    let result = async {
        let old_progress = progress(&old_pools, old).await?;
        let new_progress = progress(&new_pools, new).await?;
        let old_oldest = oldest_retained(old, &old_pools).await?;
        let new_oldest = oldest_retained(new, &new_pools).await?;
        Ok(evaluate(
            Inputs { old, new, old_progress: &old_progress, new_progress: &new_progress, old_oldest, new_oldest },
            Utc::now().timestamp(),
        ))
    }
    .await;
    old_pools.disconnect().await;
    new_pools.disconnect().await;
    result
}

async fn progress(pools: &ShardPools, config: &ClusterConfig) -> Result<Vec<PartitionProgress>, RetentionError> {
    cluster::fence::progress(pools)
        .await
        .map_err(|source| RetentionError::sql(format!("{} (fences)", config.name), source))
}

/// Oldest window held in full by every partitioned table on every shard.
async fn oldest_retained(config: &ClusterConfig, pools: &ShardPools) -> Result<Option<i64>, RetentionError> {
    let width = config.time.partition_secs();
    let mut oldest: Option<i64> = None;
    for (shard, pool) in config.shards.iter().zip(pools.shards()) {
        let name = shard.range.to_string();
        let mut conn = pool.get_conn().await.map_err(|source| RetentionError::sql(name.clone(), source))?;
        for (table, _) in cluster::schema::partitioned_tables(&config.pipeline) {
            let parts = read_layout(&mut conn, &name, table).await?;
            let from = retained_from(&parts, &TablePlan::default(), width);
            oldest = Some(oldest.map_or(from, |o| o.max(from)));
        }
    }
    Ok(oldest)
}

/// Everything [`evaluate`] looks at, read from both clusters.
pub struct Inputs<'a> {
    pub old: &'a ClusterConfig,
    pub new: &'a ClusterConfig,
    pub old_progress: &'a [PartitionProgress],
    pub new_progress: &'a [PartitionProgress],
    /// Seconds; `None` when unknown.
    pub old_oldest: Option<i64>,
    pub new_oldest: Option<i64>,
}

/// The decision, from what was read, at `now` (seconds since the epoch).
pub fn evaluate(inputs: Inputs<'_>, now: i64) -> Readiness {
    let (old_t, new_t) = (&inputs.old.time, &inputs.new.time);
    let old_retention = secs(old_t.retention);
    let old_width = old_t.partition_secs();
    let policy_oldest = partitions::floor(now - old_retention, old_width);
    let required = inputs.old_oldest.map_or(policy_oldest, |o| o.max(policy_oldest));

    // Every partition either cluster has seen must be covered by the new one.
    let all: BTreeSet<(&str, i32)> =
        inputs.old_progress.iter().chain(inputs.new_progress).map(|p| (p.topic.as_str(), p.partition)).collect();
    let mut missing = Vec::new();
    let mut covered_from_ms = i64::MIN;
    for key in &all {
        match inputs.new_progress.iter().find(|p| (p.topic.as_str(), p.partition) == *key) {
            Some(p) if p.covered_from_ms != i64::MAX => covered_from_ms = covered_from_ms.max(p.covered_from_ms),
            _ => missing.push(*key),
        }
    }
    // A partition the new group has not written yet (a group started at the
    // end of the log records nothing until a message arrives) is still
    // covered if the old cluster, fully caught up on it, saw no message at or
    // after the coverage start: there was nothing for the new one to hold.
    let uncovered: Vec<String> = missing
        .into_iter()
        .filter(|key| {
            let witness = inputs.old_progress.iter().find(|p| (p.topic.as_str(), p.partition) == *key);
            !witness.is_some_and(|o| o.reached_end && covered_from_ms != i64::MIN && o.max_message_ms < covered_from_ms)
        })
        .map(|(topic, partition)| format!("{topic}/{partition}"))
        .collect();
    let hour = new_t.hour_secs();
    let covered_from = (uncovered.is_empty() && !all.is_empty()).then(|| ceil_ms_to_window(covered_from_ms, hour));
    let ready_at = covered_from.map(|c| ceil(c, old_width) + old_retention);

    let time = |s: i64| DateTime::from_timestamp(s, 0).unwrap_or_default();
    let cluster = |c: &ClusterConfig, oldest: Option<i64>| ClusterRetention {
        cluster: c.name.clone(),
        retention_secs: secs(c.time.retention),
        partition_secs: c.time.partition_secs(),
        oldest_retained: oldest.map(time),
        policy_oldest: time(partitions::floor(now - secs(c.time.retention), c.time.partition_secs())),
    };
    let new_keeps_less = new_t.retention < old_t.retention;
    let new_dropped_needed = inputs.new_oldest.is_some_and(|o| o > required);
    let windows_differ = !old_t.same_windows(new_t);
    let ready =
        !windows_differ && !new_keeps_less && !new_dropped_needed && covered_from.is_some_and(|c| c <= required);

    let explanation = if windows_differ {
        "not ready: the clusters' [time] windows or lateness differ, so their rows can never be equal".to_string()
    } else if new_keeps_less {
        format!(
            "not ready: the new cluster's retention ({}) is shorter than the old cluster's ({}); it can never hold \
             every window the old one serves",
            humantime::format_duration(new_t.retention),
            humantime::format_duration(old_t.retention)
        )
    } else if all.is_empty() {
        "not ready: neither cluster has applied any message yet".to_string()
    } else if !uncovered.is_empty() {
        format!(
            "not ready: the new cluster has no coverage of {} partition(s) yet ({}); its group has not applied them",
            uncovered.len(),
            uncovered.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
        )
    } else if new_dropped_needed {
        format!(
            "not ready: the new cluster's partitions start at {}, after {} which the old cluster still serves; \
             its retention dropped windows it needs",
            time(inputs.new_oldest.unwrap_or_default()).to_rfc3339(),
            time(required).to_rfc3339()
        )
    } else if ready {
        format!(
            "ready: the new cluster covers every window from {} and the old cluster serves windows from {}",
            time(covered_from.unwrap_or_default()).to_rfc3339(),
            time(required).to_rfc3339()
        )
    } else {
        format!(
            "not ready: the new cluster covers windows from {}, the old cluster serves windows from {}; ready at {} \
             (its first whole partition plus the {} retention)",
            time(covered_from.unwrap_or_default()).to_rfc3339(),
            time(required).to_rfc3339(),
            time(ready_at.unwrap_or_default()).to_rfc3339(),
            humantime::format_duration(old_t.retention)
        )
    };

    Readiness {
        now: time(now),
        ready,
        ready_at: ready_at.filter(|_| !windows_differ && !new_keeps_less).map(time),
        required_from: time(required),
        covered_from: covered_from.map(time),
        uncovered_partitions: uncovered,
        old: cluster(inputs.old, inputs.old_oldest),
        new: cluster(inputs.new, inputs.new_oldest),
        explanation,
    }
}

/// The first `window`-second window starting at or after `ms`.
fn ceil_ms_to_window(ms: i64, window: i64) -> i64 {
    let width_ms = window.saturating_mul(1000);
    (ms.saturating_add(width_ms - 1)).div_euclid(width_ms) * window
}

fn ceil(secs: i64, width: i64) -> i64 {
    partitions::floor(secs + width - 1, width)
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn cluster(name: &str, retention: &str) -> ClusterConfig {
        let text = format!(
            "name = \"{name}\"\n[auth]\nuser = \"u\"\n[[shards]]\nrange = \"-\"\ndsn = \"mysql://127.0.0.1:1/d\"\n\
             [time]\nminute_window = \"2s\"\nhour_window = \"10s\"\npartition = \"10s\"\nretention = \"{retention}\"\n\
             ahead = \"30s\"\n"
        );
        ClusterConfig::from_toml_str(&text, Path::new("."), &|_| None).expect("cluster")
    }

    fn fence(partition: i32, covered_from_ms: i64) -> PartitionProgress {
        PartitionProgress {
            topic: "query-stats".into(),
            partition,
            shards: 1,
            next_offset: 10,
            first_offset: 0,
            covered_from_ms,
            max_message_ms: covered_from_ms + 1000,
            reached_end: false,
            updated_at_ms: 0,
            high_watermark: 10,
            consumer_group: "g".into(),
            messages_applied: 10,
            late_messages: 0,
            expired_messages: 0,
        }
    }

    #[test]
    fn predicts_ready_at_from_coverage_start_plus_retention() {
        let (old, new) = (cluster("old", "40s"), cluster("new", "40s"));
        let old_progress = [fence(0, 0), fence(1, 0)];
        // Group B's coverage starts at 1_000_003.5 s on one partition, earlier on the other.
        let new_progress = [fence(0, 1_000_003_500), fence(1, 1_000_001_000)];
        let at = |now| {
            evaluate(
                Inputs {
                    old: &old,
                    new: &new,
                    old_progress: &old_progress,
                    new_progress: &new_progress,
                    old_oldest: None,
                    new_oldest: None,
                },
                now,
            )
        };
        let before = at(1_000_020);
        assert!(!before.ready, "{}", before.explanation);
        // First whole hour window: 1_000_010; its partition; plus 40 s.
        assert_eq!(before.covered_from.map(|t| t.timestamp()), Some(1_000_010));
        assert_eq!(before.ready_at.map(|t| t.timestamp()), Some(1_000_050));
        assert!(before.explanation.contains("ready at"), "{}", before.explanation);
        assert!(!at(1_000_049).ready);
        let after = at(1_000_050);
        assert!(after.ready, "{}", after.explanation);
        assert_eq!(after.required_from.timestamp(), 1_000_010);
    }

    #[test]
    fn a_partition_idle_since_the_new_group_started_counts_as_covered_only_with_a_caught_up_witness() {
        let (old, new) = (cluster("old", "40s"), cluster("new", "40s"));
        let idle = |reached_end, max_message_ms| PartitionProgress { reached_end, max_message_ms, ..fence(1, 0) };
        let new_progress = [fence(0, 1_000_003_500)];
        let at = |old_progress: &[PartitionProgress]| {
            evaluate(
                Inputs {
                    old: &old,
                    new: &new,
                    old_progress,
                    new_progress: &new_progress,
                    old_oldest: None,
                    new_oldest: None,
                },
                1_000_100,
            )
        };
        assert!(at(&[fence(0, 0), idle(true, 1_000_002_000)]).ready);
        // The old cluster saw a message after the new group's coverage start...
        assert!(!at(&[fence(0, 0), idle(true, 1_000_004_000)]).ready);
        // ...or is not caught up, so there may be one.
        let lagging = at(&[fence(0, 0), idle(false, 1_000_002_000)]);
        assert_eq!(lagging.uncovered_partitions, vec!["query-stats/1".to_string()]);
    }

    #[test]
    fn an_uncovered_partition_or_a_shorter_new_retention_is_never_ready() {
        let (old, new) = (cluster("old", "40s"), cluster("new", "40s"));
        let old_progress = [fence(0, 0), fence(1, 0)];
        let new_progress = [fence(0, 0)];
        let r = evaluate(
            Inputs {
                old: &old,
                new: &new,
                old_progress: &old_progress,
                new_progress: &new_progress,
                old_oldest: None,
                new_oldest: None,
            },
            2_000_000,
        );
        assert!(!r.ready && r.ready_at.is_none());
        assert_eq!(r.uncovered_partitions, vec!["query-stats/1".to_string()]);

        let short = cluster("new", "20s");
        let r = evaluate(
            Inputs {
                old: &old,
                new: &short,
                old_progress: &old_progress,
                new_progress: &old_progress,
                old_oldest: None,
                new_oldest: None,
            },
            2_000_000,
        );
        assert!(!r.ready && r.explanation.contains("shorter"), "{}", r.explanation);
    }

    #[test]
    fn the_old_clusters_physical_partitions_can_only_make_readiness_earlier() {
        let (old, new) = (cluster("old", "40s"), cluster("new", "40s"));
        let progress = [fence(0, 1_000_010_000)];
        // The old cluster itself holds nothing before 1_000_010 (it started then).
        let r = evaluate(
            Inputs {
                old: &old,
                new: &new,
                old_progress: &progress,
                new_progress: &progress,
                old_oldest: Some(1_000_010),
                new_oldest: Some(1_000_010),
            },
            1_000_020,
        );
        assert!(r.ready, "{}", r.explanation);
    }
}
