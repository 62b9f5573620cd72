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

/// Printed by the hand-written specs at commit ba231e4 (the last that had
/// them), by running their `row_hash_sql`, `select_list` and `encoding_sql`.
#[cfg(test)]
const GOLDEN_ROW_HASH: &[(&str, &str)] = &[
    ("query_stats_minute", "SHA2(CONCAT(database_id, ',', LENGTH(fingerprint), ':', fingerprint, window_start, ',', LENGTH(keyspace_id), ':', keyspace_id, query_count, ',', total_duration_us, ',', max_duration_us, ',', rows_read, ',', rows_returned, ',', error_count, ',', LENGTH(latency_sketch), ':', latency_sketch), 256)"),
    ("query_stats_hour", "SHA2(CONCAT(database_id, ',', LENGTH(fingerprint), ':', fingerprint, window_start, ',', LENGTH(keyspace_id), ':', keyspace_id, query_count, ',', total_duration_us, ',', max_duration_us, ',', rows_read, ',', rows_returned, ',', error_count, ',', LENGTH(latency_sketch), ':', latency_sketch), 256)"),
    ("slow_queries", "SHA2(CONCAT(src_partition, ',', src_offset, ',', occurred_at, ',', database_id, ',', LENGTH(fingerprint), ':', fingerprint, LENGTH(keyspace_id), ':', keyspace_id, LENGTH(proxy_id), ':', proxy_id, duration_us, ',', rows_read, ',', rows_returned, ',', IFNULL(CONCAT(LENGTH(error_text), ':', error_text), 'N'), LENGTH(query_text), ':', query_text, LENGTH(tables_used), ':', tables_used), 256)"),
    ("query_patterns", "SHA2(CONCAT(database_id, ',', LENGTH(fingerprint), ':', fingerprint, LENGTH(keyspace_id), ':', keyspace_id, LENGTH(normalized_sql), ':', normalized_sql, LENGTH(tables_used), ':', tables_used, first_seen, ',', last_seen, ','), 256)"),
];
#[cfg(test)]
const GOLDEN_SELECT: &[(&str, &str)] = &[
    ("query_stats_minute", "CAST(database_id AS CHAR), fingerprint, CAST(window_start AS CHAR), LOWER(HEX(keyspace_id)), CAST(query_count AS CHAR), CAST(total_duration_us AS CHAR), CAST(max_duration_us AS CHAR), CAST(rows_read AS CHAR), CAST(rows_returned AS CHAR), CAST(error_count AS CHAR), LOWER(HEX(latency_sketch))"),
    ("query_stats_hour", "CAST(database_id AS CHAR), fingerprint, CAST(window_start AS CHAR), LOWER(HEX(keyspace_id)), CAST(query_count AS CHAR), CAST(total_duration_us AS CHAR), CAST(max_duration_us AS CHAR), CAST(rows_read AS CHAR), CAST(rows_returned AS CHAR), CAST(error_count AS CHAR), LOWER(HEX(latency_sketch))"),
    ("slow_queries", "CAST(src_partition AS CHAR), CAST(src_offset AS CHAR), CAST(occurred_at AS CHAR), CAST(database_id AS CHAR), fingerprint, LOWER(HEX(keyspace_id)), proxy_id, CAST(duration_us AS CHAR), CAST(rows_read AS CHAR), CAST(rows_returned AS CHAR), error_text, query_text, tables_used"),
    ("query_patterns", "CAST(database_id AS CHAR), fingerprint, LOWER(HEX(keyspace_id)), normalized_sql, tables_used, CAST(first_seen AS CHAR), CAST(last_seen AS CHAR)"),
];
/// The first pass's row encoding of the windowed tables, likewise.
#[cfg(test)]
pub(crate) const GOLDEN_ENCODING: &[(&str, &str)] = &[
    ("query_stats_minute", "CONCAT(database_id, ',', query_count, ',', total_duration_us, ',', max_duration_us, ',', rows_read, ',', rows_returned, ',', error_count, ',', LENGTH(fingerprint), ',', LENGTH(keyspace_id), ',', fingerprint, ',', keyspace_id, ',', latency_sketch)"),
    ("query_stats_hour", "CONCAT(database_id, ',', query_count, ',', total_duration_us, ',', max_duration_us, ',', rows_read, ',', rows_returned, ',', error_count, ',', LENGTH(fingerprint), ',', LENGTH(keyspace_id), ',', fingerprint, ',', keyspace_id, ',', latency_sketch)"),
    ("slow_queries", "CONCAT(src_partition, ',', src_offset, ',', occurred_at, ',', database_id, ',', duration_us, ',', rows_read, ',', rows_returned, ',', LENGTH(fingerprint), ',', LENGTH(keyspace_id), ',', LENGTH(proxy_id), ',', IFNULL(LENGTH(error_text), 'N'), ',', LENGTH(query_text), ',', fingerprint, ',', keyspace_id, ',', proxy_id, ',', IFNULL(error_text, ''), ',', query_text, ',', tables_used)"),
];

/// A copy of `pipelines/api.toml` edited by `edit`, beside copies of its
/// schema files (the directory lives as long as the returned guard).
#[cfg(test)]
pub(crate) fn edited_api(edit: impl Fn(&str) -> String) -> (tempfile::TempDir, std::path::PathBuf) {
    let api = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("api")).expect("mkdir");
    for f in ["11-api_requests.avsc", "12-api_failure.avsc"] {
        std::fs::copy(api.with_file_name("api").join(f), dir.path().join("api").join(f)).expect("copy schema");
    }
    let text = std::fs::read_to_string(&api).expect("api.toml");
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changed nothing");
    let path = dir.path().join("api.toml");
    std::fs::write(&path, edited).expect("write");
    (dir, path)
}

/// The built-in Insights pipeline's table `name` at the default `[time]`.
#[cfg(test)]
pub(crate) fn insights(name: &str) -> TableSpec {
    let p = Pipeline::insights();
    let t = p.table(name).expect("an insights table");
    TableSpec::new(&p, t, &TimeConfig::default()).expect("spec")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(spec: &TableSpec) -> Vec<(&str, Col, bool)> {
        spec.columns.iter().map(|c| (c.name.as_str(), c.col, c.nullable)).collect()
    }

    /// The specs derived from the description are the ones the comparators
    /// had written out by hand (columns, encodings, keys, windows): the
    /// Insights digests are unchanged.
    #[test]
    fn insights_specs_are_the_hand_written_ones() {
        use Col::*;
        let stats = [
            ("database_id", Int, false),
            ("fingerprint", Text, false),
            ("window_start", DateTime, false),
            ("keyspace_id", Bytes, false),
            ("query_count", Int, false),
            ("total_duration_us", Int, false),
            ("max_duration_us", Int, false),
            ("rows_read", Int, false),
            ("rows_returned", Int, false),
            ("error_count", Int, false),
            ("latency_sketch", Bytes, false),
        ];
        for (name, secs) in [("query_stats_minute", 60), ("query_stats_hour", 3600)] {
            let spec = insights(name);
            assert_eq!(columns(&spec), stats, "{name}");
            assert_eq!(spec.key, [0, 1, 2]);
            assert_eq!(spec.window, Some(("window_start".to_string(), secs)));
            assert!(spec.time_is_window_start);
            assert_eq!(spec.placement_columns(), (0, 3));
        }
        let slow = insights("slow_queries");
        assert_eq!(
            columns(&slow),
            [
                ("src_partition", Int, false),
                ("src_offset", Int, false),
                ("occurred_at", DateTime, false),
                ("database_id", Int, false),
                ("fingerprint", Text, false),
                ("keyspace_id", Bytes, false),
                ("proxy_id", Text, false),
                ("duration_us", Int, false),
                ("rows_read", Int, false),
                ("rows_returned", Int, false),
                ("error_text", Text, true),
                ("query_text", Text, false),
                ("tables_used", Text, false),
            ]
        );
        assert_eq!(
            (slow.key.as_slice(), slow.window.clone(), slow.time_is_window_start),
            ([0, 1].as_slice(), Some(("occurred_at".to_string(), 60)), false)
        );
        assert_eq!(slow.placement_columns(), (3, 5));
        let patterns = insights("query_patterns");
        assert_eq!(
            columns(&patterns),
            [
                ("database_id", Int, false),
                ("fingerprint", Text, false),
                ("keyspace_id", Bytes, false),
                ("normalized_sql", Text, false),
                ("tables_used", Text, false),
                ("first_seen", DateTime, false),
                ("last_seen", DateTime, false),
            ]
        );
        assert_eq!((patterns.key.as_slice(), patterns.window.clone()), ([0, 1].as_slice(), None));
    }

    /// The SQL the hand-written specs produced, captured before the specs
    /// were derived: the digests of stored rows must not move.
    #[test]
    fn insights_row_hashes_are_byte_identical() {
        for (name, golden) in GOLDEN_ROW_HASH {
            assert_eq!(insights(name).row_hash_sql(), *golden, "{name}");
        }
        for (name, golden) in GOLDEN_SELECT {
            assert_eq!(insights(name).select_list(), *golden, "{name}");
        }
    }

    #[test]
    fn row_encoding_is_length_prefixed_and_marks_null() {
        let sql = insights("slow_queries").row_hash_sql();
        assert!(sql.starts_with("SHA2(CONCAT(src_partition, ',', src_offset, ','"), "{sql}");
        assert!(sql.contains("LENGTH(proxy_id), ':', proxy_id"), "{sql}");
        assert!(sql.contains("IFNULL(CONCAT(LENGTH(error_text), ':', error_text), 'N')"), "{sql}");
        assert!(sql.ends_with(", 256)"));
    }

    #[test]
    fn a_nullable_number_is_marked_too() {
        let spec = TableSpec {
            name: "t".into(),
            columns: vec![
                ColumnSpec { name: "a".into(), col: Col::Int, nullable: true },
                ColumnSpec { name: "b".into(), col: Col::Bytes, nullable: true },
            ],
            key: vec![0],
            window: None,
            time_is_window_start: false,
            shard_column: 0,
            keyspace_column: 1,
        };
        assert_eq!(
            spec.row_hash_sql(),
            "SHA2(CONCAT(IFNULL(CONCAT(a, ','), 'N,'), IFNULL(CONCAT(LENGTH(b), ':', b), 'N')), 256)"
        );
        assert_eq!(spec.misplaced_sql(&KeyRange::parse("-40").expect("range")), "(NOT (b < X'40'))");
    }

    #[test]
    fn misplacement_tests_the_shard_range() {
        let range = KeyRange::parse("40-80").expect("range");
        assert_eq!(misplaced_sql("keyspace_id", &range), "(NOT (keyspace_id >= X'40' AND keyspace_id < X'80'))");
        assert_eq!(
            misplaced_sql("keyspace_id", &KeyRange::parse("-40").expect("range")),
            "(NOT (keyspace_id < X'40'))"
        );
        assert_eq!(misplaced_sql("keyspace_id", &KeyRange::full()), "0");
    }

    #[test]
    fn ranges_and_windows() {
        assert_eq!(
            insights("query_stats_minute").range_sql(&[(0, 60)]),
            "((window_start >= '1970-01-01 00:00:00' AND window_start < '1970-01-01 00:01:00'))"
        );
        let slow = insights("slow_queries");
        assert_eq!(slow.range_sql(&[]), "FALSE");
        assert!(slow.window_sql(10).contains("occurred_at) DIV 10) * 10"));
        assert_eq!(unhex("0aFF"), Some(vec![0x0a, 0xff]));
        assert_eq!(unhex("0"), None);
        assert_eq!(insights("query_patterns").key.len(), 2);
    }

    /// A cluster on the description at `pipeline` (the built-in Insights when `None`).
    fn cluster_on(pipeline: Option<&std::path::Path>) -> ClusterConfig {
        let head = pipeline.map(|p| format!("pipeline = {:?}\n", p.display().to_string())).unwrap_or_default();
        let text =
            format!("{head}name = \"c\"\n[auth]\nuser = \"u\"\n[[shards]]\nrange = \"-\"\ndsn = \"mysql://h/db\"\n");
        ClusterConfig::from_toml_str(&text, std::path::Path::new("."), &|_| None).expect("cluster")
    }

    #[test]
    fn refuses_pipelines_that_differ_in_name_tables_or_columns() {
        let api = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml");
        let (insights, api_cluster) = (cluster_on(None), cluster_on(Some(&api)));
        assert!(check_same_pipeline(&insights, &cluster_on(None)).is_ok());
        assert!(check_same_pipeline(&api_cluster, &cluster_on(Some(&api))).is_ok());
        let e = check_same_pipeline(&insights, &api_cluster).expect_err("names").to_string();
        assert!(e.starts_with("the clusters' pipelines differ (different pipeline names): old has pipeline insights (tables query_stats_minute, query_stats_hour, slow_queries, query_patterns); new has api (tables api_route_minute,"), "{e}");

        // The same name, edited copies beside the same schema files: a wider route in the minute table.
        let (_wider_dir, path) = edited_api(|text| {
            text.replacen(
                "type = \"VARCHAR(200)\", from = \"route\" },\n  { name = \"window_start\"",
                "type = \"VARCHAR(250)\", from = \"route\" },\n  { name = \"window_start\"",
                1,
            )
        });
        let wider = cluster_on(Some(&path));
        let e = check_same_pipeline(&api_cluster, &wider).expect_err("a column's type").to_string();
        assert!(e.contains("(table api_route_minute differs (kind, columns, key, time column or window))"), "{e}");
        let (_dir, path) = edited_api(|text| {
            let start = text.find("[[tables]]\nname = \"api_routes\"").expect("routes table");
            text[..start].to_string()
        });
        let e = check_same_pipeline(&api_cluster, &cluster_on(Some(&path))).expect_err("tables").to_string();
        assert!(e.contains("(different table sets)"), "{e}");
    }

    #[test]
    fn a_full_diff_key_must_order_by_bytes() {
        let (_dir, path) = edited_api(|text| {
            let (head, routes) = text.split_at(text.find("name = \"api_routes\"").expect("routes"));
            let ci = routes.replacen(
                r#"type = "VARCHAR(200)""#,
                r#"type = "VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci""#,
                1,
            );
            format!("{head}{ci}")
        });
        let c = cluster_on(Some(&path));
        let e = unbounded(&c).expect_err("a case-insensitive key").to_string();
        assert!(e.contains("table api_routes: key column route has a collation that does not order by bytes"), "{e}");
        assert_eq!(windowed(&c).expect("windowed tables need no order").len(), 3);
    }

    #[test]
    fn the_api_pipeline_derives_its_specs() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml");
        let p = Pipeline::load(&path).expect("api pipeline");
        let time = TimeConfig::default();
        let specs: Vec<TableSpec> = p.tables.iter().map(|t| TableSpec::new(&p, t, &time).expect("spec")).collect();
        type Shape<'a> = (&'a str, Vec<usize>, Option<(String, i64)>, bool, (usize, usize));
        let shape: Vec<Shape<'_>> = specs
            .iter()
            .map(|s| (s.name.as_str(), s.key.clone(), s.window.clone(), s.time_is_window_start, s.placement_columns()))
            .collect();
        assert_eq!(
            shape,
            [
                ("api_route_minute", vec![0, 1, 2], Some(("window_start".into(), 60)), true, (0, 3)),
                ("api_route_latency_hour", vec![0, 1, 2], Some(("window_start".into(), 3600)), true, (0, 3)),
                ("api_failures", vec![0, 1], Some(("occurred_at".into(), 60)), false, (3, 4)),
                ("api_routes", vec![0, 1], None, false, (0, 2)),
            ]
        );
        let failures = &specs[2];
        assert_eq!(failures.columns[7].col, Col::Int, "SMALLINT status");
        assert!(failures.columns[9].nullable && failures.columns[9].col == Col::Text, "error_text");
    }
}
