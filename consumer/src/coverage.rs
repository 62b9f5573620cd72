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
    /// Folds in another shard's row: the cluster is only as far as its slowest shard.
    fn combine(&mut self, other: &PartitionProgress) {
        self.shards += 1;
        self.next_offset = self.next_offset.min(other.next_offset);
        self.first_offset = self.first_offset.min(other.first_offset);
        self.covered_from_ms = self.covered_from_ms.max(other.covered_from_ms);
        self.max_message_ms = self.max_message_ms.min(other.max_message_ms);
        self.reached_end &= other.reached_end;
        self.updated_at_ms = self.updated_at_ms.min(other.updated_at_ms);
        self.high_watermark = self.high_watermark.max(other.high_watermark);
        self.messages_applied += other.messages_applied;
        self.late_messages += other.late_messages;
        self.expired_messages += other.expired_messages;
    }

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
        for row in rows {
            let fresh = parse_fence_row(row)?;
            match combined.entry((fresh.topic.clone(), fresh.partition)) {
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().combine(&fresh),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(fresh);
                }
            }
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

fn parse_fence_row(mut row: mysql_async::Row) -> Result<PartitionProgress, mysql_async::Error> {
    const WHAT: &str = "dw_offset_fence";
    Ok(PartitionProgress {
        topic: crate::sql::column(&mut row, 0, WHAT)?,
        partition: crate::sql::column(&mut row, 1, WHAT)?,
        shards: 1,
        next_offset: crate::sql::column(&mut row, 2, WHAT)?,
        first_offset: crate::sql::column(&mut row, 3, WHAT)?,
        covered_from_ms: crate::sql::column(&mut row, 4, WHAT)?,
        max_message_ms: crate::sql::column(&mut row, 5, WHAT)?,
        reached_end: crate::sql::column::<u8>(&mut row, 6, WHAT)? != 0,
        high_watermark: crate::sql::column(&mut row, 7, WHAT)?,
        updated_at_ms: crate::sql::column(&mut row, 8, WHAT)?,
        consumer_group: crate::sql::column(&mut row, 9, WHAT)?,
        messages_applied: crate::sql::column(&mut row, 10, WHAT)?,
        late_messages: crate::sql::column(&mut row, 11, WHAT)?,
        expired_messages: crate::sql::column(&mut row, 12, WHAT)?,
    })
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
