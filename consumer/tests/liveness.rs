//! Liveness, checked: a group whose partitions are held by a member that
//! applies nothing (SIGSTOP; the coordinator keeps it for its long session)
//! while another member waits with none. The waiting member reports both
//! conditions at error, `status` names no live owner for the lagging
//! partitions; once the stopped member runs again both leave cleanly, and a
//! fresh member applies the rest exactly (the cluster equals the ground truth).

use testkit as common;

use std::time::{Duration, Instant};

use common::{assert_matches_truth, fresh_cluster, produce_in_background, Broker, ConsumerProcess};

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().expect("kill");
    assert!(status.success(), "kill {sig} {pid}");
}

/// `dualwrite-consumer status --json` of the cluster.
async fn status(cluster: &common::TestCluster, broker: &Broker) -> serde_json::Value {
    let out = tokio::process::Command::new(common::consumer_binary())
        .args(["status", "--json", "--cluster"])
        .arg(&cluster.file)
        .args(["--brokers", &broker.bootstrap, "--topic-prefix", &broker.prefix])
        .output()
        .await
        .expect("status");
    assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status json")
}

/// Waits until `status` satisfies `ok`; returns that report. On timeout the
/// report and the `members`' logs are in the panic message.
async fn wait_status(
    cluster: &common::TestCluster,
    broker: &Broker,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
    members: &[&ConsumerProcess],
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let report = status(cluster, broker).await;
        if ok(&report) {
            return report;
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = members.iter().map(|m| m.log_text()).collect();
            panic!(
                "status never showed {what} within {timeout:?}: {report:#}\nmembers' logs:\n{}",
                logs.join("\n---\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn owned(report: &serde_json::Value) -> bool {
    report["partitions"].as_array().is_some_and(|ps| !ps.is_empty() && ps.iter().all(|p| !p["owner"].is_null()))
}

fn caught_up_and_owned(report: &serde_json::Value) -> bool {
    owned(report)
        && report["partitions"].as_array().is_some_and(|ps| ps.iter().all(|p| p["lag_messages"].as_i64() == Some(0)))
}

fn lagging_without_owner(report: &serde_json::Value) -> usize {
    report["partitions"]
        .as_array()
        .map(|ps| ps.iter().filter(|p| p["lag_messages"].as_i64().unwrap_or(0) > 0 && p["owner"].is_null()).count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_idle_beside_a_stalled_owner_reports_both_and_status_shows_no_owner() {
    let cluster = fresh_cluster("old", "liveness").await;
    let broker = Broker::new("liveness");
    let producing = produce_in_background(&broker, 60_000, 24, 2_000);

    // Long session and rebalance timeouts on both members (librdkafka's mock
    // takes the group's session timeout from the latest joiner, and waits
    // that long for a member to rejoin): the stopped owner is neither evicted
    // nor waited out while the test looks, as with a coordinator that never
    // evicts a dead member.
    let long_session =
        ["--kafka", "session.timeout.ms=120000", "--kafka", "max.poll.interval.ms=120000", "--liveness-bound", "6s"];
    let owner = ConsumerProcess::spawn_with(&cluster, &broker, "live", 500, &long_session);
    owner.wait_assigned(1, Duration::from_secs(60)).await;
    common::wait_applied(&cluster.config, 1, Duration::from_secs(60)).await;
    let live =
        wait_status(&cluster, &broker, "an owner for every partition", Duration::from_secs(30), owned, &[&owner]).await;
    assert_eq!(live["members"].as_array().map(Vec::len), Some(1), "{live:#}");

    signal(owner.pid(), "-STOP");
    let waiting = ConsumerProcess::spawn_with(&cluster, &broker, "live", 500, &long_session);
    // (b) partitions with messages that nobody applies, past the bound
    waiting.wait_log("no live member has applied for longer than the bound", 1, Duration::from_secs(60)).await;
    // (a) the waiting member holds nothing while the cluster lags
    waiting.wait_log("this member holds no partition while its cluster lags", 1, Duration::from_secs(60)).await;
    let orphaned = wait_status(
        &cluster,
        &broker,
        "lagging partitions with no live owner",
        Duration::from_secs(60),
        |r| lagging_without_owner(r) > 0,
        &[&owner, &waiting],
    )
    .await;
    assert!(
        orphaned["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .any(|p| p["unapplied_ms"].as_i64() >= Some(6_000)),
        "a lagging partition's fences stood still past the bound: {orphaned:#}"
    );

    signal(owner.pid(), "-CONT");
    // Both leave cleanly. (With the long session timeout the mock waits up
    // to two minutes per rebalance for a member slow to rejoin, so the two
    // are not left to settle among themselves here; the soak shows a
    // stalled member resuming on a real broker.)
    let (owner_log, waiting_log) = (owner.log_text(), waiting.log_text());
    assert!(owner.terminate().await.success(), "the owner did not exit cleanly:\n{owner_log}");
    assert!(waiting.terminate().await.success(), "the waiting member did not exit cleanly:\n{waiting_log}");
    // A member that stopped cleanly removed its heartbeat: nobody owns anything now.
    let after = status(&cluster, &broker).await;
    assert_eq!(after["members"].as_array().map(Vec::len), Some(0), "{after:#}");
    // A fresh member with the ordinary session applies the rest exactly once
    // from the cluster's fences. In a group of its own: the mock keeps the old
    // group rebalancing for minutes after such a run (the fresh member then
    // reports both conditions itself, which is what they are for).
    let truth = producing.await.expect("producer");
    let fresh = ConsumerProcess::spawn(&cluster, &broker, "live-after", 500);
    wait_status(
        &cluster,
        &broker,
        "every partition owned and caught up",
        Duration::from_secs(180),
        caught_up_and_owned,
        &[&fresh],
    )
    .await;
    assert!(fresh.terminate().await.success());
    assert_matches_truth(&cluster.config, &truth).await;
}
