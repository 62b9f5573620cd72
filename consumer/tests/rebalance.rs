//! Two processes in one group, with rebalances mid-load (one joins, then
//! the other leaves), still leave the cluster equal to the ground truth.

use testkit as common;

use std::time::Duration;

use common::{assert_matches_truth, fresh_cluster, messages_applied, produce_in_background, Broker, ConsumerProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_a_group_through_rebalances() {
    let cluster = fresh_cluster("old", "rebalance").await;
    let broker = Broker::new("rebalance");
    let producing = produce_in_background(&broker, 120_000, 9, 8_000);

    let first = ConsumerProcess::spawn(&cluster, &broker, "shared", 1000);
    first.wait_assigned(1, Duration::from_secs(60)).await;
    // The join must interrupt a member that is applying.
    common::wait_applied(&cluster.config, 1, Duration::from_secs(60)).await;
    let second = ConsumerProcess::spawn(&cluster, &broker, "shared", 1000);
    // The join makes the first member revoke, drain its batch and rejoin.
    second.wait_assigned(1, Duration::from_secs(60)).await;
    first.wait_assigned(2, Duration::from_secs(60)).await;
    let mid = messages_applied(&cluster.config).await;
    // Both members apply before the first one leaves.
    common::wait_applied(&cluster.config, mid + 1, Duration::from_secs(60)).await;
    assert!(first.lines_containing("partitions revoked") >= 1);
    let first_log = first.log_text();
    // The first member leaves while the producer is still running: the second takes over.
    assert!(first.terminate().await.success(), "first consumer did not exit cleanly:\n{first_log}");
    second.wait_assigned(2, Duration::from_secs(60)).await;

    let truth = producing.await.expect("producer");
    assert!(mid < truth.messages, "the rebalance happened after the load was consumed: it tested nothing");
    common::wait_caught_up(&cluster.config, &broker, Duration::from_secs(120)).await;
    assert!(second.terminate().await.success());
    assert_matches_truth(&cluster.config, &truth).await;
    assert_eq!(messages_applied(&cluster.config).await, truth.messages);
    common::assert_nothing_truncated(&broker).await;
}
