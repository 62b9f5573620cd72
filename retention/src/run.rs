//! One-shot and daemon runs of the partition job, with metrics.

use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::RetentionError;
use crate::execute::{run_cluster, RunOptions, ShardOutcome};
use crate::plan::Policy;

#[derive(Debug, Clone)]
pub struct RetentionConfig {
    pub cluster: ClusterConfig,
    /// Keep windows starting at or after now minus this (default: `[time] retention`).
    pub keep: Duration,
    /// Partitions ready through now plus this (default: `[time] ahead`).
    pub ahead: Duration,
    /// Daemon mode: run again this long after each run; `None` = one run.
    pub every: Option<Duration>,
    pub dry_run: bool,
    /// Longest wait for a table's metadata lock per statement.
    pub lock_wait: Duration,
    /// Drops are refused on a shard whose clock differs from this job's by more.
    pub max_clock_skew: Duration,
    /// Why `keep` may be shorter than `[time] retention` (`--force --reason`).
    pub force_reason: Option<String>,
}

impl RetentionConfig {
    /// The defaults from the cluster file's `[time]`.
    pub fn for_cluster(cluster: ClusterConfig) -> Self {
        let time = cluster.time;
        Self {
            cluster,
            keep: time.retention,
            ahead: time.ahead,
            every: None,
            dry_run: false,
            lock_wait: Duration::from_secs(5),
            max_clock_skew: Duration::from_secs(300),
            force_reason: None,
        }
    }

    pub fn validate(&self) -> Result<(), RetentionError> {
        let time = &self.cluster.time;
        if self.keep < time.hour_window {
            return Err(RetentionError::Config {
                field: "keep",
                why: format!("must be at least one hour window ({:?})", time.hour_window),
            });
        }
        if self.keep < time.retention && self.force_reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(RetentionError::Config {
                field: "keep",
                why: format!(
                    "{} is shorter than [time] retention ({}): windows the consumers still write would be dropped; \
                     pass --force --reason <why> to do it anyway",
                    humantime::format_duration(self.keep),
                    humantime::format_duration(time.retention)
                ),
            });
        }
        if self.ahead < time.partition {
            return Err(RetentionError::Config {
                field: "ahead",
                why: format!("must be at least one partition ({:?})", time.partition),
            });
        }
        if self.every.is_some_and(|e| e.is_zero()) {
            return Err(RetentionError::Config { field: "every", why: "must be positive".into() });
        }
        if self.lock_wait.as_secs() == 0 {
            return Err(RetentionError::Config { field: "lock_wait", why: "must be at least 1s".into() });
        }
        Ok(())
    }

    fn options(&self) -> RunOptions {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4);
        RunOptions {
            policy: Policy {
                width: self.cluster.time.partition_secs(),
                keep: secs(self.keep),
                ahead: secs(self.ahead),
            },
            dry_run: self.dry_run,
            lock_wait: self.lock_wait,
            max_clock_skew: self.max_clock_skew,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub cluster: String,
    pub dry_run: bool,
    pub now: i64,
    pub shards: Vec<ShardOutcome>,
    pub created: usize,
    pub dropped: usize,
    pub errors: usize,
    /// Oldest window start held in full by every table on every shard.
    pub oldest_retained: Option<i64>,
    /// Shards where a clock guard limited or refused drops, with why.
    pub drops_refused: Vec<(String, String)>,
}

/// One pass over every shard at `now` (seconds since the epoch).
pub async fn run_once(config: &RetentionConfig, pools: &ShardPools, now: i64) -> RunSummary {
    let started = Instant::now();
    let shards = run_cluster(&config.cluster, pools, config.options(), now).await;
    let tables = shards.iter().flat_map(|s| &s.tables);
    let created = tables.clone().map(|t| t.plan.create.len()).sum();
    let dropped = tables.clone().map(|t| t.plan.drop.len()).sum();
    let oldest_retained = tables.map(|t| t.retained_from).max();
    let errors = shards.iter().filter(|s| s.error.is_some()).count();
    let drops_refused: Vec<(String, String)> =
        shards.iter().filter_map(|s| Some((s.shard.clone(), s.drops_refused.clone()?))).collect();
    for s in shards.iter().filter(|s| s.error.is_some()) {
        tracing::error!(cluster = %config.cluster.name, shard = %s.shard, error = s.error.as_deref().unwrap_or(""), "retention failed on shard");
    }
    let ready_through = shards.iter().flat_map(|s| &s.tables).map(|t| t.ready_through).min();
    if !config.dry_run {
        crate::metrics::record_run(&config.cluster.name, created, dropped, errors, oldest_retained, ready_through);
        crate::metrics::ahead(&config.cluster.name, config.ahead);
        crate::metrics::run_duration(&config.cluster.name, started.elapsed());
    }
    tracing::info!(
        cluster = %config.cluster.name,
        dry_run = config.dry_run,
        created,
        dropped,
        errors,
        oldest_retained = oldest_retained.and_then(|s| chrono::DateTime::from_timestamp(s, 0)).map(|t| t.to_rfc3339()),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "retention run finished"
    );
    RunSummary {
        cluster: config.cluster.name.clone(),
        dry_run: config.dry_run,
        now,
        shards,
        created,
        dropped,
        errors,
        oldest_retained,
        drops_refused,
    }
}

/// Runs once, or (with `every`) until `shutdown`; returns the last summary.
pub async fn run(config: RetentionConfig, shutdown: CancellationToken) -> Result<RunSummary, RetentionError> {
    config.validate()?;
    let pools = ShardPools::new(&config.cluster);
    let mut summary = run_once(&config, &pools, chrono::Utc::now().timestamp()).await;
    if let Some(every) = config.every {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
            summary = run_once(&config, &pools, chrono::Utc::now().timestamp()).await;
        }
    }
    pools.disconnect().await;
    Ok(summary)
}
