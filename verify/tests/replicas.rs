//! The comparators read the old shards' real MariaDB replicas (the
//! replication stack, `compose/local/stack-replica.conf`) and judge
//! settlement from the fences as each replica holds them: exact while both
//! groups write, and a replica whose SQL thread is stopped pauses the
//! comparator on that shard only until it runs again.

use std::time::Duration;

use cluster::config::{ClusterConfig, ReadFrom};
use cluster::throttle_gate::paused_now;
use loadtest::produce::{produce, ProduceConfig};
use loadtest::workload::WorkloadConfig;
use testkit::replicas::{fresh_cluster, set_sql_thread, wait_caught_up, wait_until};
use testkit::{Broker, Group};
use tokio_util::sync::CancellationToken;
use verify::history::RunOutcome;
use verify::table::{run_table, TableConfig};
use verify::windows::{run_windows, Range, WindowsConfig};

/// Compressed time (as in while_writing.rs); the throttle probes every 200 ms.
const TIME: &str = "[time]\nminute_window = \"5s\"\nhour_window = \"15s\"\nallowed_lateness = \"2s\"\n\
                    partition = \"60s\"\nretention = \"1h\"\nahead = \"10m\"\n\
                    [throttle]\ncheck_every = \"200ms\"\n";

/// Live messages from the next "hour" boundary on; returns that start.
fn live_producer(broker: &Broker, messages: u64, seed: u64) -> (i64, tokio::task::JoinHandle<()>) {
    let start = (chrono::Utc::now().timestamp() / 15 + 1) * 15;
    let config = ProduceConfig {
        brokers: broker.bootstrap.clone(),
        topic_prefix: broker.prefix.clone(),
        messages,
        rate: Some(60),
        workload: WorkloadConfig {
            aggregates_per_proxy: 60,
            interval_seconds: 5,
            ..WorkloadConfig::new(seed, start * 1000)
        },
    };
    let task = tokio::spawn(async move {
        produce(&config, &CancellationToken::new()).await.expect("produce");
    });
    (start, task)
}

fn reading_replicas(config: &ClusterConfig) -> ClusterConfig {
    let reading = config.reading_from(ReadFrom::Replica);
    assert!(reading.shards.iter().all(|s| s.reads_replica), "every old shard of the stack has a replica");
    reading
}

/// Our database's pauses (other tests of this binary pause on their own).
fn our_pauses(config: &ClusterConfig) -> Vec<(String, String, &'static str)> {
    let db = format!("/{}", config.shards[0].endpoint.database);
    paused_now()
        .into_iter()
        .filter(|p| p.job == "verify" && p.endpoint.ends_with(&db))
        .map(|p| (p.cluster, p.shard, p.reason))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_compare_exactly_while_both_groups_write() {
    let (old, new) = tokio::join!(fresh_cluster("old", "vrep_o", TIME), fresh_cluster("new", "vrep_n", TIME));
    let broker = Broker::new("vrep");
    let (start, producer) = live_producer(&broker, 1_500, 21);
    let (a, b) = (Group::start(&old, &broker, "a"), Group::start(&new, &broker, "b"));
    let old_replicas = reading_replicas(&old.config);
    let config = WindowsConfig {
        old: old_replicas.clone(),
        new: new.config.reading_from(ReadFrom::Replica),
        range: Range::Between(start - 60, start + 120),
        recheck_all: false,
    };
    // Runs while the producer writes, and on while both groups (still
    // running) apply its tail, until one run compared settled rows while a
    // later window was still settling.
    let (mut runs, mut compared_while_writing) = (0, false);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !(producer.is_finished() && compared_while_writing) {
        assert!(std::time::Instant::now() < deadline, "no run compared settled rows while windows still settled");
        let outcome = run_windows(&config, &CancellationToken::new()).await.expect("windows run");
        assert_eq!(outcome.run.windows_different, 0, "difference while writing: {:#?}", outcome.differences);
        compared_while_writing |= outcome.run.rows_compared > 0 && outcome.run.windows_not_settled > 0;
        runs += 1;
    }
    producer.await.expect("producer");
    assert!(runs >= 3, "only {runs} runs while writing");

    testkit::wait_caught_up(&old.config, &broker, Duration::from_secs(120)).await;
    testkit::wait_caught_up(&new.config, &broker, Duration::from_secs(120)).await;
    let settle_to = chrono::Utc::now().timestamp();
    // The replicas' own fences settle the windows (they replicate the primaries' fence rows).
    testkit::wait_settled(&old_replicas, settle_to * 1000, Duration::from_secs(60)).await;
    testkit::wait_settled(&new.config, settle_to * 1000, Duration::from_secs(60)).await;
    let last = run_windows(
        &WindowsConfig { range: Range::Between(start - 60, settle_to), ..config.clone() },
        &CancellationToken::new(),
    )
    .await
    .expect("final run");
    assert_eq!(last.run.outcome, RunOutcome::Equal, "{:#?}", last.differences);
    assert!(last.run.rows_compared > 0);

    // The full diff of the latest table, the old side read off the replicas.
    wait_caught_up(&old.config, Duration::from_secs(60)).await;
    for table in verify::spec::unbounded(&new.config).expect("specs") {
        let outcome = run_table(
            &TableConfig {
                old: old_replicas.clone(),
                new: new.config.clone(),
                table,
                page_rows: 500,
                restart: true,
                stop_after_rows: None,
            },
            &CancellationToken::new(),
        )
        .await
        .expect("table run");
        assert!(outcome.complete);
        assert_eq!(outcome.run.outcome, RunOutcome::Equal, "{:#?}", outcome.differences);
        assert!(outcome.run.rows_compared > 0);
    }
    a.stop().await;
    b.stop().await;
    testkit::drop_databases(&old.config).await;
    testkit::drop_databases(&new.config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_pauses_the_comparator_on_its_shard_only() {
    let (old, new) = tokio::join!(fresh_cluster("old", "vstop_o", TIME), fresh_cluster("new", "vstop_n", TIME));
    let broker = Broker::new("vstop");
    let (start, producer) = live_producer(&broker, 600, 22);
    let (a, b) = (Group::start(&old, &broker, "a"), Group::start(&new, &broker, "b"));
    producer.await.expect("producer");
    testkit::wait_caught_up(&old.config, &broker, Duration::from_secs(120)).await;
    testkit::wait_caught_up(&new.config, &broker, Duration::from_secs(120)).await;
    let old_replicas = reading_replicas(&old.config);
    // Event times run ahead of the wall clock (~190 messages per 5 s
    // interval, from the next 15 s boundary): the 600 messages reach about
    // start + 16 s, so the compared range ends past them; the groups' idle
    // confirmation settles it once the wall clock is there.
    let settle_to = chrono::Utc::now().timestamp().max(start + 20);
    testkit::wait_settled(&old_replicas, settle_to * 1000, Duration::from_secs(60)).await;
    testkit::wait_settled(&new.config, settle_to * 1000, Duration::from_secs(60)).await;
    a.stop().await;
    b.stop().await;
    wait_caught_up(&old.config, Duration::from_secs(60)).await;

    set_sql_thread(&old.config, 0, false).await;
    let config = WindowsConfig {
        old: old_replicas.clone(),
        new: new.config.clone(),
        range: Range::Between(start - 60, settle_to),
        recheck_all: false,
    };
    let run = tokio::spawn(async move { run_windows(&config, &CancellationToken::new()).await });
    let first = old_replicas.shards[0].range.to_string();
    wait_until("the comparator pauses on the stopped replica's shard", Duration::from_secs(60), || {
        let pauses = our_pauses(&old.config);
        async move { !pauses.is_empty() }
    })
    .await;
    assert_eq!(our_pauses(&old.config), vec![("old".to_owned(), first, "replication_stopped")], "that shard only");
    assert!(!run.is_finished(), "the run waits for the paused shard");

    set_sql_thread(&old.config, 0, true).await;
    let outcome = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the run resumes once the replica runs again")
        .expect("join")
        .expect("windows run");
    assert_eq!(outcome.run.outcome, RunOutcome::Equal, "{:#?}", outcome.differences);
    assert!(outcome.run.rows_compared > 0);
    assert!(our_pauses(&old.config).is_empty(), "the pause ended");
    testkit::drop_databases(&old.config).await;
    testkit::drop_databases(&new.config).await;
}
