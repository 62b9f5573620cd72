//! Throughput of the window comparator against `CHECKSUM TABLE` on the same
//! shards, in the same run; and a generator of synthetic rows to measure on.

use std::time::Instant;

use mysql_async::prelude::Queryable;
use serde::Serialize;

use crate::digest::Side;
use crate::error::VerifyError;
use crate::first_pass::{self, differing, first_pass, per_window};
use crate::spec::{hex_literal, WINDOWED};

/// One bench run's figures (printed as one JSON line).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub old_shards: usize,
    pub new_shards: usize,
    /// Windows digested per side, over the three tables.
    pub windows: usize,
    /// Rows digested on both sides.
    pub comparator_rows: u64,
    pub comparator_secs: f64,
    pub comparator_rows_per_sec: f64,
    /// Queries the comparator keeps in flight per shard (one per table).
    pub queries_per_shard: usize,
    /// How busy the comparator kept the shards: the time each shard had at
    /// least one of its queries running, summed over the shards of both
    /// sides, over (wall time x shards).
    pub shard_busy: f64,
    /// Rows in the checksummed tables on both sides.
    pub checksum_rows: u64,
    pub checksum_secs: f64,
    pub checksum_rows_per_sec: f64,
    /// comparator rows/s divided by CHECKSUM TABLE rows/s.
    pub ratio: f64,
    /// Whether the comparator found both sides equal (it must, on generated data).
    pub equal: bool,
}

/// Runs the comparator's first pass over every window of `[from, to)` on
/// both sides (settled or not: this measures the pushed-down queries, as a
/// `windows` run issues them: every table, both sides and all their shards
/// at once), then runs `CHECKSUM TABLE` on every shard of both sides for
/// the same tables.
pub async fn bench(old: &Side, new: &Side, from: i64, to: i64) -> Result<BenchResult, VerifyError> {
    let started = Instant::now();
    let passes = futures::future::try_join_all(WINDOWED.iter().map(|table| async move {
        let size = table.window.map(|(_, w)| w.secs(&old.config.time)).unwrap_or(60);
        let aligned = [(from.div_euclid(size) * size, to.div_euclid(size) * size + size)];
        futures::try_join!(
            first_pass(old, table, size, &aligned, started),
            first_pass(new, table, size, &aligned, started)
        )
    }))
    .await?;
    let comparator_secs = started.elapsed().as_secs_f64();
    let (mut rows, mut windows, mut equal) = (0u64, 0usize, true);
    for (o, n) in &passes {
        let (ow, nw) = (per_window(o), per_window(n));
        windows += ow.len().max(nw.len());
        rows += ow.values().chain(nw.values()).map(|d| d.rows).sum::<u64>();
        equal &= differing(o, n).is_empty();
    }
    // Shard positions differ between the sides: count each side's shards apart.
    let busy = first_pass::busy(passes.iter().map(|(o, _)| o)) + first_pass::busy(passes.iter().map(|(_, n)| n));
    let shards = old.config.shards.len() + new.config.shards.len();
    let shard_busy = busy.as_secs_f64() / (comparator_secs * shards as f64).max(1e-9);

    let mut checksum_rows = 0;
    for side in [old, new] {
        for (i, _) in side.config.shards.iter().enumerate() {
            let mut conn = side.pools.shard(i).get_conn().await.map_err(|e| side.shard_error(i, e))?;
            for table in WINDOWED {
                let n: Option<u64> = conn
                    .query_first(format!("SELECT COUNT(*) FROM {}", table.name))
                    .await
                    .map_err(|e| side.shard_error(i, e))?;
                checksum_rows += n.unwrap_or(0);
            }
        }
    }
    let started = Instant::now();
    for side in [old, new] {
        let shards = (0..side.config.shards.len()).map(|i| async move {
            let mut conn = side.pools.shard(i).get_conn().await.map_err(|e| side.shard_error(i, e))?;
            for table in WINDOWED {
                let _: Vec<mysql_async::Row> =
                    conn.query(format!("CHECKSUM TABLE {}", table.name)).await.map_err(|e| side.shard_error(i, e))?;
            }
            Ok::<_, VerifyError>(())
        });
        for r in futures::future::join_all(shards).await {
            r?;
        }
    }
    let checksum_secs = started.elapsed().as_secs_f64();
    let per_sec = |rows: u64, secs: f64| (rows as f64 / secs.max(1e-9)).round();
    let (c, k) = (per_sec(rows, comparator_secs), per_sec(checksum_rows, checksum_secs));
    Ok(BenchResult {
        old_shards: old.config.shards.len(),
        new_shards: new.config.shards.len(),
        windows,
        comparator_rows: rows,
        comparator_secs,
        comparator_rows_per_sec: c,
        queries_per_shard: WINDOWED.len(),
        shard_busy,
        checksum_rows,
        checksum_secs,
        checksum_rows_per_sec: k,
        ratio: c / k.max(1.0),
        equal,
    })
}

/// Writes the same `rows` synthetic rows (60% minute stats, 20% hour stats,
/// 20% slow queries) into both sides, each row on the shard that owns it,
/// spread over the 5 hours from `start` (epoch seconds). Deterministic.
pub async fn generate(sides: &[&Side], rows: u64, start: i64) -> Result<(), VerifyError> {
    let minute = sides.first().map(|s| s.config.time.minute_secs()).unwrap_or(60);
    let hour = sides.first().map(|s| s.config.time.hour_secs()).unwrap_or(3600);
    // Rows spread over 300 minute windows and 5 hour windows.
    let spread = |n: u64, count: u64, windows: u64| i64::try_from(n * windows / count.max(1)).unwrap_or(0);
    let stats = |i: u64, window: i64| -> (u64, String) {
        let database_id = 1 + i % 997;
        let sketch: String = (0..48).map(|b| format!("{:02x}", (i.wrapping_mul(31).wrapping_add(b)) % 251)).collect();
        let ksid = hex_literal(&cluster::vindex::keyspace_id(database_id));
        let values = format!(
            "({database_id}, '{:016x}', FROM_UNIXTIME({window}), {ksid}, {}, {}, {}, {}, {}, {}, X'{sketch}')",
            i / 997,
            i % 50 + 1,
            i * 7 % 100_000,
            i * 3 % 50_000,
            i % 1000,
            i % 100,
            i % 3
        );
        (database_id, values)
    };
    let slow = |i: u64, at: i64| -> (u64, String) {
        let database_id = 1 + i % 997;
        let ksid = hex_literal(&cluster::vindex::keyspace_id(database_id));
        let values = format!(
            "({}, {}, FROM_UNIXTIME({at}), {database_id}, '{:016x}', {ksid}, 'proxy-{}', {}, {}, {}, NULL, \
             'SELECT * FROM t{} WHERE id = ?', '[\"t{}\"]')",
            i % 16,
            i,
            i % 4000,
            i % 3,
            200_000 + i % 1_000_000,
            i % 500,
            i % 20,
            i % 8,
            i % 8
        );
        (database_id, values)
    };
    let parts: [(&str, u64, &str); 3] = [
        ("query_stats_minute", rows * 6 / 10, "database_id, fingerprint, window_start, keyspace_id, query_count, total_duration_us, max_duration_us, rows_read, rows_returned, error_count, latency_sketch"),
        ("query_stats_hour", rows * 2 / 10, "database_id, fingerprint, window_start, keyspace_id, query_count, total_duration_us, max_duration_us, rows_read, rows_returned, error_count, latency_sketch"),
        ("slow_queries", rows - rows * 6 / 10 - rows * 2 / 10, "src_partition, src_offset, occurred_at, database_id, fingerprint, keyspace_id, proxy_id, duration_us, rows_read, rows_returned, error_text, query_text, tables_used"),
    ];
    for (table, count, columns) in parts {
        let mut i = 0;
        while i < count {
            let end = (i + 5000).min(count);
            for side in sides {
                let mut per_shard: Vec<Vec<String>> = vec![Vec::new(); side.config.shards.len()];
                for n in i..end {
                    let (db, values) = match table {
                        "query_stats_minute" => stats(n, start + spread(n, count, 300) * minute),
                        "query_stats_hour" => stats(n, start + spread(n, count, 5) * hour),
                        _ => slow(n, start + spread(n, count, 300) * minute),
                    };
                    per_shard[side.config.shard_index_for_database_id(db)].push(values);
                }
                let inserts = per_shard.into_iter().enumerate().filter(|(_, v)| !v.is_empty()).map(|(s, values)| {
                    let sql = format!("INSERT INTO {table} ({columns}) VALUES {}", values.join(","));
                    async move {
                        let mut conn = side.pools.shard(s).get_conn().await.map_err(|e| side.shard_error(s, e))?;
                        conn.query_drop(sql).await.map_err(|e| side.shard_error(s, e))
                    }
                });
                for r in futures::future::join_all(inserts).await {
                    r?;
                }
            }
            i = end;
        }
    }
    Ok(())
}
