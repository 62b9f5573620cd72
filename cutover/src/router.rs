//! The read router: follows the routing state and sends each read to the
//! cluster serving its table group.
//!
//! Protocol (per router; `ops` drives the other side):
//! - A follower task polls the control database's routing version every
//!   `poll_interval` (50 ms by default) and publishes a new [`Snapshot`]
//!   through a `watch` channel when it changes. Each read takes a [`Lease`]
//!   from the snapshot current when it starts and runs wholly on that
//!   cluster: a read in flight during a switch finishes where it started.
//! - A switch is two versions. First the group gets a `pending` cluster: the
//!   router holds new reads of the group (they wait, at most `max_wait`),
//!   waits for the group's in-flight reads to finish (at most
//!   `drain_timeout`), then acknowledges. When every live router has, the
//!   switch flips `active` and clears `pending`: routers release the held
//!   reads onto the new cluster and acknowledge again. No read fails because
//!   of a switch: a held read that waits out `max_wait` (an abandoned switch)
//!   runs on the still-active cluster.
//! - Acknowledgements and liveness are one heartbeat row per router
//!   (`dw_read_routers`): the version applied and the clusters it may read.

use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use mysql_async::Pool;
use serde::Serialize;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::group::{Groups, GroupsDiffer, Role, TableGroup};
use crate::query::{self, Answer, Query, QueryError};
use crate::shadow::{self, Outcome, Shadow, ShadowStats};
use crate::state::{self, RoutingState, StateError};

/// How a router follows the routing state and shadows reads.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Unique per process: names its heartbeat row.
    pub router_id: String,
    /// How often the routing version is polled: bounds how late a router sees a change.
    pub poll_interval: Duration,
    /// How often a router reports itself alive when nothing changes.
    pub heartbeat_interval: Duration,
    /// Longest a read waits for a switch in progress before it runs on the active cluster.
    pub max_wait: Duration,
    /// Longest a router waits for in-flight reads before it acknowledges a pending switch.
    pub drain_timeout: Duration,
    /// Fraction of reads also run on the other cluster (0 = none).
    pub shadow_fraction: f64,
    /// Shadow reads running at once; beyond it they are skipped, never queued.
    pub shadow_max_concurrent: usize,
    /// How often shadow counts are added to the control database.
    pub shadow_flush_interval: Duration,
    /// How often each cluster's covered/settled bounds are re-read from its fences.
    pub bounds_refresh: Duration,
}

impl RouterConfig {
    pub fn new(router_id: impl Into<String>) -> Self {
        Self {
            router_id: router_id.into(),
            poll_interval: Duration::from_millis(50),
            heartbeat_interval: Duration::from_millis(500),
            max_wait: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(1),
            shadow_fraction: 0.0,
            shadow_max_concurrent: 4,
            shadow_flush_interval: Duration::from_secs(5),
            bounds_refresh: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the two cluster files name the same cluster {0:?}")]
    SameName(String),
    #[error("routing state names cluster {0:?}, which is neither --old nor --new")]
    UnknownCluster(String),
    #[error("routing state has no row for table group {0}")]
    MissingGroup(TableGroup),
    #[error(transparent)]
    Groups(#[from] GroupsDiffer),
}

/// How one group is routed in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GroupRoute {
    active: Role,
    pending: Option<Role>,
    retired: Option<Role>,
    /// Reads of the group wait until this instant (a switch is pending).
    hold_until: Option<Instant>,
}

/// The routing a router applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub version: u64,
    /// Indexed like the router's [`Groups`].
    groups: Vec<GroupRoute>,
}

/// One cluster a router reads.
pub struct ClusterHandle {
    pub config: ClusterConfig,
    pub pools: ShardPools,
}

struct Inner {
    config: RouterConfig,
    /// Indexed by [`Role::index`].
    clusters: [ClusterHandle; 2],
    /// The pipeline's read table groups (both clusters describe the same).
    groups: Groups,
    control: Pool,
    snapshot: watch::Sender<Arc<Snapshot>>,
    /// Reads in flight per role, and per group by its index in `groups`.
    in_flight: [Vec<AtomicUsize>; 2],
    /// Notified whenever a read finishes.
    finished: Notify,
    /// Reads served per role.
    reads: [AtomicU64; 2],
    shadow: Shadow,
    shadow_slots: Arc<Semaphore>,
    /// Shadow reads and background loops; joined at shutdown.
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// When the router was built: the base of `followed_at_ms`.
    started: Instant,
    /// Milliseconds after `started` of the last successful routing poll:
    /// `/healthz` fails when it is stale, because a router that no longer
    /// follows the routing state would keep reading a cluster after a switch.
    followed_at_ms: AtomicU64,
}

/// A cheap handle for serving reads.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

/// A read's answer and where it was served.
#[derive(Debug, Clone, Serialize)]
pub struct Routed {
    /// Name of the cluster that served it.
    pub cluster: String,
    pub role: Role,
    /// Routing version the read started under.
    pub version: u64,
    /// Time spent held by a switch in progress.
    pub waited_ms: u64,
    pub answer: Answer,
}

/// A router's counters, for `/v1/router` and tests.
#[derive(Debug, Clone, Serialize)]
pub struct RouterStats {
    pub router_id: String,
    pub version: u64,
    pub reads_old: u64,
    pub reads_new: u64,
    pub in_flight: usize,
    pub may_read: Vec<String>,
    pub shadow: ShadowStats,
    pub bounds: [Option<shadow::Bounds>; 2],
}

/// A read's claim on one cluster: counted in flight until dropped.
struct Lease {
    inner: Arc<Inner>,
    role: Role,
    /// The group's index in the router's [`Groups`].
    group: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.inner.in_flight[self.role.index()][self.group].fetch_sub(1, Ordering::SeqCst);
        self.inner.finished.notify_waiters();
    }
}

impl Router {
    /// Loads the routing state (creating it on first use: reads on `old`),
    /// acknowledges it, and starts following it. Stop with [`Router::shutdown`].
    pub async fn start(
        config: RouterConfig,
        old: ClusterConfig,
        new: ClusterConfig,
        control: Pool,
    ) -> Result<Router, RouterError> {
        if old.name == new.name {
            return Err(RouterError::SameName(old.name));
        }
        let groups = Groups::of_clusters(&old, &new)?;
        crate::metrics::groups(&groups.all());
        state::ensure_schema(&control).await?;
        state::ensure_initial(&control, &groups.all(), &old.name, &config.router_id).await?;
        let clusters = [
            ClusterHandle { pools: ShardPools::new(&old), config: old },
            ClusterHandle { pools: ShardPools::new(&new), config: new },
        ];
        let routing = state::load(&control).await?;
        let mut held = vec![None; groups.len()];
        let placeholder = Snapshot { version: 0, groups: vec![GroupRoute::initial(); groups.len()] };
        let (first, _) = build_snapshot(&clusters, &groups, &routing, &placeholder, &mut held, &config)?;
        let inner = Arc::new(Inner::new(config, clusters, groups, control, first));
        let mut conn = inner.control.get_conn().await.map_err(StateError::from)?;
        state::heartbeat(&mut conn, &inner.config.router_id, routing.version(), &inner.may_read()).await?;
        drop(conn);
        crate::metrics::routing_version(routing.version());
        tracing::info!(router = %inner.config.router_id, version = routing.version(), "router following the routing state");
        inner.tasks.spawn(follow(inner.clone(), routing.version(), held));
        if inner.config.shadow_fraction > 0.0 {
            inner.tasks.spawn(refresh_bounds(inner.clone()));
            inner.tasks.spawn(flush_shadow_counts(inner.clone()));
        }
        Ok(Router { inner })
    }

    /// Runs `query` on the cluster its table group is routed to; maybe also
    /// on the other cluster in the background (shadow read).
    pub async fn read(&self, query: Query) -> Result<Routed, QueryError> {
        let (index, group) = self.group_of(&query)?;
        let started = Instant::now();
        let (lease, version, shadow_target) = self.lease(index).await;
        let waited = started.elapsed();
        if !waited.is_zero() {
            crate::metrics::read_waited(group.as_str(), waited);
        }
        let role = lease.role;
        let handle = &self.inner.clusters[role.index()];
        let result = query::execute(&handle.config, &handle.pools, &query).await;
        drop(lease);
        self.inner.reads[role.index()].fetch_add(1, Ordering::Relaxed);
        crate::metrics::read_served(&handle.config.name, group.as_str(), query.kind(), result.is_ok());
        let answer = result?;
        if let Some(target) = shadow_target {
            self.shadow(&query, (index, group), &answer, role, target);
        }
        Ok(Routed {
            cluster: handle.config.name.clone(),
            role,
            version,
            waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
            answer,
        })
    }

    /// The group that serves `query`'s table, and its index: a pipeline
    /// without the table (not the Insights pipeline) cannot answer it.
    fn group_of(&self, query: &Query) -> Result<(usize, TableGroup), QueryError> {
        let groups = &self.inner.groups;
        let table = query.table();
        groups
            .holding(table)
            .and_then(|g| Some((groups.index(g)?, g)))
            .ok_or_else(|| QueryError::Invalid(format!("this pipeline has no table {table}")))
    }

    /// A lease on the active cluster of the group at `group` (its index),
    /// waiting while a switch holds the group.
    async fn lease(&self, group: usize) -> (Lease, u64, Option<Role>) {
        let inner = &self.inner;
        let mut rx = inner.snapshot.subscribe();
        loop {
            let snapshot = rx.borrow_and_update().clone();
            let route = snapshot.groups[group];
            if let Some(until) = route.hold_until {
                if Instant::now() < until {
                    let _ = tokio::time::timeout_at(until, rx.changed()).await;
                    continue;
                }
            }
            let counter = &inner.in_flight[route.active.index()][group];
            counter.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let lease = Lease { inner: inner.clone(), role: route.active, group };
            // A snapshot published between our read and our count may hold
            // the group; the follower drains after publishing, so either it
            // sees our count or we see its snapshot.
            if rx.has_changed().unwrap_or(false) {
                drop(lease);
                continue;
            }
            let other = route.active.other();
            let shadow = (inner.config.shadow_fraction > 0.0 && route.retired != Some(other)).then_some(other);
            return (lease, snapshot.version, shadow);
        }
    }

    fn shadow(
        &self,
        query: &Query,
        (index, group): (usize, TableGroup),
        primary_answer: &Answer,
        primary: Role,
        target: Role,
    ) {
        let inner = &self.inner;
        if matches!(query, Query::PatternTexts { .. }) || !rand::random_bool(inner.config.shadow_fraction.min(1.0)) {
            return;
        }
        let span = query.span_ms(&inner.clusters[primary.index()].config);
        if !inner.shadow.comparable(span) {
            inner.shadow.record(query, group, primary, Outcome::Skipped, None);
            return;
        }
        let Ok(permit) = inner.shadow_slots.clone().try_acquire_owned() else {
            inner.shadow.record(query, group, primary, Outcome::Busy, None);
            return;
        };
        inner.in_flight[target.index()][index].fetch_add(1, Ordering::SeqCst);
        let lease = Lease { inner: inner.clone(), role: target, group: index };
        let query = query.clone();
        let primary_answer = primary_answer.clone();
        let task_inner = inner.clone();
        inner.tasks.spawn(async move {
            let _permit = permit;
            let handle = &task_inner.clusters[target.index()];
            let result = query::execute(&handle.config, &handle.pools, &query).await;
            drop(lease);
            let settled = task_inner.shadow.settled_through_ms().unwrap_or(i64::MIN);
            match result {
                Err(error) => {
                    task_inner.shadow.record(&query, group, primary, Outcome::Error, Some(&error.to_string()))
                }
                Ok(shadow_answer) if truncated(&query, &primary_answer, &shadow_answer) => {
                    task_inner.shadow.record(&query, group, primary, Outcome::Skipped, None)
                }
                Ok(shadow_answer) => match query::compare(&primary_answer, &shadow_answer, settled) {
                    Ok(()) => task_inner.shadow.record(&query, group, primary, Outcome::Equal, None),
                    Err(difference) => {
                        task_inner.shadow.record(&query, group, primary, Outcome::Mismatch, Some(&difference))
                    }
                },
            }
        });
    }

    /// How long ago the routing state was last read successfully, and
    /// whether that is recent enough to call the router healthy (20 polls,
    /// at least 2 s: a few failed polls in a row are normal during a
    /// control-database failover).
    pub fn following(&self) -> (bool, Duration) {
        let inner = &self.inner;
        let at = Duration::from_millis(inner.followed_at_ms.load(Ordering::Relaxed));
        let since = inner.started.elapsed().saturating_sub(at);
        let stale_after = (inner.config.poll_interval * 20).max(Duration::from_secs(2));
        (since <= stale_after, since)
    }

    /// The router's counters.
    pub fn stats(&self) -> RouterStats {
        let inner = &self.inner;
        RouterStats {
            router_id: inner.config.router_id.clone(),
            version: inner.snapshot.borrow().version,
            reads_old: inner.reads[Role::Old.index()].load(Ordering::Relaxed),
            reads_new: inner.reads[Role::New.index()].load(Ordering::Relaxed),
            in_flight: inner.in_flight.iter().flatten().map(|c| c.load(Ordering::SeqCst)).sum(),
            may_read: inner.may_read(),
            shadow: inner.shadow.stats(),
            bounds: inner.shadow.bounds(),
        }
    }

    /// The cluster config of `role` (window sizes for the API).
    pub fn cluster(&self, role: Role) -> &ClusterConfig {
        &self.inner.clusters[role.index()].config
    }

    /// Stops following, waits for shadow reads and loops, flushes shadow
    /// counts, removes the heartbeat row (nobody waits for a router that
    /// left), and closes the pools.
    pub async fn shutdown(self) {
        let inner = self.inner;
        inner.cancel.cancel();
        inner.tasks.close();
        inner.tasks.wait().await;
        flush_once(&inner).await;
        if let Err(error) = state::remove_router(&inner.control, &inner.config.router_id).await {
            tracing::warn!(%error, "removing the router's heartbeat row failed");
        }
        tracing::info!(router = %inner.config.router_id, "router stopped");
        // Pools close when the last handle (held by finished tasks) is gone.
        if let Ok(inner) = Arc::try_unwrap(inner) {
            let [old, new] = inner.clusters;
            old.pools.disconnect().await;
            new.pools.disconnect().await;
            if let Err(error) = inner.control.disconnect().await {
                tracing::warn!(%error, "closing the control pool failed");
            }
        }
    }
}

/// Whether a limit may have cut one answer differently from the other.
fn truncated(query: &Query, a: &Answer, b: &Answer) -> bool {
    match (query, a, b) {
        (Query::SearchPatterns { limit, .. }, Answer::Patterns(x), Answer::Patterns(y)) => {
            x.len() >= *limit as usize || y.len() >= *limit as usize
        }
        _ => false,
    }
}

impl GroupRoute {
    fn initial() -> Self {
        GroupRoute { active: Role::Old, pending: None, retired: None, hold_until: None }
    }
}

impl Inner {
    fn new(config: RouterConfig, clusters: [ClusterHandle; 2], groups: Groups, control: Pool, first: Snapshot) -> Self {
        let (snapshot, _) = watch::channel(Arc::new(first));
        let counters = || (0..groups.len()).map(|_| AtomicUsize::new(0)).collect();
        Inner {
            in_flight: [counters(), counters()],
            groups,
            shadow_slots: Arc::new(Semaphore::new(config.shadow_max_concurrent)),
            config,
            clusters,
            control,
            snapshot,
            finished: Notify::new(),
            reads: Default::default(),
            shadow: Shadow::default(),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            started: Instant::now(),
            followed_at_ms: AtomicU64::new(0),
        }
    }

    fn mark_followed(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.followed_at_ms.store(now, Ordering::Relaxed);
    }

    /// Clusters this router may read now: active ones, shadow targets, and any with reads in flight.
    fn may_read(&self) -> Vec<String> {
        let snapshot = self.snapshot.borrow().clone();
        let mut roles = [false; 2];
        for route in &snapshot.groups {
            roles[route.active.index()] = true;
            let other = route.active.other();
            if self.config.shadow_fraction > 0.0 && route.retired != Some(other) {
                roles[other.index()] = true;
            }
        }
        for role in [Role::Old, Role::New] {
            if self.in_flight[role.index()].iter().any(|c| c.load(Ordering::SeqCst) > 0) {
                roles[role.index()] = true;
            }
        }
        [Role::Old, Role::New]
            .into_iter()
            .filter(|r| roles[r.index()])
            .map(|r| self.clusters[r.index()].config.name.clone())
            .collect()
    }

    /// Waits until no read of the group at `group` (its index) runs on `role`; false on timeout.
    async fn drain(&self, role: Role, group: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.finished.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight[role.index()][group].load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Polls once; applies and acknowledges a new version. Ok(true) when it changed.
    async fn poll(
        &self,
        conn: &mut Option<mysql_async::Conn>,
        applied: &mut u64,
        held: &mut [Option<u64>],
    ) -> Result<bool, RouterError> {
        let c = match conn {
            Some(c) => c,
            None => conn.insert(self.control.get_conn().await.map_err(StateError::from)?),
        };
        let version = state::current_version(c).await?;
        if version == *applied {
            return Ok(false);
        }
        let routing = state::load(&self.control).await?;
        let current = self.snapshot.borrow().clone();
        let (next, newly_held) = build_snapshot(&self.clusters, &self.groups, &routing, &current, held, &self.config)?;
        self.snapshot.send_replace(Arc::new(next.clone()));
        fence(Ordering::SeqCst);
        for (index, group) in newly_held {
            let active = next.groups[index].active;
            let drained = self.drain(active, index, self.config.drain_timeout).await;
            if !drained {
                tracing::warn!(%group, cluster = %active, "reads still in flight at acknowledgement; they finish where they started");
            }
        }
        *applied = routing.version();
        crate::metrics::routing_version(*applied);
        tracing::info!(router = %self.config.router_id, version = *applied, routes = ?next.groups.iter().map(|g| (g.active, g.pending)).collect::<Vec<_>>(), "routing changed");
        Ok(true)
    }
}

fn role_of(clusters: &[ClusterHandle; 2], name: &str) -> Result<Role, RouterError> {
    [Role::Old, Role::New]
        .into_iter()
        .find(|r| clusters[r.index()].config.name == name)
        .ok_or_else(|| RouterError::UnknownCluster(name.to_owned()))
}

/// The snapshot for `routing`; groups whose pending switch is new to this
/// router are held from now for `max_wait` (returned with their indexes,
/// to be drained). Rows of groups `groups` does not name are not this
/// pipeline's and are ignored.
fn build_snapshot(
    clusters: &[ClusterHandle; 2],
    groups: &Groups,
    routing: &RoutingState,
    current: &Snapshot,
    held: &mut [Option<u64>],
    config: &RouterConfig,
) -> Result<(Snapshot, Vec<(usize, TableGroup)>), RouterError> {
    let mut routes = vec![GroupRoute::initial(); groups.len()];
    let mut newly_held = Vec::new();
    for (i, group) in groups.all().into_iter().enumerate() {
        let row = routing.group(group).ok_or(RouterError::MissingGroup(group))?;
        let active = role_of(clusters, &row.active)?;
        let pending = row.pending.as_deref().map(|n| role_of(clusters, n)).transpose()?;
        let retired = row.retired.as_deref().map(|n| role_of(clusters, n)).transpose()?;
        let hold_until = match pending {
            Some(to) if to != active => {
                if held[i] == Some(row.version) {
                    current.groups[i].hold_until
                } else {
                    held[i] = Some(row.version);
                    newly_held.push((i, group));
                    Some(Instant::now() + config.max_wait)
                }
            }
            _ => None,
        };
        routes[i] = GroupRoute { active, pending, retired, hold_until };
    }
    Ok((Snapshot { version: routing.version(), groups: routes }, newly_held))
}

async fn follow(inner: Arc<Inner>, mut applied: u64, mut held: Vec<Option<u64>>) {
    let mut conn: Option<mysql_async::Conn> = None;
    let mut last_beat = Instant::now();
    let mut failures: u64 = 0;
    loop {
        tokio::select! {
            _ = inner.cancel.cancelled() => break,
            _ = tokio::time::sleep(inner.config.poll_interval) => {}
        }
        let result = match inner.poll(&mut conn, &mut applied, &mut held).await {
            Ok(changed) if changed || last_beat.elapsed() >= inner.config.heartbeat_interval => {
                let may_read = inner.may_read();
                match conn.as_mut() {
                    Some(c) => state::heartbeat(c, &inner.config.router_id, applied, &may_read).await.map(|()| {
                        last_beat = Instant::now();
                    }),
                    None => Ok(()),
                }
                .map_err(RouterError::from)
            }
            Ok(_) => Ok(()),
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            conn = None;
            failures += 1;
            crate::metrics::routing_poll_failed();
            // Rate-limited: one line per ~second of failures at the default poll interval.
            if failures % 20 == 1 {
                tracing::warn!(%error, failures, "routing poll failed; keeping the last known routing");
            }
        } else {
            failures = 0;
            inner.mark_followed();
            crate::metrics::routing_synced();
        }
    }
}

async fn refresh_bounds(inner: Arc<Inner>) {
    loop {
        for role in [Role::Old, Role::New] {
            let retired = inner.snapshot.borrow().groups.iter().all(|g| g.retired == Some(role));
            if retired {
                // A retired cluster is not read at all, not even its fences.
                inner.shadow.set_bounds(role, None);
                continue;
            }
            let handle = &inner.clusters[role.index()];
            let lateness = handle.config.time.allowed_lateness_ms();
            match shadow::read_bounds(&handle.pools, lateness).await {
                Ok(bounds) => inner.shadow.set_bounds(role, bounds),
                Err(error) => {
                    tracing::debug!(cluster = %handle.config.name, %error, "reading fences for shadow bounds failed");
                    inner.shadow.set_bounds(role, None);
                }
            }
        }
        tokio::select! {
            _ = inner.cancel.cancelled() => break,
            _ = tokio::time::sleep(inner.config.bounds_refresh) => {}
        }
    }
}

async fn flush_shadow_counts(inner: Arc<Inner>) {
    loop {
        tokio::select! {
            _ = inner.cancel.cancelled() => break,
            _ = tokio::time::sleep(inner.config.shadow_flush_interval) => {}
        }
        flush_once(&inner).await;
    }
}

async fn flush_once(inner: &Inner) {
    let counts = inner.shadow.take_pending();
    if counts.is_empty() {
        return;
    }
    let now = chrono::Utc::now().timestamp();
    let interval = i64::try_from(inner.config.shadow_flush_interval.as_secs()).unwrap_or(60).max(1);
    let start = now.div_euclid(interval) * interval;
    if let Err(error) = state::add_shadow_counts(&inner.control, &inner.config.router_id, start, &counts).await {
        tracing::warn!(%error, "writing shadow counts failed; retrying at the next flush");
        inner.shadow.restore_pending(counts);
    }
}

#[cfg(test)]
mod tests;
