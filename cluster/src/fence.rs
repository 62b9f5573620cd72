//! The offset fence table (`dw_offset_fence`, DDL in [`crate::schema`]) as
//! every job reads it. The consumer writes a fence row per (topic, partition)
//! on each shard in the same transaction as the rows it covers; everything
//! else (coverage, settlement, readiness, lag, resume points) is read here,
//! so no other job needs the consumer (or librdkafka) to know how far a
//! cluster is.
//!
//! Coverage and settlement (ARCHITECTURE.md): a cluster covers window W when,
//! on every partition, it holds every message from W's start on; W is settled
//! when every partition is applied past W's end plus the allowed lateness (an
//! idle partition the consumer confirmed as fully applied counts as past).
//! Comparators compare only windows settled on both clusters.

use std::collections::BTreeMap;

use crate::pool::ShardPools;
use mysql_async::prelude::Queryable;
use serde::Serialize;

use crate::sql::column;

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
    ///
    /// Strictly before the newest timestamp: a message stamped exactly a
    /// window's end plus the lateness is not late, and another with the same
    /// stamp may still follow (every aggregate of an interval carries its end).
    pub fn settled_through_ms(&self, lateness_ms: i64) -> i64 {
        let applied = self.max_message_ms;
        let confirmed = if self.reached_end { self.updated_at_ms } else { i64::MIN };
        applied.max(confirmed).saturating_sub(lateness_ms).saturating_sub(1)
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
        topic: column(&mut row, 0, WHAT)?,
        partition: column(&mut row, 1, WHAT)?,
        shards: 1,
        next_offset: column(&mut row, 2, WHAT)?,
        first_offset: column(&mut row, 3, WHAT)?,
        covered_from_ms: column(&mut row, 4, WHAT)?,
        max_message_ms: column(&mut row, 5, WHAT)?,
        reached_end: column::<u8>(&mut row, 6, WHAT)? != 0,
        high_watermark: column(&mut row, 7, WHAT)?,
        updated_at_ms: column(&mut row, 8, WHAT)?,
        consumer_group: column(&mut row, 9, WHAT)?,
        messages_applied: column(&mut row, 10, WHAT)?,
        late_messages: column(&mut row, 11, WHAT)?,
        expired_messages: column(&mut row, 12, WHAT)?,
    })
}

/// Where to resume each partition on this cluster: every shard has applied
/// everything below the returned offset. A shard without a fence row for a
/// partition the others have started never applied any of it, so the
/// partition resumes from where the cluster first started it.
pub async fn resume_points(
    pools: &ShardPools,
) -> Result<std::collections::HashMap<(String, i32), i64>, mysql_async::Error> {
    let mut per_shard: Vec<std::collections::HashMap<(String, i32), (i64, i64)>> = Vec::with_capacity(pools.len());
    for pool in pools.shards() {
        let mut conn = pool.get_conn().await?;
        let rows: Vec<(String, i32, i64, i64)> =
            conn.query("SELECT topic, kafka_partition, next_offset, first_offset FROM dw_offset_fence").await?;
        per_shard.push(rows.into_iter().map(|(t, p, next, first)| ((t, p), (next, first))).collect());
    }
    let mut out: std::collections::HashMap<(String, i32), i64> = std::collections::HashMap::new();
    let keys: std::collections::BTreeSet<&(String, i32)> = per_shard.iter().flat_map(|m| m.keys()).collect();
    for key in keys {
        let rows: Vec<(i64, i64)> = per_shard.iter().filter_map(|m| m.get(key).copied()).collect();
        let resume = if rows.len() == per_shard.len() {
            rows.iter().map(|(next, _)| *next).min()
        } else {
            rows.iter().map(|(_, first)| *first).min()
        };
        if let Some(offset) = resume {
            out.insert(key.clone(), offset);
        }
    }
    Ok(out)
}

/// The partitions this cluster has fence rows for (read from one shard:
/// every batch writes every shard's rows).
pub async fn started_partitions(pool: &mysql_async::Pool) -> Result<Vec<(String, i32)>, mysql_async::Error> {
    let mut conn = pool.get_conn().await?;
    conn.query("SELECT topic, kafka_partition FROM dw_offset_fence").await
}

/// The fence rows of one topic on one shard, `partition -> next_offset`
/// (every message of the partition below it is applied on this shard).
/// With `lock`, the rows are read `FOR UPDATE` and stay locked until the
/// caller's transaction ends: a consumer's shard transaction locks the fence
/// rows of its batch's partitions before it writes a row, so while they are
/// held no group writes anything those partitions feed on this shard. Under
/// REPEATABLE READ (the caller's transaction) the read also locks the gaps of
/// the topic's range, so a partition the shard has no row for yet cannot be
/// started meanwhile either. MariaDB 10.11 and MySQL 8 alike.
pub async fn topic_fences<Q: Queryable + Send>(
    conn: &mut Q,
    topic: &str,
    lock: bool,
) -> Result<BTreeMap<i32, i64>, mysql_async::Error> {
    let rows: Vec<(i32, i64)> = conn
        .exec(
            format!(
                "SELECT kafka_partition, next_offset FROM dw_offset_fence WHERE topic = ? ORDER BY kafka_partition{}",
                if lock { " FOR UPDATE" } else { "" }
            ),
            (topic,),
        )
        .await?;
    Ok(rows.into_iter().collect())
}

/// Every topic this shard has fence rows for.
pub async fn fenced_topics(pool: &mysql_async::Pool) -> Result<Vec<String>, mysql_async::Error> {
    let mut conn = pool.get_conn().await?;
    conn.query("SELECT DISTINCT topic FROM dw_offset_fence ORDER BY topic").await
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
    /// While the partition has messages to apply: how long since any shard's
    /// fence for it last moved or was confirmed (the oldest over shards), ms.
    /// A live owner keeps this near its batch interval; a partition no live
    /// member applies grows it without bound. `None` when caught up or unknown.
    pub unapplied_ms: Option<i64>,
    /// The live group member holding the partition (`crate::members`), `None`
    /// when no member heard from recently claims it. Filled by callers that
    /// read the members (`dualwrite-consumer status`), `None` otherwise.
    pub owner: Option<String>,
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

/// End offset per (topic, partition), as the broker reports it.
pub type Ends = Vec<((String, i32), i64)>;

/// Messages and seconds a partition is behind the broker's `end` offset: the
/// age of the newest applied message while behind, 0 when caught up.
pub fn lag(progress: &PartitionProgress, end: i64, now_ms: i64) -> (i64, f64) {
    let messages = (end - progress.next_offset).max(0);
    // Saturating: a partition some shard never applied has no newest
    // message (`i64::MIN`), and a producer's timestamp can be any i64.
    let seconds =
        if messages == 0 { 0.0 } else { now_ms.saturating_sub(progress.max_message_ms).max(0) as f64 / 1000.0 };
    (messages, seconds)
}

/// Per partition: what the cluster applied (`fences`, from [`progress`]) next
/// to the broker's end offsets (`ends`, fetched by the caller: this crate
/// never talks to Kafka).
pub fn report(
    cluster: &str,
    fences: Vec<PartitionProgress>,
    ends: Option<&Ends>,
    lateness_ms: i64,
    now_ms: i64,
) -> StatusReport {
    let mut rows: BTreeMap<(String, i32), PartitionStatus> = BTreeMap::new();
    for p in fences {
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
                unapplied_ms: None,
                owner: None,
            },
        );
    }
    for ((topic, partition), end) in ends.into_iter().flatten() {
        let row = rows.entry((topic.clone(), *partition)).or_insert_with(|| PartitionStatus {
            topic: topic.clone(),
            partition: *partition,
            progress: None,
            end_offset: None,
            lag_messages: None,
            lag_seconds: None,
            settled_through_ms: None,
            unapplied_ms: None,
            owner: None,
        });
        row.end_offset = Some(*end);
        if let Some(p) = &row.progress {
            let (messages, seconds) = lag(p, *end, now_ms);
            row.lag_messages = Some(messages);
            row.lag_seconds = Some(seconds);
            row.unapplied_ms = (messages > 0).then(|| (now_ms - p.updated_at_ms).max(0));
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
    StatusReport { cluster: cluster.to_string(), partitions, covered_from_ms, settled_through_ms }
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
    fn lag_of_a_partition_whose_newest_message_claims_any_time_is_finite() {
        for max_ms in [i64::MIN, -1, i64::MAX] {
            let (messages, seconds) = lag(&partition(0, 0, max_ms, false, 0), 15, 1_000);
            assert_eq!(messages, 5);
            assert!(seconds.is_finite() && seconds >= 0.0, "{max_ms}: {seconds}");
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
        assert_eq!(window_state(&progress, None, 0, 3_999, 1_000), WindowState::Settled);
        // A message stamped 5_000 is not late for a window ending at 4_000, and may still come.
        assert_eq!(window_state(&progress, None, 0, 4_000, 1_000), WindowState::CoveredNotSettled);
        assert_eq!(window_state(&progress, None, 0, 4_500, 1_000), WindowState::CoveredNotSettled);
        // An idle partition confirmed fully applied at 9_000 counts as past.
        let idle = [partition(0, 0, 10_000, false, 0), partition(1, 0, 5_000, true, 9_000)];
        assert_eq!(window_state(&idle, None, 0, 7_999, 1_000), WindowState::Settled);
    }

    #[test]
    fn a_partition_with_messages_but_no_fence_is_not_covered() {
        let progress = [partition(0, 0, 10_000, true, 10_000)];
        let all = [("t".to_string(), 0), ("t".to_string(), 1)];
        assert_eq!(window_state(&progress, Some(&all), 0, 1_000, 0), WindowState::NotCovered);
        assert_eq!(window_state(&progress, Some(&all[..1]), 0, 1_000, 0), WindowState::Settled);
    }

    #[test]
    fn lag_counts_messages_behind_and_the_age_of_the_newest_applied() {
        let p = partition(0, 0, 50_000, false, 0);
        assert_eq!(lag(&p, 10, 90_000), (0, 0.0));
        assert_eq!(lag(&p, 25, 90_000), (15, 40.0));
        // A fence ahead of the end (topic recreated) is not negative lag.
        assert_eq!(lag(&p, 4, 90_000), (0, 0.0));
        // A partition some shard never applied has no newest message: behind without bound, no overflow.
        let never = PartitionProgress { max_message_ms: i64::MIN, ..p };
        assert_eq!(lag(&never, 25, 90_000), (15, i64::MAX as f64 / 1000.0));
    }

    #[test]
    fn report_leaves_a_cluster_uncovered_while_a_partition_with_messages_is_unstarted() {
        let fences = vec![partition(0, 1_000, 50_000, false, 0)];
        let ends: Ends = vec![(("t".into(), 0), 12), (("t".into(), 1), 3)];
        let r = report("new", fences.clone(), Some(&ends), 0, 60_000);
        assert_eq!(r.partitions.len(), 2);
        assert_eq!(r.partitions[0].lag_messages, Some(2));
        // behind since the fence's last update at 0
        assert_eq!(r.partitions[0].unapplied_ms, Some(60_000));
        assert_eq!(r.covered_from_ms, None);
        let empty: Ends = vec![(("t".into(), 0), 10), (("t".into(), 1), 0)];
        let r = report("new", fences, Some(&empty), 0, 60_000);
        assert_eq!(r.covered_from_ms, Some(1_000));
        assert_eq!(r.partitions[0].unapplied_ms, None, "caught up");
        assert_eq!(r.settled_through_ms, Some(49_999));
    }
}
