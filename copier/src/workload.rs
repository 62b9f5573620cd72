//! Rows, writers and comparisons shared by the benchmark and the
//! integration tests: throwaway databases on a cluster, rows of any copied
//! table written the way group A / group B write them (the merge upsert of
//! its description), and a full comparison of two clusters' tables
//! including placement.

use std::collections::BTreeMap;

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use mysql_async::prelude::Queryable;

use crate::row::{Cell, Image, Key, Kind};
use crate::table::{CopiedTable, Role};

/// A unique throwaway database name (`t_<tag>_<pid>_<nanos>`).
pub fn unique_database(tag: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("t_{tag}_{}_{nanos}", std::process::id())
}

/// Points `template`'s shards at database `db` (created with the store's
/// schema) and drops its control endpoint (the copier needs none).
pub async fn create_cluster(template: &ClusterConfig, db: &str) -> Result<ClusterConfig, anyhow::Error> {
    let mut config = template.with_database(db)?;
    config.control = None;
    cluster::schema::apply(&config, chrono::Utc::now().timestamp()).await?;
    Ok(config)
}

/// Drops the cluster's database on every shard.
pub async fn drop_cluster(config: &ClusterConfig) -> Result<(), anyhow::Error> {
    Ok(cluster::schema::drop(config, false).await?)
}

/// A deterministic row of `table`: the sharding column `shard_value`, the
/// other key columns from `key_index`, every datetime merged by `min` at
/// `first_us` and every other one at `last_us`, text of `variant`. Any
/// latest table of any pipeline (the benchmark's and the tests' rows).
pub fn row(table: &CopiedTable, shard_value: u64, key_index: u64, first_us: i64, last_us: i64, variant: u64) -> Image {
    let shard_position = table.key[table.sharding];
    let cells = table
        .columns
        .iter()
        .zip(&table.described.columns)
        .enumerate()
        .map(|(i, (c, described))| {
            let key = c.role == Role::Key;
            let int = if i == shard_position {
                shard_value
            } else if key {
                key_index
            } else {
                variant
            };
            match c.kind {
                _ if c.role == Role::KeyspaceId => Cell::Bytes(Vec::new()),
                Kind::UInt { .. } => Cell::UInt(int),
                Kind::Int { .. } => Cell::Int(int as i64),
                Kind::Text => {
                    let mut text = if key {
                        format!("fp{key_index:016x}")
                    } else {
                        format!("{} t{} /* v{variant} */", c.name, shard_value % 97)
                    };
                    text.truncate(c.sql_type.max_chars().unwrap_or(usize::MAX));
                    Cell::Text(text)
                }
                Kind::Bytes { pad_to } => {
                    let mut bytes = int.to_be_bytes().to_vec();
                    bytes.resize(pad_to.unwrap_or(8), 0);
                    Cell::Bytes(bytes)
                }
                Kind::DateTime { fsp } => {
                    let us = if key {
                        key_index as i64 * 1_000_000
                    } else if described.merge == Some(pipeline::Merge::Min) {
                        first_us
                    } else {
                        last_us
                    };
                    // Whole units of the column's fractional digits, so the stored value is exact.
                    let unit = 10_i64.pow(6 - fsp.min(6));
                    Cell::DateTime(us - us.rem_euclid(unit))
                }
            }
        })
        .collect();
    table.image_of_cells(cells)
}

/// Writes images with the merge upsert (as the consumer does), each on the
/// shard `config` routes it to, one transaction per shard.
pub async fn upsert(
    config: &ClusterConfig,
    pools: &ShardPools,
    table: &CopiedTable,
    images: &[Image],
) -> Result<(), anyhow::Error> {
    // Sorted by key, like the consumer's writes, so concurrent writers lock rows in one order.
    let mut per_shard: BTreeMap<usize, BTreeMap<&Key, String>> = BTreeMap::new();
    for image in images {
        per_shard
            .entry(config.shard_index_for(&image.keyspace_id))
            .or_default()
            .insert(&image.key, table.values_tuple(image));
    }
    let writes = per_shard.into_iter().map(|(shard, tuples)| async move {
        let tuples: Vec<String> = tuples.into_values().collect();
        let mut conn = pools.shard(shard).get_conn().await?;
        for chunk in cluster::sql::chunks(&tuples) {
            // Deadlocks with other writers of the same rows are retried, as the consumer retries.
            let mut attempts = 0;
            loop {
                match conn.query_drop(table.upsert_sql(chunk)).await {
                    Err(e) if cluster::retry::is_lock_conflict(&e) && attempts < 20 => {
                        attempts += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(10 * attempts)).await;
                    }
                    other => break other?,
                }
            }
        }
        Ok::<_, mysql_async::Error>(())
    });
    for result in futures::future::join_all(writes).await {
        result?;
    }
    Ok(())
}

/// Deletes keys on the shards `config` routes them to.
pub async fn delete(
    config: &ClusterConfig,
    pools: &ShardPools,
    table: &CopiedTable,
    keys: &[Key],
) -> Result<(), anyhow::Error> {
    for key in keys {
        let shard = config.shard_index_for(&table.keyspace_id(key));
        pools.shard(shard).get_conn().await?.query_drop(table.delete_sql(&[key.tuple()])).await?;
    }
    Ok(())
}

/// One stored row: every column as text, and the shard it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// The index of the shard holding it.
    pub shard: usize,
    /// Every column in the table's order: integers in decimal, text as
    /// stored, bytes in hex, datetimes with six fractional digits.
    pub columns: Vec<String>,
}

/// Every row of the table on the cluster, by key.
pub async fn read_all(config: &ClusterConfig, table: &CopiedTable) -> Result<BTreeMap<Key, StoredRow>, anyhow::Error> {
    let shown: Vec<String> = table
        .columns
        .iter()
        .map(|c| match c.kind {
            Kind::UInt { .. } | Kind::Int { .. } => format!("CAST({} AS CHAR)", c.name),
            Kind::Text => c.name.clone(),
            Kind::Bytes { .. } => format!("HEX({})", c.name),
            Kind::DateTime { .. } => format!("DATE_FORMAT({}, '%Y-%m-%d %H:%i:%s.%f')", c.name),
        })
        .collect();
    let keys = table.key_names().join(", ");
    let sql = format!("SELECT {}, {keys} FROM {} ORDER BY {keys}", shown.join(", "), table.name);
    let pools = ShardPools::new(config);
    let mut out = BTreeMap::new();
    for (shard, pool) in pools.shards().iter().enumerate() {
        let rows: Vec<mysql_async::Row> = pool.get_conn().await?.query(&sql).await?;
        for row in rows {
            let mut values = row.unwrap();
            let raw_key = values.split_off(table.columns.len());
            let key = Key(table
                .key
                .iter()
                .zip(raw_key)
                .map(|(&p, v)| table.columns[p].kind.cell(v))
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?);
            let columns: Vec<String> = values
                .into_iter()
                .map(|v| match v {
                    mysql_async::Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => other.as_sql(false),
                })
                .collect();
            if let Some(previous) = out.insert(key.clone(), StoredRow { shard, columns }) {
                anyhow::bail!("key {key:?} is on shards {} and {shard}", previous.shard);
            }
        }
    }
    pools.disconnect().await;
    Ok(out)
}

/// Every difference between the old and new clusters' table: rows missing
/// on either side, any column differing, and new rows not on the shard
/// owning their keyspace id (or with a wrong keyspace id).
pub async fn compare(
    old: &ClusterConfig,
    new: &ClusterConfig,
    table: &CopiedTable,
) -> Result<Vec<String>, anyhow::Error> {
    let old_rows = read_all(old, table).await?;
    let new_rows = read_all(new, table).await?;
    let mut differences = Vec::new();
    for (key, row) in &old_rows {
        match new_rows.get(key) {
            None => differences.push(format!("missing on new: {key:?}")),
            Some(other) if other.columns != row.columns => {
                differences.push(format!("differs: {key:?}\n  old {:?}\n  new {:?}", row.columns, other.columns))
            }
            Some(_) => {}
        }
    }
    let keyspace_columns: Vec<usize> =
        table.columns.iter().enumerate().filter(|(_, c)| c.role == Role::KeyspaceId).map(|(i, _)| i).collect();
    for (key, row) in &new_rows {
        if !old_rows.contains_key(key) {
            differences.push(format!("extra on new: {key:?} {:?}", row.columns));
        }
        let keyspace_id = table.keyspace_id(key);
        let expected_hex: String = keyspace_id.iter().map(|b| format!("{b:02X}")).collect();
        if keyspace_columns.iter().any(|&p| row.columns[p] != expected_hex) {
            differences.push(format!("wrong keyspace id on new: {key:?} {:?}", row.columns));
        }
        let owner = new.shard_index_for(&keyspace_id);
        if row.shard != owner {
            differences.push(format!("misplaced on new: {key:?} on shard {} owned by {owner}", row.shard));
        }
    }
    Ok(differences)
}

/// Row count over the cluster's shards.
pub async fn count(config: &ClusterConfig, table: &CopiedTable) -> Result<u64, anyhow::Error> {
    let pools = ShardPools::new(config);
    let mut total = 0;
    let sql = format!("SELECT COUNT(*) FROM {}", table.name);
    for pool in pools.shards() {
        let n: Option<u64> = pool.get_conn().await?.query_first(&sql).await?;
        total += n.unwrap_or(0);
    }
    pools.disconnect().await;
    Ok(total)
}

/// Each old shard's binlog end now.
pub async fn binlog_ends(config: &ClusterConfig) -> Result<Vec<crate::binlog::Position>, anyhow::Error> {
    let pools = ShardPools::new(config);
    let mut ends = Vec::new();
    for pool in pools.shards() {
        ends.push(crate::source::binlog_end(&mut pool.get_conn().await?).await?);
    }
    pools.disconnect().await;
    Ok(ends)
}

/// Whether every stream of `table` has applied its old shard's binlog
/// through `ends` (index = old shard, in `old`'s order).
pub async fn caught_up(
    old: &ClusterConfig,
    new: &ClusterConfig,
    table: &str,
    ends: &[crate::binlog::Position],
) -> Result<bool, anyhow::Error> {
    let streams = crate::status::streams(new).await?;
    for (shard, end) in old.shards.iter().zip(ends) {
        let name = shard.range.to_string();
        let Some(stream) = streams.iter().find(|s| s.source_shard == name && s.table == table) else {
            return Ok(false);
        };
        let Some(position) = stream.binlog_position.as_deref().and_then(parse_position) else { return Ok(false) };
        if !stream.copy_done || &position < end {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Parses `file:pos` as `status` prints it.
pub fn parse_position(s: &str) -> Option<crate::binlog::Position> {
    crate::binlog::Position::parse(s)
}
