//! The nightly comparator as a service: on a schedule, `windows`, the full
//! diff of every unbounded table of the pipeline and the report, into one dated directory per
//! run under `out`; the last `keep` are kept. A run never overlaps another:
//! this loop runs one at a time, and a lock in the new cluster's control
//! database keeps a second daemon (another replica) from starting one meanwhile.
//! Every `recheck_all_every` (weekly in production) a run re-digests windows
//! already proven equal, to catch edits made behind the consumers' back.

use crate::history::RunOutcome;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, NaiveTime, Utc};
use cluster::config::ClusterConfig;
use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::VerifyError;
use crate::table::{run_table, TableConfig};
use crate::windows::{run_windows, Range, WindowsConfig};

/// Name of a run's directory: its start time, UTC, sortable.
const DIR_FORMAT: &str = "%Y-%m-%dT%H%M%S%.3fZ";
/// Where the time of the last recheck-all run is kept, next to the reports.
const RECHECK_STATE: &str = "last-recheck-all";
/// Summary of one run, inside its directory.
pub const SUMMARY: &str = "nightly.json";

/// When runs start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Every day at this time, UTC.
    DailyAt(NaiveTime),
    /// At start, then this long after each run started (a run that takes
    /// longer is followed at once by the next, never overlapped).
    Every(Duration),
}

impl Schedule {
    /// The next start after `now`, given when the previous run started.
    pub fn next(&self, now: DateTime<Utc>, last_start: Option<DateTime<Utc>>) -> DateTime<Utc> {
        match *self {
            Schedule::Every(every) => match last_start {
                None => now,
                Some(last) => {
                    let due = last + chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
                    due.max(now)
                }
            },
            Schedule::DailyAt(at) => {
                let today = now.date_naive().and_time(at).and_utc();
                let already = last_start.is_some_and(|l| l >= today);
                if today > now && !already {
                    today
                } else {
                    today + chrono::Duration::days(1)
                }
            }
        }
    }
}

/// Parses `HH:MM` (UTC).
pub fn parse_at(text: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(text, "%H:%M").map_err(|e| format!("{e} (expected HH:MM in UTC, e.g. 02:00)"))
}

#[derive(Debug, Clone)]
pub struct NightlyConfig {
    pub old: ClusterConfig,
    pub new: ClusterConfig,
    pub schedule: Schedule,
    /// Windows starting in the last this long are compared.
    pub since: Duration,
    /// A run re-digests every window when the last such run is older than this.
    pub recheck_all_every: Option<Duration>,
    /// Root of the dated report directories.
    pub out: PathBuf,
    /// Dated directories kept (older ones are deleted after a run).
    pub keep: usize,
    /// Rows per shard per query of the full diff.
    pub page_rows: usize,
    /// Stop after this many runs (tests); `None` until shutdown.
    pub max_runs: Option<u64>,
}

impl NightlyConfig {
    pub fn validate(&self) -> Result<(), VerifyError> {
        if self.keep == 0 {
            return Err(VerifyError::Usage("keep must be at least 1".into()));
        }
        if matches!(self.schedule, Schedule::Every(d) if d.is_zero()) {
            return Err(VerifyError::Usage("every must be positive".into()));
        }
        if self.since.is_zero() {
            return Err(VerifyError::Usage("since must be positive".into()));
        }
        crate::spec::check_same_pipeline(&self.old, &self.new)?;
        crate::windows::check_same_windows(&self.old, &self.new)
    }
}

/// What one run did, written as `nightly.json` into its directory.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunSummary {
    pub started_at: String,
    pub finished_at: String,
    pub recheck_all: bool,
    /// equal, different, or incomplete (something was not settled or not covered).
    pub outcome: String,
    pub windows_outcome: String,
    pub table_outcome: String,
    pub differences: u64,
}

/// What a daemon did before it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NightlyStats {
    pub completed: u64,
    /// Skipped: another daemon's run held the lock.
    pub busy: u64,
    pub failed: u64,
}

/// Runs on the schedule until `shutdown` (or `max_runs`).
pub async fn run(config: NightlyConfig, shutdown: CancellationToken) -> Result<NightlyStats, VerifyError> {
    config.validate()?;
    std::fs::create_dir_all(&config.out).map_err(io_error(&config.out))?;
    let pools = cluster::pool::ShardPools::new(&config.new);
    let result = schedule_loop(&config, &pools, &shutdown).await;
    pools.disconnect().await;
    result
}

async fn schedule_loop(
    config: &NightlyConfig,
    pools: &cluster::pool::ShardPools,
    shutdown: &CancellationToken,
) -> Result<NightlyStats, VerifyError> {
    let control = pools.control().ok_or_else(|| VerifyError::NoControl(config.new.name.clone()))?;
    crate::history::ensure_tables(control).await?;
    crate::metrics::nightly_init();
    let mut last_start = None;
    let mut runs = 0u64;
    let mut stats = NightlyStats::default();
    loop {
        if config.max_runs.is_some_and(|max| runs >= max) {
            return Ok(stats);
        }
        let next = config.schedule.next(Utc::now(), last_start);
        crate::metrics::nightly_next(next);
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tracing::info!(next = %next.to_rfc3339(), "next nightly comparison");
        tokio::select! {
            () = shutdown.cancelled() => return Ok(stats),
            () = tokio::time::sleep(wait) => {}
        }
        let started = Utc::now();
        last_start = Some(started);
        runs += 1;
        let Some(lock) = try_lock(control).await? else {
            tracing::warn!("another nightly comparison holds the lock; this one is skipped");
            crate::metrics::nightly_run("busy");
            stats.busy += 1;
            continue;
        };
        crate::metrics::nightly_running(true);
        let recheck_all = recheck_due(config, started);
        let result = run_once(config, control, started, recheck_all, shutdown).await;
        crate::metrics::nightly_running(false);
        release(lock).await;
        match result {
            Ok(summary) => {
                stats.completed += 1;
                crate::metrics::nightly_run(&summary.outcome);
                crate::metrics::nightly_success(Utc::now());
                if recheck_all {
                    let state = config.out.join(RECHECK_STATE);
                    service::write_private(&state, started.to_rfc3339()).map_err(io_error(&state))?;
                }
                for removed in prune(&config.out, config.keep)? {
                    tracing::info!(dir = %removed.display(), "old report removed");
                }
                tracing::info!(outcome = %summary.outcome, recheck_all, differences = summary.differences, "nightly comparison finished");
            }
            Err(VerifyError::Cancelled) => return Ok(stats),
            Err(error) => {
                stats.failed += 1;
                crate::metrics::nightly_run("failed");
                tracing::error!(%error, "nightly comparison failed; the next one runs on schedule");
            }
        }
    }
}

/// One run into a directory named for `started`, written under a hidden
/// name first so a failed run leaves no dated directory behind.
async fn run_once(
    config: &NightlyConfig,
    control: &Pool,
    started: DateTime<Utc>,
    recheck_all: bool,
    shutdown: &CancellationToken,
) -> Result<RunSummary, VerifyError> {
    let name = started.format(DIR_FORMAT).to_string();
    let partial = config.out.join(format!(".{name}.partial"));
    let result = run_into(config, control, started, recheck_all, shutdown, &partial).await;
    match result {
        Ok(summary) => {
            let dir = config.out.join(&name);
            std::fs::rename(&partial, &dir).map_err(io_error(&dir))?;
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            Err(e)
        }
    }
}

async fn run_into(
    config: &NightlyConfig,
    control: &Pool,
    started: DateTime<Utc>,
    recheck_all: bool,
    shutdown: &CancellationToken,
    dir: &Path,
) -> Result<RunSummary, VerifyError> {
    let windows = WindowsConfig {
        old: config.old.clone(),
        new: config.new.clone(),
        range: Range::Since(config.since),
        recheck_all,
    };
    let windows = run_windows(&windows, shutdown).await?;
    let mut differences = windows.run.differences;
    let mut table_outcome = RunOutcome::Equal;
    for spec in crate::spec::unbounded(&config.old)? {
        let table = TableConfig {
            old: config.old.clone(),
            new: config.new.clone(),
            table: spec,
            page_rows: config.page_rows,
            restart: false,
            stop_after_rows: None,
        };
        let outcome = run_table(&table, shutdown).await?;
        if !outcome.complete {
            return Err(VerifyError::Cancelled);
        }
        differences += outcome.run.differences;
        if outcome.run.outcome != RunOutcome::Equal {
            table_outcome = outcome.run.outcome;
        }
    }
    let now = Utc::now().timestamp();
    let from = now - i64::try_from(config.since.as_secs()).unwrap_or(i64::MAX / 2);
    let report = crate::report::build(control, &config.new, from, now).await?;
    crate::report::write(&report, dir)?;
    let outcome = match (windows.run.outcome, table_outcome) {
        (RunOutcome::Equal, RunOutcome::Equal) => "equal",
        (RunOutcome::Different, _) | (_, RunOutcome::Different) => "different",
        _ => "incomplete",
    };
    let summary = RunSummary {
        started_at: started.to_rfc3339(),
        finished_at: Utc::now().to_rfc3339(),
        recheck_all,
        outcome: outcome.to_owned(),
        windows_outcome: windows.run.outcome.as_str().to_owned(),
        table_outcome: table_outcome.as_str().to_owned(),
        differences,
    };
    let path = dir.join(SUMMARY);
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| VerifyError::Unexpected(e.to_string()))?;
    service::write_private(&path, json).map_err(io_error(&path))?;
    Ok(summary)
}

/// Whether this run re-digests every window: when none did within the period.
fn recheck_due(config: &NightlyConfig, now: DateTime<Utc>) -> bool {
    let Some(every) = config.recheck_all_every else { return false };
    let last = std::fs::read_to_string(config.out.join(RECHECK_STATE))
        .ok()
        .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
        .map(|t| t.with_timezone(&Utc));
    match last {
        None => true,
        Some(last) => now - last >= chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX),
    }
}

/// Deletes all but the newest `keep` dated directories; anything else in `out`
/// (names that are not a run's) is left alone.
pub fn prune(out: &Path, keep: usize) -> Result<Vec<PathBuf>, VerifyError> {
    let mut dated = dated_dirs(out)?;
    let excess = dated.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for (_, path) in dated.drain(..excess) {
        std::fs::remove_dir_all(&path).map_err(io_error(&path))?;
        removed.push(path);
    }
    Ok(removed)
}

/// The run directories under `out`, oldest first.
pub fn dated_dirs(out: &Path) -> Result<Vec<(NaiveDateTime, PathBuf)>, VerifyError> {
    let mut dated = Vec::new();
    for entry in std::fs::read_dir(out).map_err(io_error(out))? {
        let entry = entry.map_err(io_error(out))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let Ok(at) = NaiveDateTime::parse_from_str(&name, DIR_FORMAT) else { continue };
        if entry.path().is_dir() {
            dated.push((at, entry.path()));
        }
    }
    dated.sort();
    Ok(dated)
}

/// A connection holding the nightly lock of this control database, or `None`
/// if another daemon's run holds it. MySQL 8 and MariaDB both release a
/// `GET_LOCK` when its connection ends, so a crashed run never blocks the next.
async fn try_lock(control: &Pool) -> Result<Option<mysql_async::Conn>, VerifyError> {
    let mut conn = control.get_conn().await.map_err(VerifyError::Control)?;
    let got: Option<i64> = conn
        .query_first("SELECT GET_LOCK(CONCAT('dualwrite_verify_nightly.', DATABASE()), 0)")
        .await
        .map_err(VerifyError::Control)?;
    Ok((got == Some(1)).then_some(conn))
}

async fn release(mut conn: mysql_async::Conn) {
    let released: Result<Option<i64>, _> =
        conn.query_first("SELECT RELEASE_LOCK(CONCAT('dualwrite_verify_nightly.', DATABASE()))").await;
    if let Err(error) = released {
        // The lock goes with the connection, which is dropped next.
        tracing::warn!(%error, "releasing the nightly lock failed");
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> VerifyError {
    let path = path.display().to_string();
    move |source| VerifyError::Report { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn every_runs_at_start_then_after_each_start_never_before_now() {
        let every = Schedule::Every(Duration::from_secs(3600));
        let now = at("2026-12-01T10:00:00Z");
        assert_eq!(every.next(now, None), now);
        assert_eq!(every.next(now, Some(at("2026-12-01T09:30:00Z"))), at("2026-12-01T10:30:00Z"));
        // a run longer than the period: the next starts at once, not in the past
        assert_eq!(every.next(now, Some(at("2026-12-01T08:00:00Z"))), now);
    }

    #[test]
    fn daily_runs_at_the_next_time_of_day_once_a_day() {
        let daily = Schedule::DailyAt(parse_at("02:00").expect("at"));
        assert_eq!(daily.next(at("2026-12-01T01:00:00Z"), None), at("2026-12-01T02:00:00Z"));
        assert_eq!(daily.next(at("2026-12-01T02:00:00Z"), None), at("2026-12-02T02:00:00Z"));
        assert_eq!(daily.next(at("2026-12-01T03:00:00Z"), None), at("2026-12-02T02:00:00Z"));
        // today's run already started (and finished before 02:00 ended): tomorrow
        assert_eq!(
            daily.next(at("2026-12-01T01:59:59Z"), Some(at("2026-12-01T02:00:00Z"))),
            at("2026-12-02T02:00:00Z")
        );
        assert!(parse_at("2am").is_err());
    }

    #[test]
    fn prune_keeps_the_newest_dated_directories_and_nothing_else_is_touched() {
        let out = tempfile::tempdir().expect("tempdir");
        let names = ["2026-11-29T020000.000Z", "2026-11-30T020000.000Z", "2026-12-01T020000.000Z"];
        for name in names {
            std::fs::create_dir(out.path().join(name)).expect("mkdir");
        }
        std::fs::create_dir(out.path().join("notes")).expect("mkdir");
        std::fs::write(out.path().join("2026-11-01T020000.000Z"), "a file, not a run").expect("write");
        let removed = prune(out.path(), 2).expect("prune");
        assert_eq!(removed, vec![out.path().join(names[0])]);
        let left: Vec<PathBuf> = dated_dirs(out.path()).expect("list").into_iter().map(|(_, p)| p).collect();
        assert_eq!(left, vec![out.path().join(names[1]), out.path().join(names[2])]);
        assert!(out.path().join("notes").is_dir());
        assert!(out.path().join("2026-11-01T020000.000Z").is_file());
    }
}
