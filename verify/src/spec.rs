//! What the comparators know about each table: its key, every column and how
//! to render it, and the SQL that digests a row inside MySQL. All of it is
//! derived from the cluster's pipeline description ([`TableSpec::new`]):
//! a column's encoding follows from its SQL type's class and nullability,
//! the key from the description's key, the window from its window and the
//! cluster's `[time]`. For the Insights tables this gives exactly the specs
//! the comparators once had written out (a unit test holds the SQL to it).
//!
//! # The digest, and why two differences cannot cancel
//!
//! Each row is encoded unambiguously (numbers and datetimes as text separated
//! by `,`, strings and blobs length-prefixed, NULL as a marker no value can
//! produce) and hashed with SHA-256 inside MySQL. The first 128 bits of that
//! hash are read as two independent 64-bit lanes, and a set of rows digests
//! to the pair of exact lane sums (MySQL sums them as DECIMAL; shards are
//! added in u128). Addition is commutative
//! and associative, so the digest ignores row order and the shard a row sits
//! on: a 4-shard and an 8-shard cluster holding the same rows digest the same.
//!
//! It is a multiset hash (Clarke et al.'s MSet-Add-Hash): every row adds its
//! own term, so a row stored twice adds it twice (XOR would erase it), and a
//! set of differences cancels only if the SHA-256 terms of the rows gained
//! and the rows lost sum to the same value in both lanes at once — a 2^-128
//! event for rows not crafted against SHA-256. XOR of CRC32 fails both ways:
//! duplicates vanish, and CRC is linear, so structured edits (the same bit
//! flipped in two rows) cancel exactly. The row count is compared as well.
//!
//! This digest is the drill-down's: windows are first compared by the
//! cheaper [`crate::first_pass`] (one exact sum of a 64-bit SHA1 lane,
//! argued there), and only the keyspace-id buckets it finds different are
//! narrowed with it.

use cluster::config::ClusterConfig;
use cluster::keyrange::KeyRange;
use cluster::time::TimeConfig;
use pipeline::{Class, Pipeline, Source, Table};

use crate::error::VerifyError;

/// How a column is encoded for the digest and rendered for a diff, from its
/// SQL type's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    /// An integer: its decimal text.
    Int,
    /// A DOUBLE, as the server prints it (no `,` in it).
    Float,
    /// A DECIMAL, as the server prints it.
    Decimal,
    /// A string.
    Text,
    /// Bytes, rendered as hex in diffs.
    Bytes,
    /// A DATETIME(n), rendered as MySQL prints it (UTC sessions).
    DateTime,
}

impl Col {
    pub fn of(class: Class) -> Self {
        match class {
            Class::Integer => Col::Int,
            Class::Float => Col::Float,
            Class::Decimal => Col::Decimal,
            Class::Text => Col::Text,
            Class::Bytes => Col::Bytes,
            Class::DateTime => Col::DateTime,
        }
    }

    /// Encoded as its text followed by `,`, with no length: numbers and
    /// datetimes hold no `,` and never start with `N` (the NULL marker).
    pub fn is_scalar(self) -> bool {
        !matches!(self, Col::Text | Col::Bytes)
    }
}

/// One column as the comparators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: String,
    pub col: Col,
    /// NULL is encoded as a marker no present value can produce.
    pub nullable: bool,
}

/// A table the comparators know, derived from the pipeline's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: String,
    /// Every column, in the description's order (the digest's and the diff's).
    pub columns: Vec<ColumnSpec>,
    /// Positions in `columns` of the key a diff matches rows on: for an
    /// append table the event's identity (topic partition, offset) rather
    /// than the primary key, which also holds the time column only because
    /// partitioning demands it, so the same event stored twice, whatever its
    /// time, is one key with two rows.
    pub key: Vec<usize>,
    /// The time column and window size (seconds) of a retention-bounded table.
    pub window: Option<(String, i64)>,
    /// The time column holds whole seconds, one value per window (the
    /// window's start): the first pass groups by its exact value, so the
    /// row encoding can leave it out.
    pub time_is_window_start: bool,
    /// Position of the sharding column (its value gives the keyspace id).
    pub shard_column: usize,
    /// Position of the stored keyspace id (what rows are bucketed and placed by).
    pub keyspace_column: usize,
}

impl TableSpec {
    /// The comparators' view of `table` of `pipeline`, its window sized by `time`.
    pub fn new(pipeline: &Pipeline, table: &Table, time: &TimeConfig) -> Result<Self, VerifyError> {
        let columns = table
            .columns
            .iter()
            .map(|c| ColumnSpec { name: c.name.clone(), col: Col::of(c.sql_type.class()), nullable: c.nullable })
            .collect();
        let shard_field = Source::Field(pipeline.sharding.column.clone());
        let position = |what: &str, source: &Source| {
            table.columns.iter().position(|c| &c.source == source).ok_or_else(|| {
                VerifyError::Unexpected(format!("pipeline {}, table {}: no {what} column", pipeline.name, table.name))
            })
        };
        let window = match (&table.window, &table.time_column) {
            (Some(w), Some(column)) => Some((column.clone(), time.window_secs(w))),
            _ => None,
        };
        // The full diff merges the shards' key-ordered pages comparing
        // strings by their bytes: the server's order must be the same.
        if window.is_none() {
            let unordered = table.key.iter().filter_map(|k| table.column(k)).find(|c| {
                c.sql_type.class() == Class::Text
                    && c.sql_type.charset.as_ref().is_some_and(|(_, collation)| !collation.ends_with("_bin"))
            });
            if let Some(c) = unordered {
                return Err(VerifyError::Usage(format!(
                    "pipeline {}, table {}: key column {} has a collation that does not order by bytes \
                     (the full diff needs a _bin one, as the table default utf8mb4_bin)",
                    pipeline.name, table.name, c.name
                )));
            }
        }
        Ok(Self {
            name: table.name.clone(),
            columns,
            key: table.key_positions(),
            window,
            time_is_window_start: table.time_is_window_start(),
            shard_column: position("sharding", &shard_field)?,
            keyspace_column: position("keyspace id", &Source::KeyspaceId)?,
        })
    }

    /// The window's size in seconds (0 for an unbounded table).
    pub fn window_secs(&self) -> i64 {
        self.window.as_ref().map_or(0, |(_, secs)| *secs)
    }

    /// The time column of a windowed table.
    fn time_column(&self) -> &str {
        self.window.as_ref().map_or("window_start", |(c, _)| c.as_str())
    }

    /// The keyspace-id column's name.
    pub fn keyspace_id(&self) -> &str {
        &self.columns[self.keyspace_column].name
    }
}

/// The retention-bounded tables of `cluster`'s pipeline the window comparator checks, in report order.
pub fn windowed(cluster: &ClusterConfig) -> Result<Vec<TableSpec>, VerifyError> {
    let p = &cluster.pipeline;
    p.windowed().map(|t| TableSpec::new(p, t, &cluster.time)).collect()
}

/// The tables of `cluster`'s pipeline without a retention bound (`latest`), checked by a full diff.
pub fn unbounded(cluster: &ClusterConfig) -> Result<Vec<TableSpec>, VerifyError> {
    let p = &cluster.pipeline;
    p.unbounded().map(|t| TableSpec::new(p, t, &cluster.time)).collect()
}

/// A table of `cluster`'s pipeline by name (windowed or unbounded).
pub fn table(cluster: &ClusterConfig, name: &str) -> Result<Option<TableSpec>, VerifyError> {
    let p = &cluster.pipeline;
    p.table(name).map(|t| TableSpec::new(p, t, &cluster.time)).transpose()
}

/// Refuses two clusters whose pipelines differ: the same name, the same
/// tables, and in each the same columns (name, type, nullability), key and
/// time column, so a row means the same and encodes the same on both.
pub fn check_same_pipeline(old: &ClusterConfig, new: &ClusterConfig) -> Result<(), VerifyError> {
    let (a, b) = (&*old.pipeline, &*new.pipeline);
    let names = |p: &Pipeline| p.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ");
    let mismatch = |why: String| VerifyError::PipelineMismatch {
        old: format!("{} (tables {})", a.name, names(a)),
        new: format!("{} (tables {})", b.name, names(b)),
        why,
    };
    if a.name != b.name {
        return Err(mismatch("different pipeline names".into()));
    }
    let (mut ta, mut tb): (Vec<&str>, Vec<&str>) =
        (a.tables.iter().map(|t| t.name.as_str()).collect(), b.tables.iter().map(|t| t.name.as_str()).collect());
    ta.sort_unstable();
    tb.sort_unstable();
    if ta != tb {
        return Err(mismatch("different table sets".into()));
    }
    for t in &a.tables {
        let Some(u) = b.table(&t.name) else { continue };
        let shape = |t: &Table| {
            let columns: Vec<String> = t.columns.iter().map(pipeline::column_definition).collect();
            (t.kind, columns, t.key.clone(), t.time_column.clone(), t.window.clone())
        };
        if shape(t) != shape(u) {
            return Err(mismatch(format!("table {} differs (kind, columns, key, time column or window)", t.name)));
        }
    }
    Ok(())
}

impl TableSpec {
    /// Position of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Positions of the sharding column and the keyspace id (every table has both).
    pub fn placement_columns(&self) -> (usize, usize) {
        (self.shard_column, self.keyspace_column)
    }

    /// SQL: the SHA-256 (hex) of the row's unambiguous encoding.
    pub fn row_hash_sql(&self) -> String {
        let parts: Vec<String> = self
            .columns
            .iter()
            .map(|ColumnSpec { name, col, nullable }| match (col.is_scalar(), nullable) {
                (true, false) => format!("{name}, ','"),
                // 'N' cannot start a present scalar, which starts with a digit or '-'.
                (true, true) => format!("IFNULL(CONCAT({name}, ','), 'N,')"),
                (false, false) => format!("LENGTH({name}), ':', {name}"),
                // 'N' cannot start a present value's encoding, which starts with a digit.
                (false, true) => format!("IFNULL(CONCAT(LENGTH({name}), ':', {name}), 'N')"),
            })
            .collect();
        format!("SHA2(CONCAT({}), 256)", parts.join(", "))
    }

    /// SQL: every column as text (bytes as hex), in `columns` order.
    pub fn select_list(&self) -> String {
        let parts: Vec<String> = self
            .columns
            .iter()
            .map(|ColumnSpec { name, col, .. }| match col {
                Col::Text => name.to_string(),
                Col::Bytes => format!("LOWER(HEX({name}))"),
                Col::Int | Col::Float | Col::Decimal | Col::DateTime => format!("CAST({name} AS CHAR)"),
            })
            .collect();
        parts.join(", ")
    }

    /// SQL: the start (epoch seconds) of the window holding the row.
    pub fn window_sql(&self, window_secs: i64) -> String {
        let column = self.time_column();
        format!("(TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', {column}) DIV {window_secs}) * {window_secs}")
    }

    /// SQL: rows whose time column lies in one of `ranges` (epoch seconds, `[from, to)`).
    pub fn range_sql(&self, ranges: &[(i64, i64)]) -> String {
        let column = self.time_column();
        if ranges.is_empty() {
            return "FALSE".to_string();
        }
        let parts: Vec<String> = ranges
            .iter()
            .map(|(from, to)| format!("({column} >= {} AND {column} < {})", datetime(*from), datetime(*to)))
            .collect();
        format!("({})", parts.join(" OR "))
    }

    /// SQL: 1 when the row's keyspace id is outside `range` (the shard's), else 0.
    pub fn misplaced_sql(&self, range: &KeyRange) -> String {
        misplaced_sql(self.keyspace_id(), range)
    }
}

/// SQL: 1 when the keyspace id in `column` is outside `range` (the shard's), else 0.
pub fn misplaced_sql(column: &str, range: &KeyRange) -> String {
    let mut inside = Vec::new();
    if !range.start.is_empty() {
        inside.push(format!("{column} >= {}", hex_literal(&range.start)));
    }
    if !range.end.is_empty() {
        inside.push(format!("{column} < {}", hex_literal(&range.end)));
    }
    if inside.is_empty() {
        return "0".to_string();
    }
    format!("(NOT ({}))", inside.join(" AND "))
}

/// SQL: the two digest lanes `a`, `b` of hash column `h`, as exact unsigned integers.
pub const LANES_SQL: &str =
    "CAST(CONV(SUBSTRING(h, 1, 16), 16, 10) AS UNSIGNED) AS a, CAST(CONV(SUBSTRING(h, 17, 16), 16, 10) AS UNSIGNED) AS b";

pub use cluster::sql::{datetime, hex as hex_literal, hex_digits as hex};

/// Bytes from hex (either case); `None` if malformed.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len() / 2).map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
pub(crate) mod tests;
