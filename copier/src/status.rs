//! The operator view: what every stream is doing, read from the new cluster
//! alone (the sidecar tables), so `status` and the cutover gates need no
//! access to the old cluster or to the copier process.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use serde::Serialize;

use crate::binlog::Position;
use crate::error::CopierError;
pub use crate::phase::Phase;
use crate::sidecar::{self, StoredStream};

/// One stream (table, source shard) as the new cluster records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamStatus {
    /// The copied table.
    pub table: String,
    /// The old cluster's shard (Vitess range name, e.g. `-40`).
    pub source_shard: String,
    /// What the stream is doing (as of `updated_at`).
    pub phase: Phase,
    /// Whether every target shard has finished the copy (only binlog left).
    pub copy_done: bool,
    /// Snapshot rows written, summed over the target shards.
    pub rows_copied: u64,
    /// Source rows at the stream's first snapshot.
    pub rows_total: Option<u64>,
    /// Measured copy rate.
    pub rows_per_sec: Option<f64>,
    /// Seconds until the copy finishes at the measured rate (while copying).
    pub eta_seconds: Option<f64>,
    /// Binlog row operations applied, summed over the target shards.
    pub events_applied: u64,
    /// Binlog events between the applied position and the source's end.
    pub lag_events: Option<u64>,
    /// Seconds behind the source (0 when caught up).
    pub lag_seconds: Option<f64>,
    /// The smallest binlog position over the target shards (where a restart resumes).
    pub binlog_position: Option<String>,
    /// GTID of the last applied source transaction.
    pub gtid: Option<String>,
    /// Why the stream failed, with the remedy.
    pub error: Option<String>,
    /// Short error kind (`binlog_purged`, `ddl`, ...).
    pub error_kind: Option<String>,
    /// When the newest target shard row was written (UTC).
    pub updated_at: DateTime<Utc>,
}

/// Every stream recorded on the new cluster, ordered by table and source shard.
pub async fn streams(target: &ClusterConfig) -> Result<Vec<StreamStatus>, CopierError> {
    let pools = ShardPools::new(target);
    let result = sidecar::read_all(pools.shards()).await;
    pools.disconnect().await;
    Ok(merge_rows(result?))
}

/// One status per stream from its rows on every target shard: counts are
/// summed, the position is the smallest (where a restart resumes), the copy
/// is done only when done everywhere, and the view is the newest row's.
fn merge_rows(rows: Vec<StoredStream>) -> Vec<StreamStatus> {
    let mut merged: BTreeMap<(String, String), StreamStatus> = BTreeMap::new();
    for row in rows {
        merge_row(&mut merged, row);
    }
    merged.into_values().map(with_eta).collect()
}

fn with_eta(mut s: StreamStatus) -> StreamStatus {
    s.eta_seconds = match (s.phase, s.rows_total, s.rows_per_sec) {
        (Phase::Copying | Phase::CatchingUp, Some(total), Some(rate)) if rate > 0.0 && !s.copy_done => {
            Some(total.saturating_sub(s.rows_copied) as f64 / rate)
        }
        _ => None,
    };
    s
}

fn merge_row(merged: &mut BTreeMap<(String, String), StreamStatus>, row: StoredStream) {
    let (error_kind, error) = row.view.error.map_or((None, None), |(kind, text)| (Some(kind), Some(text)));
    let this = StreamStatus {
        table: row.table.clone(),
        source_shard: row.source_shard.clone(),
        phase: row.view.phase,
        copy_done: row.fence.copy_done,
        rows_copied: row.fence.rows_copied,
        rows_total: row.view.rows_total,
        rows_per_sec: row.view.rows_per_sec,
        eta_seconds: None,
        events_applied: row.fence.events_applied,
        lag_events: row.view.lag_events,
        lag_seconds: row.view.lag_seconds,
        binlog_position: row.fence.position.as_ref().map(ToString::to_string),
        gtid: (!row.fence.gtid.is_empty()).then_some(row.fence.gtid),
        error,
        error_kind,
        updated_at: row.updated_at,
    };
    let Some(existing) = merged.get_mut(&(row.table.clone(), row.source_shard.clone())) else {
        merged.insert((row.table, row.source_shard), this);
        return;
    };
    let rows_copied = existing.rows_copied + this.rows_copied;
    let events_applied = existing.events_applied + this.events_applied;
    let copy_done = existing.copy_done && this.copy_done;
    let smallest_position = match (&existing.binlog_position, &this.binlog_position) {
        (Some(a), Some(b)) => Some(if Position::parse(b) < Position::parse(a) { b.clone() } else { a.clone() }),
        (a, b) => a.clone().or_else(|| b.clone()),
    };
    if this.updated_at > existing.updated_at {
        *existing = this;
    }
    existing.rows_copied = rows_copied;
    existing.events_applied = events_applied;
    existing.copy_done = copy_done;
    existing.binlog_position = smallest_position;
}

/// The human view: one line per stream.
pub fn render(streams: &[StreamStatus]) -> String {
    let mut out = format!(
        "{:<16} {:<8} {:<12} {:>12} {:>12} {:>10} {:>9} {:>11} {:>9}  {}\n",
        "table", "source", "phase", "rows", "total", "rows/s", "eta", "lag events", "lag s", "updated"
    );
    for s in streams {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<16} {:<8} {:<12} {:>12} {:>12} {:>10} {:>9} {:>11} {:>9}  {}\n",
            s.table,
            s.source_shard,
            s.phase,
            s.rows_copied,
            opt(s.rows_total.map(|v| v.to_string())),
            opt(s.rows_per_sec.map(|v| format!("{v:.0}"))),
            opt(s
                .eta_seconds
                .map(|v| humantime::format_duration(std::time::Duration::from_secs(v as u64)).to_string())),
            opt(s.lag_events.map(|v| v.to_string())),
            opt(s.lag_seconds.map(|v| format!("{v:.1}"))),
            s.updated_at.format("%Y-%m-%dT%H:%M:%SZ"),
        ));
        if let Some(error) = &s.error {
            out.push_str(&format!("  error: {error}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::{Fence, ViewUpdate};

    fn row(shard_rows: u64, pos: u64, updated: &str, phase: Phase) -> StoredStream {
        StoredStream {
            table: "routes".into(),
            source_shard: "-40".into(),
            fence: Fence {
                copy_done: true,
                last_key: None,
                position: Some(Position { file: "binlog.000002".into(), pos }),
                gtid: "0-1-5".into(),
                rows_copied: shard_rows,
                events_applied: 2,
            },
            view: ViewUpdate {
                phase,
                rows_total: Some(100),
                rows_per_sec: Some(10.0),
                lag_events: Some(0),
                lag_seconds: Some(0.0),
                error: None,
            },
            updated_at: DateTime::parse_from_rfc3339(updated).expect("time").with_timezone(&Utc),
        }
    }

    #[test]
    fn merges_target_shard_rows_into_one_stream() {
        let merged = merge_rows(vec![
            row(30, 90, "2026-01-01T00:00:02.000000Z", Phase::Replicating),
            row(20, 50, "2026-01-01T00:00:01.000000Z", Phase::CatchingUp),
        ]);
        let [s] = &merged[..] else { panic!("one stream: {merged:?}") };
        assert_eq!((s.rows_copied, s.events_applied), (50, 4));
        assert_eq!(s.phase, Phase::Replicating);
        assert_eq!(s.binlog_position.as_deref(), Some("binlog.000002:50"));
        assert_eq!(s.gtid.as_deref(), Some("0-1-5"));
        assert_eq!(s.eta_seconds, None, "no eta once the copy is done");
        assert!(render(&merged).contains("replicating"));
    }

    #[test]
    fn a_stream_copying_anywhere_is_not_done_and_has_an_eta() {
        let mut copying = row(20, 50, "2026-01-01T00:00:03.000000Z", Phase::Copying);
        copying.fence.copy_done = false;
        let merged = merge_rows(vec![row(30, 90, "2026-01-01T00:00:02.000000Z", Phase::Replicating), copying]);
        assert!(!merged[0].copy_done);
        assert_eq!(merged[0].eta_seconds, Some(5.0), "(100 - 50) rows at 10 rows/s");
    }
}
