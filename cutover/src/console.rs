//! The migration console: one page (`GET /console`) with everything an
//! operator watches during a migration, read from the same collectors the
//! gates use, so the page, its JSON (`Accept: application/json`) and
//! `switch-reads` never disagree. Every other job's table is read through
//! that job's reader: the verify timeline through `verify::report` (the
//! report's own), the dead letters through `cluster::dead_letters`. The page
//! itself is drawn in [`crate::console_page`].

use std::time::Duration;

use chrono::Utc;
use cluster::config::ClusterConfig;
use cluster::dead_letters::ReasonSummary;
use mysql_async::Pool;
use retention::Readiness;
use serde::Serialize;
use verify::report::Timelines;

use crate::collect::{collect, CollectConfig};
use crate::gates::{evaluate, GateInputs, GateResult, Thresholds};
use crate::state::{self, AuditEntry, RouterSeen, RoutingState};

/// Audit rows shown.
const AUDIT_ROWS: u32 = 20;
/// Repaired keys shown.
const REPAIRED_KEYS: u32 = 50;
/// A router silent for longer is shown as not live.
const LIVENESS: Duration = Duration::from_secs(3);
/// The shortest span the verify timeline covers.
const TIMELINE_MIN_SPAN: Duration = Duration::from_secs(86_400);
/// Dead letters recorded this recently are counted apart from the rest.
pub const RECENT_DEAD_LETTERS: Duration = Duration::from_secs(3600);

/// What the console reads and judges with.
#[derive(Clone)]
pub struct ConsoleConfig {
    pub collect: CollectConfig,
    pub thresholds: Thresholds,
}

/// Everything the page shows; also its JSON answer.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub generated_at: chrono::DateTime<Utc>,
    /// Per table group: the routing row; `Err` when unreadable.
    pub routing: Result<RoutingState, String>,
    pub routers: Result<Vec<RouterView>, String>,
    /// Every gate's input (coverage and lag per partition, readiness,
    /// copier streams, verify results, shadow counts).
    pub inputs: GateInputs,
    /// Readiness as the share of the retention period the new cluster covers.
    pub readiness_progress: Option<f64>,
    /// The gates of a switch of every group.
    pub gates: Vec<GateResult>,
    /// The comparators' windows (see [`verify_timeline`] for the span), as
    /// the equivalence report draws them.
    pub verify_timeline: Result<Timelines, String>,
    /// Per cluster (old, then new): its dead letters by reason.
    pub dead_letters: Vec<ClusterDeadLetters>,
    pub audit: Result<Vec<AuditEntry>, String>,
    /// The keys `dualwrite-verify repair` touched most recently, newest first.
    pub repairs: Result<Vec<verify::repair::audit::RepairRecord>, String>,
}

/// One cluster's dead letters, by reason.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterDeadLetters {
    pub cluster: String,
    /// The most recently seen reason first; `Err` when unreadable.
    pub reasons: Result<Vec<ReasonSummary>, String>,
}

/// A router as the console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RouterView {
    #[serde(flatten)]
    pub seen: RouterSeen,
    pub live: bool,
}

/// Reads everything the page shows.
pub async fn facts(config: &ConsoleConfig) -> Facts {
    let control = &config.collect.control;
    let (old, new) = (&config.collect.old, &config.collect.new);
    let (inputs, routing, routers, audit, verify_timeline, old_letters, new_letters, repairs) = tokio::join!(
        collect(&config.collect),
        state::load(control),
        state::routers(control),
        state::audit_log(control, AUDIT_ROWS),
        verify_timeline(control, new),
        dead_letters(old, None),
        dead_letters(new, Some(control)),
        verify::repair::audit::recent(control, REPAIRED_KEYS)
    );
    let groups = &config.collect.groups;
    let gates = evaluate(&inputs, &config.thresholds, groups, &groups.all());
    let readiness_progress = inputs.retention.as_ref().ok().and_then(progress);
    Facts {
        generated_at: Utc::now(),
        routing: routing.map_err(|e| e.to_string()),
        routers: routers
            .map(|all| all.into_iter().map(|seen| RouterView { live: seen.is_live(LIVENESS), seen }).collect())
            .map_err(|e| e.to_string()),
        inputs,
        readiness_progress,
        gates,
        verify_timeline,
        dead_letters: vec![old_letters, new_letters],
        audit: audit.map_err(|e| e.to_string()),
        repairs: repairs.map_err(|e| format!("repairs: {e}")),
    }
}

/// The verify timeline up to now, over the new cluster's retention period or
/// the last day, whichever is longer: a comparison stays worth seeing after
/// its windows were dropped (in compressed time they are within a minute).
/// The timeline zooms to the windows checked, so the span costs little.
async fn verify_timeline(control: &Pool, new: &ClusterConfig) -> Result<Timelines, String> {
    let to = Utc::now().timestamp();
    let span = new.time.retention.max(TIMELINE_MIN_SPAN);
    let from = to - i64::try_from(span.as_secs()).unwrap_or(i64::MAX / 2);
    verify::report::timelines(control, new, from, to).await.map_err(|e| format!("verify history: {e}"))
}

/// `cluster`'s dead letters from its own control database (`control`, when
/// the caller holds a pool to it already).
async fn dead_letters(cluster: &ClusterConfig, control: Option<&Pool>) -> ClusterDeadLetters {
    let recent = RECENT_DEAD_LETTERS.as_secs();
    let reasons = match (control, &cluster.control) {
        (Some(pool), _) => {
            cluster::dead_letters::by_reason(pool, &cluster.name, recent).await.map_err(|e| e.to_string())
        }
        (None, Some(endpoint)) => {
            let pool = Pool::new(cluster::pool::opts_for(endpoint, &cluster.auth));
            let reasons = cluster::dead_letters::by_reason(&pool, &cluster.name, recent).await;
            // A pool per refresh: the console reads the old cluster's control rarely.
            let _ = pool.disconnect().await;
            reasons.map_err(|e| e.to_string())
        }
        (None, None) => Err(format!("cluster {} has no [control] database", cluster.name)),
    };
    ClusterDeadLetters { cluster: cluster.name.clone(), reasons }
}

/// How far the wait for readiness has come: 1 when ready; otherwise the
/// share of the old cluster's retention that has passed since the new
/// cluster's coverage began (`ready_at - retention`); `None` when no
/// readiness time can be predicted.
pub fn progress(r: &Readiness) -> Option<f64> {
    if r.ready {
        return Some(1.0);
    }
    let ready_at = r.ready_at?.timestamp();
    let retention = r.old.retention_secs.max(1);
    let begun = ready_at - retention;
    Some(((r.now.timestamp() - begun) as f64 / retention as f64).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn readiness(ready: bool, ready_at_h: Option<i64>) -> Readiness {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).single().expect("time");
        let kept = |cluster: &str| retention::readiness::ClusterRetention {
            cluster: cluster.into(),
            retention_secs: 10 * 3600,
            partition_secs: 3600,
            oldest_retained: None,
            policy_oldest: now,
        };
        Readiness {
            now,
            ready,
            ready_at: ready_at_h.map(|h| now + chrono::Duration::hours(h)),
            required_from: now,
            covered_from: None,
            uncovered_partitions: vec![],
            old: kept("old"),
            new: kept("new"),
            explanation: String::new(),
        }
    }

    #[test]
    fn readiness_progress_is_the_share_of_retention_already_covered() {
        assert_eq!(progress(&readiness(true, None)), Some(1.0));
        // Ready in 4 h of a 10 h retention: 6 h of it are covered.
        assert_eq!(progress(&readiness(false, Some(4))), Some(0.6));
        assert_eq!(progress(&readiness(false, Some(30))), Some(0.0));
        assert_eq!(progress(&readiness(false, None)), None);
    }
}
