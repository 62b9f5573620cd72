//! A consumer killed with SIGKILL anywhere (mid-batch, between shard
//! commits, before the Kafka commit) and restarted leaves the cluster equal
//! to the ground truth.

use testkit as common;

use std::time::Duration;

use common::{assert_matches_truth, fresh_cluster, messages_applied, produce_in_background, Broker, ConsumerProcess};
use rand::{Rng, SeedableRng};

const MESSAGES: u64 = 200_000;
const KILLS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_sigkill_at_random_points() {
    // Eight shards: more separate shard commits per batch to be caught between.
    let cluster = fresh_cluster("new", "sigkill").await;
    let broker = Broker::new("sigkill");
    let seed: u64 = rand::rng().random();
    println!("kill schedule seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let producing = produce_in_background(&broker, MESSAGES, 3, 5_000);

    let mut progress = Vec::new();
    for kill in 0..KILLS {
        let process = ConsumerProcess::spawn(&cluster, &broker, "sigkill", 500);
        process.wait_assigned(1, Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..2500))).await;
        process.kill9().await;
        let applied = messages_applied(&cluster.config).await;
        println!("kill {kill}: {applied} messages applied so far");
        progress.push(applied);
    }
    let truth = producing.await.expect("producer");
    assert!(progress.iter().any(|a| *a > 0), "the killed consumers applied nothing: the test exercised nothing");
    assert!(
        progress[KILLS / 2] < truth.messages,
        "everything was applied before half the kills: they did not overlap the load ({progress:?})"
    );

    let last = ConsumerProcess::spawn(&cluster, &broker, "sigkill", 500);
    common::wait_caught_up(&cluster.config, &broker, Duration::from_secs(180)).await;
    assert!(last.terminate().await.success());
    assert_matches_truth(&cluster.config, &truth).await;
    assert_eq!(messages_applied(&cluster.config).await, truth.messages);
    assert!(common::dead_letters(&cluster.config).await.is_empty());
    common::assert_nothing_truncated(&broker).await;
}
