//! Compares a cluster with a ground truth and lists every difference.
//!
//! Reads every shard in full: this is a test and rehearsal tool for the
//! sizes a load test produces; the verify crate's comparators are the ones
//! that scale. It also checks placement: each row must sit on the shard whose
//! key range holds its keyspace id.

use std::collections::BTreeMap;

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use mysql_async::prelude::Queryable;
use mysql_async::Row;
use pipeline::{Pipeline, Table, TableKind, Window};
use topics::LatencySketch;

use crate::truth::{to_hex, PatternTruth, SlowTruth, StatsTruth, Truth};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("shard {shard}: {source}")]
    Shard { shard: String, source: mysql_async::Error },
}

#[derive(Debug, Default)]
pub struct CheckReport {
    pub rows_compared: u64,
    /// Every difference, one line each, with the key and both values.
    pub differences: Vec<String>,
}

impl CheckReport {
    pub fn is_equal(&self) -> bool {
        self.differences.is_empty()
    }
}

pub async fn check(cluster: &ClusterConfig, truth: &Truth) -> Result<CheckReport, CheckError> {
    let pools = ShardPools::new(cluster);
    let result = check_with(&pools, cluster, truth).await;
    pools.disconnect().await;
    result
}

/// The Insights tables by their part in the truth, found in the cluster's
/// description: the checker writes the Insights semantics out by hand (it
/// shares no code with the consumer), not the names a description gives.
struct Tables {
    minute: String,
    hour: String,
    patterns: String,
    slow: String,
}

impl Tables {
    fn of(p: &Pipeline) -> Result<Tables, CheckError> {
        let find = |what: &str, f: &dyn Fn(&Table) -> bool| -> Result<String, CheckError> {
            let mut found = p.tables.iter().filter(|t| f(t));
            match (found.next(), found.next()) {
                (Some(t), None) => Ok(t.name.clone()),
                _ => Err(CheckError::Cluster(format!(
                    "pipeline {}: not the Insights pipeline (wanted exactly one {what})",
                    p.name
                ))),
            }
        };
        let rollup = |window: &'static str| {
            move |t: &Table| t.kind == TableKind::Rollup && matches!(&t.window, Some(Window::Named(w)) if w == window)
        };
        Ok(Tables {
            minute: find("rollup by minute_window", &rollup("minute_window"))?,
            hour: find("rollup by hour_window", &rollup("hour_window"))?,
            patterns: find("latest table", &|t| t.kind == TableKind::Latest)?,
            slow: find("append table", &|t| t.kind == TableKind::Append)?,
        })
    }
}

async fn check_with(pools: &ShardPools, cluster: &ClusterConfig, truth: &Truth) -> Result<CheckReport, CheckError> {
    let tables = Tables::of(&cluster.pipeline)?;
    let mut minute = BTreeMap::new();
    let mut hour = BTreeMap::new();
    let mut patterns = BTreeMap::new();
    let mut slow = BTreeMap::new();
    let mut report = CheckReport::default();
    for (i, shard) in cluster.shards.iter().enumerate() {
        let name = shard.range.to_string();
        let err = |source| CheckError::Shard { shard: name.clone(), source };
        let mut conn = pools.shard(i).get_conn().await.map_err(err)?;
        for (table, into) in [(&tables.minute, &mut minute), (&tables.hour, &mut hour)] {
            let rows: Vec<Row> = conn
                .query(format!(
                    "SELECT database_id, fingerprint, TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', window_start), \
                     keyspace_id, query_count, total_duration_us, max_duration_us, rows_read, rows_returned, \
                     error_count, latency_sketch FROM {table}"
                ))
                .await
                .map_err(err)?;
            for row in rows {
                let (ksid, s) = stats_from_row(row);
                placement(cluster, i, table, s.database_id, &ksid, &mut report);
                into.insert((s.database_id, s.fingerprint.clone(), s.window_start), s);
            }
        }
        let rows: Vec<Row> = conn
            .query(format!(
                "SELECT database_id, fingerprint, keyspace_id, normalized_sql, tables_used, \
                 TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', first_seen) DIV 1000, \
                 TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', last_seen) DIV 1000 FROM {}",
                tables.patterns
            ))
            .await
            .map_err(err)?;
        for mut row in rows {
            let ksid: Vec<u8> = take(&mut row, 2);
            let p = PatternTruth {
                database_id: take(&mut row, 0),
                fingerprint: take(&mut row, 1),
                normalized_sql: take(&mut row, 3),
                tables_json: take(&mut row, 4),
                first_seen_ms: take(&mut row, 5),
                last_seen_ms: take(&mut row, 6),
            };
            placement(cluster, i, &tables.patterns, p.database_id, &ksid, &mut report);
            patterns.insert((p.database_id, p.fingerprint.clone()), p);
        }
        let rows: Vec<Row> = conn
            .query(format!(
                "SELECT src_partition, src_offset, database_id, fingerprint, keyspace_id, proxy_id, \
                 TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', occurred_at), duration_us, rows_read, \
                 rows_returned, error_text, query_text, tables_used FROM {}",
                tables.slow
            ))
            .await
            .map_err(err)?;
        for mut row in rows {
            let ksid: Vec<u8> = take(&mut row, 4);
            let s = SlowTruth {
                partition: take(&mut row, 0),
                offset: take(&mut row, 1),
                database_id: take(&mut row, 2),
                fingerprint: take(&mut row, 3),
                proxy_id: take(&mut row, 5),
                occurred_at_us: take(&mut row, 6),
                duration_us: take(&mut row, 7),
                rows_read: take(&mut row, 8),
                rows_returned: take(&mut row, 9),
                error_text: take(&mut row, 10),
                query_text: take(&mut row, 11),
                tables_json: take(&mut row, 12),
            };
            placement(cluster, i, &tables.slow, s.database_id, &ksid, &mut report);
            let key = (s.partition, s.offset);
            if slow.insert(key, s).is_some() {
                report.differences.push(format!("{}: event {key:?} stored twice", tables.slow));
            }
        }
    }
    compare_stats(&tables.minute, &truth.minute, minute, &mut report);
    compare_stats(&tables.hour, &truth.hour, hour, &mut report);
    compare(
        &tables.patterns,
        truth.patterns.iter().map(|p| ((p.database_id, p.fingerprint.clone()), p.clone())),
        patterns,
        &mut report,
    );
    let expected = place_unknown_offsets(&truth.slow, &slow);
    compare(&tables.slow, expected.into_iter().map(|s| ((s.partition, s.offset), s)), slow, &mut report);
    Ok(report)
}

/// The truth's slow queries, each delivered with an unknown offset (-1:
/// librdkafka acknowledges an idempotent retry the broker had already
/// written, DuplicateSequenceNumber, without its offset) placed at the
/// stored row of its partition that no other event claims and that equals
/// it field for field. One that matches nothing stays at -1 and is reported
/// missing; a second stored copy is still reported extra.
fn place_unknown_offsets(truth: &[SlowTruth], stored: &BTreeMap<(i32, i64), SlowTruth>) -> Vec<SlowTruth> {
    let mut claimed: std::collections::BTreeSet<(i32, i64)> =
        truth.iter().filter(|s| s.offset >= 0).map(|s| (s.partition, s.offset)).collect();
    truth
        .iter()
        .map(|s| {
            let mut s = s.clone();
            if s.offset < 0 {
                let found = stored
                    .range((s.partition, i64::MIN)..=(s.partition, i64::MAX))
                    .find(|(key, row)| !claimed.contains(key) && SlowTruth { offset: s.offset, ..(*row).clone() } == s);
                if let Some((&key, _)) = found {
                    claimed.insert(key);
                    s.offset = key.1;
                }
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(partition: i32, offset: i64, query: &str) -> SlowTruth {
        SlowTruth {
            partition,
            offset,
            database_id: 7,
            fingerprint: "f00d".into(),
            proxy_id: "proxy-0".into(),
            occurred_at_us: 1_000,
            duration_us: 5,
            rows_read: 1,
            rows_returned: 1,
            error_text: None,
            query_text: query.into(),
            tables_json: "[]".into(),
        }
    }

    #[test]
    fn an_event_delivered_without_its_offset_is_found_by_partition_and_content() {
        let stored: BTreeMap<(i32, i64), SlowTruth> =
            [slow(8, 99, "a"), slow(8, 100, "b"), slow(8, 101, "b"), slow(9, 5, "b")]
                .into_iter()
                .map(|s| ((s.partition, s.offset), s))
                .collect();
        // 99 is claimed by a known offset; "b" at 100 is the unknown one's; "c" matches nothing.
        let truth = [slow(8, 99, "a"), slow(8, -1, "b"), slow(8, -1, "c")];
        let placed = place_unknown_offsets(&truth, &stored);
        let keys: Vec<(i32, i64)> = placed.iter().map(|s| (s.partition, s.offset)).collect();
        assert_eq!(keys, [(8, 99), (8, 100), (8, -1)]);
        // Checked as a whole: the unmatched event is missing, the second copy of "b" and the other partition's row extra.
        let mut report = CheckReport::default();
        compare("slow", placed.into_iter().map(|s| ((s.partition, s.offset), s)), stored, &mut report);
        assert_eq!(report.differences.len(), 3, "{:?}", report.differences);
        assert!(report.differences[0].starts_with("slow: missing (8, -1)"), "{:?}", report.differences);
        assert!(report.differences[1].starts_with("slow: extra (8, 101)"), "{:?}", report.differences);
        assert!(report.differences[2].starts_with("slow: extra (9, 5)"), "{:?}", report.differences);
    }
}

fn placement(
    cluster: &ClusterConfig,
    shard: usize,
    table: &str,
    database_id: u64,
    ksid: &[u8],
    report: &mut CheckReport,
) {
    let expected = cluster::vindex::keyspace_id(database_id);
    if ksid != expected {
        report.differences.push(format!(
            "{table}: database_id {database_id} has keyspace_id {} (expected {})",
            to_hex(ksid),
            to_hex(&expected)
        ));
    }
    let home = cluster.shard_index_for(&expected);
    if home != shard {
        report.differences.push(format!(
            "{table}: database_id {database_id} is on shard {} but belongs on {}",
            cluster.shards[shard].range, cluster.shards[home].range
        ));
    }
}

fn compare_stats(
    table: &str,
    expected: &[StatsTruth],
    actual: BTreeMap<(u64, String, i64), StatsTruth>,
    report: &mut CheckReport,
) {
    compare(
        table,
        expected.iter().map(|s| ((s.database_id, s.fingerprint.clone(), s.window_start), s.clone())),
        actual,
        report,
    );
}

/// Every key missing, extra, or with any column different (both values shown).
fn compare<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug + Describe>(
    table: &str,
    expected: impl Iterator<Item = (K, V)>,
    mut actual: BTreeMap<K, V>,
    report: &mut CheckReport,
) {
    for (key, want) in expected {
        report.rows_compared += 1;
        match actual.remove(&key) {
            None => report.differences.push(format!("{table}: missing {key:?}")),
            Some(got) if got != want => {
                report.differences.push(format!("{table}: {key:?} differs: {}", want.diff(&got)));
            }
            Some(_) => {}
        }
    }
    for (key, got) in actual {
        report.differences.push(format!("{table}: extra {key:?}: {got:?}"));
    }
}

/// Column-by-column description of a difference.
trait Describe {
    fn diff(&self, actual: &Self) -> String;
}

impl Describe for StatsTruth {
    fn diff(&self, a: &Self) -> String {
        let mut out = Vec::new();
        let cols = [
            ("query_count", self.query_count, a.query_count),
            ("total_duration_us", self.total_duration_us, a.total_duration_us),
            ("max_duration_us", self.max_duration_us, a.max_duration_us),
            ("rows_read", self.rows_read, a.rows_read),
            ("rows_returned", self.rows_returned, a.rows_returned),
            ("error_count", self.error_count, a.error_count),
        ];
        for (name, want, got) in cols {
            if want != got {
                out.push(format!("{name} expected {want} got {got}"));
            }
        }
        if self.sketch_hex != a.sketch_hex {
            out.push(format!(
                "latency_sketch expected {} got {}",
                sketch_summary(&self.sketch_hex),
                sketch_summary(&a.sketch_hex)
            ));
        }
        out.join(", ")
    }
}

impl Describe for PatternTruth {
    fn diff(&self, a: &Self) -> String {
        format!("expected {self:?} got {a:?}")
    }
}

impl Describe for SlowTruth {
    fn diff(&self, a: &Self) -> String {
        format!("expected {self:?} got {a:?}")
    }
}

fn sketch_summary(hex: &str) -> String {
    let bytes: Vec<u8> =
        (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect();
    match LatencySketch::decode(&bytes) {
        Ok(s) => format!("(count {}, p50 {:?}, p99 {:?})", s.count(), s.quantile(0.5), s.quantile(0.99)),
        Err(e) => format!("(undecodable: {e})"),
    }
}

fn stats_from_row(mut row: Row) -> (Vec<u8>, StatsTruth) {
    let ksid: Vec<u8> = take(&mut row, 3);
    let sketch: Vec<u8> = take(&mut row, 10);
    let s = StatsTruth {
        database_id: take(&mut row, 0),
        fingerprint: take(&mut row, 1),
        window_start: take(&mut row, 2),
        query_count: take(&mut row, 4),
        total_duration_us: take(&mut row, 5),
        max_duration_us: take(&mut row, 6),
        rows_read: take(&mut row, 7),
        rows_returned: take(&mut row, 8),
        error_count: take(&mut row, 9),
        sketch_hex: to_hex(&sketch),
    };
    (ksid, s)
}

/// A column value, or the type's default when absent or mistyped: the
/// comparison then reports the row as different instead of aborting.
fn take<T: mysql_async::prelude::FromValue + Default>(row: &mut Row, i: usize) -> T {
    row.take_opt::<T, usize>(i).and_then(Result::ok).unwrap_or_default()
}
