//! Row-level diff: every differing key with its kind and both values, and
//! the placement check (a row on a shard that does not own its keyspace id,
//! or a keyspace id that is not the vindex of its sharding column's value).

use std::collections::BTreeMap;

use cluster::config::ClusterConfig;
use mysql_async::prelude::Queryable;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::digest::Side;
use crate::error::VerifyError;
use crate::spec::{hex, unhex, TableSpec};

/// What is wrong with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// On the old cluster, not on the new one.
    MissingOnNew,
    /// On the new cluster, not on the old one (or more copies of it).
    ExtraOnNew,
    /// On both, with different column values.
    Changed,
    /// On a shard whose key range does not hold its keyspace id, or with a
    /// keyspace id that is not its sharding value's.
    Misplaced,
}

impl DiffKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::MissingOnNew => "missing_on_new",
            DiffKind::ExtraOnNew => "extra_on_new",
            DiffKind::Changed => "changed",
            DiffKind::Misplaced => "misplaced",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [DiffKind::MissingOnNew, DiffKind::ExtraOnNew, DiffKind::Changed, DiffKind::Misplaced]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// One differing key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub tbl: String,
    /// Start (epoch seconds) of the window, for windowed tables.
    pub window_start: Option<i64>,
    /// The key, as `column=value` pairs.
    pub key: String,
    pub kind: DiffKind,
    /// Both values of every differing column, or the whole row.
    pub detail: Value,
}

/// A row as read from one shard: every column as text (bytes as hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRow {
    pub shard: usize,
    pub values: Vec<Option<String>>,
}

/// Every row matching `where_sql` on every shard of `side`.
pub async fn fetch(side: &Side, table: &TableSpec, where_sql: &str) -> Result<Vec<FetchedRow>, VerifyError> {
    let sql = format!("SELECT {} FROM {} WHERE {where_sql}", table.select_list(), table.name);
    let queries = (0..side.config.shards.len()).map(|i| {
        let sql = sql.clone();
        async move {
            let mut conn = side.conn(i).await?;
            let rows: Vec<mysql_async::Row> = conn.query(sql).await.map_err(|e| side.shard_error(i, e))?;
            let fetched: Vec<FetchedRow> =
                rows.into_iter().map(|row| FetchedRow { shard: i, values: text_values(row) }).collect();
            Ok::<_, VerifyError>(fetched)
        }
    });
    let mut out: Vec<FetchedRow> = Vec::new();
    for result in futures::future::join_all(queries).await {
        out.extend(result?);
    }
    Ok(out)
}

/// A row's values as text; NULL stays `None`.
pub fn text_values(row: mysql_async::Row) -> Vec<Option<String>> {
    row.unwrap()
        .into_iter()
        .map(|v| match v {
            mysql_async::Value::NULL => None,
            mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            other => Some(other.as_sql(true).trim_matches('\'').to_string()),
        })
        .collect()
}

/// The key of a row, as `column=value` pairs.
pub fn key_text(table: &TableSpec, values: &[Option<String>]) -> String {
    table
        .key
        .iter()
        .map(|&i| format!("{}={}", table.columns[i].name, values.get(i).cloned().flatten().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn row_json(table: &TableSpec, values: &[Option<String>]) -> Value {
    let mut map = Map::new();
    for (column, value) in table.columns.iter().zip(values) {
        map.insert(column.name.clone(), value.clone().map_or(Value::Null, Value::String));
    }
    Value::Object(map)
}

/// Reports every fetched row of `cluster` that sits on the wrong shard or
/// whose keyspace id is not its sharding value's (through the pipeline's vindex).
pub fn placement(
    table: &TableSpec,
    cluster: &ClusterConfig,
    rows: &[FetchedRow],
    window_start: Option<i64>,
    out: &mut Vec<Difference>,
) {
    let (shard_col, ksid_col) = table.placement_columns();
    for row in rows {
        let ksid = row.values.get(ksid_col).cloned().flatten().and_then(|h| unhex(&h)).unwrap_or_default();
        let value = row.values.get(shard_col).cloned().flatten();
        let expected = value.as_deref().and_then(|v| vindex(cluster.pipeline.sharding.vindex, v));
        let shard = &cluster.shards[row.shard];
        let on_wrong_shard = !shard.range.contains(&ksid);
        let wrong_ksid = expected.is_some_and(|e| e.as_slice() != ksid.as_slice());
        if !on_wrong_shard && !wrong_ksid {
            continue;
        }
        let owner = &cluster.shards[cluster.shard_index_for(&ksid)];
        out.push(Difference {
            tbl: table.name.to_string(),
            window_start,
            key: key_text(table, &row.values),
            kind: DiffKind::Misplaced,
            detail: json!({
                "cluster": cluster.name,
                "shard": shard.range.to_string(),
                "keyspace_id": hex(&ksid),
                "owner_of_keyspace_id": owner.range.to_string(),
                "vindex_keyspace_id": expected.map(|e| hex(&e)),
            }),
        });
    }
}

/// The keyspace id of a sharding value as text, `None` if it is not one.
pub(crate) fn vindex(vindex: pipeline::Vindex, value: &str) -> Option<[u8; 8]> {
    match vindex {
        // Vitess reads a signed value as its two's-complement uint64.
        pipeline::Vindex::Hash => {
            let id = value.parse::<u64>().ok().or_else(|| value.parse::<i64>().ok().map(|v| v as u64))?;
            Some(cluster::vindex::keyspace_id(id))
        }
    }
}

/// Every key whose rows differ between the two sides: rows are matched as a
/// multiset per key, so a duplicated row is an extra copy, not a match.
pub fn diff_rows(
    table: &TableSpec,
    window_start: Option<i64>,
    old: &[FetchedRow],
    new: &[FetchedRow],
    out: &mut Vec<Difference>,
) {
    type Rows<'a> = Vec<&'a Vec<Option<String>>>;
    let mut by_key: BTreeMap<Vec<Option<String>>, (Rows<'_>, Rows<'_>)> = BTreeMap::new();
    let key_of = |values: &[Option<String>]| table.key.iter().map(|&i| values.get(i).cloned().flatten()).collect();
    for row in old {
        by_key.entry(key_of(&row.values)).or_default().0.push(&row.values);
    }
    for row in new {
        by_key.entry(key_of(&row.values)).or_default().1.push(&row.values);
    }
    for (_, (mut o, mut n)) in by_key {
        let (copies_old, copies_new) = (o.len(), n.len());
        // Identical rows on both sides match one to one.
        o.retain(|row| match n.iter().position(|other| other == row) {
            Some(at) => {
                n.swap_remove(at);
                false
            }
            None => true,
        });
        let push = |out: &mut Vec<Difference>, values: &[Option<String>], kind, detail| {
            out.push(Difference {
                tbl: table.name.to_string(),
                window_start,
                key: key_text(table, values),
                kind,
                detail,
            })
        };
        if let ([old_row], [new_row]) = (o.as_slice(), n.as_slice()) {
            let mut columns = Map::new();
            for (i, column) in table.columns.iter().enumerate() {
                let (a, b) = (old_row.get(i).cloned().flatten(), new_row.get(i).cloned().flatten());
                if a != b {
                    columns.insert(column.name.clone(), json!({ "old": a, "new": b }));
                }
            }
            push(out, old_row, DiffKind::Changed, json!({ "columns": columns }));
            continue;
        }
        for row in &o {
            let detail = json!({ "old": row_json(table, row), "copies_old": copies_old, "copies_new": copies_new });
            push(out, row, DiffKind::MissingOnNew, detail);
        }
        for row in &n {
            let detail = json!({ "new": row_json(table, row), "copies_old": copies_old, "copies_new": copies_new });
            push(out, row, DiffKind::ExtraOnNew, detail);
        }
    }
}

#[cfg(test)]
mod tests;
