//! One cluster's trouble never slows the other: with a shard of the new
//! cluster down for 60 s, group A keeps applying and catches up with the
//! producer while the shard is still down, group B pauses
//! without leaving its group and catches up by itself, and both clusters end
//! equal to the ground truth. Alone in its test binary: it stops a shared
//! mariadbd of the local stack.

use testkit as common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{assert_matches_truth, fresh_cluster, messages_applied, produce_in_background, Broker, ConsumerProcess};

const OUTAGE: Duration = Duration::from_secs(60);
/// The new cluster's shard `60-80`.
const VICTIM: &str = "new-3";

fn stack_dir() -> PathBuf {
    std::env::var_os("DUALWRITE_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/local/.state"))
}

async fn stop_victim() {
    let pid: String = std::fs::read_to_string(stack_dir().join(VICTIM).join("started.pid")).expect("victim pid");
    let pid = pid.trim().to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    // A stopped server can linger as a zombie for a moment: wait until it is not running.
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(Instant::now() < deadline, "{VICTIM} did not stop");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn restart_stack() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/local/stack");
    let status = std::process::Command::new(script).args(["up", "--no-broker"]).status().expect("stack up");
    assert!(status.success(), "restarting the stack failed");
}

async fn produced(broker: &Broker) -> i64 {
    broker.watermarks().await.values().map(|(_, high)| high).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_outage_in_one_cluster_never_slows_the_other() {
    let old = fresh_cluster("old", "outage_old").await;
    let new = fresh_cluster("new", "outage_new").await;
    let broker = Broker::new("outage");
    let producing = produce_in_background(&broker, 150_000, 61, 1_500);
    let group_a = ConsumerProcess::spawn(&old, &broker, "a", 1000);
    let group_b = ConsumerProcess::spawn(&new, &broker, "b", 1000);
    group_a.wait_assigned(1, Duration::from_secs(60)).await;
    group_b.wait_assigned(1, Duration::from_secs(60)).await;
    // Both groups are applying before the outage starts.
    common::wait_applied(&old.config, 1, Duration::from_secs(60)).await;
    common::wait_applied(&new.config, 1, Duration::from_secs(60)).await;

    stop_victim().await;
    let started = Instant::now();
    let mut a_samples = vec![messages_applied(&old.config).await];
    while started.elapsed() < OUTAGE {
        tokio::time::sleep(Duration::from_secs(10)).await;
        a_samples.push(messages_applied(&old.config).await);
    }
    // Group A kept applying all along, and catches up with everything
    // produced so far while the other cluster's shard is still down.
    assert!(a_samples.windows(2).all(|w| w[1] > w[0]), "group A stalled during the outage: {a_samples:?}");
    let produced_in_outage = produced(&broker).await as u64;
    common::wait_applied(&old.config, produced_in_outage, Duration::from_secs(120)).await;
    let b_log = group_b.log_text();
    assert!(group_b.lines_containing("fetching paused") >= 1, "group B never paused:\n{b_log}");

    restart_stack();
    let truth = producing.await.expect("producer");
    common::wait_caught_up(&old.config, &broker, Duration::from_secs(180)).await;
    common::wait_caught_up(&new.config, &broker, Duration::from_secs(180)).await;
    assert!(group_b.lines_containing("fetching resumed") >= 1);
    // B stayed in its group: one assignment, no rebalance, while paused.
    assert_eq!(group_b.lines_containing("partitions assigned"), 1, "group B left its group:\n{}", group_b.log_text());
    assert_eq!(group_a.lines_containing("fetching paused"), 0, "group A paused:\n{}", group_a.log_text());
    assert!(group_a.terminate().await.success());
    assert!(group_b.terminate().await.success());

    for cluster in [&old, &new] {
        assert_matches_truth(&cluster.config, &truth).await;
        assert_eq!(messages_applied(&cluster.config).await, truth.messages, "cluster {}", cluster.config.name);
    }
    common::assert_nothing_truncated(&broker).await;
}
