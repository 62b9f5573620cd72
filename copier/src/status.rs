//! The operator view: what every stream is doing, read from the new cluster
//! alone (the sidecar tables), so `status` and the cutover gates need no
//! access to the old cluster or to the copier process.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use mysql_async::prelude::Queryable;
use serde::Serialize;

use crate::error::CopierError;

/// What a stream is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading a snapshot and writing its rows (interleaved with catch-up).
    #[default]
    Copying,
    /// Applying binlog events for the rows copied so far.
    CatchingUp,
    /// The copy is done; applying the binlog as it grows.
    Replicating,
    /// Stopped by the operator; `start` resumes it.
    Stopped,
    /// Stopped by an error; `error` says why and what to do.
    Failed,
}

impl Phase {
    /// The name stored in the sidecar table and shown by `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Copying => "copying",
            Phase::CatchingUp => "catching_up",
            Phase::Replicating => "replicating",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Phase::Copying, Phase::CatchingUp, Phase::Replicating, Phase::Stopped, Phase::Failed]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

type Row = (
    String,
    String,
    u8,
    String,
    u64,
    String,
    u64,
    u64,
    String,
    Option<u64>,
    Option<f64>,
    Option<u64>,
    Option<f64>,
    Option<String>,
    Option<String>,
    String,
);

/// Every stream recorded on the new cluster, ordered by table and source shard.
pub async fn streams(target: &ClusterConfig) -> Result<Vec<StreamStatus>, CopierError> {
    let pools = ShardPools::new(target);
    let result = read_streams(&pools).await;
    pools.disconnect().await;
    result
}

async fn read_streams(pools: &ShardPools) -> Result<Vec<StreamStatus>, CopierError> {
    let mut merged: BTreeMap<(String, String), StreamStatus> = BTreeMap::new();
    for pool in pools.shards() {
        let mut conn = pool.get_conn().await?;
        let rows: Vec<mysql_async::Row> = match conn
            .query(
                "SELECT table_name, source_shard, copy_done, binlog_file, binlog_pos, gtid, rows_copied, \
                 events_applied, phase, rows_total, rows_per_sec, lag_events, lag_seconds, error, error_kind, \
                 DATE_FORMAT(updated_at, '%Y-%m-%dT%H:%i:%s.%fZ') FROM dw_copier_streams",
            )
            .await
        {
            Ok(rows) => rows,
            // No sidecar table on this shard: no stream ever wrote to it.
            Err(mysql_async::Error::Server(e)) if e.code == 1146 => continue,
            Err(e) => return Err(e.into()),
        };
        for row in rows {
            let row = to_row(row).ok_or_else(|| CopierError::Schema {
                table: "dw_copier_streams".into(),
                why: "unexpected column types".into(),
            })?;
            merge_row(&mut merged, row);
        }
    }
    Ok(merged
        .into_values()
        .map(|mut s| {
            s.eta_seconds = match (s.phase, s.rows_total, s.rows_per_sec) {
                (Phase::Copying | Phase::CatchingUp, Some(total), Some(rate)) if rate > 0.0 && !s.copy_done => {
                    Some(total.saturating_sub(s.rows_copied) as f64 / rate)
                }
                _ => None,
            };
            s
        })
        .collect())
}

fn to_row(mut r: mysql_async::Row) -> Option<Row> {
    Some((
        r.take_opt(0)?.ok()?,
        r.take_opt(1)?.ok()?,
        r.take_opt(2)?.ok()?,
        r.take_opt(3)?.ok()?,
        r.take_opt(4)?.ok()?,
        r.take_opt(5)?.ok()?,
        r.take_opt(6)?.ok()?,
        r.take_opt(7)?.ok()?,
        r.take_opt(8)?.ok()?,
        r.take_opt(9)?.ok()?,
        r.take_opt(10)?.ok()?,
        r.take_opt(11)?.ok()?,
        r.take_opt(12)?.ok()?,
        r.take_opt(13)?.ok()?,
        r.take_opt(14)?.ok()?,
        r.take_opt(15)?.ok()?,
    ))
}

fn merge_row(merged: &mut BTreeMap<(String, String), StreamStatus>, row: Row) {
    let (table, source_shard, copy_done, file, pos, gtid, rows_copied, events_applied, phase, rows_total) =
        (row.0, row.1, row.2 != 0, row.3, row.4, row.5, row.6, row.7, row.8, row.9);
    let updated_at = DateTime::parse_from_rfc3339(&row.15).map(|t| t.with_timezone(&Utc)).unwrap_or_default();
    let position = (!file.is_empty()).then_some(crate::binlog::Position { file, pos });
    let this = StreamStatus {
        table: table.clone(),
        source_shard: source_shard.clone(),
        phase: Phase::parse(&phase).unwrap_or(Phase::Failed),
        copy_done,
        rows_copied,
        rows_total,
        rows_per_sec: row.10,
        eta_seconds: None,
        events_applied,
        lag_events: row.11,
        lag_seconds: row.12,
        binlog_position: position.as_ref().map(ToString::to_string),
        gtid: (!gtid.is_empty()).then_some(gtid),
        error: row.13,
        error_kind: row.14,
        updated_at,
    };
    let Some(existing) = merged.get_mut(&(table.clone(), source_shard.clone())) else {
        merged.insert((table, source_shard), this);
        return;
    };
    let rows_copied = existing.rows_copied + this.rows_copied;
    let events_applied = existing.events_applied + this.events_applied;
    let copy_done = existing.copy_done && this.copy_done;
    let smallest_position = match (&existing.binlog_position, &this.binlog_position) {
        (Some(a), Some(b)) => Some(if parse_position(b) < parse_position(a) { b.clone() } else { a.clone() }),
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

fn parse_position(s: &str) -> Option<crate::binlog::Position> {
    crate::binlog::Position::parse(s)
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

    fn row(shard_rows: u64, file: &str, pos: u64, updated: &str, phase: &str) -> Row {
        (
            "query_patterns".into(),
            "-40".into(),
            1,
            file.into(),
            pos,
            "0-1-5".into(),
            shard_rows,
            2,
            phase.into(),
            Some(100),
            Some(10.0),
            Some(0),
            Some(0.0),
            None,
            None,
            updated.into(),
        )
    }

    #[test]
    fn merges_target_shard_rows_into_one_stream() {
        let mut merged = BTreeMap::new();
        merge_row(&mut merged, row(30, "binlog.000002", 90, "2026-01-01T00:00:02.000000Z", "replicating"));
        merge_row(&mut merged, row(20, "binlog.000002", 50, "2026-01-01T00:00:01.000000Z", "catching_up"));
        let s = merged.into_values().next().expect("one stream");
        assert_eq!((s.rows_copied, s.events_applied), (50, 4));
        assert_eq!(s.phase, Phase::Replicating);
        assert_eq!(s.binlog_position.as_deref(), Some("binlog.000002:50"));
        assert_eq!(s.phase.to_string(), "replicating");
        assert!(render(&[s]).contains("replicating"));
    }

    #[test]
    fn phases_round_trip() {
        for p in [Phase::Copying, Phase::CatchingUp, Phase::Replicating, Phase::Stopped, Phase::Failed] {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_string(&p).expect("json"), format!("\"{p}\""));
        }
    }
}
