//! What the comparators know about each table: its key, every column and how
//! to render it, and the SQL that digests a row inside MySQL.
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

use cluster::keyrange::KeyRange;
use cluster::time::TimeConfig;

/// How a column is encoded for the digest and rendered for a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    /// An integer: its decimal text.
    Int,
    /// A non-null string.
    Text,
    /// A nullable string.
    NullText,
    /// Bytes, rendered as hex in diffs.
    Bytes,
    /// A DATETIME(n), rendered as MySQL prints it (UTC sessions).
    DateTime,
}

/// How a table's rows fall into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSize {
    /// `[time] minute_window`.
    Minute,
    /// `[time] hour_window`.
    Hour,
}

impl WindowSize {
    pub fn secs(self, time: &TimeConfig) -> i64 {
        match self {
            WindowSize::Minute => time.minute_secs(),
            WindowSize::Hour => time.hour_secs(),
        }
    }
}

/// A table the comparators know.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    pub name: &'static str,
    /// Every column, in a fixed order (the digest's and the diff's).
    pub columns: &'static [(&'static str, Col)],
    /// Positions in `columns` of the key a diff matches rows on.
    pub key: &'static [usize],
    /// The time column and window size of a retention-bounded table.
    pub window: Option<(&'static str, WindowSize)>,
    /// The time column holds whole seconds, one value per window (the
    /// window's start): the first pass groups by its exact value, so the
    /// row encoding can leave it out.
    pub time_is_window_start: bool,
}

const STATS_COLUMNS: &[(&str, Col)] = &[
    ("database_id", Col::Int),
    ("fingerprint", Col::Text),
    ("window_start", Col::DateTime),
    ("keyspace_id", Col::Bytes),
    ("query_count", Col::Int),
    ("total_duration_us", Col::Int),
    ("max_duration_us", Col::Int),
    ("rows_read", Col::Int),
    ("rows_returned", Col::Int),
    ("error_count", Col::Int),
    ("latency_sketch", Col::Bytes),
];

pub const QUERY_STATS_MINUTE: TableSpec = TableSpec {
    name: "query_stats_minute",
    columns: STATS_COLUMNS,
    key: &[0, 1, 2],
    window: Some(("window_start", WindowSize::Minute)),
    time_is_window_start: true,
};

pub const QUERY_STATS_HOUR: TableSpec = TableSpec {
    name: "query_stats_hour",
    columns: STATS_COLUMNS,
    key: &[0, 1, 2],
    window: Some(("window_start", WindowSize::Hour)),
    time_is_window_start: true,
};

/// Keyed on the event's identity (topic partition, offset) rather than the
/// primary key, which also holds `occurred_at` only because partitioning
/// demands it: the same event stored twice, whatever its `occurred_at`, is
/// then one key with two rows.
pub const SLOW_QUERIES: TableSpec = TableSpec {
    name: "slow_queries",
    columns: &[
        ("src_partition", Col::Int),
        ("src_offset", Col::Int),
        ("occurred_at", Col::DateTime),
        ("database_id", Col::Int),
        ("fingerprint", Col::Text),
        ("keyspace_id", Col::Bytes),
        ("proxy_id", Col::Text),
        ("duration_us", Col::Int),
        ("rows_read", Col::Int),
        ("rows_returned", Col::Int),
        ("error_text", Col::NullText),
        ("query_text", Col::Text),
        ("tables_used", Col::Text),
    ],
    key: &[0, 1],
    window: Some(("occurred_at", WindowSize::Minute)),
    time_is_window_start: false,
};

pub const QUERY_PATTERNS: TableSpec = TableSpec {
    name: "query_patterns",
    columns: &[
        ("database_id", Col::Int),
        ("fingerprint", Col::Text),
        ("keyspace_id", Col::Bytes),
        ("normalized_sql", Col::Text),
        ("tables_used", Col::Text),
        ("first_seen", Col::DateTime),
        ("last_seen", Col::DateTime),
    ],
    key: &[0, 1],
    window: None,
    time_is_window_start: false,
};

/// The retention-bounded tables the window comparator checks, in report order.
pub const WINDOWED: [TableSpec; 3] = [QUERY_STATS_MINUTE, QUERY_STATS_HOUR, SLOW_QUERIES];

/// The tables without a retention bound, checked by a full diff.
pub const UNBOUNDED: [TableSpec; 1] = [QUERY_PATTERNS];

/// A table by name (windowed or unbounded).
pub fn table(name: &str) -> Option<TableSpec> {
    WINDOWED.iter().chain(UNBOUNDED.iter()).find(|t| t.name == name).copied()
}

impl TableSpec {
    /// Position of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|(c, _)| *c == name)
    }

    /// Position of `database_id` and `keyspace_id` (every table has both).
    pub fn placement_columns(&self) -> (usize, usize) {
        (self.column_index("database_id").unwrap_or(0), self.column_index("keyspace_id").unwrap_or(0))
    }

    /// SQL: the SHA-256 (hex) of the row's unambiguous encoding.
    pub fn row_hash_sql(&self) -> String {
        let parts: Vec<String> = self
            .columns
            .iter()
            .map(|(name, col)| match col {
                Col::Int | Col::DateTime => format!("{name}, ','"),
                Col::Text | Col::Bytes => format!("LENGTH({name}), ':', {name}"),
                // 'N' cannot start a present value's encoding, which starts with a digit.
                Col::NullText => format!("IFNULL(CONCAT(LENGTH({name}), ':', {name}), 'N')"),
            })
            .collect();
        format!("SHA2(CONCAT({}), 256)", parts.join(", "))
    }

    /// SQL: every column as text (bytes as hex), in `columns` order.
    pub fn select_list(&self) -> String {
        let parts: Vec<String> = self
            .columns
            .iter()
            .map(|(name, col)| match col {
                Col::Int | Col::DateTime => format!("CAST({name} AS CHAR)"),
                Col::Text | Col::NullText => name.to_string(),
                Col::Bytes => format!("LOWER(HEX({name}))"),
            })
            .collect();
        parts.join(", ")
    }

    /// SQL: the start (epoch seconds) of the window holding the row.
    pub fn window_sql(&self, window_secs: i64) -> String {
        let column = self.window.map(|(c, _)| c).unwrap_or("window_start");
        format!("(TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', {column}) DIV {window_secs}) * {window_secs}")
    }

    /// SQL: rows whose time column lies in one of `ranges` (epoch seconds, `[from, to)`).
    pub fn range_sql(&self, ranges: &[(i64, i64)]) -> String {
        let column = self.window.map(|(c, _)| c).unwrap_or("window_start");
        if ranges.is_empty() {
            return "FALSE".to_string();
        }
        let parts: Vec<String> = ranges
            .iter()
            .map(|(from, to)| format!("({column} >= {} AND {column} < {})", datetime(*from), datetime(*to)))
            .collect();
        format!("({})", parts.join(" OR "))
    }
}

/// SQL: 1 when the row's keyspace id is outside `range` (the shard's), else 0.
pub fn misplaced_sql(range: &KeyRange) -> String {
    let mut inside = Vec::new();
    if !range.start.is_empty() {
        inside.push(format!("keyspace_id >= {}", hex_literal(&range.start)));
    }
    if !range.end.is_empty() {
        inside.push(format!("keyspace_id < {}", hex_literal(&range.end)));
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
mod tests {
    use super::*;

    #[test]
    fn row_encoding_is_length_prefixed_and_marks_null() {
        let sql = SLOW_QUERIES.row_hash_sql();
        assert!(sql.starts_with("SHA2(CONCAT(src_partition, ',', src_offset, ','"), "{sql}");
        assert!(sql.contains("LENGTH(proxy_id), ':', proxy_id"), "{sql}");
        assert!(sql.contains("IFNULL(CONCAT(LENGTH(error_text), ':', error_text), 'N')"), "{sql}");
        assert!(sql.ends_with(", 256)"));
    }

    #[test]
    fn misplacement_tests_the_shard_range() {
        let range = KeyRange::parse("40-80").expect("range");
        assert_eq!(misplaced_sql(&range), "(NOT (keyspace_id >= X'40' AND keyspace_id < X'80'))");
        assert_eq!(misplaced_sql(&KeyRange::parse("-40").expect("range")), "(NOT (keyspace_id < X'40'))");
        assert_eq!(misplaced_sql(&KeyRange::full()), "0");
    }

    #[test]
    fn ranges_and_windows() {
        assert_eq!(
            QUERY_STATS_MINUTE.range_sql(&[(0, 60)]),
            "((window_start >= '1970-01-01 00:00:00' AND window_start < '1970-01-01 00:01:00'))"
        );
        assert_eq!(SLOW_QUERIES.range_sql(&[]), "FALSE");
        assert!(SLOW_QUERIES.window_sql(10).contains("occurred_at) DIV 10) * 10"));
        assert_eq!(unhex("0aFF"), Some(vec![0x0a, 0xff]));
        assert_eq!(unhex("0"), None);
        assert_eq!(table("query_patterns").map(|t| t.key.len()), Some(2));
    }
}
