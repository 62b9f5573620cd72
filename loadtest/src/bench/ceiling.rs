//! What the shards do without a consumer in the way: multi-row writes into a
//! table of the cluster's pipeline, with rows made up from its columns (the
//! bench names no table: which one, and what its rows hold, come from the
//! description).

use std::time::Instant;

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use mysql_async::prelude::Queryable;
use pipeline::{Base, Class, Column, Merge, Pipeline, Table, TableKind, WritePath};

use super::{rate, BenchError};

/// What a ceiling measures the shards doing, with no consumer in the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceiling {
    /// 500-row INSERTs of new rows, each its own transaction.
    Insert,
    /// What the consumer asks of a shard per row of a folded table, without
    /// the consumer: in one transaction per 500 keys, a locked read of the
    /// stored rows (`SELECT ... FOR UPDATE`, rows fetched), then one
    /// `INSERT ... ON DUPLICATE KEY UPDATE` of them. Every key is written
    /// twice, so half the writes insert and half update a stored row.
    ReadModifyWrite,
}

/// Rows per statement (and per transaction) of both ceilings.
const CEILING_CHUNK: u64 = 500;

/// Bytes of a made-up sketch or blob value: about a busy pattern's sketch.
const BLOB_BYTES: usize = 200;

/// The table the Insights-style ceilings write: the pipeline's first rollup
/// table that is folded (the consumer's costliest kind of write: a locked
/// read, then the write), else its first rollup table, else its first table.
pub fn ceiling_table(pipeline: &Pipeline) -> Option<&Table> {
    let rollups = || pipeline.tables.iter().filter(|t| t.kind == TableKind::Rollup);
    rollups().find(|t| t.write_path == WritePath::Fold).or_else(|| rollups().next()).or_else(|| pipeline.tables.first())
}

/// Rows of `table` written into a scratch database on every shard of
/// `cluster` at once, one connection per shard; rows per second.
pub(super) async fn write_ceiling(
    cluster: &ClusterConfig,
    table: &Table,
    rows: u64,
    kind: Ceiling,
) -> Result<f64, BenchError> {
    let db = format!("dw_bench_ceiling_{}", std::process::id());
    let scratch = cluster.with_database(&db).map_err(|e| BenchError::Setup(e.to_string()))?;
    cluster::schema::apply(&scratch, chrono::Utc::now().timestamp())
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let pools = ShardPools::new(&scratch);
    let per_shard = rows / pools.len() as u64;
    let started = Instant::now();
    let writers = pools.shards().iter().enumerate().map(|(s, pool)| async move {
        let mut conn = pool.get_conn().await?;
        let passes = match kind {
            Ceiling::Insert => 1,
            Ceiling::ReadModifyWrite => 2,
        };
        let keys = per_shard / passes;
        let mut written = 0u64;
        for pass in 0..passes {
            let mut done = 0u64;
            while done < keys {
                let n = (keys - done).min(CEILING_CHUNK);
                let ids: Vec<u64> = (0..n).map(|i| (s as u64) << 40 | (done + i)).collect();
                match kind {
                    Ceiling::Insert => conn.query_drop(ceiling_insert(table, &ids, pass, false)).await?,
                    Ceiling::ReadModifyWrite => {
                        // As the consumer's shard transactions.
                        let mut opts = mysql_async::TxOpts::new();
                        opts.with_isolation_level(mysql_async::IsolationLevel::ReadCommitted);
                        let mut tx = conn.start_transaction(opts).await?;
                        let stored: Vec<mysql_async::Row> = tx.query(locked_read(table, &ids)).await?;
                        if stored.len() as u64 != pass * n {
                            return Err(mysql_async::Error::Other(
                                format!("ceiling: read {} stored rows, expected {}", stored.len(), pass * n).into(),
                            ));
                        }
                        tx.query_drop(ceiling_insert(table, &ids, pass, true)).await?;
                        tx.commit().await?;
                    }
                }
                done += n;
                written += n;
            }
        }
        Ok::<u64, mysql_async::Error>(written)
    });
    let mut total = 0;
    for r in futures::future::join_all(writers).await {
        total += r?;
    }
    let elapsed = started.elapsed();
    pools.disconnect().await;
    cluster::schema::drop(&scratch, true).await.map_err(|e| BenchError::Setup(e.to_string()))?;
    Ok(rate(total, elapsed))
}

fn column_names(table: &Table) -> String {
    table.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// The stored rows of `ids`' keys, locked.
fn locked_read(table: &Table, ids: &[u64]) -> String {
    let key: Vec<&Column> = table.key.iter().filter_map(|k| table.column(k)).collect();
    let wanted: Vec<String> = ids
        .iter()
        .map(|&id| {
            let values: Vec<String> = key.iter().map(|c| value(table, c, id, 0)).collect();
            format!("({})", values.join(","))
        })
        .collect();
    format!(
        "SELECT {} FROM {} WHERE ({}) IN ({}) FOR UPDATE",
        column_names(table),
        table.name,
        table.key.join(", "),
        wanted.join(",")
    )
}

/// One multi-row statement of the ceilings; `pass` changes the first
/// merged number, so an update changes the row. `upsert`: the merged
/// columns are overwritten on a duplicate key (the consumer's fold writes).
fn ceiling_insert(table: &Table, ids: &[u64], pass: u64, upsert: bool) -> String {
    let values: Vec<String> = ids
        .iter()
        .map(|&id| {
            let row: Vec<String> = table.columns.iter().map(|c| value(table, c, id, pass)).collect();
            format!("({})", row.join(","))
        })
        .collect();
    let mut sql = format!("INSERT INTO {} ({}) VALUES {}", table.name, column_names(table), values.join(","));
    if upsert {
        let set: Vec<String> =
            table.columns.iter().filter(|c| c.merge.is_some()).map(|c| format!("{0} = VALUES({0})", c.name)).collect();
        sql.push_str(&format!(" ON DUPLICATE KEY UPDATE {}", set.join(", ")));
    }
    sql
}

/// A made-up literal for `column` of row `id`: key columns unique per id
/// (integers are the id, text its hex digits), one fixed window, a sketch
/// or blob of [`BLOB_BYTES`], the first merged number `pass + 1` and the
/// others their column's position.
fn value(table: &Table, column: &Column, id: u64, pass: u64) -> String {
    let in_key = table.key.contains(&column.name);
    let position = table.column_index(&column.name).unwrap_or(0) as u64;
    let first_merged = table.columns.iter().find(|c| c.merge.is_some()).is_some_and(|c| c.name == column.name);
    match column.sql_type.class() {
        Class::Integer => {
            let max = column.sql_type.int_range().map_or(i128::from(u32::MAX), |(_, hi)| hi);
            let v = if in_key {
                i128::from(id) % (max + 1)
            } else if first_merged {
                i128::from(pass + 1)
            } else {
                i128::from(position)
            };
            v.min(max).to_string()
        }
        Class::Float | Class::Decimal => format!("{}.5", position),
        Class::Text => format!("'{id:016x}'"),
        Class::DateTime => "'2026-01-01 00:00:00'".to_string(),
        Class::Bytes => {
            let bytes = match (&column.merge, column.sql_type.base, column.sql_type.size) {
                (Some(Merge::DdSketch), _, _) => BLOB_BYTES,
                (_, Base::Binary, Some(n)) => n as usize,
                _ => BLOB_BYTES,
            };
            let byte = if column.sql_type.base == Base::Binary { "00" } else { "ab" };
            format!("X'{}'", byte.repeat(bytes))
        }
    }
}

#[cfg(test)]
mod tests;
