//! Collectors: fetch each gate's input from where it lives.
//!
//! - verify: the verify crate's tables in the new cluster's control database;
//! - shadow reads: the routers' counts in the same database;
//! - consumer lag: each cluster's fences against the broker's end offsets;
//! - retention: provisional, from the new cluster's coverage (fences) and its
//!   `[time] retention`, until `retention::readiness::assess` is linked;
//! - copier: not linked here; `copier::status::streams` is wired by the lead.

use std::time::Duration;

use chrono::{DateTime, Utc};
use cluster::config::ClusterConfig;
use mysql_async::prelude::Queryable;
use mysql_async::Pool;

use crate::gates::{
    DifferentWindow, GateInputs, GroupLag, LagInput, RetentionInput, ShadowInput, StreamStatus, VerifyInput, VerifyRun,
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
    let statuses = async {
        let Some(brokers) = config.brokers.as_deref() else {
            let why = "no --brokers given: consumer lag and coverage need the topics' end offsets".to_owned();
            return (Err(why.clone()), Err(why));
        };
        let topics: Vec<String> = [topics::TopicKind::QueryStats, topics::TopicKind::SlowQueries]
            .iter()
            .map(|k| format!("{}{}", config.topic_prefix, k.as_str()))
            .collect();
        let old = status(&config.old, brokers, &topics).await;
        let new = status(&config.new, brokers, &topics).await;
        let retention = match &new {
            Ok(report) => Ok(retention_from_coverage(report.covered_from_ms, &config.new, now)),
            Err(e) => Err(e.clone()),
        };
        let lag = match (old, new) {
            (Ok(o), Ok(n)) => Ok(LagInput { old: group_lag(&o), new: group_lag(&n) }),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        (retention, lag)
    };
    let (verify, shadow, copier, (retention, lag)) = tokio::join!(
        verify_input(&config.control, &config.copied_tables),
        shadow_input(&config.control, config.shadow_period, now),
        copier_streams(&config.new),
        statuses
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
) -> Result<consumer::status::StatusReport, String> {
    consumer::status::status(cluster, Some(brokers), topics, cluster.time.allowed_lateness_ms())
        .await
        .map_err(|e| format!("consumer status of cluster {}: {e}", cluster.name))
}

fn group_lag(report: &consumer::status::StatusReport) -> GroupLag {
    let with_messages = |p: &&consumer::status::PartitionStatus| p.end_offset.is_some_and(|e| e > 0);
    GroupLag {
        cluster: report.cluster.clone(),
        partitions: report.partitions.len(),
        unstarted: report.partitions.iter().filter(with_messages).filter(|p| p.progress.is_none()).count(),
        max_lag_messages: report.partitions.iter().filter_map(|p| p.lag_messages).max().unwrap_or(0),
        max_lag_seconds: report.partitions.iter().filter_map(|p| p.lag_seconds).fold(0.0, f64::max),
    }
}

/// Provisional retention readiness: the new cluster covers every retained
/// window once its coverage start is at least one retention period old.
/// To be replaced by `retention::readiness::assess(old, new)`.
pub fn retention_from_coverage(
    covered_from_ms: Option<i64>,
    new: &ClusterConfig,
    now: DateTime<Utc>,
) -> RetentionInput {
    let retention_ms = new.time.retention_ms();
    let Some(covered) = covered_from_ms.filter(|c| *c != i64::MAX) else {
        return RetentionInput {
            ready: false,
            ready_at: None,
            explanation: format!("cluster {} has not started every partition: no coverage yet", new.name),
        };
    };
    let needed_from = now.timestamp_millis() - retention_ms;
    let ready_at = DateTime::from_timestamp_millis(covered.saturating_add(retention_ms));
    let from_text = DateTime::from_timestamp_millis(covered).map_or_else(|| covered.to_string(), |t| t.to_rfc3339());
    RetentionInput {
        ready: covered <= needed_from,
        ready_at,
        explanation: format!(
            "cluster {} holds every event since {from_text}; retention is {}",
            new.name,
            humantime::format_duration(new.time.retention)
        ),
    }
}

/// Copier streams feeding the new cluster. Not linked on this branch: the
/// lead wires `copier::status::streams(new)` here and maps its fields.
pub async fn copier_streams(_new: &ClusterConfig) -> Result<Vec<StreamStatus>, String> {
    Err("copier status is not linked in this build (copier::status::streams)".to_owned())
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn provisional_retention_is_ready_one_retention_after_coverage_starts() {
        let text = "name = \"new\"\n[auth]\nuser = \"u\"\n[[shards]]\nrange = \"-\"\ndsn = \"mysql://h/db\"\n\
                    [time]\nminute_window = \"10s\"\nhour_window = \"60s\"\npartition = \"60s\"\nretention = \"80s\"\n";
        let new = ClusterConfig::from_toml_str(text, Path::new("."), &|_| None).expect("config");
        let now = DateTime::from_timestamp(1_000_000, 0).expect("now");
        let not_yet = retention_from_coverage(Some(now.timestamp_millis() - 30_000), &new, now);
        assert!(!not_yet.ready);
        assert_eq!(not_yet.ready_at.map(|t| t.timestamp()), Some(1_000_050));
        assert!(retention_from_coverage(Some(now.timestamp_millis() - 80_000), &new, now).ready);
        assert!(!retention_from_coverage(None, &new, now).ready);
        assert!(!retention_from_coverage(Some(i64::MAX), &new, now).ready);
    }
}
