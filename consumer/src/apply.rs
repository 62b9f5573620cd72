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
use std::fmt::Write as _;

use mysql_async::prelude::Queryable;
use mysql_async::{IsolationLevel, Pool, Row, Transaction, TxOpts};
use topics::LatencySketch;

use crate::coalesce::{coalesce, fold, owned, Coalesced, Counts, KeyRef};
use crate::plan::{PartitionRange, ShardItem};
use crate::rows::{SlowRow, StatsKey, StatsRow};
use cluster::sql::{
    chunks, column, datetime, datetime_ms, datetime_us, hex, lit, push_hex, tuple, CHUNK_ROWS, MAX_STATEMENT_BYTES,
};

/// What the transaction did, for metrics and logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShardOutcome {
    /// Messages applied, skipped below the fence, late and expired, per batch range.
    pub counts: Counts,
    pub minute_rows: u64,
    pub hour_rows: u64,
    pub pattern_rows: u64,
    pub slow_rows: u64,
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
    items: &[ShardItem],
    fence: &FenceInfo<'_>,
) -> Result<ShardOutcome, mysql_async::Error> {
    let refs: Vec<&ShardItem> = items.iter().collect();
    apply_items(pool, &refs, fence, Attempt::Commit).await
}

/// [`apply_shard`] on a subset of a shard's items.
pub async fn apply_items(
    pool: &Pool,
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

    let coalesced = coalesce(items, &fences);
    let mut out = ShardOutcome { counts: coalesced.counts.clone(), ..ShardOutcome::default() };
    for (i, r) in fence.ranges.iter().enumerate() {
        if fences[i] < r.first_offset {
            out.gaps.push((r.topic.to_string(), r.partition, fences[i], r.first_offset));
        }
    }
    [out.minute_rows, out.hour_rows, out.pattern_rows, out.slow_rows] = coalesced.rows();

    let (minute, hour) = load_stats(&mut tx, &coalesced).await?;
    let statements = write_statements(&coalesced, minute, hour, fence, &fences, &out);
    run_statements(&mut tx, &statements).await?;
    match attempt {
        Attempt::Commit => tx.commit().await?,
        Attempt::Probe => tx.rollback().await?,
    }
    Ok(out)
}

/// Every write of a shard transaction, in order: the rows folded onto the
/// stored ones (`minute`, `hour`: see [`load_stats`]), then the advanced
/// fences. Pure (the benchmark's no-sink mode times it).
pub fn write_statements(
    coalesced: &Coalesced<'_>,
    mut minute: Stored,
    mut hour: Stored,
    fence: &FenceInfo<'_>,
    fences: &[i64],
    outcome: &ShardOutcome,
) -> Vec<String> {
    let mut statements = Vec::new();
    upsert_stats(&mut statements, "query_stats_minute", &coalesced.minute, &mut minute);
    upsert_stats(&mut statements, "query_stats_hour", &coalesced.hour, &mut hour);
    upsert_patterns(&mut statements, coalesced);
    insert_slow(&mut statements, &coalesced.slow);
    statements.extend(advance_fences(fence, fences, outcome));
    statements
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

const STATS_COLUMNS: &str = "database_id, fingerprint, window_start, keyspace_id, query_count, total_duration_us, \
     max_duration_us, rows_read, rows_returned, error_count, latency_sketch";

/// Stored rows of the minute or hour keys, locked (`FOR UPDATE`).
pub type Stored = HashMap<StatsKey, StatsRow>;

/// The stored rows of both stats tables' keys, read in one round trip.
async fn load_stats(tx: &mut Transaction<'_>, c: &Coalesced<'_>) -> Result<(Stored, Stored), mysql_async::Error> {
    let mut selects = Vec::new();
    for (table, keys) in [("query_stats_minute", &c.minute), ("query_stats_hour", &c.hour)] {
        let keys: Vec<&KeyRef<'_>> = keys.keys().collect();
        for chunk in keys.chunks(CHUNK_ROWS) {
            let mut wanted = String::with_capacity(chunk.len() * 64);
            for (i, (database_id, fingerprint, window_start)) in chunk.iter().enumerate() {
                if i > 0 {
                    wanted.push(',');
                }
                let _ = write!(wanted, "({database_id},{},{})", lit(*fingerprint), datetime(*window_start));
            }
            // TIMESTAMPDIFF instead of UNIX_TIMESTAMP: independent of the session time zone.
            // The first column tells the tables apart in the combined result.
            selects.push(format!(
                "SELECT {}, database_id, fingerprint, TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', window_start), \
                 keyspace_id, query_count, total_duration_us, max_duration_us, rows_read, rows_returned, error_count, \
                 latency_sketch FROM {table} WHERE (database_id, fingerprint, window_start) IN ({wanted}) FOR UPDATE",
                u8::from(table == "query_stats_hour")
            ));
        }
    }
    let (mut minute, mut hour) = (Stored::new(), Stored::new());
    if selects.is_empty() {
        return Ok((minute, hour));
    }
    let mut result = tx.query_iter(selects.join(";")).await?;
    for _ in 0..selects.len() {
        if result.is_empty() {
            break;
        }
        for row in result.collect::<Row>().await? {
            let (is_hour, key, stats) = parse_stats_row(row)?;
            if is_hour { &mut hour } else { &mut minute }.insert(key, stats);
        }
    }
    result.drop_result().await?;
    Ok((minute, hour))
}

fn parse_stats_row(mut row: Row) -> Result<(bool, StatsKey, StatsRow), mysql_async::Error> {
    const WHAT: &str = "stored stats row";
    let table: u8 = column(&mut row, 0, WHAT)?;
    let key = StatsKey {
        database_id: column(&mut row, 1, WHAT)?,
        fingerprint: column(&mut row, 2, WHAT)?,
        window_start: column(&mut row, 3, WHAT)?,
    };
    let keyspace_id: Vec<u8> = column(&mut row, 4, WHAT)?;
    let sketch_bytes: Vec<u8> = column(&mut row, 11, WHAT)?;
    let sketch = LatencySketch::decode(&sketch_bytes)
        .map_err(|e| mysql_async::Error::Other(format!("stored latency_sketch of {key:?}: {e}").into()))?;
    let stats = StatsRow {
        keyspace_id: keyspace_id.try_into().unwrap_or([0; 8]),
        query_count: column(&mut row, 5, WHAT)?,
        total_duration_us: column(&mut row, 6, WHAT)?,
        max_duration_us: column(&mut row, 7, WHAT)?,
        rows_read: column(&mut row, 8, WHAT)?,
        rows_returned: column(&mut row, 9, WHAT)?,
        error_count: column(&mut row, 10, WHAT)?,
        sketch,
    };
    Ok((table == 1, key, stats))
}

/// Folds each key's contributions, in order, onto its stored row; one
/// `INSERT ... ON DUPLICATE KEY UPDATE` per chunk of keys.
fn upsert_stats(
    statements: &mut Vec<String>,
    table: &str,
    contributions: &std::collections::BTreeMap<KeyRef<'_>, Vec<&StatsRow>>,
    stored: &mut Stored,
) {
    let keys: Vec<(&KeyRef<'_>, &Vec<&StatsRow>)> = contributions.iter().collect();
    for chunk in keys.chunks(CHUNK_ROWS) {
        let mut sql = format!("INSERT INTO {table} ({STATS_COLUMNS}) VALUES ");
        for (i, (key, rows)) in chunk.iter().enumerate() {
            let existing = if stored.is_empty() { None } else { stored.remove(&owned(key)) };
            if i > 0 {
                sql.push(',');
            }
            push_stats_values(&mut sql, key, &fold(existing, rows));
        }
        sql.push_str(
            " ON DUPLICATE KEY UPDATE \
             query_count = VALUES(query_count), total_duration_us = VALUES(total_duration_us), \
             max_duration_us = VALUES(max_duration_us), rows_read = VALUES(rows_read), \
             rows_returned = VALUES(rows_returned), error_count = VALUES(error_count), \
             latency_sketch = VALUES(latency_sketch)",
        );
        statements.push(sql);
    }
}

/// One row's value tuple, written straight into the statement.
fn push_stats_values(sql: &mut String, (database_id, fingerprint, window_start): &KeyRef<'_>, row: &StatsRow) {
    let _ = write!(sql, "({database_id},{},{},", lit(*fingerprint), datetime(*window_start));
    push_hex(sql, &row.keyspace_id);
    let _ = write!(
        sql,
        ",{},{},{},{},{},{},",
        row.query_count, row.total_duration_us, row.max_duration_us, row.rows_read, row.rows_returned, row.error_count
    );
    push_hex(sql, &row.sketch.encode());
    sql.push(')');
}

fn upsert_patterns(statements: &mut Vec<String>, c: &Coalesced<'_>) {
    // Sorted (a BTreeMap) so that concurrent writers lock rows in one order (no deadlocks).
    let values: Vec<String> = c
        .patterns
        .iter()
        .map(|((db, fp), p)| {
            tuple(&[
                lit(*db),
                lit(*fp),
                hex(&p.keyspace_id),
                lit(p.normalized_sql.as_str()),
                lit(p.tables_json.as_str()),
                datetime_ms(p.first_seen_ms),
                datetime_ms(p.last_seen_ms),
            ])
        })
        .collect();
    static INSIGHTS: std::sync::OnceLock<pipeline::Pipeline> = std::sync::OnceLock::new();
    let Some(table) = INSIGHTS.get_or_init(pipeline::Pipeline::insights).table("query_patterns") else { return };
    for chunk in chunks(&values) {
        // The merge rule of PatternRow::merge, in SQL (shared with the copier).
        statements.extend(pipeline::upsert(table, &chunk.join(",")));
    }
}

fn insert_slow(statements: &mut Vec<String>, rows: &[&SlowRow]) {
    let values: Vec<String> = rows
        .iter()
        .map(|s| {
            tuple(&[
                lit(s.src_partition),
                lit(s.src_offset),
                datetime_us(s.occurred_at_us),
                lit(s.database_id),
                lit(s.fingerprint.as_str()),
                hex(&s.keyspace_id),
                lit(s.proxy_id.as_str()),
                lit(s.duration_us),
                lit(s.rows_read),
                lit(s.rows_returned),
                lit(s.error_text.as_deref()),
                lit(s.query_text.as_str()),
                lit(s.tables_json.as_str()),
            ])
        })
        .collect();
    for chunk in chunks(&values) {
        // A plain INSERT: the fence guarantees each event arrives once, and a
        // duplicate key here would mean the fence was bypassed, which must fail loudly.
        statements.push(format!(
            "INSERT INTO slow_queries (src_partition, src_offset, occurred_at, database_id, fingerprint, keyspace_id, \
             proxy_id, duration_us, rows_read, rows_returned, error_text, query_text, tables_used) VALUES {}",
            chunk.join(",")
        ));
    }
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
