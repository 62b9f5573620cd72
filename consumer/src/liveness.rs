//! Liveness, checked rather than assumed: exactness (the fences) says nothing
//! about whether anything is applied at all. A coordinator that never evicts
//! a dead member (Tansu 0.6) left a restarted member with no partitions while
//! its group lagged, for minutes, with nothing logged above INFO.
//!
//! Every [`CHECK_EVERY`] each member
//! - writes its heartbeat and current assignment to the control database
//!   (`cluster::members`; `dualwrite-consumer status` derives each partition's
//!   owner from them, since not every broker answers DescribeGroups);
//! - reads the cluster's fences and the partitions' end offsets, and judges:
//!   (a) **idle member**: this member holds no partition while the cluster
//!   lags, for longer than the bound;
//!   (b) **unapplied partition**: a partition with messages to apply whose
//!   fences nobody moved for longer than the bound (`updated_at` on every
//!   shard; a live owner moves them with every batch, or confirms them while
//!   idle). That covers a partition assigned to a member that died, and one
//!   whose owner is stuck.
//!
//! Each is logged at error (rate-limited), counted once per episode in
//! `dualwrite_consumer_liveness_violations_total{kind}` and shown in gauges
//! (`..._idle_while_lagging_seconds`, `..._unapplied_partitions`,
//! `..._oldest_unapplied_seconds`) the alert rules read. A round that cannot
//! read the fences or the ends (a shard or the broker down) judges nothing:
//! those outages have their own signals (`dualwrite_consumer_paused`, retries).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::pool::ShardPools;
use mysql_async::Pool;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;

use crate::log_limit::RateLimit;
use crate::metrics;
use crate::source::SourceContext;

/// How often a member heartbeats and judges liveness.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Per database round trip of a check.
const STEP_TIMEOUT: Duration = Duration::from_secs(3);
/// Per end-offset lookup (a busy broker answers ListOffsets slowly).
const ENDS_TIMEOUT: Duration = Duration::from_secs(10);

static IDLE_LOG: RateLimit = RateLimit::new(Duration::from_secs(30), 1);
static UNAPPLIED_LOG: RateLimit = RateLimit::new(Duration::from_secs(30), 1);

/// This process's name in the heartbeat table: `host:pid`.
pub fn member_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

pub(crate) struct Watch<'a> {
    pub group: &'a str,
    pub cluster: &'a str,
    pub member: String,
    /// How long a member may sit idle while its cluster lags, and a lagging
    /// partition's fences may stand still, before it is a violation.
    pub bound: Duration,
    pub pools: &'a ShardPools,
    pub control: &'a Pool,
    /// The group member, for its assignment only.
    pub consumer: Arc<BaseConsumer<SourceContext>>,
    /// A client of its own (no group) for the end offsets: lookups on the
    /// member's connections queue behind its fetches, and a lookup that
    /// times out there makes librdkafka drop the connection
    /// (`socket.max.fails`), fetches and all. `None`: it could not be
    /// created; the cluster's lag is then not judged.
    pub ends: Option<Arc<BaseConsumer>>,
}

/// What one member has seen across rounds.
#[derive(Default)]
struct State {
    /// Since when this member has held nothing while the cluster lagged.
    idle_since: Option<Instant>,
    /// The current idle episode was counted.
    idle_counted: bool,
    /// Partitions counted as unapplied in the current episode of each.
    unapplied: BTreeSet<(String, i32)>,
}

/// What one round measured (pure inputs of [`judge`]).
pub(crate) struct Round {
    pub assigned: usize,
    /// Messages behind over every partition the cluster's fences know.
    pub lag: i64,
    /// Lagging partitions whose fences stood still for longer than the bound: (key, ms, lag).
    pub unapplied: Vec<((String, i32), i64, i64)>,
}

impl Watch<'_> {
    /// Until `done`; then the member's heartbeat row is removed (it owns nothing).
    pub(crate) async fn run(&self, done: &CancellationToken) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state = State::default();
        loop {
            tokio::select! {
                _ = done.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Some(round) = self.measure().await {
                judge(&round, &mut state, self.bound, Instant::now());
            }
        }
        match tokio::time::timeout(
            STEP_TIMEOUT,
            cluster::members::leave(self.control, self.cluster, self.group, &self.member),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "removing this member's heartbeat failed"),
            Err(_) => tracing::debug!("removing this member's heartbeat timed out"),
        }
    }

    async fn measure(&self) -> Option<Round> {
        let assignment = match self.consumer.assignment() {
            Ok(tpl) => tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect::<Vec<_>>(),
            Err(e) => {
                tracing::debug!(error = %e, "reading the assignment failed");
                return None;
            }
        };
        metrics::assigned_partitions(assignment.len());
        let beat = cluster::members::heartbeat(self.control, self.cluster, self.group, &self.member, &assignment);
        match tokio::time::timeout(STEP_TIMEOUT, beat).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "member heartbeat failed"),
            Err(_) => tracing::debug!("member heartbeat timed out"),
        }
        let fences = match tokio::time::timeout(STEP_TIMEOUT, cluster::fence::progress(self.pools)).await {
            Ok(Ok(fences)) => fences,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "liveness: cannot read the fences");
                return None;
            }
            Err(_) => {
                tracing::debug!("liveness: reading the fences timed out");
                return None;
            }
        };
        let keys: Vec<(String, i32)> = fences.iter().map(|p| (p.topic.clone(), p.partition)).collect();
        let client = self.ends.clone()?;
        let ends = tokio::task::spawn_blocking(move || {
            let mut ends = Vec::with_capacity(keys.len());
            for (topic, partition) in keys {
                let (_, high) = client.fetch_watermarks(&topic, partition, ENDS_TIMEOUT).ok()?;
                ends.push(((topic, partition), high));
            }
            Some(ends)
        })
        .await
        .ok()
        .flatten();
        let Some(ends) = ends else {
            tracing::debug!("liveness: cannot read the partitions' end offsets");
            return None;
        };
        let now_ms = chrono::Utc::now().timestamp_millis();
        let report = cluster::fence::report(self.cluster, fences, Some(&ends), 0, now_ms);
        let bound_ms = i64::try_from(self.bound.as_millis()).unwrap_or(i64::MAX);
        let lag: i64 = report.partitions.iter().filter_map(|p| p.lag_messages).sum();
        let unapplied = report
            .partitions
            .iter()
            .filter_map(|p| {
                let ms = p.unapplied_ms.filter(|ms| *ms >= bound_ms)?;
                Some(((p.topic.clone(), p.partition), ms, p.lag_messages.unwrap_or(0)))
            })
            .collect();
        metrics::cluster_lag(lag);
        Some(Round { assigned: assignment.len(), lag, unapplied })
    }
}

/// Updates the gauges, counts each new episode once, logs at error.
fn judge(round: &Round, state: &mut State, bound: Duration, now: Instant) {
    let idle = round.assigned == 0 && round.lag > 0;
    state.idle_since = if idle { Some(state.idle_since.unwrap_or(now)) } else { None };
    let idle_for = state.idle_since.map_or(Duration::ZERO, |since| now.duration_since(since));
    metrics::idle_while_lagging(idle_for);
    if idle_for >= bound {
        if !state.idle_counted {
            state.idle_counted = true;
            metrics::liveness_violation("member_idle", 1);
        }
        if let Some(suppressed) = IDLE_LOG.allow() {
            tracing::error!(
                idle_s = idle_for.as_secs(),
                cluster_lag = round.lag,
                bound_s = bound.as_secs(),
                suppressed,
                "this member holds no partition while its cluster lags (the coordinator may not have evicted a dead member)"
            );
        }
    } else if !idle {
        state.idle_counted = false;
    }

    let now_unapplied: BTreeSet<(String, i32)> = round.unapplied.iter().map(|(k, _, _)| k.clone()).collect();
    let new = now_unapplied.difference(&state.unapplied).count();
    if new > 0 {
        metrics::liveness_violation("partition_unapplied", new as u64);
    }
    state.unapplied = now_unapplied;
    let oldest_ms = round.unapplied.iter().map(|(_, ms, _)| *ms).max().unwrap_or(0);
    metrics::unapplied(round.unapplied.len(), oldest_ms);
    if !round.unapplied.is_empty() {
        if let Some(suppressed) = UNAPPLIED_LOG.allow() {
            let first: Vec<String> = round.unapplied.iter().take(8).map(|((t, p), _, _)| format!("{t}/{p}")).collect();
            let lag: i64 = round.unapplied.iter().map(|(_, _, l)| *l).sum();
            tracing::error!(
                partitions = round.unapplied.len(),
                first = %first.join(" "),
                oldest_s = oldest_ms / 1000,
                lag,
                bound_s = bound.as_secs(),
                suppressed,
                "partitions with messages to apply that no live member has applied for longer than the bound"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(assigned: usize, lag: i64, unapplied: &[i32]) -> Round {
        Round { assigned, lag, unapplied: unapplied.iter().map(|p| (("t".to_string(), *p), 90_000, 10)).collect() }
    }

    #[test]
    fn an_idle_member_is_a_violation_only_past_the_bound_and_once_per_episode() {
        let bound = Duration::from_secs(60);
        let t0 = Instant::now();
        let mut state = State::default();
        judge(&round(0, 100, &[]), &mut state, bound, t0);
        assert_eq!(state.idle_since, Some(t0));
        assert!(!state.idle_counted);
        judge(&round(0, 100, &[]), &mut state, bound, t0 + Duration::from_secs(61));
        assert!(state.idle_counted);
        judge(&round(0, 100, &[]), &mut state, bound, t0 + Duration::from_secs(70));
        assert_eq!(state.idle_since, Some(t0), "the same episode");
        // caught up: the episode ends
        judge(&round(0, 0, &[]), &mut state, bound, t0 + Duration::from_secs(75));
        assert_eq!((state.idle_since, state.idle_counted), (None, false));
        // holding partitions is never idle
        judge(&round(3, 100, &[]), &mut state, bound, t0 + Duration::from_secs(80));
        assert_eq!(state.idle_since, None);
    }

    #[test]
    fn unapplied_partitions_are_counted_when_they_start_to_be() {
        let mut state = State::default();
        let now = Instant::now();
        judge(&round(1, 10, &[1, 2]), &mut state, Duration::from_secs(1), now);
        assert_eq!(state.unapplied.len(), 2);
        judge(&round(1, 10, &[2]), &mut state, Duration::from_secs(1), now);
        assert_eq!(state.unapplied.iter().map(|(_, p)| *p).collect::<Vec<_>>(), vec![2]);
    }
}
