//! A differing key as the drill-down recorded it (`column=value` pairs in
//! the key's order, see [`crate::diff::key_text`]), turned back into SQL: the
//! `WHERE` clause selecting its rows, and where it belongs (its keyspace id).

use crate::diff::vindex;
use crate::error::VerifyError;
use crate::spec::{hex_literal, unhex, Col, TableSpec};
use cluster::sql::lit;

/// One key of one table, ready to select its rows on any shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepairKey {
    /// `c1 = v1 AND c2 = v2 ...` over the key's columns.
    pub(crate) where_sql: String,
    /// The key's values as text, by key position.
    values: Vec<String>,
}

impl RepairKey {
    /// Parses `key_text` of `table` (every key column, in order, `name=value`
    /// joined by `, `).
    pub(crate) fn parse(table: &TableSpec, key_text: &str) -> Result<Self, VerifyError> {
        let bad = |why: &str| VerifyError::Usage(format!("table {}: key {key_text:?}: {why}", table.name));
        let names: Vec<&str> = table.key.iter().map(|&i| table.columns[i].name.as_str()).collect();
        let mut values = Vec::with_capacity(names.len());
        let mut rest = key_text;
        for (n, name) in names.iter().enumerate() {
            rest = rest.strip_prefix(&format!("{name}=")).ok_or_else(|| bad(&format!("expected {name}=")))?;
            let end = match names.get(n + 1) {
                Some(next) => rest.find(&format!(", {next}=")).ok_or_else(|| bad(&format!("expected {next}=")))?,
                None => rest.len(),
            };
            values.push(rest[..end].to_string());
            rest = rest[end..].strip_prefix(", ").unwrap_or(&rest[end..]);
        }
        let mut parts = Vec::with_capacity(names.len());
        for (&i, value) in table.key.iter().zip(&values) {
            let column = &table.columns[i];
            parts.push(format!("{} = {}", column.name, literal(column.col, value).ok_or_else(|| bad(value))?));
        }
        Ok(Self { where_sql: parts.join(" AND "), values })
    }

    /// Where the key belongs: the keyspace id of its sharding value. The
    /// sharding column is part of a rollup or latest key (the pipeline
    /// guarantees it); an append key is the message's (partition, offset), so
    /// `stored` gives the sharding value read from one of its rows instead.
    pub(crate) fn keyspace_id(
        &self,
        table: &TableSpec,
        vindex_kind: pipeline::Vindex,
        stored: Option<&str>,
    ) -> Option<[u8; 8]> {
        let value = self.value_of(table, table.shard_column).or(stored)?;
        vindex(vindex_kind, value)
    }

    /// The value of key column `column` (a position in the table's columns).
    pub(crate) fn value_of(&self, table: &TableSpec, column: usize) -> Option<&str> {
        table.key.iter().position(|&i| i == column).map(|at| self.values[at].as_str())
    }
}

/// A value rendered by the drill-down (bytes as lowercase hex, everything
/// else as the server prints it) as an SQL literal of its column's class.
fn literal(col: Col, value: &str) -> Option<String> {
    match col {
        Col::Int => value.parse::<i128>().ok().map(|v| v.to_string()),
        Col::Float | Col::Decimal => value.parse::<f64>().ok().map(|_| value.to_string()),
        Col::Bytes => unhex(value).map(|b| hex_literal(&b)),
        Col::Text | Col::DateTime => Some(lit(value)),
    }
}

#[cfg(test)]
mod tests;
