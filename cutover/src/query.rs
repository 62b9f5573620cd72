//! The reads an Insights page makes, as queries the router can send to
//! either cluster: their SQL, which shards they touch, how shard results
//! merge, and how two clusters' answers compare (for shadow reads).

use std::collections::BTreeMap;

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use mysql_async::prelude::Queryable;
use serde::Serialize;
use topics::LatencySketch;

/// Largest page any query returns.
pub const MAX_LIMIT: u32 = 1000;

/// Longest any API read may run on a shard before the server stops it, so an
/// API call can never load the shards the consumers write for long.
pub const STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `sql` (a `SELECT ...`) bounded by the server to `timeout`. MariaDB
/// (major version 10 and up) has `SET STATEMENT max_statement_time = <s> FOR`;
/// MySQL 8 has the optimizer hint `MAX_EXECUTION_TIME(<ms>)` right after
/// `SELECT`. Either way one statement, no extra round trip.
pub fn bounded(sql: &str, server_major: u16, timeout: std::time::Duration) -> String {
    if server_major >= 10 {
        return format!("SET STATEMENT max_statement_time = {:.3} FOR {sql}", timeout.as_secs_f64());
    }
    match sql.strip_prefix("SELECT ") {
        Some(rest) => format!("SELECT /*+ MAX_EXECUTION_TIME({}) */ {rest}", timeout.as_millis()),
        None => sql.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("cluster {cluster} shard {shard}: {source}")]
    Sql { cluster: String, shard: usize, source: mysql_async::Error },
    #[error("cluster {cluster}: stored latency sketch: {source}")]
    Sketch { cluster: String, source: topics::sketch::SketchError },
    #[error("invalid query: {0}")]
    Invalid(String),
}

/// `kind` as one of [`Query::KINDS`] (shadow counts read back), else "other".
pub(crate) fn kind_named(kind: &str) -> &'static str {
    Query::KINDS.into_iter().find(|k| *k == kind).unwrap_or("other")
}

/// Which stats table a query reads; window sizes come from the cluster file's `[time]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Minute,
    Hour,
}

impl Granularity {
    fn table(self) -> &'static str {
        match self {
            Granularity::Minute => "query_stats_minute",
            Granularity::Hour => "query_stats_hour",
        }
    }

    /// Window length in seconds on `cluster`.
    pub fn window_secs(self, cluster: &ClusterConfig) -> i64 {
        match self {
            Granularity::Minute => cluster.time.minute_secs(),
            Granularity::Hour => cluster.time.hour_secs(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopBy {
    TotalTime,
    Count,
}

/// A read. Time bounds are seconds since the epoch, `[from, to)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Query {
    /// Top patterns of one database over a time range.
    TopPatterns { database_id: u64, from: i64, to: i64, by: TopBy, limit: u32, granularity: Granularity },
    /// One pattern's windows, bucketed by `step` seconds (a multiple of the window).
    Series { database_id: u64, fingerprint: String, from: i64, to: i64, granularity: Granularity, step: Option<i64> },
    /// Slow queries of one database, newest first.
    SlowQueries { database_id: u64, from: i64, to: i64, limit: u32 },
    /// Patterns whose SQL contains `needle` (case-insensitive), in one database or across all.
    SearchPatterns { needle: String, database_id: Option<u64>, limit: u32 },
    /// SQL text of some patterns of one database (to label top patterns).
    PatternTexts { database_id: u64, fingerprints: Vec<String> },
}

impl Query {
    /// The table the query reads: the router serves it from that table's group.
    pub fn table(&self) -> &'static str {
        match self {
            Query::TopPatterns { granularity, .. } | Query::Series { granularity, .. } => granularity.table(),
            Query::SlowQueries { .. } => "slow_queries",
            Query::SearchPatterns { .. } | Query::PatternTexts { .. } => "query_patterns",
        }
    }

    /// Short name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Query::TopPatterns { .. } => "top_patterns",
            Query::Series { .. } => "series",
            Query::SlowQueries { .. } => "slow_queries",
            Query::SearchPatterns { .. } => "search_patterns",
            Query::PatternTexts { .. } => "pattern_texts",
        }
    }

    /// Every [`Query::kind`].
    pub const KINDS: [&'static str; 5] = ["top_patterns", "series", "slow_queries", "search_patterns", "pattern_texts"];

    /// Checks bounds before any SQL runs.
    pub fn validate(&self, cluster: &ClusterConfig) -> Result<(), QueryError> {
        let invalid = |s: &str| Err(QueryError::Invalid(s.to_owned()));
        match self {
            Query::TopPatterns { from, to, limit, .. } | Query::SlowQueries { from, to, limit, .. } => {
                if from >= to {
                    return invalid("from must be before to");
                }
                if *limit == 0 || *limit > MAX_LIMIT {
                    return invalid("limit must be 1..=1000");
                }
            }
            Query::Series { from, to, granularity, step, fingerprint, .. } => {
                if from >= to {
                    return invalid("from must be before to");
                }
                if fingerprint.is_empty() || fingerprint.len() > 64 {
                    return invalid("fingerprint must be 1..=64 characters");
                }
                let window = granularity.window_secs(cluster);
                if let Some(step) = step {
                    if *step <= 0 || step % window != 0 {
                        return Err(QueryError::Invalid(format!("step must be a positive multiple of {window}s")));
                    }
                }
                if (to - from) / step.unwrap_or(window).max(1) > 10_000 {
                    return invalid("more than 10000 points: use a larger step");
                }
            }
            Query::SearchPatterns { needle, limit, .. } => {
                if needle.is_empty() || needle.len() > 256 {
                    return invalid("search text must be 1..=256 characters");
                }
                if *limit == 0 || *limit > MAX_LIMIT {
                    return invalid("limit must be 1..=1000");
                }
            }
            Query::PatternTexts { fingerprints, .. } => {
                if fingerprints.len() > MAX_LIMIT as usize {
                    return invalid("too many fingerprints");
                }
            }
        }
        Ok(())
    }

    /// The event-time span `[start_ms, end_ms)` the answer depends on, with
    /// windows widened to whole windows; `None` for a query without one.
    pub fn span_ms(&self, cluster: &ClusterConfig) -> Option<(i64, i64)> {
        let whole = |from: i64, to: i64, window: i64| {
            let start = from.div_euclid(window) * window;
            let end = (to + window - 1).div_euclid(window) * window;
            (start * 1000, end * 1000)
        };
        match self {
            Query::TopPatterns { from, to, granularity, .. } | Query::Series { from, to, granularity, .. } => {
                Some(whole(*from, *to, granularity.window_secs(cluster)))
            }
            Query::SlowQueries { from, to, .. } => Some((from * 1000, to * 1000)),
            Query::SearchPatterns { .. } | Query::PatternTexts { .. } => None,
        }
    }
}

/// One row of a top-patterns answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopPattern {
    pub fingerprint: String,
    pub query_count: u64,
    pub total_duration_us: u64,
    pub max_duration_us: u64,
    pub rows_read: u64,
    pub rows_returned: u64,
    pub error_count: u64,
    /// Windows the pattern appears in.
    pub windows: u64,
    /// Filled by the API from the `query_patterns` group; not part of shadow comparison.
    pub normalized_sql: Option<String>,
}

/// One bucket of a pattern's series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoint {
    pub start: i64,
    pub end: i64,
    pub query_count: u64,
    pub total_duration_us: u64,
    pub max_duration_us: u64,
    pub error_count: u64,
    /// Quantiles in milliseconds from the bucket's merged sketches.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub sketch_count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub window_secs: i64,
    pub step_secs: i64,
    pub points: Vec<SeriesPoint>,
    /// Quantiles over the whole range (every sketch merged).
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlowQueryRow {
    pub occurred_at_us: i64,
    pub src_partition: i32,
    pub src_offset: i64,
    pub fingerprint: String,
    pub proxy_id: String,
    pub duration_us: u64,
    pub rows_read: u64,
    pub rows_returned: u64,
    pub error_text: Option<String>,
    pub query_text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatternHit {
    pub database_id: u64,
    pub fingerprint: String,
    pub normalized_sql: String,
    pub tables_used: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// A query's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    TopPatterns(Vec<TopPattern>),
    Series(Series),
    SlowQueries(Vec<SlowQueryRow>),
    Patterns(Vec<PatternHit>),
    Texts(BTreeMap<String, String>),
}

/// Runs `query` on `cluster`: one shard for a single database, every shard
/// (concurrently, merged) for a query across databases.
pub async fn execute(cluster: &ClusterConfig, pools: &ShardPools, query: &Query) -> Result<Answer, QueryError> {
    query.validate(cluster)?;
    let on = On { cluster, pools };
    match query {
        Query::TopPatterns { database_id, from, to, by, limit, granularity } => {
            top_patterns(on, *database_id, (*from, *to), *by, *limit, *granularity).await
        }
        Query::Series { database_id, fingerprint, from, to, granularity, step } => {
            pattern_series(on, *database_id, fingerprint, (*from, *to), *granularity, *step).await
        }
        Query::SlowQueries { database_id, from, to, limit } => {
            slow_queries(on, *database_id, (*from, *to), *limit).await
        }
        Query::SearchPatterns { needle, database_id, limit } => search_patterns(on, needle, *database_id, *limit).await,
        Query::PatternTexts { database_id, fingerprints } => pattern_texts(on, *database_id, fingerprints).await,
    }
}

/// The cluster a query runs on, and its shards' pools.
#[derive(Clone, Copy)]
struct On<'a> {
    cluster: &'a ClusterConfig,
    pools: &'a ShardPools,
}

impl On<'_> {
    fn shard_of(self, database_id: u64) -> usize {
        self.cluster.shard_index_for_database_id(database_id)
    }

    /// Runs `sql` on one shard; errors name the cluster and shard.
    async fn run<T, P>(self, shard: usize, sql: &str, params: P) -> Result<Vec<T>, QueryError>
    where
        T: mysql_async::prelude::FromRow + Send + 'static,
        P: Into<mysql_async::Params> + Send,
    {
        let err = |source| QueryError::Sql { cluster: self.cluster.name.clone(), shard, source };
        let mut conn = self.pools.shard(shard).get_conn().await.map_err(err)?;
        let sql = bounded(sql, conn.server_version().0, STATEMENT_TIMEOUT);
        conn.exec(sql, params).await.map_err(err)
    }
}

async fn top_patterns(
    on: On<'_>,
    database_id: u64,
    (from, to): (i64, i64),
    by: TopBy,
    limit: u32,
    granularity: Granularity,
) -> Result<Answer, QueryError> {
    let order = match by {
        TopBy::TotalTime => 3,
        TopBy::Count => 2,
    };
    let sql = format!(
        "SELECT fingerprint, CAST(SUM(query_count) AS UNSIGNED), CAST(SUM(total_duration_us) AS UNSIGNED), \
         MAX(max_duration_us), CAST(SUM(rows_read) AS UNSIGNED), CAST(SUM(rows_returned) AS UNSIGNED), \
         CAST(SUM(error_count) AS UNSIGNED), COUNT(*) FROM {} WHERE database_id = ? \
         AND window_start >= FROM_UNIXTIME(?) AND window_start < FROM_UNIXTIME(?) \
         GROUP BY fingerprint ORDER BY {order} DESC, fingerprint LIMIT ?",
        granularity.table()
    );
    type Row = (String, u64, u64, u64, u64, u64, u64, u64);
    let rows: Vec<Row> = on.run(on.shard_of(database_id), &sql, (database_id, from, to, limit)).await?;
    Ok(Answer::TopPatterns(
        rows.into_iter()
            .map(|(fingerprint, count, total, max, read, returned, errors, windows)| TopPattern {
                fingerprint,
                query_count: count,
                total_duration_us: total,
                max_duration_us: max,
                rows_read: read,
                rows_returned: returned,
                error_count: errors,
                windows,
                normalized_sql: None,
            })
            .collect(),
    ))
}

async fn pattern_series(
    on: On<'_>,
    database_id: u64,
    fingerprint: &str,
    (from, to): (i64, i64),
    granularity: Granularity,
    step: Option<i64>,
) -> Result<Answer, QueryError> {
    let sql = format!(
        "SELECT CAST(UNIX_TIMESTAMP(window_start) AS SIGNED), query_count, total_duration_us, max_duration_us, \
         error_count, latency_sketch FROM {} WHERE database_id = ? AND fingerprint = ? \
         AND window_start >= FROM_UNIXTIME(?) AND window_start < FROM_UNIXTIME(?) ORDER BY window_start",
        granularity.table()
    );
    let rows: Vec<SeriesRow> = on.run(on.shard_of(database_id), &sql, (database_id, fingerprint, from, to)).await?;
    let window = granularity.window_secs(on.cluster);
    series(rows, window, step.unwrap_or(window))
        .map_err(|source| QueryError::Sketch { cluster: on.cluster.name.clone(), source })
}

async fn slow_queries(on: On<'_>, database_id: u64, (from, to): (i64, i64), limit: u32) -> Result<Answer, QueryError> {
    let sql = "SELECT CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', occurred_at) AS SIGNED), \
               src_partition, src_offset, fingerprint, proxy_id, duration_us, rows_read, rows_returned, \
               error_text, query_text FROM slow_queries WHERE database_id = ? \
               AND occurred_at >= FROM_UNIXTIME(?) AND occurred_at < FROM_UNIXTIME(?) \
               ORDER BY occurred_at DESC, src_partition, src_offset LIMIT ?";
    type Row = (i64, i32, i64, String, String, u64, u64, u64, Option<String>, String);
    let rows: Vec<Row> = on.run(on.shard_of(database_id), sql, (database_id, from, to, limit)).await?;
    Ok(Answer::SlowQueries(
        rows.into_iter()
            .map(|(at, partition, offset, fingerprint, proxy_id, duration, read, returned, error, text)| SlowQueryRow {
                occurred_at_us: at,
                src_partition: partition,
                src_offset: offset,
                fingerprint,
                proxy_id,
                duration_us: duration,
                rows_read: read,
                rows_returned: returned,
                error_text: error,
                query_text: text,
            })
            .collect(),
    ))
}

async fn search_patterns(on: On<'_>, needle: &str, database_id: Option<u64>, limit: u32) -> Result<Answer, QueryError> {
    let base = "SELECT database_id, fingerprint, normalized_sql, tables_used, \
                CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', first_seen) DIV 1000 AS SIGNED), \
                CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', last_seen) DIV 1000 AS SIGNED) \
                FROM query_patterns WHERE LOCATE(LOWER(?), LOWER(normalized_sql)) > 0";
    type Row = (u64, String, String, String, i64, i64);
    let mut hits: Vec<Row> = match database_id {
        Some(id) => {
            let sql = format!("{base} AND database_id = ? ORDER BY fingerprint LIMIT ?");
            on.run(on.shard_of(id), &sql, (needle, id, limit)).await?
        }
        None => {
            // Across databases: every shard, each sorted and limited, merged here.
            let sql = format!("{base} ORDER BY database_id, fingerprint LIMIT ?");
            let shards = (0..on.pools.len()).map(|shard| on.run::<Row, _>(shard, &sql, (needle, limit)));
            let mut all = Vec::new();
            for rows in futures::future::join_all(shards).await {
                all.extend(rows?);
            }
            all.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            all
        }
    };
    hits.truncate(limit as usize);
    Ok(Answer::Patterns(
        hits.into_iter()
            .map(|(database_id, fingerprint, normalized_sql, tables_used, first, last)| PatternHit {
                database_id,
                fingerprint,
                normalized_sql,
                tables_used,
                first_seen_ms: first,
                last_seen_ms: last,
            })
            .collect(),
    ))
}

async fn pattern_texts(on: On<'_>, database_id: u64, fingerprints: &[String]) -> Result<Answer, QueryError> {
    if fingerprints.is_empty() {
        return Ok(Answer::Texts(BTreeMap::new()));
    }
    let marks = vec!["?"; fingerprints.len()].join(", ");
    let sql = format!(
        "SELECT fingerprint, normalized_sql FROM query_patterns WHERE database_id = ? AND fingerprint IN ({marks})"
    );
    let mut params: Vec<mysql_async::Value> = vec![database_id.into()];
    params.extend(fingerprints.iter().map(|f| f.as_str().into()));
    let rows: Vec<(String, String)> = on.run(on.shard_of(database_id), &sql, params).await?;
    Ok(Answer::Texts(rows.into_iter().collect()))
}

type SeriesRow = (i64, u64, u64, u64, u64, Vec<u8>);

/// Buckets window rows by `step` and merges their sketches.
fn series(rows: Vec<SeriesRow>, window: i64, step: i64) -> Result<Answer, topics::sketch::SketchError> {
    let mut buckets: BTreeMap<i64, (SeriesPoint, LatencySketch)> = BTreeMap::new();
    let mut overall = LatencySketch::new();
    for (start, count, total, max, errors, sketch_bytes) in rows {
        let sketch = LatencySketch::decode(&sketch_bytes)?;
        overall.merge(&sketch)?;
        let bucket = start.div_euclid(step) * step;
        let (point, merged) = buckets.entry(bucket).or_insert_with(|| {
            let point = SeriesPoint {
                start: bucket,
                end: bucket + step,
                query_count: 0,
                total_duration_us: 0,
                max_duration_us: 0,
                error_count: 0,
                p50_ms: None,
                p95_ms: None,
                p99_ms: None,
                sketch_count: 0,
            };
            (point, LatencySketch::new())
        });
        point.query_count += count;
        point.total_duration_us += total;
        point.max_duration_us = point.max_duration_us.max(max);
        point.error_count += errors;
        merged.merge(&sketch)?;
    }
    let points = buckets
        .into_values()
        .map(|(mut point, sketch)| {
            point.p50_ms = sketch.quantile(0.5);
            point.p95_ms = sketch.quantile(0.95);
            point.p99_ms = sketch.quantile(0.99);
            point.sketch_count = sketch.count();
            point
        })
        .collect();
    Ok(Answer::Series(Series {
        window_secs: window,
        step_secs: step,
        points,
        p50_ms: overall.quantile(0.5),
        p95_ms: overall.quantile(0.95),
        p99_ms: overall.quantile(0.99),
    }))
}

/// Relative tolerance for quantiles read from two clusters' sketches: each
/// is within 1% of the truth, so two answers are within about 2% of each other.
pub const QUANTILE_TOLERANCE: f64 = 0.02;

/// Compares a primary and a shadow answer; `Err` describes the first
/// difference. `settled_through_ms` bounds what is compared for queries
/// without a time span (pattern rows first seen after it may exist on one
/// cluster only). Lists are compared as sets where the query's order is not
/// part of its meaning (patterns are sorted by key, which both sides share).
pub fn compare(primary: &Answer, shadow: &Answer, settled_through_ms: i64) -> Result<(), String> {
    match (primary, shadow) {
        (Answer::TopPatterns(a), Answer::TopPatterns(b)) => compare_lists(a, b, |p| p.fingerprint.clone()),
        (Answer::SlowQueries(a), Answer::SlowQueries(b)) => {
            compare_lists(a, b, |s| format!("{}/{}", s.src_partition, s.src_offset))
        }
        (Answer::Series(a), Answer::Series(b)) => compare_series(a, b),
        (Answer::Patterns(a), Answer::Patterns(b)) => {
            let settled = |hits: &[PatternHit]| -> Vec<PatternHit> {
                hits.iter()
                    .filter(|h| h.first_seen_ms <= settled_through_ms)
                    // last_seen moves with each cluster's progress: not compared.
                    .map(|h| PatternHit { last_seen_ms: 0, ..h.clone() })
                    .collect()
            };
            compare_lists(&settled(a), &settled(b), |h| format!("{}/{}", h.database_id, h.fingerprint))
        }
        (Answer::Texts(a), Answer::Texts(b)) => {
            if a == b {
                Ok(())
            } else {
                Err("pattern texts differ".to_owned())
            }
        }
        _ => Err("answers of different kinds".to_owned()),
    }
}

fn compare_lists<T: PartialEq + std::fmt::Debug>(a: &[T], b: &[T], key: impl Fn(&T) -> String) -> Result<(), String> {
    let index = |rows: &[T]| -> BTreeMap<String, usize> { rows.iter().enumerate().map(|(i, r)| (key(r), i)).collect() };
    let (ia, ib) = (index(a), index(b));
    for (k, i) in &ia {
        match ib.get(k) {
            None => return Err(format!("{k} only on the primary cluster")),
            Some(j) if a[*i] != b[*j] => return Err(format!("{k}: primary {:?} != shadow {:?}", a[*i], b[*j])),
            Some(_) => {}
        }
    }
    if let Some(k) = ib.keys().find(|k| !ia.contains_key(*k)) {
        return Err(format!("{k} only on the shadow cluster"));
    }
    if a.len() != b.len() {
        return Err(format!("{} rows on the primary, {} on the shadow (duplicate keys)", a.len(), b.len()));
    }
    Ok(())
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => (x - y).abs() <= QUANTILE_TOLERANCE * x.abs().max(y.abs()),
        _ => false,
    }
}

fn compare_series(a: &Series, b: &Series) -> Result<(), String> {
    if a.points.len() != b.points.len() {
        return Err(format!("{} points on the primary, {} on the shadow", a.points.len(), b.points.len()));
    }
    for (p, q) in a.points.iter().zip(&b.points) {
        let exact = (p.start, p.query_count, p.total_duration_us, p.max_duration_us, p.error_count, p.sketch_count)
            == (q.start, q.query_count, q.total_duration_us, q.max_duration_us, q.error_count, q.sketch_count);
        if !exact {
            return Err(format!("window {}: primary {p:?} != shadow {q:?}", p.start));
        }
        if !(close(p.p50_ms, q.p50_ms) && close(p.p95_ms, q.p95_ms) && close(p.p99_ms, q.p99_ms)) {
            return Err(format!("window {}: quantiles beyond {QUANTILE_TOLERANCE}: {p:?} vs {q:?}", p.start));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
