//! Rows, writers and comparisons shared by the benchmark and the
//! integration tests: throwaway databases on a cluster, `query_patterns`
//! rows written the way group A / group B write them (the merge upsert), and
//! a full comparison of two clusters' tables including placement.

use std::collections::BTreeMap;

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use mysql_async::prelude::Queryable;

use crate::table::{delete_sql, upsert_sql, PatternImage, PatternKey};

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

/// A deterministic pattern row: database `database_id`, fingerprint `fingerprint`,
/// sighted at `seen_us`.
pub fn pattern(database_id: u64, fingerprint: &str, seen_us: i64, variant: u64) -> PatternImage {
    PatternImage {
        key: PatternKey { database_id, fingerprint: fingerprint.to_owned() },
        normalized_sql: format!("select * from t{} where id = ? /* v{variant} */", database_id % 97),
        tables_used: format!("[\"t{}\"]", database_id % 97),
        first_seen_us: seen_us,
        last_seen_us: seen_us,
    }
}

/// Writes images with the merge upsert (as the consumer does), each on the
/// shard `config` routes it to, one transaction per shard.
pub async fn upsert(config: &ClusterConfig, pools: &ShardPools, images: &[PatternImage]) -> Result<(), anyhow::Error> {
    // Sorted by key, like the consumer's writes, so concurrent writers lock rows in one order.
    let mut per_shard: BTreeMap<usize, BTreeMap<&PatternKey, String>> = BTreeMap::new();
    for image in images {
        per_shard
            .entry(config.shard_index_for_database_id(image.key.database_id))
            .or_default()
            .insert(&image.key, image.values_tuple());
    }
    let writes = per_shard.into_iter().map(|(shard, tuples)| async move {
        let tuples: Vec<String> = tuples.into_values().collect();
        let mut conn = pools.shard(shard).get_conn().await?;
        for chunk in cluster::sql::chunks(&tuples) {
            // Deadlocks with other writers of the same rows are retried, as the consumer retries.
            let mut attempts = 0;
            loop {
                match conn.query_drop(upsert_sql(chunk)).await {
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
pub async fn delete(config: &ClusterConfig, pools: &ShardPools, keys: &[PatternKey]) -> Result<(), anyhow::Error> {
    for key in keys {
        let shard = config.shard_index_for_database_id(key.database_id);
        pools.shard(shard).get_conn().await?.query_drop(delete_sql(&[key.tuple()])).await?;
    }
    Ok(())
}

/// One stored row: every column as text, and the shard it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// The index of the shard holding it.
    pub shard: usize,
    /// database_id, fingerprint, hex(keyspace_id), normalized_sql, tables_used, first_seen, last_seen.
    pub columns: Vec<String>,
}

/// Every `query_patterns` row of the cluster, by key.
pub async fn read_all(config: &ClusterConfig) -> Result<BTreeMap<PatternKey, StoredRow>, anyhow::Error> {
    let pools = ShardPools::new(config);
    let mut out = BTreeMap::new();
    for (shard, pool) in pools.shards().iter().enumerate() {
        let rows: Vec<mysql_async::Row> = pool
            .get_conn()
            .await?
            .query(
                "SELECT CAST(database_id AS CHAR), fingerprint, HEX(keyspace_id), normalized_sql, tables_used, \
                 DATE_FORMAT(first_seen, '%Y-%m-%d %H:%i:%s.%f'), DATE_FORMAT(last_seen, '%Y-%m-%d %H:%i:%s.%f') \
                 FROM query_patterns ORDER BY database_id, fingerprint",
            )
            .await?;
        for row in rows {
            let columns: Vec<String> = row
                .unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql_async::Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => other.as_sql(false),
                })
                .collect();
            let key = PatternKey { database_id: columns[0].parse()?, fingerprint: columns[1].clone() };
            if let Some(previous) = out.insert(key.clone(), StoredRow { shard, columns }) {
                anyhow::bail!("key {key:?} is on shards {} and {shard}", previous.shard);
            }
        }
    }
    pools.disconnect().await;
    Ok(out)
}

/// Every difference between the old and new clusters' `query_patterns`:
/// rows missing on either side, any column differing, and new rows not on
/// the shard owning their keyspace id (or with a wrong keyspace id).
pub async fn compare(old: &ClusterConfig, new: &ClusterConfig) -> Result<Vec<String>, anyhow::Error> {
    let old_rows = read_all(old).await?;
    let new_rows = read_all(new).await?;
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
    for (key, row) in &new_rows {
        if !old_rows.contains_key(key) {
            differences.push(format!("extra on new: {key:?} {:?}", row.columns));
        }
        let keyspace_id = cluster::vindex::keyspace_id(key.database_id);
        let expected_hex: String = keyspace_id.iter().map(|b| format!("{b:02X}")).collect();
        if row.columns[2] != expected_hex {
            differences.push(format!("wrong keyspace id on new: {key:?} {}", row.columns[2]));
        }
        let owner = new.shard_index_for(&keyspace_id);
        if row.shard != owner {
            differences.push(format!("misplaced on new: {key:?} on shard {} owned by {owner}", row.shard));
        }
    }
    Ok(differences)
}

/// Row count over the cluster's shards.
pub async fn count(config: &ClusterConfig) -> Result<u64, anyhow::Error> {
    let pools = ShardPools::new(config);
    let mut total = 0;
    for pool in pools.shards() {
        let n: Option<u64> = pool.get_conn().await?.query_first("SELECT COUNT(*) FROM query_patterns").await?;
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
    ends: &[crate::binlog::Position],
) -> Result<bool, anyhow::Error> {
    let streams = crate::status::streams(new).await?;
    for (shard, end) in old.shards.iter().zip(ends) {
        let name = shard.range.to_string();
        let Some(stream) = streams.iter().find(|s| s.source_shard == name) else { return Ok(false) };
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
