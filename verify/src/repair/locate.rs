//! Where the rows of the keys to repair are, read before any lock is taken:
//! the target shards holding a row of each key (a copy on a shard that does
//! not own it is moved), and the sharding value of a key whose key does not
//! hold it (an append row's key is its message's partition and offset).

use std::collections::HashMap;

use mysql_async::prelude::Queryable;

use super::key::RepairKey;
use crate::diff::{key_text, text_values};
use crate::digest::Side;
use crate::error::VerifyError;
use crate::spec::TableSpec;

/// Keys per statement.
const CHUNK: usize = 200;

/// Where one key's rows are.
#[derive(Debug, Clone, Default)]
pub(crate) struct Found {
    pub(crate) target_shards: Vec<usize>,
    /// The sharding column's value of a row of the key (the source's first).
    pub(crate) sharding_value: Option<String>,
}

/// [`Found`] for each of `keys`, in order.
pub(crate) async fn locate(
    source: &Side,
    target: &Side,
    table: &TableSpec,
    keys: &[&RepairKey],
) -> Result<Vec<Found>, VerifyError> {
    let mut out = vec![Found::default(); keys.len()];
    for (chunk_at, chunk) in keys.chunks(CHUNK).enumerate() {
        let condition: Vec<String> = chunk.iter().map(|k| format!("({})", k.where_sql)).collect();
        let sql = format!("SELECT {} FROM {} WHERE {}", table.select_list(), table.name, condition.join(" OR "));
        // Target first: a source row's sharding value then overrides the target's.
        for (side, is_target) in [(target, true), (source, false)] {
            let found = rows_by_key(side, table, &sql).await?;
            for (i, key) in chunk.iter().enumerate() {
                let Some(rows) = found.get(&key_of(table, key)) else { continue };
                let slot = &mut out[chunk_at * CHUNK + i];
                for (shard, sharding) in rows {
                    if is_target && !slot.target_shards.contains(shard) {
                        slot.target_shards.push(*shard);
                    }
                    if sharding.is_some() {
                        slot.sharding_value.clone_from(sharding);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The key's canonical text, as the drill-down writes it.
fn key_of(table: &TableSpec, key: &RepairKey) -> String {
    let mut values = vec![None; table.columns.len()];
    for &i in &table.key {
        values[i] = key.value_of(table, i).map(str::to_string);
    }
    key_text(table, &values)
}

/// Per key text, the (shard, sharding value) of every row `sql` finds on `side`.
async fn rows_by_key(
    side: &Side,
    table: &TableSpec,
    sql: &str,
) -> Result<HashMap<String, Vec<(usize, Option<String>)>>, VerifyError> {
    let queries = (0..side.config.shards.len()).map(|i| async move {
        let mut conn = side.pools.shard(i).get_conn().await.map_err(|e| side.shard_error(i, e))?;
        let rows: Vec<mysql_async::Row> = conn.query(sql).await.map_err(|e| side.shard_error(i, e))?;
        Ok::<_, VerifyError>((i, rows))
    });
    let mut out: HashMap<String, Vec<(usize, Option<String>)>> = HashMap::new();
    for result in futures::future::join_all(queries).await {
        let (shard, rows) = result?;
        for row in rows {
            let values = text_values(row);
            let sharding = values.get(table.shard_column).cloned().flatten();
            out.entry(key_text(table, &values)).or_default().push((shard, sharding));
        }
    }
    Ok(out)
}
