//! The rows a batch writes, and the merge rule of each table.
//!
//! Merges are folded per key in offset order starting from the stored row, so
//! the result never depends on where batches were cut: integers add and
//! compare exactly, and the sketch (whose summary sum is a float) sees the
//! same sequence of merges on every cluster.

use topics::{LatencySketch, QueryStats};

/// Primary key of a time-series row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatsKey {
    pub database_id: u64,
    pub fingerprint: String,
    /// Window start, seconds since the epoch (UTC), aligned to the window size.
    pub window_start: i64,
}

/// One `query_stats_minute` / `query_stats_hour` row.
#[derive(Debug, Clone)]
pub struct StatsRow {
    pub keyspace_id: [u8; 8],
    pub query_count: u64,
    pub total_duration_us: u64,
    pub max_duration_us: u64,
    pub rows_read: u64,
    pub rows_returned: u64,
    pub error_count: u64,
    pub sketch: LatencySketch,
}

impl StatsRow {
    pub fn from_event(keyspace_id: [u8; 8], event: &QueryStats, sketch: LatencySketch) -> Self {
        Self {
            keyspace_id,
            query_count: non_negative(event.query_count),
            total_duration_us: non_negative(event.total_duration_us),
            max_duration_us: non_negative(event.max_duration_us),
            rows_read: non_negative(event.rows_read),
            rows_returned: non_negative(event.rows_returned),
            error_count: non_negative(event.error_count),
            sketch,
        }
    }

    /// A row with nothing in it (what a key without contributions folds to).
    pub fn empty() -> Self {
        Self {
            keyspace_id: [0; 8],
            query_count: 0,
            total_duration_us: 0,
            max_duration_us: 0,
            rows_read: 0,
            rows_returned: 0,
            error_count: 0,
            sketch: LatencySketch::new(),
        }
    }

    /// The table's merge rule: sums, max, sketch merge.
    pub fn merge(&mut self, other: &StatsRow) {
        self.query_count = self.query_count.saturating_add(other.query_count);
        self.total_duration_us = self.total_duration_us.saturating_add(other.total_duration_us);
        self.max_duration_us = self.max_duration_us.max(other.max_duration_us);
        self.rows_read = self.rows_read.saturating_add(other.rows_read);
        self.rows_returned = self.rows_returned.saturating_add(other.rows_returned);
        self.error_count = self.error_count.saturating_add(other.error_count);
        // Both sketches passed the codec's accuracy check, so they always merge.
        let _ = self.sketch.merge(&other.sketch);
    }
}

/// One `query_patterns` contribution; merged with LEAST/GREATEST in SQL so
/// the copier's row images and the consumer's commute.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternRow {
    pub keyspace_id: [u8; 8],
    pub normalized_sql: String,
    /// JSON array of table names.
    pub tables_json: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

impl PatternRow {
    /// first_seen = min, last_seen = max; the text of the earliest sighting
    /// wins, ties broken by the text itself, so any merge order gives one result.
    pub fn merge(&mut self, other: &PatternRow) {
        let mine = (self.first_seen_ms, &self.normalized_sql, &self.tables_json);
        let theirs = (other.first_seen_ms, &other.normalized_sql, &other.tables_json);
        if theirs < mine {
            self.normalized_sql.clone_from(&other.normalized_sql);
            self.tables_json.clone_from(&other.tables_json);
        }
        self.first_seen_ms = self.first_seen_ms.min(other.first_seen_ms);
        self.last_seen_ms = self.last_seen_ms.max(other.last_seen_ms);
    }
}

/// One `slow_queries` row; its identity is where it sat in the topic.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowRow {
    pub src_partition: i32,
    pub src_offset: i64,
    pub occurred_at_us: i64,
    pub database_id: u64,
    pub fingerprint: String,
    pub keyspace_id: [u8; 8],
    pub proxy_id: String,
    pub duration_us: u64,
    pub rows_read: u64,
    pub rows_returned: u64,
    pub error_text: Option<String>,
    pub query_text: String,
    pub tables_json: String,
}

/// What a `TEXT` column (`tables_used`, `error_text`) holds, in bytes.
pub const TEXT_COLUMN_BYTES: usize = 65_535;

/// A value no column of the store can hold: the message is a dead letter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {bytes} bytes as stored, more than the column's {max}")]
pub struct TooLong {
    pub field: &'static str,
    pub bytes: usize,
    pub max: usize,
}

/// The JSON array stored in `tables_used`, measured as stored: quotes,
/// backslashes and control characters are escaped, so a list can pass a
/// check on its raw length and still not fit (MariaDB error 1406).
pub fn tables_json(tables: &[String]) -> Result<String, TooLong> {
    let json = serde_json::to_string(tables).unwrap_or_else(|_| "[]".to_string());
    fits("tables", json.len(), TEXT_COLUMN_BYTES)?;
    Ok(json)
}

/// `bytes` (the UTF-8 length the column stores) against the column's limit.
pub fn fits(field: &'static str, bytes: usize, max: usize) -> Result<(), TooLong> {
    if bytes > max {
        return Err(TooLong { field, bytes, max });
    }
    Ok(())
}

/// The codec rejects negative counters; this only keeps the types honest.
fn non_negative(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(count: u64, max: u64, latencies: &[f64]) -> StatsRow {
        let mut sketch = LatencySketch::new();
        for l in latencies {
            sketch.add_ms(*l);
        }
        StatsRow {
            keyspace_id: [0; 8],
            query_count: count,
            total_duration_us: count * 10,
            max_duration_us: max,
            rows_read: 1,
            rows_returned: 2,
            error_count: 0,
            sketch,
        }
    }

    #[test]
    fn stats_merge_sums_maxes_and_merges_sketches() {
        let mut a = row(3, 50, &[1.0, 2.0, 3.0]);
        a.merge(&row(2, 70, &[10.0, 20.0]));
        assert_eq!(a.query_count, 5);
        assert_eq!(a.total_duration_us, 50);
        assert_eq!(a.max_duration_us, 70);
        assert_eq!(a.rows_read, 2);
        assert_eq!(a.rows_returned, 4);
        assert_eq!(a.sketch.count(), 5);
    }

    #[test]
    fn tables_are_measured_escaped() {
        // 20,000 bytes raw, but every quote and backslash doubles as JSON.
        let tables = ["\"\\".repeat(10_000), "t".repeat(10_000)];
        assert!(tables.iter().map(String::len).sum::<usize>() < 60_000);
        let too_long = tables_json(&[tables[0].repeat(2)]).expect_err("80,000 bytes escaped");
        assert_eq!((too_long.field, too_long.max), ("tables", TEXT_COLUMN_BYTES));
        assert_eq!(too_long.bytes, serde_json::to_string(&[tables[0].repeat(2)]).expect("json").len());
        let control = vec!["\u{1}".repeat(11_000)];
        assert!(tables_json(&control).is_err(), "control characters are six bytes each");
        assert_eq!(tables_json(&["a".to_string()]).expect("fits"), r#"["a"]"#);
    }

    #[test]
    fn pattern_merge_keeps_min_first_and_max_last() {
        let base = PatternRow {
            keyspace_id: [0; 8],
            normalized_sql: "select 1".into(),
            tables_json: "[]".into(),
            first_seen_ms: 100,
            last_seen_ms: 200,
        };
        let mut a = base.clone();
        a.merge(&PatternRow { first_seen_ms: 50, last_seen_ms: 150, ..base.clone() });
        assert_eq!((a.first_seen_ms, a.last_seen_ms), (50, 200));
    }
}
