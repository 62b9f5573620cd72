//! The window comparator: for every window of the pipeline's retention-bounded tables,
//! settled on both clusters, a pushed-down row count and digest per side,
//! compared; differing windows are read again once both clusters applied
//! the same offsets ([`crate::confirm`]) and drilled down to their keys.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use cluster::fence::{window_state, PartitionProgress, WindowState};
use tokio_util::sync::CancellationToken;

use crate::confirm::{self, cluster_progress, Recheck};
use crate::diff::Difference;
use crate::digest::{Digest, Side};
use crate::drill::drill_window;
use crate::error::VerifyError;
use crate::first_pass::{self, first_pass, FirstPass};
use crate::history::{self, RunOutcome, RunRecord, WindowResult, WindowVerdict};
use crate::spec::{self, TableSpec};

/// Which windows to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Windows starting in the last this long.
    Since(Duration),
    /// Windows starting in `[from, to)`, epoch seconds.
    Between(i64, i64),
}

/// One `windows` run.
#[derive(Debug, Clone)]
pub struct WindowsConfig {
    pub old: ClusterConfig,
    pub new: ClusterConfig,
    pub range: Range,
    /// Re-digest windows already proven equal (a periodic full re-check).
    pub recheck_all: bool,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct WindowsOutcome {
    pub run: RunRecord,
    /// Every window in the range, by table, in time order.
    pub windows: Vec<WindowResult>,
    pub differences: Vec<Difference>,
    /// Windows left out because a cluster's retention may already have dropped them.
    pub skipped_for_retention: u64,
}

/// Refuses clusters that fold events into different windows.
pub fn check_same_windows(old: &ClusterConfig, new: &ClusterConfig) -> Result<(), VerifyError> {
    if old.time.same_windows(&new.time) {
        return Ok(());
    }
    Err(VerifyError::TimeMismatch {
        old_minute: old.time.minute_window,
        old_hour: old.time.hour_window,
        old_lateness: old.time.allowed_lateness,
        new_minute: new.time.minute_window,
        new_hour: new.time.hour_window,
        new_lateness: new.time.allowed_lateness,
    })
}

/// The oldest window start (epoch seconds) both clusters surely still hold:
/// now minus the smaller retention, plus one partition (the retention job
/// drops whole partitions, so a window up to one partition younger than the
/// retention may already be gone).
pub fn retention_floor(old: &ClusterConfig, new: &ClusterConfig, now_secs: i64) -> i64 {
    let retention = old.time.retention.min(new.time.retention).as_secs();
    let partition = old.time.partition.max(new.time.partition).as_secs();
    let secs = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
    now_secs.saturating_sub(secs(retention)).saturating_add(secs(partition))
}

/// [`retention_floor`] of one table: a table the pipeline keeps longer than
/// `[time] retention` (its own `retention`) is held longer on both clusters.
pub fn table_retention_floor(old: &ClusterConfig, new: &ClusterConfig, table: &str, now_secs: i64) -> i64 {
    let kept_ms =
        |c: &ClusterConfig| c.pipeline.table(table).map_or(c.time.retention_ms(), |t| c.time.table_retention_ms(t));
    let retention_secs = kept_ms(old).min(kept_ms(new)) / 1000;
    let partition = old.time.partition_secs().max(new.time.partition_secs());
    now_secs.saturating_sub(retention_secs).saturating_add(partition)
}

/// Window starts of size `size` in `[from, to)`.
fn window_starts(from: i64, to: i64, size: i64) -> Vec<i64> {
    let mut start = from.div_euclid(size) * size;
    if start < from {
        start += size;
    }
    let mut out = Vec::new();
    while start < to {
        out.push(start);
        start += size;
    }
    out
}

/// Contiguous runs of windows as `[from, to)` ranges.
fn coalesce(starts: &[i64], size: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &s in starts {
        match out.last_mut() {
            Some((_, to)) if *to == s => *to = s + size,
            _ => out.push((s, s + size)),
        }
    }
    out
}

fn late_total(progress: &[PartitionProgress]) -> u64 {
    progress.iter().map(|p| p.late_messages).sum()
}

/// Runs the comparator over the configured range, records the results in the
/// new cluster's control database, and returns them.
pub async fn run_windows(config: &WindowsConfig, shutdown: &CancellationToken) -> Result<WindowsOutcome, VerifyError> {
    spec::check_same_pipeline(&config.old, &config.new)?;
    check_same_windows(&config.old, &config.new)?;
    let mut old = Side::new(config.old.clone());
    let mut new = Side::new(config.new.clone());
    (old.shutdown, new.shutdown) = (shutdown.clone(), shutdown.clone());
    let result = run_with(config, &old, &new, shutdown).await;
    old.pools.disconnect().await;
    new.pools.disconnect().await;
    result
}

async fn run_with(
    config: &WindowsConfig,
    old: &Side,
    new: &Side,
    shutdown: &CancellationToken,
) -> Result<WindowsOutcome, VerifyError> {
    let control = new.pools.control().ok_or_else(|| VerifyError::NoControl(new.name().to_string()))?;
    history::ensure_tables(control).await?;
    let span = TimeSpan::resolve(config, chrono::Utc::now().timestamp())?;
    // Progress first: a window settled now stays as it is, so digests read
    // afterwards cannot see it half-written.
    let (old_progress, new_progress) = futures::try_join!(cluster_progress(old), cluster_progress(new))?;
    let mut comparison = Comparison::start(config, old, new, control, span, old_progress, new_progress).await?;
    let compared = comparison.compare_tables(shutdown).await;
    comparison.finish(compared).await
}

/// The windows a run looks at, epoch seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimeSpan {
    /// The start asked for.
    requested_from: i64,
    /// The run's clock (epoch seconds): where the retention floors are measured from.
    now: i64,
    /// The start compared: `requested_from` raised to the retention floor.
    from: i64,
    /// The end (exclusive).
    to: i64,
}

impl TimeSpan {
    fn resolve(config: &WindowsConfig, now_secs: i64) -> Result<Self, VerifyError> {
        let (requested_from, to) = match config.range {
            Range::Since(d) => (now_secs.saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)), now_secs),
            Range::Between(from, to) => (from, to),
        };
        if requested_from >= to {
            return Err(VerifyError::Usage(format!("empty time range: from {requested_from} is not before to {to}")));
        }
        let from = requested_from.max(retention_floor(&config.old, &config.new, now_secs));
        Ok(Self { requested_from, now: now_secs, from, to })
    }
}

/// One `windows` run in progress: its inputs, and what it found so far.
struct Comparison<'a> {
    config: &'a WindowsConfig,
    old: &'a Side,
    new: &'a Side,
    /// The new cluster's control database (the history).
    control: &'a mysql_async::Pool,
    span: TimeSpan,
    /// What each group had applied when the run started (settlement is judged against it).
    old_progress: Vec<PartitionProgress>,
    new_progress: Vec<PartitionProgress>,
    /// Every partition either cluster knows (a partition one side never wrote is unsettled there).
    partitions: Vec<(String, i32)>,
    /// Late messages applied on each cluster at the start: an earlier `equal` holds only if unchanged.
    late: (u64, u64),
    /// The pipeline's windowed tables, in report order.
    tables: Vec<TableSpec>,
    started: Instant,
    run: RunRecord,
    windows: Vec<WindowResult>,
    differences: Vec<Difference>,
    skipped_for_retention: u64,
}

impl<'a> Comparison<'a> {
    async fn start(
        config: &'a WindowsConfig,
        old: &'a Side,
        new: &'a Side,
        control: &'a mysql_async::Pool,
        span: TimeSpan,
        old_progress: Vec<PartitionProgress>,
        new_progress: Vec<PartitionProgress>,
    ) -> Result<Self, VerifyError> {
        let late = (late_total(&old_progress), late_total(&new_progress));
        let partitions: Vec<(String, i32)> = old_progress
            .iter()
            .chain(&new_progress)
            .map(|p| (p.topic.clone(), p.partition))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let range = Some((span.from, span.to));
        let run_id = history::start_run(control, "windows", "windows", old.name(), new.name(), late, range).await?;
        tracing::info!(
            run_id,
            old = old.name(),
            new = new.name(),
            from = span.from,
            to = span.to,
            "window comparison started"
        );
        let run = RunRecord {
            run_id,
            kind: "windows".into(),
            target: "windows".into(),
            old_cluster: old.name().into(),
            new_cluster: new.name().into(),
            ..RunRecord::default()
        };
        Ok(Self {
            config,
            old,
            new,
            control,
            span,
            old_progress,
            new_progress,
            partitions,
            late,
            tables: spec::windowed(&config.old)?,
            started: Instant::now(),
            run,
            windows: Vec::new(),
            differences: Vec::new(),
            skipped_for_retention: 0,
        })
    }

    /// Compares the windows of every table: reuses earlier `equal` verdicts
    /// that nothing can have changed, runs the first pass over the rest of
    /// the settled windows (every table at once, so each shard runs one query
    /// per table), and drills into the windows that differ.
    async fn compare_tables(&mut self, shutdown: &CancellationToken) -> Result<(), VerifyError> {
        let mut plans = Vec::new();
        for table in self.tables.clone() {
            if shutdown.is_cancelled() {
                return Err(VerifyError::Cancelled);
            }
            let size = table.window_secs();
            let span = self.span;
            // At most `span.from`: a table's own retention is never shorter than `[time]`'s.
            let floor = table_retention_floor(&self.config.old, &self.config.new, &table.name, span.now);
            let from = span.requested_from.max(floor).min(span.from);
            self.skipped_for_retention +=
                u64::try_from(window_starts(span.requested_from, from.min(span.to), size).len()).unwrap_or(0);
            let verdicts = self.settlement(&window_starts(from, span.to, size), size);
            let to_check = self.reuse_proven(&table, size, &verdicts).await?;
            self.run.windows_checked += u64::try_from(to_check.len()).unwrap_or(0);
            if !to_check.is_empty() {
                plans.push((table, size, to_check));
            }
        }
        let (old, new, clock) = (self.old, self.new, Instant::now());
        let firsts = futures::future::try_join_all(
            plans.iter().map(|(table, size, to_check)| both_passes(old, new, table, *size, to_check, clock)),
        )
        .await?;
        let mut passes: Vec<TablePass> = plans
            .into_iter()
            .zip(firsts)
            .map(|((table, size, to_check), first)| TablePass {
                differing: first_pass::differing(&first.0, &first.1),
                table,
                size,
                to_check,
                first,
                second: None,
            })
            .collect();
        if passes.iter().any(|p| !p.differing.is_empty()) {
            confirm::both_caught_up(old, new, shutdown).await?;
            let seconds = futures::future::try_join_all(passes.iter().map(|p| async move {
                if p.differing.is_empty() {
                    return Ok(None);
                }
                let starts: Vec<i64> = p.differing.keys().copied().collect();
                both_passes(old, new, &p.table, p.size, &starts, clock).await.map(Some)
            }))
            .await?;
            for (p, second) in passes.iter_mut().zip(seconds) {
                p.second = second;
            }
        }
        for pass in passes {
            if shutdown.is_cancelled() {
                return Err(VerifyError::Cancelled);
            }
            self.judge_windows(pass).await?;
        }
        let order = |name: &str| self.tables.iter().position(|t| t.name == name).unwrap_or(usize::MAX);
        let mut windows = std::mem::take(&mut self.windows);
        windows.sort_by_key(|w| (order(&w.tbl), w.window_start));
        self.windows = windows;
        Ok(())
    }

    /// Each window's verdict from settlement alone: `None` when it is settled
    /// on both clusters (to be compared).
    fn settlement(&self, starts: &[i64], size: i64) -> Vec<(i64, Option<WindowVerdict>)> {
        let lateness_ms = self.config.old.time.allowed_lateness_ms();
        starts
            .iter()
            .map(|&start| {
                let (start_ms, end_ms) = (start * 1000, (start + size) * 1000);
                let o = window_state(&self.old_progress, Some(&self.partitions), start_ms, end_ms, lateness_ms);
                let n = window_state(&self.new_progress, Some(&self.partitions), start_ms, end_ms, lateness_ms);
                let verdict = match (o, n) {
                    (WindowState::NotCovered, _) | (_, WindowState::NotCovered) => Some(WindowVerdict::NotCovered),
                    (WindowState::CoveredNotSettled, _) | (_, WindowState::CoveredNotSettled) => {
                        Some(WindowVerdict::NotSettled)
                    }
                    (WindowState::Settled, WindowState::Settled) => None,
                };
                (start, verdict)
            })
            .collect()
    }

    /// Records the windows that need no digest (proven equal before, or not
    /// comparable now) and returns the starts of those that do.
    async fn reuse_proven(
        &mut self,
        table: &TableSpec,
        size: i64,
        verdicts: &[(i64, Option<WindowVerdict>)],
    ) -> Result<Vec<i64>, VerifyError> {
        let (Some(first), Some(last)) = (verdicts.first(), verdicts.last()) else { return Ok(Vec::new()) };
        let previous = history::windows(self.control, &table.name, first.0, last.0 + size).await?;
        let clusters = (self.old.name().to_string(), self.new.name().to_string());
        let mut to_check = Vec::new();
        for &(start, verdict) in verdicts {
            // Proven equal by an earlier run of this pair, and no late message
            // since: a settled window cannot have changed (a window that reads as
            // unsettled or uncovered now, e.g. while a new partition's first
            // fence reaches one cluster before the other, keeps its proof too).
            let proven = previous.get(&start).filter(|p| {
                !self.config.recheck_all
                    && p.state == WindowVerdict::Equal
                    && p.late == self.late
                    && p.clusters == clusters
            });
            match (proven, verdict) {
                (Some(p), _) => {
                    self.run.windows_reused += 1;
                    self.windows.push(WindowResult::without_digest(
                        table.name.clone(),
                        start,
                        size,
                        WindowVerdict::Equal,
                        (p.old_rows, p.new_rows),
                    ));
                }
                (None, Some(v)) => {
                    self.windows.push(WindowResult::without_digest(table.name.clone(), start, size, v, (None, None)))
                }
                (None, None) => to_check.push(start),
            }
        }
        Ok(to_check)
    }

    /// Judges every window of a table's pass, drilling into the buckets that
    /// differ unless the second read shows a side still changing.
    async fn judge_windows(&mut self, pass: TablePass) -> Result<(), VerifyError> {
        let TablePass { table, size, to_check, first: (o, n), mut differing, second } = pass;
        let checked: BTreeSet<i64> = to_check.iter().copied().collect();
        if let Some(outside) = o.buckets.keys().chain(n.buckets.keys()).map(|k| k.window).find(|w| !checked.contains(w))
        {
            return Err(VerifyError::Unexpected(format!(
                "{}: rows grouped into window {outside}, outside the windows asked for",
                table.name
            )));
        }
        let (o, n) = (first_pass::per_window(&o), first_pass::per_window(&n));
        let second = second.map(|(o, n)| (first_pass::per_window(&o), first_pass::per_window(&n)));
        let at = |digests: &BTreeMap<i64, Digest>, start: i64| digests.get(&start).copied().unwrap_or_default();
        for start in to_check {
            let first = (at(&o, start), at(&n, start));
            let nibbles = differing.remove(&start).unwrap_or_default();
            // `second` holds exactly the windows that differed on the first read.
            if let Some((o2, n2)) = second.as_ref().filter(|_| !nibbles.is_empty()) {
                if confirm::recheck(first, (at(o2, start), at(n2, start))) == Recheck::Changed {
                    self.changed_while_settled(&table, start, size);
                    continue;
                }
            }
            self.judge(&table, start, size, first, &nibbles).await?;
        }
        Ok(())
    }

    /// A window its fences call settled changed between two reads: written
    /// after settlement (late, or out of order in its partition). It is left
    /// unsettled, so a later run compares it again.
    fn changed_while_settled(&mut self, table: &TableSpec, start: i64, size: i64) {
        tracing::warn!(
            table = %table.name,
            start,
            "window changed after its fences called it settled: late or out-of-order messages; compared again next run"
        );
        crate::metrics::changed_while_settled(&table.name);
        self.windows.push(WindowResult::without_digest(
            table.name.clone(),
            start,
            size,
            WindowVerdict::NotSettled,
            (None, None),
        ));
    }

    /// One window's verdict (`nibbles`: its differing buckets); a differing
    /// one is drilled down to its keys.
    async fn judge(
        &mut self,
        table: &TableSpec,
        start: i64,
        size: i64,
        (a, b): (Digest, Digest),
        nibbles: &[i64],
    ) -> Result<(), VerifyError> {
        self.run.rows_compared += a.rows + b.rows;
        let equal = nibbles.is_empty();
        let mut result = WindowResult {
            tbl: table.name.clone(),
            window_start: start,
            window_end: start + size,
            state: if equal { WindowVerdict::Equal } else { WindowVerdict::Different },
            old_rows: Some(a.rows),
            new_rows: Some(b.rows),
            old_digest: Some(a.hex()),
            new_digest: Some(b.hex()),
            differences: 0,
        };
        if !equal {
            let found = drill_window(self.old, self.new, table, start, start + size, nibbles).await?;
            if found.is_empty() {
                tracing::warn!(table = %table.name, start, "window digests differ but no differing key was found");
            }
            tracing::info!(table = %table.name, start, differences = found.len(), "window differs");
            result.differences = u64::try_from(found.len()).unwrap_or(u64::MAX);
            self.differences.extend(found);
        }
        self.windows.push(result);
        Ok(())
    }

    /// Counts, saves and closes the run whatever `compared` says; the run's
    /// record is final even when the comparison failed.
    async fn finish(mut self, compared: Result<(), VerifyError>) -> Result<WindowsOutcome, VerifyError> {
        self.run.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        for w in &self.windows {
            match w.state {
                WindowVerdict::Equal => self.run.windows_equal += 1,
                WindowVerdict::Different => self.run.windows_different += 1,
                WindowVerdict::NotSettled => self.run.windows_not_settled += 1,
                WindowVerdict::NotCovered => self.run.windows_not_covered += 1,
            }
        }
        self.run.differences = u64::try_from(self.differences.len()).unwrap_or(u64::MAX);
        let saved = match &compared {
            Ok(()) => self.save().await,
            Err(_) => Ok(()),
        };
        self.run.outcome = match (&compared, &saved) {
            (Ok(()), Ok(())) => RunOutcome::of_finished(self.run.windows_different > 0),
            _ => RunOutcome::Error,
        };
        self.run.error = compared.as_ref().err().or(saved.as_ref().err()).map(ToString::to_string);
        history::finish_run(self.control, &self.run).await?;
        crate::metrics::record_run(&self.run);
        let run = &self.run;
        tracing::info!(
            run_id = run.run_id,
            outcome = %run.outcome,
            equal = run.windows_equal,
            different = run.windows_different,
            not_settled = run.windows_not_settled,
            not_covered = run.windows_not_covered,
            checked = run.windows_checked,
            reused = run.windows_reused,
            rows = run.rows_compared,
            differences = run.differences,
            duration_ms = run.duration_ms,
            skipped_for_retention = self.skipped_for_retention,
            "window comparison finished"
        );
        compared?;
        saved?;
        Ok(WindowsOutcome {
            run: self.run,
            windows: self.windows,
            differences: self.differences,
            skipped_for_retention: self.skipped_for_retention,
        })
    }

    /// Records the windows this run digested or could not compare, and every difference.
    async fn save(&self) -> Result<(), VerifyError> {
        let fresh: Vec<WindowResult> = self
            .windows
            .iter()
            .filter(|w| w.old_digest.is_some() || w.state != WindowVerdict::Equal)
            .cloned()
            .collect();
        history::save_windows(self.control, self.run.run_id, &fresh).await?;
        history::save_differences(self.control, self.run.run_id, &self.differences).await
    }
}

/// One table's windows to digest, and what both clusters' passes said.
struct TablePass {
    table: TableSpec,
    size: i64,
    to_check: Vec<i64>,
    /// (old, new) first passes.
    first: (FirstPass, FirstPass),
    /// Per window, the buckets that differ on the first read.
    differing: BTreeMap<i64, Vec<i64>>,
    /// (old, new) passes over the differing windows only, read once both
    /// clusters applied the same offsets ([`crate::confirm`]).
    second: Option<(FirstPass, FirstPass)>,
}

/// Both clusters' first passes over the windows starting at `starts`.
async fn both_passes(
    old: &Side,
    new: &Side,
    table: &TableSpec,
    size: i64,
    starts: &[i64],
    clock: Instant,
) -> Result<(FirstPass, FirstPass), VerifyError> {
    let ranges = coalesce(starts, size);
    futures::try_join!(first_pass(old, table, size, &ranges, clock), first_pass(new, table, size, &ranges, clock))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(time: &str) -> ClusterConfig {
        // Short retention and ahead keep the partition count of 60 s partitions within bounds.
        let retention = if time.contains("retention") { "" } else { "retention = \"2h\"\n" };
        let time = format!("{time}\n{retention}ahead = \"5m\"");
        let text = format!(
            "name = \"c\"\n[auth]\nuser = \"u\"\n[[shards]]\nrange = \"-\"\ndsn = \"mysql://h/db\"\n[time]\n{time}\n"
        );
        ClusterConfig::from_toml_str(&text, std::path::Path::new("."), &|_| None).expect("cluster")
    }

    #[test]
    fn refuses_clusters_whose_windows_differ() {
        let a = cluster("minute_window = \"10s\"\nhour_window = \"60s\"\npartition = \"60s\"");
        let b = cluster("minute_window = \"10s\"\nhour_window = \"60s\"\npartition = \"120s\"\nretention = \"1h\"");
        assert!(check_same_windows(&a, &b).is_ok(), "retention and partitioning may differ");
        let c = cluster("minute_window = \"20s\"\nhour_window = \"60s\"\npartition = \"60s\"");
        let message = check_same_windows(&a, &c).expect_err("different windows").to_string();
        assert!(message.starts_with("the clusters' [time] sections differ"), "{message}");
        let d =
            cluster("minute_window = \"10s\"\nhour_window = \"60s\"\npartition = \"60s\"\nallowed_lateness = \"1s\"");
        assert!(check_same_windows(&a, &d).is_err(), "lateness decides settlement");
    }

    #[test]
    fn skips_windows_retention_may_have_dropped() {
        // The smaller retention (1 h) plus the larger partition (120 s).
        let a = cluster("minute_window = \"10s\"\nhour_window = \"60s\"\npartition = \"60s\"");
        let b = cluster("minute_window = \"10s\"\nhour_window = \"60s\"\npartition = \"120s\"\nretention = \"1h\"");
        assert_eq!(retention_floor(&a, &b, 100_000), 100_000 - 3600 + 120);
    }

    #[test]
    fn a_table_kept_longer_is_compared_further_back() {
        let (_dir, path) = crate::spec::tests::edited_api(|text| {
            text.replacen("name = \"api_failures\"\n", "name = \"api_failures\"\nretention = \"3h\"\n", 1)
        });
        let time =
            "minute_window = \"10s\"\nhour_window = \"60s\"\npartition = \"60s\"\nretention = \"2h\"\nahead = \"5m\"";
        let text = format!(
            "pipeline = {:?}\nname = \"c\"\n[auth]\nuser = \"u\"\n[[shards]]\nrange = \"-\"\ndsn = \"mysql://h/db\"\n[time]\n{time}\n",
            path.display().to_string()
        );
        let c = ClusterConfig::from_toml_str(&text, std::path::Path::new("."), &|_| None).expect("cluster");
        assert_eq!(table_retention_floor(&c, &c, "api_failures", 100_000), 100_000 - 3 * 3600 + 60);
        assert_eq!(table_retention_floor(&c, &c, "api_route_minute", 100_000), 100_000 - 2 * 3600 + 60);
        assert_eq!(retention_floor(&c, &c, 100_000), 100_000 - 2 * 3600 + 60);
    }

    #[test]
    fn windows_align_and_coalesce() {
        assert_eq!(window_starts(5, 35, 10), vec![10, 20, 30]);
        assert_eq!(window_starts(10, 30, 10), vec![10, 20]);
        assert_eq!(window_starts(-15, 0, 10), vec![-10]);
        assert_eq!(coalesce(&[10, 20, 40, 50, 70], 10), vec![(10, 30), (40, 60), (70, 80)]);
    }
}
