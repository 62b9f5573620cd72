//! Exactly once per shard: redelivery, overlapping retries and different
//! batch cuts all leave the same rows, on 4 shards and on 8.

use testkit as common;

use std::time::Duration;

use cluster::pool::ShardPools;
use common::{
    assert_matches_truth, consumer_config, fresh_cluster, messages_applied, Broker, ConsumerProcess, TestCluster,
};
use consumer::message::Fetched;
use tokio_util::sync::CancellationToken;

async fn run_until_caught_up(cluster: &TestCluster, broker: &Broker, group: &str) {
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(consumer::run(consumer_config(cluster, broker, group), shutdown.clone()));
    common::wait_caught_up(&cluster.config, broker, Duration::from_secs(120)).await;
    shutdown.cancel();
    handle.await.expect("join").expect("consumer run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_group_resumes_at_the_clusters_fences() {
    let cluster = fresh_cluster("old", "resume").await;
    let broker = Broker::new("resume");
    let first = broker.produce(20_000, 11, None).await;
    run_until_caught_up(&cluster, &broker, "first").await;
    assert_matches_truth(&cluster.config, &first).await;
    assert_eq!(messages_applied(&cluster.config).await, first.messages);

    // A renamed group (no committed offsets, earliest by default) must not
    // start the topic over: the cluster's fences say where every shard is.
    let renamed = ConsumerProcess::spawn(&cluster, &broker, "renamed", 2000);
    renamed.wait_assigned(1, Duration::from_secs(60)).await;
    assert_eq!(renamed.lines_containing("from_fence=32"), 1, "{}", renamed.log_text());
    let second = broker.produce_from(5_000, 12, None, chrono::Utc::now().timestamp_millis() - 3 * 3_600_000).await;
    common::wait_caught_up(&cluster.config, &broker, Duration::from_secs(120)).await;
    let log = renamed.log.clone();
    assert!(renamed.terminate().await.success());
    assert_eq!(messages_applied(&cluster.config).await, first.messages + second.messages);
    // Resuming at the fences means the first run's messages were not even
    // fetched again (a replay would show up as skipped, not applied).
    let lines = log.lock().expect("log").join("\n");
    let expected = format!("applied={} skipped=0", second.messages);
    assert!(lines.contains(&expected), "expected {expected:?} in the renamed group's log:\n{lines}");
    let both = first.merge(second).expect("disjoint windows");
    assert_matches_truth(&cluster.config, &both).await;
    common::assert_nothing_truncated(&broker).await;
}

const RULES: consumer::plan::TimeRules =
    consumer::plan::TimeRules { allowed_lateness_ms: 300_000, retention_ms: 8 * 86_400_000, ahead_ms: 3 * 86_400_000 };

async fn apply_batch(pools: &ShardPools, cluster: &TestCluster, batch: Vec<Fetched>) -> (u64, u64) {
    let done = common::apply_batch(pools, cluster, batch, RULES, false).await;
    (done.applied, done.skipped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_retries_and_different_batch_cuts_converge() {
    let (messages, truth) = common::fetched_workload(6000);
    let total = messages.len() as u64;

    // Old cluster (4 shards): one batch, then the same batch redelivered whole.
    let old = fresh_cluster("old", "cuts_old").await;
    let pools = ShardPools::new(&old.config);
    assert_eq!(apply_batch(&pools, &old, messages.clone()).await, (total, 0));
    assert_eq!(apply_batch(&pools, &old, messages.clone()).await, (0, total));
    pools.disconnect().await;
    assert_matches_truth(&old.config, &truth).await;

    // New cluster (8 shards): ragged cuts that overlap, as a consumer that
    // crashed between shard commits and the Kafka commit would refetch.
    let new = fresh_cluster("new", "cuts_new").await;
    let pools = ShardPools::new(&new.config);
    let cuts = [(0, 700), (300, 2500), (2500, 2501), (1000, 4000), (3999, 6000), (0, 6000)];
    let mut applied = 0;
    for (from, to) in cuts {
        let (a, s) = apply_batch(&pools, &new, messages[from..to].to_vec()).await;
        assert_eq!(a + s, (to - from) as u64);
        applied += a;
    }
    pools.disconnect().await;
    assert_eq!(applied, total, "every message applied exactly once across overlapping batches");
    assert_matches_truth(&new.config, &truth).await;
    assert_eq!(messages_applied(&new.config).await, total);
}
