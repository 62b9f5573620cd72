//! One shard's part of a batch, committed with its offset fence in one
//! transaction: the exactly-once mechanism.
//!
//! The fence rows of the batch's partitions are locked first, so two writers
//! of one partition (a zombie and the new owner, or a retry) serialize, and
//! every message below the fence is skipped. Because a pattern's messages all
//! live on one partition, the fence lock also serializes every writer of the
//! rows they touch.
//!
//! Round trips are what a shard transaction waits on: the fences are locked
//! and read in one, the stored rows of both stats tables read in one, and
//! every write (rows and the advanced fences) sent as one multi-statement
//! text of at most [`MAX_STATEMENT_BYTES`] per trip (usually one), then
//! the commit.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use mysql_async::{IsolationLevel, Pool, Row, Transaction, TxOpts};

use crate::coalesce::{coalesce, Coalesced, Counts};
use crate::plan::{PartitionRange, ShardItem};
use crate::shape::Shape;
use crate::write::{parse_stored, row_statements, stored_selects, Stored};
use cluster::sql::{lit, tuple, MAX_STATEMENT_BYTES};

/// What the transaction did, for metrics and logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShardOutcome {
    /// Messages applied, skipped below the fence, late and expired, per batch range.
    pub counts: Counts,
    /// Rows written per table (the shape's table order).
    pub rows: Vec<u64>,
    /// Partitions whose fence was behind the batch's first offset: messages
    /// in between never reached this consumer (truncated upstream).
    pub gaps: Vec<(String, i32, i64, i64)>,
}

/// Per batch range: the high watermark if known (for `reached_end`).
pub struct FenceInfo<'a> {
    pub ranges: &'a [PartitionRange],
    pub high_watermarks: &'a [Option<i64>],
    pub group: &'a str,
    /// For partitions this cluster has not started yet: from which message
    /// time it will hold all of them (see `batcher::coverage_starts`). Only read
    /// when a fence row is created.
    pub coverage_starts: &'a HashMap<(String, i32), i64>,
}

impl FenceInfo<'_> {
    /// Without a better answer, a partition is covered from its first applied message.
    fn covered_from(&self, r: &PartitionRange) -> i64 {
        self.coverage_starts.get(&(r.topic.to_string(), r.partition)).copied().unwrap_or(r.first_message_ms)
    }
}

/// Whether a shard transaction commits, or only tries its writes and rolls
/// back (to find which items the store rejects, see [`crate::isolate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Commit,
    Probe,
}

pub async fn apply_shard(
    pool: &Pool,
    shape: &Shape,
    items: &[ShardItem],
    fence: &FenceInfo<'_>,
) -> Result<ShardOutcome, mysql_async::Error> {
    let refs: Vec<&ShardItem> = items.iter().collect();
    apply_items(pool, shape, &refs, fence, Attempt::Commit).await
}

/// [`apply_shard`] on a subset of a shard's items.
pub async fn apply_items(
    pool: &Pool,
    shape: &Shape,
    items: &[&ShardItem],
    fence: &FenceInfo<'_>,
    attempt: Attempt,
) -> Result<ShardOutcome, mysql_async::Error> {
    let mut conn = pool.get_conn().await?;
    // Nothing here changes session state beyond the transaction, which ends
    // (commit, rollback, or the pool's cleanup of a dirty connection) before
    // the connection is reused: the reset (and the session setup it forces
    // again) would cost three round trips per shard and batch.
    conn.reset_connection(false);
    // READ COMMITTED: locking reads take no gap locks, so partitions never block each other.
    let mut opts = TxOpts::new();
    opts.with_isolation_level(IsolationLevel::ReadCommitted);
    let mut tx = conn.start_transaction(opts).await?;
    let fences = lock_fences(&mut tx, fence).await?;

    let coalesced = coalesce(shape, items, &fences);
    let mut out = ShardOutcome { counts: coalesced.counts.clone(), ..ShardOutcome::default() };
    for (i, r) in fence.ranges.iter().enumerate() {
        if fences[i] < r.first_offset {
            out.gaps.push((r.topic.to_string(), r.partition, fences[i], r.first_offset));
        }
    }
    out.rows = coalesced.rows();

    let stored = load_stored(&mut tx, shape, &coalesced).await?;
    let statements = write_statements(shape, &coalesced, stored, fence, &fences, &out);
    run_statements(&mut tx, &statements).await?;
    match attempt {
        Attempt::Commit => tx.commit().await?,
        Attempt::Probe => tx.rollback().await?,
    }
    Ok(out)
}

/// Every write of a shard transaction, in order: each table's rows (folded
/// ones onto `stored`: see [`load_stored`]), then the advanced fences. Pure
/// (the benchmark's no-sink mode times it).
pub fn write_statements(
    shape: &Shape,
    coalesced: &Coalesced<'_>,
    stored: Stored,
    fence: &FenceInfo<'_>,
    fences: &[i64],
    outcome: &ShardOutcome,
) -> Vec<String> {
    let mut statements = row_statements(shape, coalesced, stored);
    statements.extend(advance_fences(fence, fences, outcome));
    statements
}

/// The stored rows of every folded table's keys, locked, in one round trip.
async fn load_stored(tx: &mut Transaction<'_>, shape: &Shape, c: &Coalesced<'_>) -> Result<Stored, mysql_async::Error> {
    let mut stored: Stored = vec![Vec::new(); shape.tables.len()];
    let selects = stored_selects(shape, c);
    if selects.is_empty() {
        return Ok(stored);
    }
    let mut result = tx.query_iter(selects.join(";")).await?;
    for _ in 0..selects.len() {
        if result.is_empty() {
            break;
        }
        for row in result.collect::<Row>().await? {
            let row = parse_stored(shape, row)?;
            stored[usize::from(row.table)].push(row);
        }
    }
    result.drop_result().await?;
    for (t, rows) in stored.iter_mut().enumerate() {
        let key = &shape.tables[t].key;
        rows.sort_by(|a, b| crate::coalesce::compare_keys(a, b, key));
    }
    Ok(stored)
}

/// Sends `statements` as few multi-statement texts as the byte cap allows.
async fn run_statements(tx: &mut Transaction<'_>, statements: &[String]) -> Result<(), mysql_async::Error> {
    let mut start = 0;
    while start < statements.len() {
        let mut end = start + 1;
        let mut bytes = statements[start].len();
        while end < statements.len() && bytes + statements[end].len() < MAX_STATEMENT_BYTES {
            bytes += statements[end].len() + 1;
            end += 1;
        }
        // A failing statement stops the rest and its error is returned: the
        // transaction then rolls back as a whole.
        tx.query_drop(statements[start..end].join(";")).await?;
        start = end;
    }
    Ok(())
}

/// Creates missing fence rows (starting at the batch) and locks all of them;
/// returns the fence per range. One round trip.
async fn lock_fences(tx: &mut Transaction<'_>, fence: &FenceInfo<'_>) -> Result<Vec<i64>, mysql_async::Error> {
    if fence.ranges.is_empty() {
        return Ok(Vec::new());
    }
    // Sorted, so two writers of overlapping partition sets lock in one order.
    let mut sorted: Vec<&PartitionRange> = fence.ranges.iter().collect();
    sorted.sort_by(|a, b| (&*a.topic, a.partition).cmp(&(&*b.topic, b.partition)));
    let rows: Vec<String> = sorted
        .iter()
        .map(|r| {
            tuple(&[
                lit(&*r.topic),
                lit(r.partition),
                lit(r.first_offset),
                lit(r.first_offset),
                lit(r.first_message_ms),
                lit(fence.covered_from(r)),
                lit(r.first_message_ms),
                lit(fence.group),
                "UTC_TIMESTAMP(6)".to_string(),
            ])
        })
        .collect();
    let keys: Vec<String> = fence.ranges.iter().map(|r| tuple(&[lit(&*r.topic), lit(r.partition)])).collect();
    // A no-op update still takes the row's exclusive lock, held to commit; the
    // read after it is therefore a plain one (a locking read could scan and
    // lock other partitions' rows). Both go in one round trip.
    let mut result = tx
        .query_iter(format!(
            "INSERT INTO dw_offset_fence (topic, kafka_partition, next_offset, first_offset, first_message_ms, \
             covered_from_ms, max_message_ms, consumer_group, updated_at) VALUES {} \
             ON DUPLICATE KEY UPDATE next_offset = next_offset;\
             SELECT topic, kafka_partition, next_offset FROM dw_offset_fence WHERE (topic, kafka_partition) IN ({})",
            rows.join(","),
            keys.join(",")
        ))
        .await?;
    let mut current: Vec<(String, i32, i64)> = Vec::new();
    // The INSERT's result has no rows, the SELECT's follow.
    for _ in 0..2 {
        if result.is_empty() {
            break;
        }
        current.extend(result.collect::<(String, i32, i64)>().await?);
    }
    result.drop_result().await?;
    let by_key: HashMap<(String, i32), i64> = current.into_iter().map(|(t, p, o)| ((t, p), o)).collect();
    Ok(fence
        .ranges
        .iter()
        .map(|r| by_key.get(&(r.topic.to_string(), r.partition)).copied().unwrap_or(r.first_offset))
        .collect())
}

/// A gap (the stored fence is below the batch's first offset: the messages
/// between expired from the topic before this group applied them) restarts
/// the partition's coverage at the batch's first message, so readiness and
/// verify treat every window before it as not covered. `covered_from_ms` is
/// assigned before `next_offset`: MariaDB and MySQL 8 alike evaluate
/// `ON DUPLICATE KEY UPDATE` assignments left to right, later ones seeing the
/// new values.
fn advance_fences(fence: &FenceInfo<'_>, current: &[i64], outcome: &ShardOutcome) -> Option<String> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let rows: Vec<String> = fence
        .ranges
        .iter()
        .enumerate()
        .filter(|(i, r)| r.next_offset > current[*i])
        .map(|(i, r)| {
            let hw = fence.high_watermarks.get(i).copied().flatten();
            let reached_end = hw.is_some_and(|hw| r.next_offset >= hw);
            tuple(&[
                lit(&*r.topic),
                lit(r.partition),
                lit(r.next_offset),
                lit(r.first_offset),
                lit(r.first_message_ms),
                lit(fence.covered_from(r)),
                // A producer clock running ahead must not settle windows early.
                lit(r.max_message_ms.min(now_ms)),
                lit(u8::from(reached_end)),
                lit(hw.unwrap_or(-1)),
                lit(fence.group),
                lit(outcome.counts.applied[i]),
                lit(outcome.counts.late[i]),
                lit(outcome.counts.expired[i]),
                "UTC_TIMESTAMP(6)".to_string(),
            ])
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    Some(format!(
        "INSERT INTO dw_offset_fence (topic, kafka_partition, next_offset, first_offset, first_message_ms, \
         covered_from_ms, max_message_ms, reached_end, high_watermark, consumer_group, messages_applied, late_messages, \
         expired_messages, updated_at) VALUES {} \
         ON DUPLICATE KEY UPDATE \
         covered_from_ms = IF(next_offset < VALUES(first_offset), \
           GREATEST(covered_from_ms, VALUES(first_message_ms)), covered_from_ms), \
         next_offset = VALUES(next_offset), \
         max_message_ms = GREATEST(max_message_ms, VALUES(max_message_ms)), reached_end = VALUES(reached_end), \
         high_watermark = VALUES(high_watermark), consumer_group = VALUES(consumer_group), \
         messages_applied = messages_applied + VALUES(messages_applied), \
         late_messages = late_messages + VALUES(late_messages), \
         expired_messages = expired_messages + VALUES(expired_messages), updated_at = VALUES(updated_at)",
        rows.join(",")
    ))
}

/// Marks idle partitions that every shard has applied up to `end` as having
/// reached the end now, so windows can settle without new messages.
pub async fn confirm_idle(pool: &Pool, partitions: &[(String, i32, i64)]) -> Result<(), mysql_async::Error> {
    if partitions.is_empty() {
        return Ok(());
    }
    let statements: Vec<String> = partitions
        .iter()
        .map(|(topic, partition, end)| {
            format!(
                "UPDATE dw_offset_fence SET reached_end = 1, high_watermark = {end}, updated_at = UTC_TIMESTAMP(6) \
                 WHERE topic = {} AND kafka_partition = {partition} AND next_offset >= {end}",
                lit(topic.as_str())
            )
        })
        .collect();
    let mut conn = pool.get_conn().await?;
    conn.query_drop(statements.join(";")).await
}
