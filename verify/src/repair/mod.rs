//! `dualwrite-verify repair`: rewrites the differing keys of a finished
//! comparator run on the target cluster from the authoritative one (the old
//! cluster before cutover; the new one after a rollback), each key placed by
//! the target's shard map: a missing row is inserted, an extra one deleted,
//! a changed one replaced, a row on a shard that does not own it moved to
//! its owner. Everything comes from the pipeline description (the table's
//! kind, key, columns, sharding column and topic) and the run's drill-down.
//!
//! Race freedom ([`apply`], [`fences`], docs/ARCHITECTURE.md): each key is
//! rewritten in a transaction holding the fence rows of its topic on the
//! key's target shard and, in a transaction on the source, on its source
//! shard, so neither group writes the key meanwhile; the copy is made only
//! when those fences show the two rows reflect the messages the table kind
//! needs (the same offsets for a rollup). Only windows settled on both
//! clusters are repaired; every key gets an audit row ([`audit`]), so a
//! repair resumes where it stopped; the repaired windows and tables are
//! then compared again with the comparators themselves.

mod apply;
pub mod audit;
mod fences;
pub(crate) mod key;
mod locate;
pub mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use cluster::fence::{window_state, PartitionProgress, WindowState};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::confirm::cluster_progress;
use crate::diff::DiffKind;
use crate::digest::Side;
use crate::error::VerifyError;
use crate::history::{self, RunOutcome};
use crate::spec::{self, TableSpec};
use apply::{repair_key, KeyContext};
use audit::{KeyState, PendingKey};
use fences::Rule;
use key::RepairKey;

/// Repaired keys, by table and action (`replaced`, `inserted`, `deleted`, `moved`).
pub const REPAIRED_KEYS: &str = "dualwrite_verify_repaired_keys_total";
/// Keys a repair left waiting because the fences never lined up, by table.
pub const WAITING_KEYS: &str = "dualwrite_verify_repair_waiting_keys_total";

/// Which cluster holds the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Authority {
    /// Before cutover: the old cluster; the new one is repaired.
    Old,
    /// After a rollback: the new cluster; the old one is repaired.
    New,
}

impl Authority {
    pub fn as_str(self) -> &'static str {
        match self {
            Authority::Old => "old",
            Authority::New => "new",
        }
    }
}

impl std::str::FromStr for Authority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "old" => Ok(Authority::Old),
            "new" => Ok(Authority::New),
            other => Err(format!("--from: old or new, not {other:?}")),
        }
    }
}

/// One `repair`.
#[derive(Debug, Clone)]
pub struct RepairConfig {
    pub old: ClusterConfig,
    pub new: ClusterConfig,
    /// The finished comparator run whose differences are repaired.
    pub run_id: u64,
    /// Only this table.
    pub table: Option<String>,
    /// Only the window starting at this time (epoch seconds).
    pub window: Option<i64>,
    /// Print the statements; change nothing (no audit either).
    pub dry_run: bool,
    pub from: Authority,
    /// The consumers' topic prefix; found from the fence rows when absent.
    pub topic_prefix: Option<String>,
    /// How long one key waits for its shards' fences to line up.
    pub wait: Duration,
    /// Compare the repaired windows and tables again at the end.
    pub reverify: bool,
}

/// A comparator run made to re-verify what was repaired.
#[derive(Debug, Clone, Serialize)]
pub struct Reverified {
    /// `windows` or `table`.
    pub kind: String,
    /// `windows` or the table's name.
    pub target: String,
    pub run_id: u64,
    pub outcome: RunOutcome,
    /// Repaired windows (of the `windows` run) not found equal: (table, start,
    /// state). While late messages keep arriving a repaired window may come
    /// back `not_settled` (it changed between the comparator's two reads):
    /// compare it again later.
    pub not_equal: Vec<(String, i64, String)>,
}

/// What a repair did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairOutcome {
    pub run_id: u64,
    pub source: String,
    pub target: String,
    pub keys: u64,
    /// Keys by final state in this process (`repaired`, `equal`, `waiting`, `skipped`, and
    /// `done_before` for keys a previous process finished).
    pub states: BTreeMap<String, u64>,
    /// Repaired keys by action.
    pub actions: BTreeMap<String, u64>,
    /// The statements, in order (a dry run prints them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<String>,
    pub reverified: Vec<Reverified>,
    pub duration_ms: u64,
}

impl RepairOutcome {
    /// Every key is repaired or equal, and every re-verification is equal.
    pub fn complete(&self) -> bool {
        let open = ["waiting", "skipped", "pending"].iter().any(|s| self.states.get(*s).copied().unwrap_or(0) > 0);
        !open && self.reverified.iter().all(|r| r.outcome == RunOutcome::Equal && r.not_equal.is_empty())
    }
}

/// One key to repair: the drill-down's differences merged per key.
#[derive(Debug, Clone)]
struct KeyJob {
    tbl: String,
    window_start: Option<i64>,
    key: String,
    kinds: BTreeSet<DiffKind>,
}

/// Runs a repair (see the module docs).
pub async fn run_repair(config: &RepairConfig, shutdown: &CancellationToken) -> Result<RepairOutcome, VerifyError> {
    spec::check_same_pipeline(&config.old, &config.new)?;
    crate::windows::check_same_windows(&config.old, &config.new)?;
    let (source_config, target_config) = match config.from {
        Authority::Old => (&config.old, &config.new),
        Authority::New => (&config.new, &config.old),
    };
    let source = Side::new(source_config.clone());
    let target = Side::new(target_config.clone());
    // The history (and the audit beside it) lives in the new cluster's control database.
    let history_side = Side::new(config.new.clone());
    let result = repair_with(config, &source, &target, &history_side, shutdown).await;
    source.pools.disconnect().await;
    target.pools.disconnect().await;
    history_side.pools.disconnect().await;
    result
}

async fn repair_with(
    config: &RepairConfig,
    source: &Side,
    target: &Side,
    history_side: &Side,
    shutdown: &CancellationToken,
) -> Result<RepairOutcome, VerifyError> {
    let started = Instant::now();
    let control =
        history_side.pools.control().ok_or_else(|| VerifyError::NoControl(history_side.name().to_string()))?;
    history::ensure_tables(control).await?;
    let run = history::run(control, config.run_id)
        .await?
        .ok_or_else(|| VerifyError::Usage(format!("no comparator run {}", config.run_id)))?;
    if run.outcome == RunOutcome::Running || run.finished_at_ms.is_none() {
        return Err(VerifyError::Usage(format!("run {} has not finished: repair a finished run", config.run_id)));
    }
    let jobs = jobs_of_run(control, config).await?;
    let mut outcome = RepairOutcome {
        run_id: config.run_id,
        source: config.from.as_str().to_string(),
        target: target.name().to_string(),
        keys: u64::try_from(jobs.len()).unwrap_or(u64::MAX),
        ..RepairOutcome::default()
    };
    tracing::info!(
        run_id = config.run_id,
        source = source.name(),
        target = target.name(),
        keys = jobs.len(),
        dry_run = config.dry_run,
        "repair started"
    );
    if !config.dry_run {
        let pending: Vec<PendingKey<'_>> = jobs
            .iter()
            .map(|j| PendingKey {
                tbl: &j.tbl,
                window_start: j.window_start,
                key: &j.key,
                kinds: j.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(","),
            })
            .collect();
        audit::record_pending(control, config.run_id, config.from.as_str(), &pending).await?;
    }
    let done_before: BTreeSet<(String, String)> = audit::keys_of_run(control, config.run_id, config.from.as_str())
        .await?
        .into_iter()
        .filter(|r| r.state.is_final())
        .map(|r| (r.tbl, r.key))
        .collect();
    let (source_progress, target_progress) = futures::try_join!(cluster_progress(source), cluster_progress(target))?;
    let settled = Settlement::new(config, source_progress, target_progress);

    let mut by_table: BTreeMap<String, Vec<&KeyJob>> = BTreeMap::new();
    for job in &jobs {
        if done_before.contains(&(job.tbl.clone(), job.key.clone())) {
            *outcome.states.entry("done_before".into()).or_default() += 1;
            continue;
        }
        by_table.entry(job.tbl.clone()).or_default().push(job);
    }
    let fenced = fenced_topics(target).await?;
    let mut progress = Progress::new(jobs.len());
    let mut repaired_windows: BTreeMap<String, BTreeSet<Option<i64>>> = BTreeMap::new();
    for (tbl, table_jobs) in by_table {
        let table = spec::table(&source.config, &tbl)?.ok_or_else(|| {
            VerifyError::Usage(format!("table {tbl} of run {} is not in the pipeline", config.run_id))
        })?;
        let described = source
            .config
            .pipeline
            .table(&tbl)
            .ok_or_else(|| VerifyError::Usage(format!("table {tbl} is not in the pipeline")))?;
        let topic_name = &source.config.pipeline.topic_of(described).name;
        let topic = fences::resolve_topic(topic_name, config.topic_prefix.as_deref(), &fenced)?;
        let keys: Vec<(&KeyJob, RepairKey)> =
            table_jobs.iter().map(|j| RepairKey::parse(&table, &j.key).map(|k| (*j, k))).collect::<Result<_, _>>()?;
        let located = locate::locate(source, target, &table, &keys.iter().map(|(_, k)| k).collect::<Vec<_>>()).await?;
        let ctx = KeyContext {
            source,
            target,
            table: &table,
            topic: &topic,
            control,
            run_id: config.run_id,
            source_name: config.from.as_str(),
            dry_run: config.dry_run,
            wait: config.wait,
        };
        for ((job, key), found) in keys.iter().zip(located) {
            if shutdown.is_cancelled() {
                return Err(VerifyError::Cancelled);
            }
            let state = if !settled.is_settled(&table, job.window_start) {
                skip(config, control, job, "window no longer covered by both clusters").await?
            } else {
                match rule_and_place(&table, described.kind, key, &found, &source.config.pipeline) {
                    None => {
                        // No row anywhere, and the key does not say where it belongs: nothing to move.
                        finish(config, control, job, KeyState::Equal, None).await?
                    }
                    Some((rule, located)) => {
                        let result = repair_key(&ctx, &job.key, key, &located, rule).await?;
                        outcome.statements.extend(result.statements.iter().cloned());
                        match result.state {
                            KeyState::Repaired => {
                                *outcome.actions.entry(result.action.to_string()).or_default() += 1;
                                metrics::counter!(REPAIRED_KEYS, "table" => tbl.clone(), "action" => result.action)
                                    .increment(1);
                                repaired_windows.entry(tbl.clone()).or_default().insert(job.window_start);
                            }
                            KeyState::Waiting => {
                                metrics::counter!(WAITING_KEYS, "table" => tbl.clone()).increment(1);
                                finish(config, control, job, KeyState::Waiting, Some("fences did not line up")).await?;
                            }
                            KeyState::Equal => {
                                finish(config, control, job, KeyState::Equal, None).await?;
                            }
                            _ => {}
                        }
                        result.state
                    }
                }
            };
            let name = if config.dry_run && state == KeyState::Pending { "planned" } else { state.as_str() };
            *outcome.states.entry(name.to_string()).or_default() += 1;
            progress.tick();
        }
    }
    if config.reverify && !config.dry_run {
        outcome.reverified = reverify(config, control, &repaired_windows, shutdown).await?;
    }
    outcome.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        run_id = config.run_id,
        keys = outcome.keys,
        states = ?outcome.states,
        actions = ?outcome.actions,
        duration_ms = outcome.duration_ms,
        "repair finished"
    );
    Ok(outcome)
}

/// The rule for a key and where it belongs; `None` when it cannot be
/// placed (an append key none of whose rows exists anywhere).
fn rule_and_place(
    table: &TableSpec,
    kind: pipeline::TableKind,
    key: &RepairKey,
    found: &locate::Found,
    pipeline: &pipeline::Pipeline,
) -> Option<(Rule, apply::Located)> {
    let keyspace_id = key.keyspace_id(table, pipeline.sharding.vindex, found.sharding_value.as_deref())?;
    let message = match kind {
        pipeline::TableKind::Append => {
            let described = pipeline.table(&table.name)?;
            let at = |source: pipeline::Source| {
                described.columns.iter().position(|c| c.source == source).and_then(|i| key.value_of(table, i))
            };
            let partition = at(pipeline::Source::Partition)?.parse().ok()?;
            let offset = at(pipeline::Source::Offset)?.parse().ok()?;
            Some((partition, offset))
        }
        _ => None,
    };
    let rule = Rule::of(kind, message).ok()?;
    Some((rule, apply::Located { target_shards: found.target_shards.clone(), keyspace_id }))
}

async fn skip(
    config: &RepairConfig,
    control: &mysql_async::Pool,
    job: &KeyJob,
    why: &str,
) -> Result<KeyState, VerifyError> {
    tracing::warn!(table = %job.tbl, key = %job.key, why, "key skipped");
    finish(config, control, job, KeyState::Skipped, Some(why)).await
}

async fn finish(
    config: &RepairConfig,
    control: &mysql_async::Pool,
    job: &KeyJob,
    state: KeyState,
    detail: Option<&str>,
) -> Result<KeyState, VerifyError> {
    if !config.dry_run {
        let update = audit::KeyUpdate {
            state: Some(state),
            action: Some("none".into()),
            detail: detail.map(str::to_string),
            ..audit::KeyUpdate::default()
        };
        audit::update(control, config.run_id, config.from.as_str(), &job.tbl, &job.key, &update).await?;
    }
    Ok(state)
}

/// The run's differences, filtered by `--table` and `--window`, one job per key.
async fn jobs_of_run(control: &mysql_async::Pool, config: &RepairConfig) -> Result<Vec<KeyJob>, VerifyError> {
    let mut jobs: BTreeMap<(String, Option<i64>, String), BTreeSet<DiffKind>> = BTreeMap::new();
    for stored in history::differences_of_run(control, config.run_id).await? {
        let d = stored.difference;
        if config.table.as_ref().is_some_and(|t| *t != d.tbl)
            || config.window.is_some_and(|w| Some(w) != d.window_start)
        {
            continue;
        }
        jobs.entry((d.tbl, d.window_start, d.key)).or_default().insert(d.kind);
    }
    Ok(jobs.into_iter().map(|((tbl, window_start, key), kinds)| KeyJob { tbl, window_start, key, kinds }).collect())
}

async fn fenced_topics(target: &Side) -> Result<Vec<String>, VerifyError> {
    let shard = target.pools.shard(0);
    cluster::fence::fenced_topics(shard).await.map_err(|e| target.shard_error(0, e))
}

/// Which windows are settled on both clusters now.
struct Settlement {
    source: Vec<PartitionProgress>,
    target: Vec<PartitionProgress>,
    partitions: Vec<(String, i32)>,
    lateness_ms: i64,
}

impl Settlement {
    fn new(config: &RepairConfig, source: Vec<PartitionProgress>, target: Vec<PartitionProgress>) -> Self {
        let partitions = source
            .iter()
            .chain(&target)
            .map(|p| (p.topic.clone(), p.partition))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Self { source, target, partitions, lateness_ms: config.old.time.allowed_lateness_ms() }
    }

    /// Whether a key of `window_start` may be repaired. The run recorded
    /// differences only in windows it found settled on both clusters (and
    /// still different once both had applied the same offsets), and a settled
    /// window stays settled: its fences only move on. What can change since is
    /// coverage: a window a cluster no longer covers (an offset gap restarted
    /// its coverage, or retention is about to drop it) is skipped. The fences
    /// read now may call a settled window unsettled only through idle
    /// confirmation (`reached_end`) flapping while a burst is applied, which
    /// says nothing about the window. A `latest` key (no window) is always
    /// repairable.
    fn is_settled(&self, table: &TableSpec, window_start: Option<i64>) -> bool {
        let Some(start) = window_start else { return true };
        let (start_ms, end_ms) = (start * 1000, (start + table.window_secs()) * 1000);
        [&self.source, &self.target].iter().all(|p| {
            window_state(p, Some(&self.partitions), start_ms, end_ms, self.lateness_ms) != WindowState::NotCovered
        })
    }
}

/// Compares the repaired windows and tables again with the comparators.
async fn reverify(
    config: &RepairConfig,
    control: &mysql_async::Pool,
    repaired: &BTreeMap<String, BTreeSet<Option<i64>>>,
    shutdown: &CancellationToken,
) -> Result<Vec<Reverified>, VerifyError> {
    let mut out = Vec::new();
    let mut windowed: Vec<(String, i64, i64)> = Vec::new();
    for (tbl, windows) in repaired {
        let table = spec::table(&config.old, tbl)?.ok_or_else(|| VerifyError::Usage(format!("table {tbl}")))?;
        for start in windows.iter().flatten() {
            windowed.push((tbl.clone(), *start, *start + table.window_secs()));
        }
        if windows.contains(&None) {
            let table_config = crate::table::TableConfig {
                old: config.old.clone(),
                new: config.new.clone(),
                table,
                page_rows: 5000,
                restart: true,
                stop_after_rows: None,
            };
            let run = crate::table::run_table(&table_config, shutdown).await?;
            audit::set_reverified(control, config.run_id, config.from.as_str(), tbl, None, run.run.run_id).await?;
            tracing::info!(table = %tbl, run_id = run.run.run_id, outcome = %run.run.outcome, "repaired table compared again");
            out.push(Reverified {
                kind: "table".into(),
                target: tbl.clone(),
                run_id: run.run.run_id,
                outcome: run.run.outcome,
                not_equal: Vec::new(),
            });
        }
    }
    if let (Some(from), Some(to)) = (windowed.iter().map(|w| w.1).min(), windowed.iter().map(|w| w.2).max()) {
        // The repaired windows are `different` in the history, so the run
        // digests them again; windows proven equal around them are reused.
        let windows_config = crate::windows::WindowsConfig {
            old: config.old.clone(),
            new: config.new.clone(),
            range: crate::windows::Range::Between(from, to),
            recheck_all: false,
        };
        let run = crate::windows::run_windows(&windows_config, shutdown).await?;
        let mut not_equal = Vec::new();
        for (tbl, start, _) in &windowed {
            audit::set_reverified(control, config.run_id, config.from.as_str(), tbl, Some(*start), run.run.run_id)
                .await?;
            let state = run.windows.iter().find(|w| &w.tbl == tbl && w.window_start == *start).map(|w| w.state);
            if state != Some(history::WindowVerdict::Equal) {
                let name = state.map_or("not_compared", history::WindowVerdict::as_str);
                not_equal.push((tbl.clone(), *start, name.to_string()));
            }
        }
        tracing::info!(
            run_id = run.run.run_id,
            outcome = %run.run.outcome,
            windows = windowed.len(),
            not_equal = not_equal.len(),
            "repaired windows compared again"
        );
        let outcome = if not_equal.is_empty() { RunOutcome::Equal } else { run.run.outcome };
        out.push(Reverified {
            kind: "windows".into(),
            target: "windows".into(),
            run_id: run.run.run_id,
            outcome,
            not_equal,
        });
    }
    Ok(out)
}

/// Keys done and the rate, logged every few seconds.
struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    last_log: Instant,
}

impl Progress {
    fn new(total: usize) -> Self {
        let now = Instant::now();
        Self { total, done: 0, started: now, last_log: now }
    }

    fn tick(&mut self) {
        self.done += 1;
        if self.last_log.elapsed() >= Duration::from_secs(5) || self.done == self.total {
            self.last_log = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            tracing::info!(
                done = self.done,
                total = self.total,
                keys_per_s = format!("{:.1}", self.done as f64 / secs),
                "repair progress"
            );
        }
    }
}

/// HELP text for the repair's counters.
pub fn describe() {
    metrics::describe_counter!(REPAIRED_KEYS, "Keys a repair rewrote on the target cluster, by table and action.");
    metrics::describe_counter!(WAITING_KEYS, "Keys a repair left waiting because the fences never lined up, by table.");
}
