//! Coverage and settlement, computed from what a group recorded with its
//! fences (ARCHITECTURE.md): a cluster covers window W when, on every
//! partition, it holds every message from W's start on; W is settled when
//! every partition is applied past W's end plus the allowed lateness (an idle
//! partition the consumer confirmed as fully applied counts as past).
//! Comparators compare only windows settled on both clusters.

use std::collections::BTreeMap;

use cluster::pool::ShardPools;
use mysql_async::prelude::Queryable;
use serde::Serialize;

/// One partition's progress on a cluster, combined over its shards.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionProgress {
    pub topic: String,
    pub partition: i32,
    /// Shards holding a fence row for the partition.
    pub shards: usize,
    /// Every shard has applied everything below this.
    pub next_offset: i64,
    pub first_offset: i64,
    /// Coverage start: every message from this time on is held (latest over shards).
    pub covered_from_ms: i64,
    /// Newest message time applied on every shard (oldest over shards).
    pub max_message_ms: i64,
    /// Every shard reached the partition's end at its last update.
    pub reached_end: bool,
    /// Oldest last-update time over shards, ms.
    pub updated_at_ms: i64,
    pub high_watermark: i64,
    pub consumer_group: String,
    pub messages_applied: u64,
    pub late_messages: u64,
    pub expired_messages: u64,
}

impl PartitionProgress {
    /// Every window ending (plus lateness) at or before this is settled here.
    pub fn settled_through_ms(&self, lateness_ms: i64) -> i64 {
        let applied = self.max_message_ms;
        let confirmed = if self.reached_end { self.updated_at_ms } else { i64::MIN };
        applied.max(confirmed).saturating_sub(lateness_ms)
    }
}

/// Reads and combines every shard's fence rows.
pub async fn progress(pools: &ShardPools) -> Result<Vec<PartitionProgress>, mysql_async::Error> {
    let mut combined: BTreeMap<(String, i32), PartitionProgress> = BTreeMap::new();
    for pool in pools.shards() {
        let mut conn = pool.get_conn().await?;
        let rows: Vec<mysql_async::Row> = conn
            .query(
                "SELECT topic, kafka_partition, next_offset, first_offset, covered_from_ms, max_message_ms, reached_end, \
                 high_watermark, TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', updated_at) DIV 1000, consumer_group, \
                 messages_applied, late_messages, expired_messages FROM dw_offset_fence",
            )
            .await?;
        for mut row in rows {
            let bad = |i: usize| mysql_async::Error::Other(format!("dw_offset_fence column {i} missing or mistyped").into());
            let mut get = |i: usize| row.take_opt::<mysql_async::Value, usize>(i).ok_or_else(|| bad(i))?.map_err(|_| bad(i));
            let (topic, partition, next, first, covered, max_ms, end, hw, updated, group, applied, late, expired): (
                String, i32, i64, i64, i64, i64, u8, i64, i64, String, u64, u64, u64,
            ) = (
                from(get(0)?, 0)?, from(get(1)?, 1)?, from(get(2)?, 2)?, from(get(3)?, 3)?, from(get(4)?, 4)?,
                from(get(5)?, 5)?, from(get(6)?, 6)?, from(get(7)?, 7)?, from(get(8)?, 8)?, from(get(9)?, 9)?,
                from(get(10)?, 10)?, from(get(11)?, 11)?, from(get(12)?, 12)?,
            );
            let key = (topic.clone(), partition);
            let fresh = PartitionProgress {
                topic,
                partition,
                shards: 1,
                next_offset: next,
                first_offset: first,
                covered_from_ms: covered,
                max_message_ms: max_ms,
                reached_end: end != 0,
                updated_at_ms: updated,
                high_watermark: hw,
                consumer_group: group,
                messages_applied: applied,
                late_messages: late,
                expired_messages: expired,
            };
            combined
                .entry(key)
                .and_modify(|p| {
                    p.shards += 1;
                    p.next_offset = p.next_offset.min(next);
                    p.first_offset = p.first_offset.min(first);
                    p.covered_from_ms = p.covered_from_ms.max(covered);
                    p.max_message_ms = p.max_message_ms.min(max_ms);
                    p.reached_end &= end != 0;
                    p.updated_at_ms = p.updated_at_ms.min(updated);
                    p.high_watermark = p.high_watermark.max(hw);
                    p.messages_applied += applied;
                    p.late_messages += late;
                    p.expired_messages += expired;
                })
                .or_insert(fresh);
        }
    }
    let shard_count = pools.len();
    Ok(combined
        .into_values()
        .map(|mut p| {
            // A shard without the row never applied the partition: nothing
            // is settled there, and coverage is unknown.
            if p.shards < shard_count {
                p.reached_end = false;
                p.max_message_ms = i64::MIN;
                p.covered_from_ms = i64::MAX;
            }
            p
        })
        .collect())
}

fn from<T: mysql_async::prelude::FromValue>(v: mysql_async::Value, i: usize) -> Result<T, mysql_async::Error> {
    mysql_async::from_value_opt(v)
        .map_err(|_| mysql_async::Error::Other(format!("dw_offset_fence column {i} has an unexpected type").into()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowState {
    NotCovered,
    CoveredNotSettled,
    Settled,
}

/// The state of window `[start_ms, end_ms)` on a cluster. `partitions` lists
/// every partition that holds messages (from the broker); without it, the
/// partitions the cluster has fences for are taken as all of them.
pub fn window_state(
    progress: &[PartitionProgress],
    partitions: Option<&[(String, i32)]>,
    start_ms: i64,
    end_ms: i64,
    lateness_ms: i64,
) -> WindowState {
    let by_key: BTreeMap<(&str, i32), &PartitionProgress> =
        progress.iter().map(|p| ((p.topic.as_str(), p.partition), p)).collect();
    let expected: Vec<(&str, i32)> = match partitions {
        Some(list) => list.iter().map(|(t, p)| (t.as_str(), *p)).collect(),
        None => by_key.keys().copied().collect(),
    };
    if expected.is_empty() {
        return WindowState::NotCovered;
    }
    let mut settled = true;
    for key in expected {
        let Some(p) = by_key.get(&key) else { return WindowState::NotCovered };
        if p.covered_from_ms > start_ms {
            return WindowState::NotCovered;
        }
        settled &= p.settled_through_ms(lateness_ms) >= end_ms;
    }
    if settled {
        WindowState::Settled
    } else {
        WindowState::CoveredNotSettled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(p: i32, covered: i64, max_ms: i64, reached_end: bool, updated: i64) -> PartitionProgress {
        PartitionProgress {
            topic: "t".into(),
            partition: p,
            shards: 4,
            next_offset: 10,
            first_offset: 0,
            covered_from_ms: covered,
            max_message_ms: max_ms,
            reached_end,
            updated_at_ms: updated,
            high_watermark: 10,
            consumer_group: "g".into(),
            messages_applied: 10,
            late_messages: 0,
            expired_messages: 0,
        }
    }

    #[test]
    fn windows_before_the_start_are_not_covered() {
        let progress = [partition(0, 1_000, 50_000, false, 0), partition(1, 2_000, 50_000, false, 0)];
        assert_eq!(window_state(&progress, None, 1_500, 2_500, 0), WindowState::NotCovered);
        assert_eq!(window_state(&progress, None, 2_000, 3_000, 0), WindowState::Settled);
    }

    #[test]
    fn settlement_needs_every_partition_past_the_end_plus_lateness() {
        let progress = [partition(0, 0, 10_000, false, 0), partition(1, 0, 5_000, false, 0)];
        assert_eq!(window_state(&progress, None, 0, 4_000, 1_000), WindowState::Settled);
        assert_eq!(window_state(&progress, None, 0, 4_500, 1_000), WindowState::CoveredNotSettled);
        // An idle partition confirmed fully applied at 9_000 counts as past.
        let idle = [partition(0, 0, 10_000, false, 0), partition(1, 0, 5_000, true, 9_000)];
        assert_eq!(window_state(&idle, None, 0, 8_000, 1_000), WindowState::Settled);
    }

    #[test]
    fn a_partition_with_messages_but_no_fence_is_not_covered() {
        let progress = [partition(0, 0, 10_000, true, 10_000)];
        let all = [("t".to_string(), 0), ("t".to_string(), 1)];
        assert_eq!(window_state(&progress, Some(&all), 0, 1_000, 0), WindowState::NotCovered);
        assert_eq!(window_state(&progress, Some(&all[..1]), 0, 1_000, 0), WindowState::Settled);
    }
}
