//! Collectors: fetch each gate's input from where it lives.
//!
//! - verify: the verify crate's tables in the new cluster's control database;
//! - shadow reads: the routers' counts in the same database;
//! - consumer lag: each cluster's fences against the broker's end offsets;
//! - retention: `retention::readiness::assess` (both clusters' fences and partitions);
//! - copier: `copier::status::streams` on the new cluster, plus a stopped stream for every old shard without one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use cluster::config::ClusterConfig;
use mysql_async::prelude::Queryable;
use mysql_async::Pool;

use crate::gates::{
    DifferentWindow, GateInputs, GroupLag, LagInput, RetentionInput, ShadowInput, StreamPhase, StreamStatus,
    VerifyInput, VerifyRun,
};

/// Where the collectors look.
#[derive(Clone)]
pub struct CollectConfig {
    pub old: ClusterConfig,
    pub new: ClusterConfig,
    /// The new cluster's control database (routing state, verify results).
    pub control: Pool,
    /// Kafka bootstrap servers, for the groups' lag.
    pub brokers: Option<String>,
    pub topic_prefix: String,
    /// How far back shadow counts are summed.
    pub shadow_period: Duration,
    /// Tables the copier fills.
    pub copied_tables: Vec<String>,
}

/// Collects every input concurrently; a collector's failure becomes its gate's `Err`.
pub async fn collect(config: &CollectConfig) -> GateInputs {
    let now = Utc::now();
    let lag = async {
        let Some(brokers) = config.brokers.as_deref() else {
            return Err("no --brokers given: consumer lag needs the topics' end offsets".to_owned());
        };
        let topics: Vec<String> = [topics::TopicKind::QueryStats, topics::TopicKind::SlowQueries]
            .iter()
            .map(|k| k.topic_name(&config.topic_prefix))
            .collect();
        let old = status(&config.old, brokers, &topics).await;
        let new = status(&config.new, brokers, &topics).await;
        match (old, new) {
            (Ok(o), Ok(n)) => Ok(LagInput { old: group_lag(&o), new: group_lag(&n) }),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    };
    let (verify, shadow, copier, retention, lag) = tokio::join!(
        verify_input(&config.control, &config.copied_tables),
        shadow_input(&config.control, config.shadow_period, now),
        copier_streams(&config.old, &config.new, &config.copied_tables),
        retention_input(&config.old, &config.new),
        lag
    );
    GateInputs {
        now,
        retention,
        verify: verify.map_err(|e| format!("reading verify results: {e}")),
        copier,
        shadow: shadow.map_err(|e| format!("reading shadow counts: {e}")),
        lag,
    }
}

async fn status(
    cluster: &ClusterConfig,
    brokers: &str,
    topics: &[String],
) -> Result<cluster::fence::StatusReport, String> {
    let context = |e: String| format!("consumer status of cluster {}: {e}", cluster.name);
    let pools = cluster::pool::ShardPools::new(cluster);
    let fences = cluster::fence::progress(&pools).await;
    pools.disconnect().await;
    let fences = fences.map_err(|e| context(e.to_string()))?;
    let client = rdkafka::config::ClientConfig::new().set("bootstrap.servers", brokers).clone();
    let ends = topics::admin::end_offsets(&client, topics, std::time::Duration::from_secs(10))
        .await
        .map_err(|e| context(e.to_string()))?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    Ok(cluster::fence::report(&cluster.name, fences, Some(&ends), cluster.time.allowed_lateness_ms(), now_ms))
}

fn group_lag(report: &cluster::fence::StatusReport) -> GroupLag {
    let with_messages = |p: &&cluster::fence::PartitionStatus| p.end_offset.is_some_and(|e| e > 0);
    GroupLag {
        cluster: report.cluster.clone(),
        partitions: report.partitions.len(),
        unstarted: report.partitions.iter().filter(with_messages).filter(|p| p.progress.is_none()).count(),
        max_lag_messages: report.partitions.iter().filter_map(|p| p.lag_messages).max().unwrap_or(0),
        max_lag_seconds: report.partitions.iter().filter_map(|p| p.lag_seconds).fold(0.0, f64::max),
    }
}

/// Retention readiness of the new cluster, from the retention crate.
pub async fn retention_input(old: &ClusterConfig, new: &ClusterConfig) -> Result<RetentionInput, String> {
    let readiness = retention::readiness::assess(old, new).await.map_err(|e| format!("retention readiness: {e}"))?;
    Ok(RetentionInput { ready: readiness.ready, ready_at: readiness.ready_at, explanation: readiness.explanation })
}

/// Copier streams feeding the new cluster, one per copied table and old
/// shard. An old shard with no stream at all is reported as a stopped stream,
/// so a copy started for only some shards never passes the gate.
pub async fn copier_streams(
    old: &ClusterConfig,
    new: &ClusterConfig,
    copied_tables: &[String],
) -> Result<Vec<StreamStatus>, String> {
    let streams = copier::status::streams(new).await.map_err(|e| e.to_string())?;
    let mut out: Vec<StreamStatus> = streams
        .into_iter()
        .map(|s| StreamStatus {
            table: s.table,
            source_shard: s.source_shard,
            phase: match s.phase {
                copier::status::Phase::Copying => StreamPhase::Copying,
                copier::status::Phase::CatchingUp => StreamPhase::CatchingUp,
                copier::status::Phase::Replicating => StreamPhase::Replicating,
                copier::status::Phase::Stopped => StreamPhase::Stopped,
                copier::status::Phase::Failed => StreamPhase::Failed,
            },
            rows_copied: s.rows_copied,
            lag_events: s.lag_events,
            lag_seconds: s.lag_seconds,
            error: s.error,
            updated_at: s.updated_at,
        })
        .collect();
    for table in copied_tables {
        for shard in &old.shards {
            let source_shard = shard.range.to_string();
            if !out.iter().any(|s| &s.table == table && s.source_shard == source_shard) {
                out.push(StreamStatus {
                    table: table.clone(),
                    source_shard,
                    phase: StreamPhase::Stopped,
                    rows_copied: 0,
                    lag_events: None,
                    lag_seconds: None,
                    error: Some("never started from this old shard: run dualwrite-copier start".to_owned()),
                    updated_at: Utc::now(),
                });
            }
        }
    }
    Ok(out)
}

async fn shadow_input(control: &Pool, period: Duration, now: DateTime<Utc>) -> Result<ShadowInput, String> {
    let since = now.timestamp() - i64::try_from(period.as_secs()).unwrap_or(i64::MAX / 2);
    let totals = crate::state::shadow_totals(control, since).await.map_err(|e| e.to_string())?;
    Ok(ShadowInput { period, totals })
}

type RunRow = (
    u64,
    String,
    String,
    i64,
    Option<i64>,
    String,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<String>,
);

const RUN_COLUMNS: &str = "run_id, kind, target, \
     CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', started_at) DIV 1000 AS SIGNED), \
     CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', finished_at) DIV 1000 AS SIGNED), \
     outcome, windows_equal, windows_different, windows_not_settled, windows_not_covered, differences, error";

fn millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn to_run(row: RunRow) -> VerifyRun {
    let (run_id, kind, target, started, finished, outcome, eq, diff, unsettled, uncovered, differences, error) = row;
    VerifyRun {
        run_id,
        kind,
        target,
        started_at: millis(started),
        finished_at: finished.map(millis),
        outcome,
        windows_equal: eq.unwrap_or(0),
        windows_different: diff.unwrap_or(0),
        windows_not_settled: unsettled.unwrap_or(0),
        windows_not_covered: uncovered.unwrap_or(0),
        differences: differences.unwrap_or(0),
        error,
    }
}

/// MySQL's "table doesn't exist": the comparators never ran here.
const ER_NO_SUCH_TABLE: u16 = 1146;

/// Reads the comparators' results (`dw_verify_runs`, `dw_verify_windows`).
pub async fn verify_input(control: &Pool, copied_tables: &[String]) -> Result<VerifyInput, mysql_async::Error> {
    match read_verify(control, copied_tables).await {
        Err(mysql_async::Error::Server(e)) if e.code == ER_NO_SUCH_TABLE => Ok(VerifyInput {
            windows_run: None,
            different_windows: 0,
            different_examples: vec![],
            table_runs: copied_tables.iter().map(|t| (t.clone(), None)).collect(),
        }),
        other => other,
    }
}

async fn read_verify(control: &Pool, copied_tables: &[String]) -> Result<VerifyInput, mysql_async::Error> {
    let mut conn = control.get_conn().await?;
    let latest = format!(
        "SELECT {RUN_COLUMNS} FROM dw_verify_runs WHERE kind = ? AND target = ? AND finished_at IS NOT NULL \
         AND outcome <> 'running' ORDER BY finished_at DESC, run_id DESC LIMIT 1"
    );
    let windows_run: Option<RunRow> = conn.exec_first(&latest, ("windows", "windows")).await?;
    let different_windows: Option<u64> =
        conn.query_first("SELECT COUNT(*) FROM dw_verify_windows WHERE state = 'different'").await?;
    let examples: Vec<(String, i64, u64)> = conn
        .query(
            "SELECT tbl, CAST(UNIX_TIMESTAMP(window_start) AS SIGNED), run_id FROM dw_verify_windows \
             WHERE state = 'different' ORDER BY window_start, tbl LIMIT 5",
        )
        .await?;
    let mut table_runs = Vec::new();
    for table in copied_tables {
        let run: Option<RunRow> = conn.exec_first(&latest, ("table", table.as_str())).await?;
        table_runs.push((table.clone(), run.map(to_run)));
    }
    Ok(VerifyInput {
        windows_run: windows_run.map(to_run),
        different_windows: different_windows.unwrap_or(0),
        different_examples: examples
            .into_iter()
            .map(|(table, start, run_id)| DifferentWindow {
                table,
                window_start: DateTime::from_timestamp(start, 0).unwrap_or_default(),
                run_id,
            })
            .collect(),
        table_runs,
    })
}
