use std::path::Path;

use super::*;
use crate::state::GroupState;

/// The Insights groups' indexes: timeseries first, then the copied patterns.
const TIMESERIES: usize = 0;
const PATTERNS: usize = 1;

fn groups() -> Groups {
    Groups::of(&pipeline::Pipeline::insights())
}

fn group(index: usize) -> TableGroup {
    groups().all()[index]
}

fn cluster(name: &str) -> ClusterConfig {
    let text = format!(
        "name = \"{name}\"\n[auth]\nuser = \"u\"\n[[shards]]\nrange = \"-\"\ndsn = \"mysql://127.0.0.1:9/db\"\n"
    );
    ClusterConfig::from_toml_str(&text, Path::new("."), &|_| None).expect("config")
}

fn handles() -> [ClusterHandle; 2] {
    let (old, new) = (cluster("old"), cluster("new"));
    [
        ClusterHandle { pools: ShardPools::new(&old), config: old },
        ClusterHandle { pools: ShardPools::new(&new), config: new },
    ]
}

fn row(group: TableGroup, active: &str, pending: Option<&str>, retired: Option<&str>, version: u64) -> GroupState {
    GroupState {
        group,
        active: active.into(),
        pending: pending.map(Into::into),
        retired: retired.map(Into::into),
        version,
        changed_by: "t".into(),
        changed_at_ms: 0,
        reason: String::new(),
        forced: false,
    }
}

fn routing(timeseries: GroupState) -> RoutingState {
    RoutingState { groups: vec![timeseries, row(group(PATTERNS), "old", None, None, 1)] }
}

/// A router with no background tasks; snapshots are published by hand.
fn router(shadow_fraction: f64, snapshot: Snapshot) -> Router {
    let clusters = handles();
    let control = Pool::new(cluster::pool::opts_for(&clusters[0].config.shards[0].endpoint, &clusters[0].config.auth));
    let mut config = RouterConfig::new("unit");
    config.shadow_fraction = shadow_fraction;
    Router { inner: Arc::new(Inner::new(config, clusters, groups(), control, snapshot)) }
}

fn snapshot(version: u64, timeseries: GroupRoute) -> Snapshot {
    Snapshot { version, groups: vec![timeseries, GroupRoute::initial()] }
}

fn held_for(d: Duration) -> GroupRoute {
    GroupRoute { active: Role::Old, pending: Some(Role::New), retired: None, hold_until: Some(Instant::now() + d) }
}

#[tokio::test]
async fn a_pending_switch_holds_its_group_once_per_version() {
    let clusters = handles();
    let config = RouterConfig::new("unit");
    let mut held = [None; 2];
    let groups = groups();
    let initial = snapshot(1, GroupRoute::initial());
    let pending = routing(row(group(TIMESERIES), "old", Some("new"), None, 2));
    let (first, newly) = build_snapshot(&clusters, &groups, &pending, &initial, &mut held, &config).expect("snapshot");
    assert_eq!(newly, [(TIMESERIES, group(TIMESERIES))]);
    let hold = first.groups[0].hold_until.expect("held");
    assert_eq!(first.groups[1].hold_until, None, "the patterns group is not switching");
    // Seen again (another group changed): not held anew, the same deadline kept.
    let (again, newly) = build_snapshot(&clusters, &groups, &pending, &first, &mut held, &config).expect("snapshot");
    assert!(newly.is_empty());
    assert_eq!(again.groups[0].hold_until, Some(hold));
    // Flipped: released onto the new cluster.
    let flipped = routing(row(group(TIMESERIES), "new", None, None, 3));
    let (last, _) = build_snapshot(&clusters, &groups, &flipped, &again, &mut held, &config).expect("snapshot");
    assert_eq!((last.groups[0].active, last.groups[0].hold_until, last.version), (Role::New, None, 3));
    let unknown = routing(row(group(TIMESERIES), "other", None, None, 4));
    assert!(matches!(
        build_snapshot(&clusters, &groups, &unknown, &last, &mut held, &config),
        Err(RouterError::UnknownCluster(name)) if name == "other"
    ));
}

#[tokio::test]
async fn a_read_arriving_during_a_switch_waits_then_runs_on_the_new_cluster() {
    let router = router(0.0, snapshot(2, held_for(Duration::from_secs(30))));
    let waiting = tokio::spawn({
        let router = router.clone();
        async move {
            let (lease, version, _) = router.lease(TIMESERIES).await;
            (lease.role, version)
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "held while the switch is pending");
    // Other groups are not held.
    let (lease, _, _) = router.lease(PATTERNS).await;
    assert_eq!(lease.role, Role::Old);
    drop(lease);
    let flipped = GroupRoute { active: Role::New, pending: None, retired: None, hold_until: None };
    router.inner.snapshot.send_replace(Arc::new(snapshot(3, flipped)));
    let (role, version) = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("released").expect("join");
    assert_eq!((role, version), (Role::New, 3));
    assert_eq!(router.stats().in_flight, 0, "leases are released when dropped");
}

#[tokio::test]
async fn a_held_read_runs_on_the_active_cluster_when_the_switch_never_completes() {
    let router = router(0.0, snapshot(2, held_for(Duration::from_millis(100))));
    let started = Instant::now();
    let (lease, version, _) =
        tokio::time::timeout(Duration::from_secs(5), router.lease(TIMESERIES)).await.expect("bounded");
    assert!(started.elapsed() >= Duration::from_millis(90));
    assert_eq!((lease.role, version), (Role::Old, 2));
}

#[tokio::test]
async fn drain_waits_for_reads_in_flight_and_is_bounded() {
    let router = router(0.0, snapshot(1, GroupRoute::initial()));
    let (lease, _, _) = router.lease(TIMESERIES).await;
    assert!(!router.inner.drain(Role::Old, TIMESERIES, Duration::from_millis(50)).await);
    assert!(router.inner.drain(Role::New, TIMESERIES, Duration::from_millis(50)).await);
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(lease);
    });
    assert!(router.inner.drain(Role::Old, TIMESERIES, Duration::from_secs(5)).await);
    release.await.expect("join");
}

#[tokio::test]
async fn routers_report_the_clusters_they_may_read() {
    let reading_old = router(0.0, snapshot(1, GroupRoute::initial()));
    assert_eq!(reading_old.stats().may_read, ["old"]);
    let shadowing = router(0.5, snapshot(1, GroupRoute::initial()));
    assert_eq!(shadowing.stats().may_read, ["old", "new"]);
    let on_new = GroupRoute { active: Role::New, pending: None, retired: Some(Role::Old), hold_until: None };
    let retired = router(0.5, Snapshot { version: 9, groups: vec![on_new, on_new] });
    assert_eq!(retired.stats().may_read, ["new"], "no shadow reads on a retired cluster");
    let (lease, _, shadow) = retired.lease(TIMESERIES).await;
    assert_eq!((lease.role, shadow), (Role::New, None));
}
