//! One shard's part of a batch, committed with its offset fence in one
//! transaction: the exactly-once mechanism.
//!
//! The fence rows of the batch's partitions are locked first, so two writers
//! of one partition (a zombie and the new owner, or a retry) serialize, and
//! every message below the fence is skipped. Because a pattern's messages all
//! live on one partition, the fence lock also serializes every writer of the
//! rows they touch.

use std::collections::{BTreeMap, HashMap};

use mysql_async::prelude::Queryable;
use mysql_async::{IsolationLevel, Pool, Row, Transaction, TxOpts};
use topics::LatencySketch;

use crate::plan::{ItemBody, PartitionRange, ShardItem};
use crate::rows::{PatternRow, SlowRow, StatsKey, StatsRow};
use cluster::sql::{chunks, column, datetime, datetime_ms, datetime_us, hex, lit, tuple, CHUNK_ROWS};

/// What the transaction did, for metrics and logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShardOutcome {
    /// Messages applied, per batch range (index into the plan's ranges).
    pub applied: Vec<u64>,
    /// Below the fence: applied by an earlier attempt or another owner.
    pub skipped: Vec<u64>,
    /// Applied, but later than the allowed lateness.
    pub late: Vec<u64>,
    /// Older than retention: counted, not written.
    pub expired: Vec<u64>,
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

pub async fn apply_shard(
    pool: &Pool,
    items: &[ShardItem],
    fence: &FenceInfo<'_>,
) -> Result<ShardOutcome, mysql_async::Error> {
    let mut conn = pool.get_conn().await?;
    // READ COMMITTED: locking reads take no gap locks, so partitions never block each other.
    let mut opts = TxOpts::new();
    opts.with_isolation_level(IsolationLevel::ReadCommitted);
    let mut tx = conn.start_transaction(opts).await?;
    let fences = lock_fences(&mut tx, fence).await?;

    let mut out = ShardOutcome {
        applied: vec![0; fence.ranges.len()],
        skipped: vec![0; fence.ranges.len()],
        late: vec![0; fence.ranges.len()],
        expired: vec![0; fence.ranges.len()],
        ..ShardOutcome::default()
    };
    for (i, r) in fence.ranges.iter().enumerate() {
        if fences[i] < r.first_offset {
            out.gaps.push((r.topic.to_string(), r.partition, fences[i], r.first_offset));
        }
    }

    // Contributions per key, in fetch (= offset) order.
    let mut minute: BTreeMap<StatsKey, Vec<&StatsRow>> = BTreeMap::new();
    let mut hour: BTreeMap<StatsKey, Vec<&StatsRow>> = BTreeMap::new();
    let mut patterns: HashMap<(u64, &str), PatternRow> = HashMap::new();
    let mut slow: Vec<&SlowRow> = Vec::new();
    for item in items {
        if item.offset < fences[item.range] {
            out.skipped[item.range] += 1;
            continue;
        }
        match &item.body {
            ItemBody::Expired => {
                out.expired[item.range] += 1;
                continue;
            }
            ItemBody::Stats { late: true, .. } | ItemBody::Slow { late: true, .. } => out.late[item.range] += 1,
            _ => {}
        }
        out.applied[item.range] += 1;
        match &item.body {
            // Counted above and skipped.
            ItemBody::Expired => {}
            ItemBody::Stats { minute: key, hour_window, row, pattern, .. } => {
                minute.entry(key.clone()).or_default().push(row);
                let hour_key = StatsKey { window_start: *hour_window, ..key.clone() };
                hour.entry(hour_key).or_default().push(row);
                patterns
                    .entry((key.database_id, key.fingerprint.as_str()))
                    .and_modify(|p| p.merge(pattern))
                    .or_insert_with(|| pattern.clone());
            }
            ItemBody::Slow { row, .. } => slow.push(row),
        }
    }

    out.minute_rows = upsert_stats(&mut tx, "query_stats_minute", &minute).await?;
    out.hour_rows = upsert_stats(&mut tx, "query_stats_hour", &hour).await?;
    out.pattern_rows = upsert_patterns(&mut tx, &patterns).await?;
    out.slow_rows = insert_slow(&mut tx, &slow).await?;
    advance_fences(&mut tx, fence, &fences, &out).await?;
    tx.commit().await?;
    Ok(out)
}

/// Creates missing fence rows (starting at the batch) and locks all of them;
/// returns the fence per range.
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
    // A no-op update still takes the row's exclusive lock, held to commit; the
    // read below is therefore a plain one (a locking read could scan and lock
    // other partitions' rows).
    tx.query_drop(format!(
        "INSERT INTO dw_offset_fence (topic, kafka_partition, next_offset, first_offset, first_message_ms, \
         covered_from_ms, max_message_ms, consumer_group, updated_at) VALUES {} \
         ON DUPLICATE KEY UPDATE next_offset = next_offset",
        rows.join(",")
    ))
    .await?;
    let keys: Vec<String> = fence.ranges.iter().map(|r| tuple(&[lit(&*r.topic), lit(r.partition)])).collect();
    let current: Vec<(String, i32, i64)> = tx
        .query(format!(
            "SELECT topic, kafka_partition, next_offset FROM dw_offset_fence WHERE (topic, kafka_partition) IN ({})",
            keys.join(",")
        ))
        .await?;
    let by_key: HashMap<(String, i32), i64> = current.into_iter().map(|(t, p, o)| ((t, p), o)).collect();
    Ok(fence
        .ranges
        .iter()
        .map(|r| by_key.get(&(r.topic.to_string(), r.partition)).copied().unwrap_or(r.first_offset))
        .collect())
}

const STATS_COLUMNS: &str = "database_id, fingerprint, window_start, keyspace_id, query_count, total_duration_us, \
     max_duration_us, rows_read, rows_returned, error_count, latency_sketch";

/// Folds each key's contributions, in order, onto its stored row and writes the result.
async fn upsert_stats(
    tx: &mut Transaction<'_>,
    table: &str,
    contributions: &BTreeMap<StatsKey, Vec<&StatsRow>>,
) -> Result<u64, mysql_async::Error> {
    let keys: Vec<&StatsKey> = contributions.keys().collect();
    let mut written = 0;
    for chunk in keys.chunks(CHUNK_ROWS) {
        let mut stored = load_stats(tx, table, chunk).await?;
        let mut values = Vec::with_capacity(chunk.len());
        for key in chunk {
            let rows = &contributions[*key];
            let (mut merged, rest) = match stored.remove(*key) {
                Some(existing) => (existing, &rows[..]),
                None => ((*rows[0]).clone(), &rows[1..]),
            };
            for r in rest {
                merged.merge(r);
            }
            values.push(stats_values(key, &merged));
        }
        tx.query_drop(format!(
            "INSERT INTO {table} ({STATS_COLUMNS}) VALUES {} ON DUPLICATE KEY UPDATE \
             query_count = VALUES(query_count), total_duration_us = VALUES(total_duration_us), \
             max_duration_us = VALUES(max_duration_us), rows_read = VALUES(rows_read), \
             rows_returned = VALUES(rows_returned), error_count = VALUES(error_count), \
             latency_sketch = VALUES(latency_sketch)",
            values.join(",")
        ))
        .await?;
        written += chunk.len() as u64;
    }
    Ok(written)
}

async fn load_stats(
    tx: &mut Transaction<'_>,
    table: &str,
    keys: &[&StatsKey],
) -> Result<HashMap<StatsKey, StatsRow>, mysql_async::Error> {
    let wanted: Vec<String> = keys
        .iter()
        .map(|k| tuple(&[lit(k.database_id), lit(k.fingerprint.as_str()), datetime(k.window_start)]))
        .collect();
    // TIMESTAMPDIFF instead of UNIX_TIMESTAMP: independent of the session time zone.
    let rows: Vec<Row> = tx
        .query(format!(
            "SELECT database_id, fingerprint, TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', window_start), keyspace_id, \
             query_count, total_duration_us, max_duration_us, rows_read, rows_returned, error_count, latency_sketch \
             FROM {table} WHERE (database_id, fingerprint, window_start) IN ({}) FOR UPDATE",
            wanted.join(",")
        ))
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let (key, stats) = parse_stats_row(row)?;
        out.insert(key, stats);
    }
    Ok(out)
}

fn parse_stats_row(mut row: Row) -> Result<(StatsKey, StatsRow), mysql_async::Error> {
    const WHAT: &str = "stored stats row";
    let key = StatsKey {
        database_id: column(&mut row, 0, WHAT)?,
        fingerprint: column(&mut row, 1, WHAT)?,
        window_start: column(&mut row, 2, WHAT)?,
    };
    let keyspace_id: Vec<u8> = column(&mut row, 3, WHAT)?;
    let sketch_bytes: Vec<u8> = column(&mut row, 10, WHAT)?;
    let sketch = LatencySketch::decode(&sketch_bytes)
        .map_err(|e| mysql_async::Error::Other(format!("stored latency_sketch of {key:?}: {e}").into()))?;
    let stats = StatsRow {
        keyspace_id: keyspace_id.try_into().unwrap_or([0; 8]),
        query_count: column(&mut row, 4, WHAT)?,
        total_duration_us: column(&mut row, 5, WHAT)?,
        max_duration_us: column(&mut row, 6, WHAT)?,
        rows_read: column(&mut row, 7, WHAT)?,
        rows_returned: column(&mut row, 8, WHAT)?,
        error_count: column(&mut row, 9, WHAT)?,
        sketch,
    };
    Ok((key, stats))
}

fn stats_values(key: &StatsKey, row: &StatsRow) -> String {
    tuple(&[
        lit(key.database_id),
        lit(key.fingerprint.as_str()),
        datetime(key.window_start),
        hex(&row.keyspace_id),
        lit(row.query_count),
        lit(row.total_duration_us),
        lit(row.max_duration_us),
        lit(row.rows_read),
        lit(row.rows_returned),
        lit(row.error_count),
        hex(&row.sketch.encode()),
    ])
}

async fn upsert_patterns(
    tx: &mut Transaction<'_>,
    patterns: &HashMap<(u64, &str), PatternRow>,
) -> Result<u64, mysql_async::Error> {
    let mut sorted: Vec<(&(u64, &str), &PatternRow)> = patterns.iter().collect();
    // Sorted so that concurrent writers lock rows in one order (no deadlocks).
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let values: Vec<String> = sorted
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
    for chunk in chunks(&values) {
        // The merge rule of PatternRow::merge, in SQL (shared with the copier).
        tx.query_drop(cluster::schema::query_patterns_upsert(&chunk.join(","))).await?;
    }
    Ok(sorted.len() as u64)
}

async fn insert_slow(tx: &mut Transaction<'_>, rows: &[&SlowRow]) -> Result<u64, mysql_async::Error> {
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
        tx.query_drop(format!(
            "INSERT INTO slow_queries (src_partition, src_offset, occurred_at, database_id, fingerprint, keyspace_id, \
             proxy_id, duration_us, rows_read, rows_returned, error_text, query_text, tables_used) VALUES {}",
            chunk.join(",")
        ))
        .await?;
    }
    Ok(rows.len() as u64)
}

async fn advance_fences(
    tx: &mut Transaction<'_>,
    fence: &FenceInfo<'_>,
    current: &[i64],
    outcome: &ShardOutcome,
) -> Result<(), mysql_async::Error> {
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
                lit(outcome.applied[i]),
                lit(outcome.late[i]),
                lit(outcome.expired[i]),
                "UTC_TIMESTAMP(6)".to_string(),
            ])
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    tx.query_drop(format!(
        "INSERT INTO dw_offset_fence (topic, kafka_partition, next_offset, first_offset, first_message_ms, \
         covered_from_ms, max_message_ms, reached_end, high_watermark, consumer_group, messages_applied, late_messages, \
         expired_messages, updated_at) VALUES {} \
         ON DUPLICATE KEY UPDATE next_offset = VALUES(next_offset), \
         max_message_ms = GREATEST(max_message_ms, VALUES(max_message_ms)), reached_end = VALUES(reached_end), \
         high_watermark = VALUES(high_watermark), consumer_group = VALUES(consumer_group), \
         messages_applied = messages_applied + VALUES(messages_applied), \
         late_messages = late_messages + VALUES(late_messages), \
         expired_messages = expired_messages + VALUES(expired_messages), updated_at = VALUES(updated_at)",
        rows.join(",")
    ))
    .await
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
