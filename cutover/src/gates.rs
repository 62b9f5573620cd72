//! The cutover gates: a pure evaluation over plain inputs (collected by
//! [`crate::collect`]), so every rule is unit-tested without servers. Each
//! result says whether the gate passes, why, and what would clear it.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use copier::status::{Phase, StreamStatus};
use retention::Readiness;
use verify::history::{DifferentWindows, RunOutcome, RunRecord};

use crate::group::{Groups, TableGroup};
use crate::state::ShadowTotals;

/// What the comparators last found, as `verify::history` reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyInput {
    /// The latest finished `windows` run.
    pub windows_run: Option<RunRecord>,
    /// Windows currently marked different, and the oldest few.
    pub different: DifferentWindows,
    /// Per copied table, its latest finished `table` run.
    pub table_runs: Vec<(String, Option<RunRecord>)>,
}

/// Shadow reads over the recent period, every router summed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowInput {
    pub period: Duration,
    pub totals: ShadowTotals,
}

/// One partition of one group: how far it applied against the topic's end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The partition's end on the broker.
    pub end_offset: i64,
    /// The group's next offset from its fence; `None`: never applied.
    pub next_offset: Option<i64>,
    pub lag_messages: Option<i64>,
    /// Age of the newest applied message while behind; 0 when caught up.
    pub lag_seconds: Option<f64>,
    /// Windows from here on are covered by this partition (epoch ms).
    pub covered_from_ms: Option<i64>,
    /// The live member holding it (`cluster::members`); `None`: no member
    /// heard from recently claims it, or the owners are unknown.
    pub owner: Option<String>,
}

/// One consumer group's lag behind the topics, per partition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupLag {
    pub cluster: String,
    pub partitions: Vec<PartitionLag>,
    /// Why the partitions' owners are unknown (the members' heartbeats could
    /// not be read); `None` when they were read.
    pub owners_unknown: Option<String>,
}

impl GroupLag {
    /// Partitions holding messages the group never applied.
    pub fn unstarted(&self) -> usize {
        self.partitions.iter().filter(|p| p.end_offset > 0 && p.next_offset.is_none()).count()
    }

    pub fn max_lag_messages(&self) -> i64 {
        self.partitions.iter().filter_map(|p| p.lag_messages).max().unwrap_or(0)
    }

    pub fn max_lag_seconds(&self) -> f64 {
        self.partitions.iter().filter_map(|p| p.lag_seconds).fold(0.0, f64::max)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LagInput {
    pub old: GroupLag,
    pub new: GroupLag,
}

/// Every gate's input; `Err` says why it could not be collected.
#[derive(Debug, Clone, Serialize)]
pub struct GateInputs {
    pub now: DateTime<Utc>,
    pub retention: Result<Readiness, String>,
    pub verify: Result<VerifyInput, String>,
    pub copier: Result<Vec<StreamStatus>, String>,
    pub shadow: Result<ShadowInput, String>,
    pub lag: Result<LagInput, String>,
}

/// Limits the gates apply.
#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    /// The latest equivalence run must have finished within this.
    pub verify_max_age: Duration,
    pub copier_max_lag_seconds: f64,
    pub copier_max_lag_events: u64,
    /// A stream's status must have been updated within this.
    pub copier_max_staleness: Duration,
    /// Mismatches / compared over the shadow period must not exceed this.
    pub shadow_max_mismatch_rate: f64,
    /// Fewer comparisons than this prove nothing.
    pub shadow_min_compared: u64,
    pub lag_max_messages: i64,
    pub lag_max_seconds: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            verify_max_age: Duration::from_secs(26 * 3600),
            copier_max_lag_seconds: 5.0,
            copier_max_lag_events: 1000,
            copier_max_staleness: Duration::from_secs(60),
            shadow_max_mismatch_rate: 0.0,
            shadow_min_compared: 50,
            lag_max_messages: 50_000,
            lag_max_seconds: 60.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    Retention,
    Verify,
    Copier,
    ShadowReads,
    ConsumerLag,
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Gate::Retention => "retention",
            Gate::Verify => "verify",
            Gate::Copier => "copier",
            Gate::ShadowReads => "shadow_reads",
            Gate::ConsumerLag => "consumer_lag",
        })
    }
}

/// One gate's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    pub gate: Gate,
    pub passed: bool,
    /// What was found.
    pub detail: String,
    /// What would clear a failed gate.
    pub to_clear: Option<String>,
}

impl GateResult {
    fn pass(gate: Gate, detail: impl Into<String>) -> Self {
        Self { gate, passed: true, detail: detail.into(), to_clear: None }
    }

    fn fail(gate: Gate, detail: impl Into<String>, to_clear: impl Into<String>) -> Self {
        Self { gate, passed: false, detail: detail.into(), to_clear: Some(to_clear.into()) }
    }

    fn unavailable(gate: Gate, why: &str) -> Self {
        Self::fail(gate, format!("not evaluated: {why}"), "make the gate's input available (see detail)")
    }
}

impl fmt::Display for GateResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.passed { "pass" } else { "FAIL" };
        write!(f, "{mark:<4} {:<13} {}", self.gate.to_string(), self.detail)?;
        if let Some(clear) = &self.to_clear {
            write!(f, "\n     {:<13} to clear: {clear}", "")?;
        }
        Ok(())
    }
}

/// The gates that apply to switching `switching` (groups of `groups`),
/// evaluated: retention when a group holds windowed tables (they age in),
/// the copier and the copied tables' full diffs when one holds tables that
/// never age out.
pub fn evaluate(
    inputs: &GateInputs,
    thresholds: &Thresholds,
    groups: &Groups,
    switching: &[TableGroup],
) -> Vec<GateResult> {
    let aged = groups.any_aged(switching);
    let copied = groups.copied_tables(switching);
    let mut out = Vec::new();
    if aged {
        out.push(match &inputs.retention {
            Ok(r) => retention(r),
            Err(why) => GateResult::unavailable(Gate::Retention, why),
        });
    }
    out.push(match &inputs.verify {
        Ok(v) => verify(v, inputs.now, thresholds, aged, &copied),
        Err(why) => GateResult::unavailable(Gate::Verify, why),
    });
    if !copied.is_empty() {
        out.push(match &inputs.copier {
            Ok(streams) => copier(streams, &copied, inputs.now, thresholds),
            Err(why) => GateResult::unavailable(Gate::Copier, why),
        });
    }
    out.push(match &inputs.shadow {
        Ok(s) => shadow(s, thresholds),
        Err(why) => GateResult::unavailable(Gate::ShadowReads, why),
    });
    out.push(match &inputs.lag {
        Ok(l) => lag(l, thresholds),
        Err(why) => GateResult::unavailable(Gate::ConsumerLag, why),
    });
    out
}

fn retention(r: &Readiness) -> GateResult {
    if r.ready {
        return GateResult::pass(
            Gate::Retention,
            format!("the new cluster covers every retained window: {}", r.explanation),
        );
    }
    let clear = match r.ready_at {
        Some(at) => format!("wait until {} (dual writes then cover the whole retention period)", at.to_rfc3339()),
        None => "keep group B writing the new cluster from a point the retention period can reach".to_owned(),
    };
    GateResult::fail(
        Gate::Retention,
        format!("the new cluster does not cover the retention window: {}", r.explanation),
        clear,
    )
}

fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> Duration {
    (now - then).to_std().unwrap_or(Duration::ZERO)
}

/// How long ago `run` finished (or started, if it has no end recorded).
fn run_age(now: DateTime<Utc>, run: &RunRecord) -> Duration {
    let at_ms = run.finished_at_ms.unwrap_or(run.started_at_ms);
    age(now, DateTime::from_timestamp_millis(at_ms).unwrap_or_default())
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn verify(v: &VerifyInput, now: DateTime<Utc>, t: &Thresholds, aged: bool, copied: &[String]) -> GateResult {
    let mut found = Vec::new();
    if aged {
        let Some(run) = &v.windows_run else {
            return GateResult::fail(
                Gate::Verify,
                "no finished equivalence run (kind 'windows')",
                "run the window comparator and let it finish with outcome equal",
            );
        };
        if run.outcome != RunOutcome::Equal {
            return GateResult::fail(
                Gate::Verify,
                format!(
                    "latest equivalence run #{} finished {}: {} windows different, {} differences{}",
                    run.run_id,
                    run.outcome,
                    run.windows_different,
                    run.differences,
                    run.error.as_deref().map(|e| format!(", error: {e}")).unwrap_or_default()
                ),
                "resolve the differences (dw_verify_windows state 'different') and re-run the window comparator until it finishes equal",
            );
        }
        if run.windows_equal == 0 {
            return GateResult::fail(
                Gate::Verify,
                format!(
                    "latest equivalence run #{} compared no window ({} not settled, {} not covered): equal proves nothing",
                    run.run_id, run.windows_not_settled, run.windows_not_covered
                ),
                "wait until windows are settled on both clusters and re-run the window comparator",
            );
        }
        let run_age = run_age(now, run);
        if run_age > t.verify_max_age {
            return GateResult::fail(
                Gate::Verify,
                format!(
                    "latest equivalence run #{} is {} old (max {})",
                    run.run_id,
                    human(run_age),
                    human(t.verify_max_age)
                ),
                "re-run the window comparator",
            );
        }
        if v.different.count > 0 {
            let at = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap_or_default().to_rfc3339();
            let examples: Vec<String> =
                v.different.first.iter().map(|w| format!("{} @ {}", w.tbl, at(w.window_start))).collect();
            return GateResult::fail(
                Gate::Verify,
                format!("{} windows marked different, e.g. {}", v.different.count, examples.join(", ")),
                "find why those windows differ, repair them, and re-verify them until they are equal",
            );
        }
        found.push(format!(
            "run #{} equal ({} windows equal, {} not settled, {} not covered), {} old",
            run.run_id,
            run.windows_equal,
            run.windows_not_settled,
            run.windows_not_covered,
            human(run_age)
        ));
    }
    for table in copied {
        let run = v.table_runs.iter().find(|(name, _)| name == table).and_then(|(_, run)| run.as_ref());
        let Some(run) = run else {
            return GateResult::fail(
                Gate::Verify,
                format!("no finished full diff of copied table {table}"),
                format!("run the full diff of {table} and let it finish equal"),
            );
        };
        if run.outcome != RunOutcome::Equal {
            return GateResult::fail(
                Gate::Verify,
                format!(
                    "latest full diff of {table} (#{}) finished {}: {} differences",
                    run.run_id, run.outcome, run.differences
                ),
                format!("repair {table} on the new cluster (or let the copier converge) and re-run its full diff"),
            );
        }
        let diff_age = run_age(now, run);
        if diff_age > t.verify_max_age {
            return GateResult::fail(
                Gate::Verify,
                format!(
                    "latest full diff of {table} (#{}) is {} old (max {})",
                    run.run_id,
                    human(diff_age),
                    human(t.verify_max_age)
                ),
                format!("re-run the full diff of {table}"),
            );
        }
        found.push(format!("{table} full diff #{} equal", run.run_id));
    }
    GateResult::pass(Gate::Verify, found.join("; "))
}

fn copier(streams: &[StreamStatus], copied: &[String], now: DateTime<Utc>, t: &Thresholds) -> GateResult {
    let mut found = Vec::new();
    for table in copied {
        let mine: Vec<&StreamStatus> = streams.iter().filter(|s| &s.table == table).collect();
        if mine.is_empty() {
            return GateResult::fail(
                Gate::Copier,
                format!("no copier stream for {table}"),
                format!("start the copier for {table}"),
            );
        }
        for s in &mine {
            let name = format!("{}/{}", s.table, s.source_shard);
            if s.phase != Phase::Replicating {
                let why = s.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
                let clear = match s.phase {
                    Phase::Failed | Phase::Stopped => format!("fix and restart stream {name}"),
                    _ => format!("wait for stream {name} to finish its snapshot and catch up"),
                };
                return GateResult::fail(Gate::Copier, format!("stream {name} is {}{why}", s.phase), clear);
            }
            let lag_s = s.lag_seconds.unwrap_or(f64::INFINITY);
            let lag_events = s.lag_events.unwrap_or(u64::MAX);
            if lag_s > t.copier_max_lag_seconds || lag_events > t.copier_max_lag_events {
                return GateResult::fail(
                    Gate::Copier,
                    format!(
                        "stream {name} lags {} s / {} events (max {} s / {} events)",
                        s.lag_seconds.map_or("unknown".into(), |l| format!("{l:.1}")),
                        s.lag_events.map_or("unknown".into(), |l| l.to_string()),
                        t.copier_max_lag_seconds,
                        t.copier_max_lag_events
                    ),
                    format!("wait for stream {name} to catch up"),
                );
            }
            let stale = age(now, s.updated_at);
            if stale > t.copier_max_staleness {
                return GateResult::fail(
                    Gate::Copier,
                    format!("stream {name} last reported {} ago (max {})", human(stale), human(t.copier_max_staleness)),
                    format!("check that the copier for {name} is running"),
                );
            }
        }
        found.push(format!("{table}: {} streams replicating", mine.len()));
    }
    GateResult::pass(Gate::Copier, found.join("; "))
}

fn shadow(s: &ShadowInput, t: &Thresholds) -> GateResult {
    let c = &s.totals;
    let period = human(s.period);
    if c.compared < t.shadow_min_compared {
        return GateResult::fail(
            Gate::ShadowReads,
            format!(
                "{} shadow comparisons in the last {period} from {} routers ({} skipped as not comparable, {} errors); need {}",
                c.compared, c.routers, c.skipped, c.errors, t.shadow_min_compared
            ),
            "serve reads with --shadow-fraction above 0 until enough settled reads have been compared",
        );
    }
    let rate = c.mismatches as f64 / c.compared as f64;
    if rate > t.shadow_max_mismatch_rate {
        return GateResult::fail(
            Gate::ShadowReads,
            format!(
                "{} of {} shadow reads mismatched in the last {period} (rate {rate:.4}, max {}); last: {}",
                c.mismatches,
                c.compared,
                t.shadow_max_mismatch_rate,
                c.last_mismatch.as_deref().unwrap_or("-")
            ),
            format!("find and repair the difference; the gate clears once the last {period} holds no more mismatches than allowed"),
        );
    }
    GateResult::pass(
        Gate::ShadowReads,
        format!("{} of {} shadow reads mismatched in the last {period}", c.mismatches, c.compared),
    )
}

fn lag(l: &LagInput, t: &Thresholds) -> GateResult {
    let mut found = Vec::new();
    for g in [&l.old, &l.new] {
        let unstarted = g.unstarted();
        if unstarted > 0 {
            return GateResult::fail(
                Gate::ConsumerLag,
                format!(
                    "the group writing {} has not applied {} of {} partitions",
                    g.cluster,
                    unstarted,
                    g.partitions.len()
                ),
                format!("start (or fix) the consumer group writing {}", g.cluster),
            );
        }
        let (messages, seconds) = (g.max_lag_messages(), g.max_lag_seconds());
        if messages > t.lag_max_messages || seconds > t.lag_max_seconds {
            return GateResult::fail(
                Gate::ConsumerLag,
                format!(
                    "the group writing {} lags {messages} messages / {seconds:.1} s on its worst partition (max {} / {} s)",
                    g.cluster, t.lag_max_messages, t.lag_max_seconds
                ),
                format!("wait for the group writing {} to catch up (or add consumers)", g.cluster),
            );
        }
        found.push(format!("{}: {messages} msgs / {seconds:.1} s", g.cluster));
    }
    GateResult::pass(Gate::ConsumerLag, found.join("; "))
}

#[cfg(test)]
mod tests;
