//! The operator's side of the protocol (see [`crate::router`]): switch,
//! roll back, complete. Every change is a transition of the routing state
//! (audited) followed by a wait for every live router's acknowledgement.

use std::time::{Duration, Instant};

use mysql_async::Pool;
use serde::Serialize;

use crate::gates::GateResult;
use crate::group::{Role, TableGroup};
use crate::state::{self, Audit, RouterSeen, RoutingState, StateError};

/// How the commands talk to the routing state.
#[derive(Clone)]
pub struct OpsConfig {
    /// Cluster names of the two roles.
    pub old_name: String,
    /// Every read table group of the pipeline (what `complete` retires).
    pub groups: Vec<TableGroup>,
    pub new_name: String,
    pub control: Pool,
    /// Who runs the command (audited).
    pub operator: String,
    /// Longest wait for the routers' acknowledgements, per step.
    pub ack_timeout: Duration,
    /// A router whose last heartbeat is older than this is not waited for.
    pub liveness: Duration,
    /// How often acknowledgements are polled.
    pub poll: Duration,
}

impl OpsConfig {
    pub fn name(&self, role: Role) -> &str {
        match role {
            Role::Old => &self.old_name,
            Role::New => &self.new_name,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("refused: {0}")]
    Refused(String),
    #[error("refused by the gates:\n{}", .0.iter().filter(|g| !g.passed).map(|g| g.to_string()).collect::<Vec<_>>().join("\n"))]
    Gates(Vec<GateResult>),
    #[error("{step}: routers did not acknowledge version {version} within {timeout:?}: {}", .routers.join(", "))]
    NotAcknowledged { step: &'static str, version: u64, timeout: Duration, routers: Vec<String> },
}

/// A switch of some groups' reads to one cluster.
#[derive(Debug, Clone)]
pub struct SwitchRequest {
    pub to: Role,
    pub groups: Vec<TableGroup>,
    /// Switch despite failed gates (requires a reason; audited).
    pub force: bool,
    pub reason: String,
    pub dry_run: bool,
    /// Audited as a switch or a rollback.
    pub action: SwitchAction,
}

/// Why reads move: the audit tells a switch from a rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchAction {
    Switch,
    Rollback,
}

impl SwitchAction {
    /// The audit log's `action`.
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchAction::Switch => "switch",
            SwitchAction::Rollback => "rollback",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SwitchOutcome {
    /// Every requested group already reads from the target.
    Unchanged {
        groups: Vec<TableGroup>,
    },
    DryRun {
        changes: Vec<(TableGroup, String, String)>,
        live_routers: Vec<RouterSeen>,
        failed_gates: Vec<GateResult>,
    },
    Switched {
        changes: Vec<(TableGroup, String, String)>,
        version: u64,
        /// From the first state change to the last acknowledgement.
        elapsed_ms: f64,
        /// Of which: until every router had drained and held the groups' reads.
        prepare_ms: f64,
        routers: Vec<String>,
        forced: bool,
    },
}

/// A pending switch older than this is an abandoned one (its command died) and may be taken over.
fn abandoned_after(config: &OpsConfig) -> Duration {
    config.ack_timeout * 2 + config.liveness
}

/// Switches (or rolls back) reads of `request.groups` to `request.to`.
/// `gates` are the evaluated gates (empty for a rollback, which is never gated).
///
/// Three steps, each a compare-and-set transition of the routing rows
/// followed by a wait for the live routers: [`prepare`] (routers drain and
/// hold the groups' reads), [`flip`] (the active cluster changes), and
/// [`acknowledge`] (the audit records who applied it and how long it took).
/// A dry run stops after [`plan`] and changes nothing.
pub async fn switch(
    config: &OpsConfig,
    request: &SwitchRequest,
    gates: &[GateResult],
) -> Result<SwitchOutcome, OpsError> {
    let Some(plan) = plan(config, request).await? else {
        return Ok(SwitchOutcome::Unchanged { groups: request.groups.clone() });
    };
    let failed: Vec<GateResult> = gates.iter().filter(|g| !g.passed).cloned().collect();
    if request.dry_run {
        return dry_run(config, plan, failed).await;
    }
    if !failed.is_empty() && !request.force {
        return Err(OpsError::Gates(gates.to_vec()));
    }
    let step = Step {
        config,
        request,
        groups: plan.changes.iter().map(|(g, _, _)| *g).collect(),
        target: plan.target,
        forced: request.force && !failed.is_empty(),
        gate_json: serde_json::to_string(gates).unwrap_or_default(),
    };
    let started = Instant::now();
    prepare(&step).await?;
    let held_from = Instant::now();
    let version = flip(&step).await?;
    let routers = acknowledge(&step, &plan.changes, version, started).await?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(SwitchOutcome::Switched {
        changes: plan.changes,
        version,
        elapsed_ms,
        prepare_ms: (held_from - started).as_secs_f64() * 1000.0,
        routers,
        forced: step.forced,
    })
}

/// What a switch would change: (group, from, to) for every group not yet on the target.
struct Plan {
    target: String,
    changes: Vec<(TableGroup, String, String)>,
}

/// Reads the routing state and refuses what cannot be switched; `None`
/// when every requested group already reads from the target.
async fn plan(config: &OpsConfig, request: &SwitchRequest) -> Result<Option<Plan>, OpsError> {
    let routing = state::load(&config.control).await?;
    let target = config.name(request.to).to_owned();
    let mut changes = Vec::new();
    for group in &request.groups {
        let Some(row) = routing.group(*group) else {
            return Err(OpsError::Refused(format!("no routing state for {group}: start a router (serve) first")));
        };
        if row.retired.as_deref() == Some(target.as_str()) {
            return Err(OpsError::Refused(format!(
                "cluster {target} is retired for {group}: reads can no longer go there"
            )));
        }
        if let Some(pending) = &row.pending {
            let age_ms = chrono::Utc::now().timestamp_millis() - row.changed_at_ms;
            if age_ms < i64::try_from(abandoned_after(config).as_millis()).unwrap_or(i64::MAX) {
                return Err(OpsError::Refused(format!(
                    "a switch of {group} to {pending} is in progress (by {}, {age_ms} ms ago); retry when it has finished",
                    row.changed_by
                )));
            }
            tracing::warn!(%group, %pending, age_ms, "taking over an abandoned switch");
        }
        if row.active != target {
            changes.push((*group, row.active.clone(), target.clone()));
        }
    }
    Ok((!changes.is_empty()).then_some(Plan { target, changes }))
}

/// What a switch would do, and who would have to acknowledge it; nothing is written.
async fn dry_run(config: &OpsConfig, plan: Plan, failed_gates: Vec<GateResult>) -> Result<SwitchOutcome, OpsError> {
    let live_routers = live_routers(config).await?;
    Ok(SwitchOutcome::DryRun { changes: plan.changes, live_routers, failed_gates })
}

/// One switch in progress: what every step writes and audits.
struct Step<'a> {
    config: &'a OpsConfig,
    request: &'a SwitchRequest,
    groups: Vec<TableGroup>,
    target: String,
    forced: bool,
    gate_json: String,
}

impl Step<'_> {
    fn audit(&self, action: &'static str, detail: String) -> Audit {
        Audit {
            action,
            changed_by: self.config.operator.clone(),
            reason: self.request.reason.clone(),
            forced: self.forced,
            detail,
        }
    }
}

/// Marks the switch pending and waits until every live router holds the
/// groups' reads; if one does not acknowledge in time, the switch is aborted
/// and reads stay where they were.
async fn prepare(step: &Step<'_>) -> Result<u64, OpsError> {
    let prepare = step.audit("prepare", format!("{{\"gates\":{}}}", step.gate_json));
    let target = &step.target;
    // Each step re-checks under the routing rows' lock what it read before
    // (compare-and-set), so two operators' switches cannot interleave.
    let version = state::transition(&step.config.control, &step.groups, &prepare, |row| {
        if let Some(other) = &row.pending {
            return Err(format!("another switch to {other} is in progress"));
        }
        if row.retired.as_ref() == Some(target) {
            return Err(format!("{target} is retired"));
        }
        row.pending = Some(target.clone());
        Ok(())
    })
    .await?;
    let Err(routers) = wait_for_acks(step.config, version, None).await? else {
        return Ok(version);
    };
    let abort = step.audit("abort", serde_json::json!({ "not_acknowledged": routers }).to_string());
    state::transition(&step.config.control, &step.groups, &abort, |row| {
        if row.pending.as_ref() != Some(target) {
            return Err("the pending switch changed under this one; nothing aborted".to_owned());
        }
        row.pending = None;
        Ok(())
    })
    .await?;
    Err(OpsError::NotAcknowledged {
        step: "prepare (aborted, reads stay where they were)",
        version,
        timeout: step.config.ack_timeout,
        routers,
    })
}

/// Makes the target the active cluster of the prepared groups.
async fn flip(step: &Step<'_>) -> Result<u64, OpsError> {
    let flip = step.audit(step.request.action.as_str(), format!("{{\"gates\":{}}}", step.gate_json));
    let target = &step.target;
    let version = state::transition(&step.config.control, &step.groups, &flip, |row| {
        if row.pending.as_ref() != Some(target) {
            return Err("the pending switch changed under this one (another operator); nothing flipped".to_owned());
        }
        row.active = target.clone();
        row.pending = None;
        Ok(())
    })
    .await?;
    Ok(version)
}

/// Waits until every live router applied the flip, then audits who did and
/// how long the whole switch took.
async fn acknowledge(
    step: &Step<'_>,
    changes: &[(TableGroup, String, String)],
    version: u64,
    started: Instant,
) -> Result<Vec<String>, OpsError> {
    let routers = match wait_for_acks(step.config, version, None).await? {
        Ok(routers) => routers,
        Err(routers) => {
            return Err(OpsError::NotAcknowledged {
                step: "switch (routing changed; these routers may still read the previous cluster)",
                version,
                timeout: step.config.ack_timeout,
                routers,
            })
        }
    };
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let detail = serde_json::json!({ "elapsed_ms": elapsed_ms, "routers": routers }).to_string();
    state::note(&step.config.control, changes, version, &step.audit("acknowledged", detail)).await?;
    tracing::info!(to = %step.target, version, elapsed_ms, routers = routers.len(), forced = step.forced, "reads switched");
    Ok(routers)
}

/// Routers whose last heartbeat is recent.
pub async fn live_routers(config: &OpsConfig) -> Result<Vec<RouterSeen>, OpsError> {
    Ok(state::routers(&config.control).await?.into_iter().filter(|r| r.is_live(config.liveness)).collect())
}

/// Waits until every live router has applied `version` (and, with
/// `not_reading`, no longer reads that cluster). `Ok(Ok(acked))` or
/// `Ok(Err(laggards))` after the timeout.
async fn wait_for_acks(
    config: &OpsConfig,
    version: u64,
    not_reading: Option<&str>,
) -> Result<Result<Vec<String>, Vec<String>>, OpsError> {
    let deadline = Instant::now() + config.ack_timeout;
    loop {
        let live = live_routers(config).await?;
        let behind: Vec<String> = live
            .iter()
            .filter(|r| r.version_seen < version || not_reading.is_some_and(|c| r.may_read.iter().any(|m| m == c)))
            .map(|r| r.router_id.clone())
            .collect();
        if behind.is_empty() {
            return Ok(Ok(live.into_iter().map(|r| r.router_id).collect()));
        }
        if Instant::now() >= deadline {
            return Ok(Err(behind));
        }
        tokio::time::sleep(config.poll).await;
    }
}

/// What `complete` did.
#[derive(Debug, Clone, Serialize)]
pub struct CompleteOutcome {
    pub retired: String,
    pub version: u64,
    pub dry_run: bool,
    pub routers: Vec<String>,
    /// What the operator still has to do.
    pub remaining: Vec<String>,
}

/// Retires the old cluster: every group must read from the new one and
/// every live router must have acknowledged that; routers then stop reading
/// the old cluster (no shadow reads either), and this waits until none does.
pub async fn complete(config: &OpsConfig, reason: &str, dry_run: bool) -> Result<CompleteOutcome, OpsError> {
    let routing: RoutingState = state::load(&config.control).await?;
    let (old, new) = (config.old_name.clone(), config.new_name.clone());
    for row in &routing.groups {
        if row.active != new {
            return Err(OpsError::Refused(format!(
                "{} still reads from {}: run switch-reads --to new first",
                row.group, row.active
            )));
        }
        if let Some(pending) = &row.pending {
            return Err(OpsError::Refused(format!("a switch of {} to {pending} is in progress", row.group)));
        }
    }
    let live = live_routers(config).await?;
    let stale: Vec<String> = live
        .iter()
        .filter(|r| r.version_seen < routing.version())
        .map(|r| format!("{} (at version {} < {})", r.router_id, r.version_seen, routing.version()))
        .collect();
    if !stale.is_empty() {
        return Err(OpsError::Refused(format!(
            "routers that may still route reads to {old}: {}; wait for them or stop them",
            stale.join(", ")
        )));
    }
    let remaining = vec![
        format!("stop consumer group A (the group writing cluster {old})"),
        "stop the copier (its streams feed the new cluster from the old one)".to_owned(),
        format!("decommission cluster {old}'s shards once their backups are no longer needed"),
        format!("remove cluster {old} from the routers' configuration (--old) at their next restart"),
    ];
    let routers: Vec<String> = live.iter().map(|r| r.router_id.clone()).collect();
    if dry_run {
        return Ok(CompleteOutcome { retired: old, version: routing.version(), dry_run, routers, remaining });
    }
    let already = routing.groups.iter().all(|g| g.retired.as_deref() == Some(old.as_str()));
    let version = if already {
        routing.version()
    } else {
        let audit = Audit {
            action: "complete",
            changed_by: config.operator.clone(),
            reason: reason.to_owned(),
            forced: false,
            detail: serde_json::json!({ "retired": old }).to_string(),
        };
        let retire = old.clone();
        state::transition(&config.control, &config.groups, &audit, |row| {
            if row.active == retire || row.pending.is_some() {
                return Err(format!("{retire} is active or a switch is in progress; nothing retired"));
            }
            row.retired = Some(retire.clone());
            Ok(())
        })
        .await?
    };
    match wait_for_acks(config, version, Some(&old)).await? {
        Ok(routers) => Ok(CompleteOutcome { retired: old, version, dry_run, routers, remaining }),
        Err(routers) => Err(OpsError::NotAcknowledged {
            step: "complete (old cluster retired in the routing state; run complete again to re-check)",
            version,
            timeout: config.ack_timeout,
            routers,
        }),
    }
}
