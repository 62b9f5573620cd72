//! The copied table: its key, its row image, its merge rule and the SQL that
//! reads and writes it.
//!
//! Only `query_patterns` is an unbounded table today, so this module knows
//! it by name; [`TableSpec::check_source`] refuses to start when the source
//! table does not look exactly like it (columns, primary key, collations),
//! since every later step (key order, position-mapped binlog rows, the merge
//! rule) relies on that shape.

use std::cmp::Ordering;
use std::fmt::Write as _;

use cluster::sql;
use mysql_async::prelude::Queryable;
use mysql_async::Value;
use serde::{Deserialize, Serialize};

use crate::error::CopierError;

/// The one table the copier knows.
pub const QUERY_PATTERNS: &str = "query_patterns";

/// Source columns in ordinal order. Binlog rows carry no column names unless
/// `binlog_row_metadata=FULL`, so images are mapped by position and the order
/// is checked at start.
pub const COLUMNS: [&str; 7] =
    ["database_id", "fingerprint", "keyspace_id", "normalized_sql", "tables_used", "first_seen", "last_seen"];

/// The primary key, in index order.
pub const PRIMARY_KEY: [&str; 2] = ["database_id", "fingerprint"];

/// A `query_patterns` primary key. The derived order is the source index
/// order: `database_id` numerically, then `fingerprint` byte-wise, which is
/// what its `ascii_bin` collation means ([`TableSpec::check_source`] refuses
/// any other collation, since "key <= last copied key" is decided here, in
/// Rust, for binlog rows).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PatternKey {
    /// First key part; also the shard key.
    pub database_id: u64,
    /// Second key part (ASCII).
    pub fingerprint: String,
}

/// A full row image of `query_patterns`, as read from a snapshot or a binlog row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternImage {
    /// The primary key.
    pub key: PatternKey,
    /// Text of the earliest sighting.
    pub normalized_sql: String,
    /// JSON array of table names, of the earliest sighting.
    pub tables_used: String,
    /// Earliest sighting, microseconds since the epoch (UTC, as stored).
    pub first_seen_us: i64,
    /// Latest sighting, microseconds since the epoch.
    pub last_seen_us: i64,
}

impl PatternImage {
    /// The table's merge rule, the same as the consumer's upsert
    /// (`consumer::rows::PatternRow::merge` and its SQL): first_seen = min,
    /// last_seen = max, the text of the earliest sighting wins (ties: the
    /// smaller text). It is a join (associative, commutative, idempotent),
    /// which is what lets copier and consumer writes land in any order and
    /// lets a replayed image change nothing.
    pub fn merge(&mut self, other: &PatternImage) {
        debug_assert_eq!(self.key, other.key);
        let other_text_first = (other.first_seen_us, &other.normalized_sql, &other.tables_used).cmp(&(
            self.first_seen_us,
            &self.normalized_sql,
            &self.tables_used,
        )) == Ordering::Less;
        if other_text_first {
            self.normalized_sql.clone_from(&other.normalized_sql);
            self.tables_used.clone_from(&other.tables_used);
        }
        self.first_seen_us = self.first_seen_us.min(other.first_seen_us);
        self.last_seen_us = self.last_seen_us.max(other.last_seen_us);
    }

    /// Whether `self` is what merging something into `before` could give:
    /// the only way group A changes a row. A source UPDATE that is not
    /// (a manual fix moving last_seen back, say) cannot be carried by the
    /// merge rule; the stream counts and logs it.
    pub fn is_merge_successor_of(&self, before: &PatternImage) -> bool {
        let mut merged = before.clone();
        merged.merge(self);
        merged == *self
    }

    /// Builds an image from column values in [`COLUMNS`] order (a snapshot
    /// row or a binlog row image). `keyspace_id` (index 2) is not read: the
    /// copier recomputes it from `database_id` with the vindex (binlog images
    /// of `BINARY(n)` may lose trailing zero bytes).
    pub fn from_values(values: &[Value]) -> Result<Self, String> {
        if values.len() != COLUMNS.len() {
            return Err(format!("expected {} columns, got {}", COLUMNS.len(), values.len()));
        }
        Ok(Self {
            key: PatternKey {
                database_id: as_u64(&values[0], COLUMNS[0])?,
                fingerprint: as_text(&values[1], COLUMNS[1])?,
            },
            normalized_sql: as_text(&values[3], COLUMNS[3])?,
            tables_used: as_text(&values[4], COLUMNS[4])?,
            first_seen_us: as_micros(&values[5], COLUMNS[5])?,
            last_seen_us: as_micros(&values[6], COLUMNS[6])?,
        })
    }

    /// `(database_id, fingerprint, keyspace_id, normalized_sql, tables_used,
    /// first_seen, last_seen)` as an SQL tuple.
    pub fn values_tuple(&self) -> String {
        self.values_tuple_with(&cluster::vindex::keyspace_id(self.key.database_id))
    }

    /// [`Self::values_tuple`] with the key's keyspace id already computed (for routing).
    pub fn values_tuple_with(&self, keyspace_id: &[u8; 8]) -> String {
        format!(
            "({},{},{},{},{},{},{})",
            self.key.database_id,
            sql::lit(self.key.fingerprint.as_str()),
            sql::hex(keyspace_id),
            sql::lit(self.normalized_sql.as_str()),
            sql::lit(self.tables_used.as_str()),
            sql::datetime_us(self.first_seen_us),
            sql::datetime_us(self.last_seen_us),
        )
    }
}

impl PatternKey {
    /// `(database_id, fingerprint)` as an SQL tuple.
    pub fn tuple(&self) -> String {
        format!("({},{})", self.database_id, sql::lit(self.fingerprint.as_str()))
    }
}

/// The merge-rule upsert of a batch of images: the consumer's statement
/// (`pipeline::upsert` of the table's rules), so both writers apply one rule.
pub fn upsert_sql(tuples: &[String]) -> String {
    let insights = insights_patterns();
    pipeline::upsert(insights, &tuples.join(",")).unwrap_or_default()
}

fn insights_patterns() -> &'static pipeline::Table {
    static TABLE: std::sync::OnceLock<pipeline::Table> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let p = pipeline::Pipeline::insights();
        p.tables.into_iter().find(|t| t.name == QUERY_PATTERNS).unwrap_or_else(|| unreachable!())
    })
}

/// Deletes a batch of keys.
pub fn delete_sql(keys: &[String]) -> String {
    format!("DELETE FROM query_patterns WHERE (database_id, fingerprint) IN ({})", keys.join(","))
}

/// A snapshot row as the copy writes it: its key, and its `VALUES` tuple
/// with every column but the key and `keyspace_id` quoted by the source
/// server (`QUOTE()`, in C, while it reads the row): the copier then neither
/// decodes the columns nor escapes them again, which was most of its CPU per
/// row. The copy only ever inserts-or-merges whole images, so it needs
/// nothing else from the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRow {
    /// The primary key (fences).
    pub key: PatternKey,
    /// The vindex's keyspace id of `key.database_id` (routing).
    pub keyspace_id: [u8; 8],
    /// `(database_id, fingerprint, keyspace_id, normalized_sql, tables_used,
    /// first_seen, last_seen)` as SQL, for [`upsert_sql`].
    pub tuple: String,
}

impl CopyRow {
    /// Builds the row from what [`copy_chunk_sql`] selects. `keyspace_id` is
    /// recomputed from `database_id` with the vindex, as for every image.
    pub fn from_columns(database_id: u64, fingerprint: String, quoted_rest: &str, ids: &mut KeyspaceIds) -> Self {
        let keyspace_id = ids.of(database_id);
        let fingerprint_sql = sql::lit(fingerprint.as_str());
        let mut tuple = String::with_capacity(quoted_rest.len() + fingerprint_sql.len() + 48);
        // Writing to a String cannot fail.
        let _ = write!(tuple, "({database_id},{fingerprint_sql},");
        sql::push_hex(&mut tuple, &keyspace_id);
        let _ = write!(tuple, ",{quoted_rest})");
        Self { key: PatternKey { database_id, fingerprint }, keyspace_id, tuple }
    }
}

/// The vindex over a run of rows in key order, remembering the last id:
/// consecutive snapshot rows mostly share their `database_id` (one row per
/// pattern of a database), and the 3DES behind each keyspace id was a fifth
/// of the copier's CPU per copied row.
#[derive(Debug, Default)]
pub struct KeyspaceIds {
    last: Option<(u64, [u8; 8])>,
}

impl KeyspaceIds {
    /// `cluster::vindex::keyspace_id(database_id)`.
    pub fn of(&mut self, database_id: u64) -> [u8; 8] {
        match self.last {
            Some((id, keyspace_id)) if id == database_id => keyspace_id,
            _ => {
                let keyspace_id = cluster::vindex::keyspace_id(database_id);
                self.last = Some((database_id, keyspace_id));
                keyspace_id
            }
        }
    }
}

/// The next chunk of the snapshot after `after` (everything when `None`), in
/// primary-key order: the key, and the rest of the row's `VALUES` tuple
/// quoted by the server. `QUOTE()` escapes `\`, `'`, NUL and Ctrl-Z (the
/// session's sql_mode never has NO_BACKSLASH_ESCAPES) and renders DATETIME(3)
/// as the literal it is read back from; it is the same on MariaDB and MySQL 8.
/// The row comparison is spelled out because MariaDB's range optimizer does
/// not turn `(a, b) > (x, y)` into an index range.
pub fn copy_chunk_sql(after: Option<&PatternKey>, limit: usize) -> String {
    let filter = match after {
        None => String::new(),
        Some(key) => {
            let fp = sql::lit(key.fingerprint.as_str());
            format!("WHERE database_id > {id} OR (database_id = {id} AND fingerprint > {fp}) ", id = key.database_id)
        }
    };
    format!(
        "SELECT database_id, fingerprint, CONCAT_WS(',', QUOTE(normalized_sql), QUOTE(tables_used), \
         QUOTE(first_seen), QUOTE(last_seen)) FROM query_patterns {filter}ORDER BY database_id, fingerprint LIMIT {limit}"
    )
}

fn as_u64(value: &Value, column: &str) -> Result<u64, String> {
    match value {
        Value::UInt(v) => Ok(*v),
        // Without binlog_row_metadata, a binlog image of BIGINT UNSIGNED does
        // not know it is unsigned: the bits are the same.
        Value::Int(v) => Ok(*v as u64),
        Value::Bytes(b) => {
            std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).ok_or_else(|| format!("{column}: not an integer"))
        }
        other => Err(format!("{column}: unexpected value {other:?}")),
    }
}

fn as_text(value: &Value, column: &str) -> Result<String, String> {
    match value {
        Value::Bytes(b) => String::from_utf8(b.clone()).map_err(|_| format!("{column}: not UTF-8")),
        other => Err(format!("{column}: unexpected value {other:?}")),
    }
}

fn as_micros(value: &Value, column: &str) -> Result<i64, String> {
    let naive = match value {
        Value::Date(y, mo, d, h, mi, s, us) => {
            chrono::NaiveDate::from_ymd_opt(i32::from(*y), u32::from(*mo), u32::from(*d))
                .and_then(|date| date.and_hms_micro_opt(u32::from(*h), u32::from(*mi), u32::from(*s), *us))
        }
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok()),
        _ => None,
    };
    naive.map(|t| t.and_utc().timestamp_micros()).ok_or_else(|| format!("{column}: not a datetime: {value:?}"))
}

/// What is checked about the source table before a stream starts.
pub struct TableSpec;

impl TableSpec {
    /// Refuses a source table whose shape the copier cannot copy exactly: a
    /// missing table, other columns or column order, no primary key or a
    /// different one, or a key collation whose order Rust cannot reproduce.
    pub async fn check_source(conn: &mut mysql_async::Conn, database: &str, table: &str) -> Result<(), CopierError> {
        let columns: Vec<(String, Option<String>)> = conn
            .exec(
                "SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (database, table),
            )
            .await?;
        if columns.is_empty() {
            return Err(CopierError::Schema {
                table: table.to_owned(),
                why: format!("table {database}.{table} does not exist on the source"),
            });
        }
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        if names != COLUMNS {
            return Err(CopierError::Schema {
                table: table.to_owned(),
                why: format!("columns are {names:?}, the copier expects {COLUMNS:?} in this order"),
            });
        }
        let key: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                (database, table),
            )
            .await?;
        if key.is_empty() {
            return Err(CopierError::NoPrimaryKey { table: table.to_owned() });
        }
        if key != PRIMARY_KEY {
            return Err(CopierError::Schema {
                table: table.to_owned(),
                why: format!("primary key is {key:?}, the copier expects {PRIMARY_KEY:?}"),
            });
        }
        for (name, collation) in &columns {
            let binary = collation.as_deref().is_none_or(|c| c.ends_with("_bin") || c == "binary");
            if PRIMARY_KEY.contains(&name.as_str()) && !binary {
                return Err(CopierError::Schema {
                    table: table.to_owned(),
                    why: format!(
                        "key column {name} has collation {collation:?}; only binary collations keep key order"
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(first: i64, last: i64, sql: &str) -> PatternImage {
        PatternImage {
            key: PatternKey { database_id: 7, fingerprint: "ab".into() },
            normalized_sql: sql.into(),
            tables_used: "[\"t\"]".into(),
            first_seen_us: first,
            last_seen_us: last,
        }
    }

    #[test]
    fn merge_is_a_join() {
        let a = image(10, 20, "select b");
        let b = image(5, 15, "select z");
        let c = image(5, 30, "select a");
        let fold = |xs: &[&PatternImage]| {
            let mut acc = xs[0].clone();
            for x in &xs[1..] {
                acc.merge(x);
            }
            acc
        };
        let abc = fold(&[&a, &b, &c]);
        assert_eq!(abc, fold(&[&c, &a, &b]));
        assert_eq!(abc, fold(&[&b, &c, &a, &a, &c]));
        assert_eq!((abc.first_seen_us, abc.last_seen_us, abc.normalized_sql.as_str()), (5, 30, "select a"));
    }

    #[test]
    fn updates_by_merge_are_successors_and_rewinds_are_not() {
        let before = image(10, 20, "select b");
        assert!(image(10, 25, "select b").is_merge_successor_of(&before));
        assert!(image(5, 20, "select z").is_merge_successor_of(&before));
        assert!(!image(10, 15, "select b").is_merge_successor_of(&before));
        assert!(!image(10, 20, "select c").is_merge_successor_of(&before));
    }

    #[test]
    fn images_from_binlog_and_text_values_agree() {
        let binlog = [
            Value::Int(-1),
            Value::Bytes(b"fp".to_vec()),
            Value::Bytes(vec![1, 2]),
            Value::Bytes(b"select 1".to_vec()),
            Value::Bytes(b"[]".to_vec()),
            Value::Date(2026, 1, 2, 3, 4, 5, 123_000),
            Value::Date(2026, 1, 2, 3, 4, 6, 0),
        ];
        let text = [
            Value::Bytes(b"18446744073709551615".to_vec()),
            Value::Bytes(b"fp".to_vec()),
            Value::Bytes(vec![1, 2, 0, 0, 0, 0, 0, 0]),
            Value::Bytes(b"select 1".to_vec()),
            Value::Bytes(b"[]".to_vec()),
            Value::Bytes(b"2026-01-02 03:04:05.123".to_vec()),
            Value::Bytes(b"2026-01-02 03:04:06.000".to_vec()),
        ];
        let a = PatternImage::from_values(&binlog).expect("binlog image");
        let b = PatternImage::from_values(&text).expect("text image");
        assert_eq!(a, b);
        assert_eq!(a.key.database_id, u64::MAX);
        assert!(a.values_tuple().contains("'2026-01-02 03:04:05.123000'"));
        assert!(PatternImage::from_values(&binlog[..6]).is_err());
    }

    #[test]
    fn key_order_is_numeric_then_bytewise() {
        let k = |id, fp: &str| PatternKey { database_id: id, fingerprint: fp.into() };
        assert!(k(2, "a") < k(10, "a"));
        assert!(k(2, "B") < k(2, "a"));
        assert!(k(2, "a") < k(2, "ab"));
    }

    #[test]
    fn copy_sql_resumes_after_the_key() {
        let key = PatternKey { database_id: 3, fingerprint: "x'y".into() };
        let sql = copy_chunk_sql(Some(&key), 10);
        assert!(sql.contains("database_id > 3 OR (database_id = 3 AND fingerprint > 'x\\'y')"), "{sql}");
        assert!(sql.ends_with("ORDER BY database_id, fingerprint LIMIT 10"));
        assert!(!copy_chunk_sql(None, 5).contains("WHERE"));
    }

    #[test]
    fn a_copy_row_adds_the_key_and_the_vindex_keyspace_id_to_the_servers_quoting() {
        // What QUOTE() gives for the other columns (MariaDB and MySQL 8 alike).
        let rest = "'select \\'a\\'','[\"t\"]','2023-11-14 22:13:20.123','2023-11-14 22:13:21.000'";
        let row = CopyRow::from_columns(7, "f'1".into(), rest, &mut KeyspaceIds::default());
        assert_eq!(row.key, PatternKey { database_id: 7, fingerprint: "f'1".into() });
        let ksid = sql::hex(&cluster::vindex::keyspace_id(7));
        assert_eq!(row.tuple, format!("(7,'f\\'1',{ksid},{rest})"));
        assert_eq!(row.keyspace_id, cluster::vindex::keyspace_id(7));
    }
}
