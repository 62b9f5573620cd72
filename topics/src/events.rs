//! Rust mirrors of the Avro records in `schemas/`.

use serde::{Deserialize, Serialize};

/// One 15-second aggregate of one query pattern from one proxy (`query-stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryStats {
    pub database_id: i64,
    pub fingerprint: String,
    pub normalized_sql: String,
    pub tables: Vec<String>,
    pub proxy_id: String,
    /// Milliseconds since the Unix epoch, UTC.
    pub interval_start: i64,
    pub interval_seconds: i32,
    pub query_count: i64,
    pub total_duration_us: i64,
    pub max_duration_us: i64,
    pub rows_read: i64,
    pub rows_returned: i64,
    pub error_count: i64,
    /// Reference DDSketch encoding; see [`crate::LatencySketch`].
    // apache-avro maps a plain Vec<u8> to an array of ints, not to Avro bytes.
    #[serde(with = "apache_avro::serde::bytes")]
    pub latency_sketch: Vec<u8>,
}

/// One slow query (`slow-queries`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlowQuery {
    pub database_id: i64,
    pub fingerprint: String,
    pub proxy_id: String,
    /// Microseconds since the Unix epoch, UTC.
    pub occurred_at: i64,
    pub duration_us: i64,
    pub rows_read: i64,
    pub rows_returned: i64,
    pub error: Option<String>,
    pub query_text: String,
    pub tables: Vec<String>,
}

/// A decoded message of either topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    QueryStats(QueryStats),
    SlowQuery(SlowQuery),
}

impl Event {
    pub fn database_id(&self) -> i64 {
        match self {
            Event::QueryStats(q) => q.database_id,
            Event::SlowQuery(s) => s.database_id,
        }
    }

    pub fn fingerprint(&self) -> &str {
        match self {
            Event::QueryStats(q) => &q.fingerprint,
            Event::SlowQuery(s) => &s.fingerprint,
        }
    }
}
