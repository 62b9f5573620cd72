//! The ground truth: what a cluster must hold after consuming what was produced.
//!
//! It is computed independently of the consumer (no shared merge code beyond
//! the sketch library), from the events as generated, in production order.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use topics::{LatencySketch, QueryStats, SlowQuery};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsTruth {
    pub database_id: u64,
    pub fingerprint: String,
    pub window_start: i64,
    pub query_count: u64,
    pub total_duration_us: u64,
    pub max_duration_us: u64,
    pub rows_read: u64,
    pub rows_returned: u64,
    pub error_count: u64,
    /// Hex of the merged sketch's reference encoding.
    pub sketch_hex: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternTruth {
    pub database_id: u64,
    pub fingerprint: String,
    pub normalized_sql: String,
    pub tables_json: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlowTruth {
    pub partition: i32,
    pub offset: i64,
    pub database_id: u64,
    pub fingerprint: String,
    pub proxy_id: String,
    pub occurred_at_us: i64,
    pub duration_us: u64,
    pub rows_read: u64,
    pub rows_returned: u64,
    pub error_text: Option<String>,
    pub query_text: String,
    pub tables_json: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub messages: u64,
    pub minute: Vec<StatsTruth>,
    pub hour: Vec<StatsTruth>,
    pub patterns: Vec<PatternTruth>,
    pub slow: Vec<SlowTruth>,
}

#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("ground truth file {0}: {1}")]
    Io(String, std::io::Error),
    #[error("ground truth file {0}: {1}")]
    Json(String, serde_json::Error),
}

impl Truth {
    /// The truth of a cluster fed by two producer runs. Their time-series
    /// rows must not share keys (different windows): merging a sketch needs
    /// the offset order, which two separate runs do not define.
    pub fn merge(mut self, other: Truth) -> Result<Truth, String> {
        for (mine, theirs, table) in [(&mut self.minute, other.minute, "minute"), (&mut self.hour, other.hour, "hour")]
        {
            let keys: std::collections::HashSet<(u64, String, i64)> =
                mine.iter().map(|s| (s.database_id, s.fingerprint.clone(), s.window_start)).collect();
            if let Some(s) =
                theirs.iter().find(|s| keys.contains(&(s.database_id, s.fingerprint.clone(), s.window_start)))
            {
                return Err(format!(
                    "both runs wrote {table} window {} of {}/{}",
                    s.window_start, s.database_id, s.fingerprint
                ));
            }
            mine.extend(theirs);
            mine.sort_by(|a, b| {
                (a.database_id, &a.fingerprint, a.window_start).cmp(&(b.database_id, &b.fingerprint, b.window_start))
            });
        }
        let mut patterns: BTreeMap<(u64, String), PatternTruth> =
            self.patterns.into_iter().map(|p| ((p.database_id, p.fingerprint.clone()), p)).collect();
        for p in other.patterns {
            patterns
                .entry((p.database_id, p.fingerprint.clone()))
                .and_modify(|e| {
                    e.first_seen_ms = e.first_seen_ms.min(p.first_seen_ms);
                    e.last_seen_ms = e.last_seen_ms.max(p.last_seen_ms);
                })
                .or_insert(p);
        }
        self.patterns = patterns.into_values().collect();
        self.slow.extend(other.slow);
        self.slow.sort_by_key(|s| (s.partition, s.offset));
        self.messages += other.messages;
        Ok(self)
    }

    /// Only the rows of windows starting at or after `from_secs` (what a
    /// cluster keeps once retention dropped everything older); patterns have
    /// no retention and are all kept.
    pub fn retained_from(mut self, from_secs: i64) -> Truth {
        self.minute.retain(|s| s.window_start >= from_secs);
        self.hour.retain(|s| s.window_start >= from_secs);
        self.slow.retain(|s| s.occurred_at_us >= from_secs.saturating_mul(1_000_000));
        self
    }

    pub fn save(&self, path: &Path) -> Result<(), TruthError> {
        let text = serde_json::to_vec(self).map_err(|e| TruthError::Json(path.display().to_string(), e))?;
        std::fs::write(path, text).map_err(|e| TruthError::Io(path.display().to_string(), e))
    }

    pub fn load(path: &Path) -> Result<Self, TruthError> {
        let text = std::fs::read(path).map_err(|e| TruthError::Io(path.display().to_string(), e))?;
        serde_json::from_slice(&text).map_err(|e| TruthError::Json(path.display().to_string(), e))
    }
}

struct Acc {
    query_count: u64,
    total_duration_us: u64,
    max_duration_us: u64,
    rows_read: u64,
    rows_returned: u64,
    error_count: u64,
    sketch: LatencySketch,
}

/// Accumulates events in production order.
pub struct TruthBuilder {
    minute_secs: i64,
    hour_secs: i64,
    messages: u64,
    minute: BTreeMap<(u64, String, i64), Acc>,
    hour: BTreeMap<(u64, String, i64), Acc>,
    patterns: BTreeMap<(u64, String), PatternTruth>,
    slow: Vec<SlowTruth>,
}

/// Production windows: one minute, one hour.
impl Default for TruthBuilder {
    fn default() -> Self {
        Self::new(60, 3600)
    }
}

impl TruthBuilder {
    /// Folding into `minute_secs` / `hour_secs` windows (the clusters' `[time]`).
    pub fn new(minute_secs: i64, hour_secs: i64) -> Self {
        Self {
            minute_secs,
            hour_secs,
            messages: 0,
            minute: BTreeMap::new(),
            hour: BTreeMap::new(),
            patterns: BTreeMap::new(),
            slow: Vec::new(),
        }
    }

    pub fn add_stats(&mut self, q: &QueryStats) {
        self.messages += 1;
        let db = q.database_id as u64;
        // Decoded from the wire bytes, exactly as a consumer sees it.
        let Ok(sketch) = LatencySketch::decode(&q.latency_sketch) else { return };
        for (map, size) in [(&mut self.minute, self.minute_secs), (&mut self.hour, self.hour_secs)] {
            let window = (q.interval_start / 1000).div_euclid(size) * size;
            match map.get_mut(&(db, q.fingerprint.clone(), window)) {
                Some(acc) => {
                    acc.query_count += q.query_count as u64;
                    acc.total_duration_us += q.total_duration_us as u64;
                    acc.max_duration_us = acc.max_duration_us.max(q.max_duration_us as u64);
                    acc.rows_read += q.rows_read as u64;
                    acc.rows_returned += q.rows_returned as u64;
                    acc.error_count += q.error_count as u64;
                    let _ = acc.sketch.merge(&sketch);
                }
                None => {
                    map.insert(
                        (db, q.fingerprint.clone(), window),
                        Acc {
                            query_count: q.query_count as u64,
                            total_duration_us: q.total_duration_us as u64,
                            max_duration_us: q.max_duration_us as u64,
                            rows_read: q.rows_read as u64,
                            rows_returned: q.rows_returned as u64,
                            error_count: q.error_count as u64,
                            sketch: sketch.clone(),
                        },
                    );
                }
            }
        }
        let p = self.patterns.entry((db, q.fingerprint.clone())).or_insert_with(|| PatternTruth {
            database_id: db,
            fingerprint: q.fingerprint.clone(),
            normalized_sql: q.normalized_sql.clone(),
            tables_json: serde_json::to_string(&q.tables).unwrap_or_default(),
            first_seen_ms: q.interval_start,
            last_seen_ms: q.interval_start,
        });
        p.first_seen_ms = p.first_seen_ms.min(q.interval_start);
        p.last_seen_ms = p.last_seen_ms.max(q.interval_start);
    }

    /// A slow query, once the broker told us where it landed.
    pub fn add_slow(&mut self, s: &SlowQuery, partition: i32, offset: i64) {
        self.messages += 1;
        self.slow.push(SlowTruth {
            partition,
            offset,
            database_id: s.database_id as u64,
            fingerprint: s.fingerprint.clone(),
            proxy_id: s.proxy_id.clone(),
            occurred_at_us: s.occurred_at,
            duration_us: s.duration_us as u64,
            rows_read: s.rows_read as u64,
            rows_returned: s.rows_returned as u64,
            error_text: s.error.clone(),
            query_text: s.query_text.clone(),
            tables_json: serde_json::to_string(&s.tables).unwrap_or_default(),
        });
    }

    pub fn build(self) -> Truth {
        let stats = |map: BTreeMap<(u64, String, i64), Acc>| -> Vec<StatsTruth> {
            map.into_iter()
                .map(|((database_id, fingerprint, window_start), a)| StatsTruth {
                    database_id,
                    fingerprint,
                    window_start,
                    query_count: a.query_count,
                    total_duration_us: a.total_duration_us,
                    max_duration_us: a.max_duration_us,
                    rows_read: a.rows_read,
                    rows_returned: a.rows_returned,
                    error_count: a.error_count,
                    sketch_hex: to_hex(&a.sketch.encode()),
                })
                .collect()
        };
        let mut slow = self.slow;
        slow.sort_by_key(|s| (s.partition, s.offset));
        Truth {
            messages: self.messages,
            minute: stats(self.minute),
            hour: stats(self.hour),
            patterns: self.patterns.into_values().collect(),
            slow,
        }
    }
}

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [char::from(DIGITS[usize::from(b >> 4)]), char::from(DIGITS[usize::from(b & 0x0f)])])
        .collect()
}
