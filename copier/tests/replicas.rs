//! The copier reads the old shards' real MariaDB replicas (the replication
//! stack, `compose/local/stack-replica.conf`) while consumer groups A and B
//! write both clusters, and its streams move replica -> primary -> replica
//! (each move a restart with the other `--read-from`, resumed through the
//! fences' GTIDs, `gtid_move.rs`). History that only the old cluster has
//! (rows group B never saw) must arrive, and the new cluster's
//! `query_patterns` must end equal to the old one's, row for row.

mod common;

use std::time::{Duration, Instant};

use cluster::config::{ClusterConfig, ReadFrom};
use cluster::pool::ShardPools;
use common::{pattern, patterns, quick_settings};
use copier::CopierConfig;
use loadtest::produce::{produce, ProduceConfig};
use loadtest::workload::WorkloadConfig;
use testkit::replicas::{fresh_cluster, wait_caught_up as wait_replicas};
use testkit::{Broker, Group};
use tokio_util::sync::CancellationToken;

const HISTORY_ROWS: u64 = 3_000;
const BASE_US: i64 = 1_750_000_000_000_000;

/// A copier on `from` until `stop` is cancelled.
fn start_copier(from: ClusterConfig, to: ClusterConfig) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let config = CopierConfig { from, to, table: "query_patterns".into(), settings: quick_settings(), progress: false };
    let token = stop.clone();
    let task = tokio::spawn(async move { copier::run(config, token).await.expect("copier ran cleanly") });
    (stop, task)
}

/// Waits until every stream applied `from`'s binlog (each shard's server
/// as `from` points at it) through its end now.
async fn wait_copier(from: &ClusterConfig, to: &ClusterConfig, limit: Duration) {
    let ends = copier::workload::binlog_ends(from).await.expect("binlog ends");
    let started = Instant::now();
    while !copier::workload::caught_up(from, to, "query_patterns", &ends).await.expect("status") {
        assert!(started.elapsed() < limit, "not caught up after {limit:?}: {:#?}", copier::status::streams(to).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes a marked row for 20 databases (both old shards) on the old
/// primaries and waits until the copier brought every one to the new cluster.
async fn wait_marked(old: &ClusterConfig, new: &ClusterConfig, mark: &str) {
    let pools = ShardPools::new(old);
    let images: Vec<_> = (1..=20).map(|db| pattern(db, mark, BASE_US, 0)).collect();
    common::upsert(old, &pools, &images).await;
    pools.disconnect().await;
    let keys: Vec<_> = (1..=20).map(|db| common::pattern_key(db, mark)).collect();
    let started = Instant::now();
    loop {
        let rows = copier::workload::read_all(new, &patterns()).await.expect("read new");
        if keys.iter().all(|k| rows.contains_key(k)) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "rows marked {mark} not copied within 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_from_replicas_and_moves_between_replica_and_primary_while_groups_write() {
    common::copier_tracing();
    let (old, new) = tokio::join!(fresh_cluster("old", "crep_o", ""), fresh_cluster("new", "crep_n", ""));
    let replicas = old.config.reading_from(ReadFrom::Replica);
    assert!(replicas.shards.iter().all(|s| s.reads_replica));

    // History on the old cluster only.
    let pools = ShardPools::new(&old.config);
    let images: Vec<_> =
        (0..HISTORY_ROWS).map(|i| pattern(i % 500 + 1, &format!("h{i}"), BASE_US + i as i64 * 1000, i % 3)).collect();
    common::upsert(&old.config, &pools, &images).await;
    pools.disconnect().await;

    // Live messages through both groups, while the copier runs.
    let broker = Broker::new("crep");
    let start = (chrono::Utc::now().timestamp() / 15 + 1) * 15;
    let produce_config = ProduceConfig {
        brokers: broker.bootstrap.clone(),
        topic_prefix: broker.prefix.clone(),
        messages: 1_200,
        rate: Some(60),
        workload: WorkloadConfig {
            aggregates_per_proxy: 60,
            interval_seconds: 5,
            ..WorkloadConfig::new(31, start * 1000)
        },
    };
    let producer = tokio::spawn(async move { produce(&produce_config, &CancellationToken::new()).await });
    let (a, b) = (Group::start(&old, &broker, "a"), Group::start(&new, &broker, "b"));

    // Replica: the snapshot and the binlog from the replicas.
    wait_replicas(&old.config, Duration::from_secs(60)).await;
    let (stop, task) = start_copier(replicas.clone(), new.config.clone());
    wait_copier(&replicas, &new.config, Duration::from_secs(120)).await;
    stop.cancel();
    task.await.expect("join");

    // Primary: the streams resume on the primaries' binlogs (positions
    // compare only within one server, so the proof is rows written after
    // the move arriving).
    let (stop, task) = start_copier(old.config.clone(), new.config.clone());
    wait_marked(&old.config, &new.config, "after_move_to_primary").await;
    stop.cancel();
    task.await.expect("join");

    // Back to the replicas, until the groups and the copier are done.
    let (stop, task) = start_copier(replicas.clone(), new.config.clone());
    wait_marked(&old.config, &new.config, "after_move_to_replica").await;
    producer.await.expect("join").expect("produce");
    testkit::wait_caught_up(&old.config, &broker, Duration::from_secs(120)).await;
    testkit::wait_caught_up(&new.config, &broker, Duration::from_secs(120)).await;
    wait_replicas(&old.config, Duration::from_secs(60)).await;
    wait_copier(&replicas, &new.config, Duration::from_secs(120)).await;
    let differences = copier::workload::compare(&old.config, &new.config, &patterns()).await.expect("compare");
    assert!(
        differences.is_empty(),
        "{} differences, first: {:#?}",
        differences.len(),
        &differences[..differences.len().min(10)]
    );
    let streams = copier::status::streams(&new.config).await.expect("status");
    assert_eq!(streams.len(), old.config.shards.len());
    assert!(streams.iter().all(|s| s.error.is_none()), "{streams:#?}");
    stop.cancel();
    task.await.expect("join");
    a.stop().await;
    b.stop().await;
    testkit::drop_databases(&old.config).await;
    testkit::drop_databases(&new.config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_pauses_its_stream_only_and_status_says_why() {
    common::copier_tracing();
    let (old, new) = tokio::join!(fresh_cluster("old", "cstop_o", ""), fresh_cluster("new", "cstop_n", ""));
    let replicas = old.config.reading_from(ReadFrom::Replica);
    let pools = ShardPools::new(&old.config);
    let images: Vec<_> =
        (0..1_000u64).map(|i| pattern(i % 200 + 1, &format!("h{i}"), BASE_US + i as i64 * 1000, i % 3)).collect();
    common::upsert(&old.config, &pools, &images).await;
    pools.disconnect().await;
    wait_replicas(&old.config, Duration::from_secs(60)).await;

    testkit::replicas::set_sql_thread(&old.config, 0, false).await;
    let (stop, task) = start_copier(replicas.clone(), new.config.clone());
    let (first, second) = (replicas.shards[0].range.to_string(), replicas.shards[1].range.to_string());
    let throttled = |streams: &[copier::status::StreamStatus], shard: &str| {
        streams.iter().any(|s| s.source_shard == shard && s.error_kind.as_deref() == Some("throttled"))
    };
    // The other stream copies everything while the first waits, and status says why.
    let started = Instant::now();
    let streams = loop {
        let streams = copier::status::streams(&new.config).await.expect("status");
        let other_done =
            streams.iter().any(|s| s.source_shard == second && s.phase == copier::phase::Phase::Replicating);
        if throttled(&streams, &first) && other_done {
            break streams;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no throttled stream {first} in status: {streams:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!throttled(&streams, &second), "only the stopped replica's stream pauses: {streams:#?}");
    let why = streams.iter().find(|s| s.source_shard == first).and_then(|s| s.error.clone()).unwrap_or_default();
    assert!(why.contains("replica SQL or IO thread stopped"), "{why}");

    testkit::replicas::set_sql_thread(&old.config, 0, true).await;
    wait_copier(&replicas, &new.config, Duration::from_secs(120)).await;
    let streams = copier::status::streams(&new.config).await.expect("status");
    assert!(streams.iter().all(|s| s.error.is_none()), "the pause ended: {streams:#?}");
    let differences = copier::workload::compare(&old.config, &new.config, &patterns()).await.expect("compare");
    assert!(differences.is_empty(), "{} differences", differences.len());
    stop.cancel();
    task.await.expect("join");
    testkit::drop_databases(&old.config).await;
    testkit::drop_databases(&new.config).await;
}
