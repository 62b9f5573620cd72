//! Throughput of the window comparator against `CHECKSUM TABLE` on the same
//! shards, in the same run; and a generator of synthetic rows to measure on.

use std::time::Instant;

use mysql_async::prelude::Queryable;
use serde::Serialize;

use crate::digest::Side;
use crate::error::VerifyError;
use crate::first_pass::{self, differing, first_pass, per_window};
use crate::spec::{self, hex_literal};

/// One bench run's figures (printed as one JSON line).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub old_shards: usize,
    pub new_shards: usize,
    /// Windows digested per side, over the pipeline's windowed tables.
    pub windows: usize,
    /// Rows digested on both sides.
    pub comparator_rows: u64,
    pub comparator_secs: f64,
    pub comparator_rows_per_sec: f64,
    /// Queries the comparator keeps in flight per shard (one per windowed table).
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
    spec::check_same_pipeline(&old.config, &new.config)?;
    let tables = spec::windowed(&old.config)?;
    let started = Instant::now();
    let passes = futures::future::try_join_all(tables.iter().map(|table| async move {
        let size = table.window_secs();
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
            for table in &tables {
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
        let tables = &tables;
        let shards = (0..side.config.shards.len()).map(|i| async move {
            let mut conn = side.pools.shard(i).get_conn().await.map_err(|e| side.shard_error(i, e))?;
            for table in tables {
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
        queries_per_shard: tables.len(),
        shard_busy,
        checksum_rows,
        checksum_secs,
        checksum_rows_per_sec: k,
        ratio: c / k.max(1.0),
        equal,
    })
}

/// Writes the same `rows` synthetic rows into both sides, split evenly
/// over the pipeline's windowed tables, each row on the shard that owns it,
/// spread over the windows of the 5 hours from `start` (epoch seconds).
/// Deterministic. Values follow each column's source and type: the
/// sharding value cycles over 997 ids, the key's other columns make each
/// row's key unique, a nullable column is NULL every third row.
pub async fn generate(sides: &[&Side], rows: u64, start: i64) -> Result<(), VerifyError> {
    let Some(first) = sides.first() else { return Ok(()) };
    let pipeline = first.config.pipeline.clone();
    let tables: Vec<&pipeline::Table> = pipeline.windowed().collect();
    let per_table = rows / u64::try_from(tables.len().max(1)).unwrap_or(1);
    for (t, table) in tables.iter().enumerate() {
        // The last table takes the remainder, so `rows` rows are written in all.
        let count = if t + 1 == tables.len() { rows - per_table * (tables.len() as u64 - 1) } else { per_table };
        let size = first.config.time.table_window_secs(table).max(1);
        let windows = u64::try_from((5 * first.config.time.hour_secs() / size).max(1)).unwrap_or(1);
        let columns: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        let mut i = 0;
        while i < count {
            let end = (i + 5000).min(count);
            for side in sides {
                let mut per_shard: Vec<Vec<String>> = vec![Vec::new(); side.config.shards.len()];
                for n in i..end {
                    let window = start + i64::try_from(n * windows / count.max(1)).unwrap_or(0) * size;
                    let (shard_value, values) = synthetic_row(&pipeline, table, n, window, size);
                    per_shard[side.config.shard_index_for(&cluster::vindex::keyspace_id(shard_value))].push(values);
                }
                let inserts = per_shard.into_iter().enumerate().filter(|(_, v)| !v.is_empty()).map(|(s, values)| {
                    let sql =
                        format!("INSERT INTO {} ({}) VALUES {}", table.name, columns.join(", "), values.join(","));
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

/// Row `n` of `table` in the window starting at `window` (`size` seconds):
/// its sharding value and its tuple of every column, in order.
fn synthetic_row(
    pipeline: &pipeline::Pipeline,
    table: &pipeline::Table,
    n: u64,
    window: i64,
    size: i64,
) -> (u64, String) {
    use pipeline::{Class, Constant, Source};
    let shard_value = 1 + n % 997;
    let at = window + i64::try_from(n).unwrap_or(0) % size;
    let values: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            let ci = ci as u64;
            let in_key = table.key.contains(&c.name);
            match &c.source {
                Source::Field(f) if *f == pipeline.sharding.column => return shard_value.to_string(),
                Source::KeyspaceId => return hex_literal(&cluster::vindex::keyspace_id(shard_value)),
                Source::WindowStart => return format!("FROM_UNIXTIME({window})"),
                Source::EventTime => return format!("FROM_UNIXTIME({at})"),
                Source::Partition => return (n % 16).to_string(),
                Source::Offset => return n.to_string(),
                Source::Constant(Constant::Int(v)) => return v.to_string(),
                Source::Constant(Constant::Text(v)) => return mysql_async::Value::from(v.as_str()).as_sql(false),
                Source::Field(_) => {}
            }
            if c.nullable && n.is_multiple_of(3) {
                return "NULL".to_string();
            }
            // Key columns other than the sharding one: with it, unique per row.
            let seed = if in_key { n / 997 } else { n.wrapping_mul(ci + 7).wrapping_add(ci) };
            let t = &c.sql_type;
            match t.class() {
                Class::Integer => {
                    let high = t.int_range().map_or(1_000_000, |(_, hi)| hi.min(1_000_000) as u64 + 1);
                    (seed % high).to_string()
                }
                Class::Float => format!("{}.25", seed % 100_000),
                Class::Decimal => (seed % 100_000).to_string(),
                Class::Text => {
                    let text = if in_key { format!("{seed:016x}") } else { format!("{}-{}", c.name, seed % 50) };
                    let limit = t.max_chars().or(t.max_bytes()).unwrap_or(64);
                    format!("'{}'", text.chars().take(limit).collect::<String>())
                }
                Class::Bytes => {
                    let len = t.max_bytes().unwrap_or(48).min(48);
                    let bytes: String = (0..len as u64)
                        .map(|b| format!("{:02x}", seed.wrapping_mul(31).wrapping_add(b) % 251))
                        .collect();
                    format!("X'{bytes}'")
                }
                Class::DateTime => format!("FROM_UNIXTIME({at})"),
            }
        })
        .collect();
    (shard_value, format!("({})", values.join(", ")))
}
