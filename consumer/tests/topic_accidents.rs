//! Topic accidents are loud, never silent: a fence above the partition's end
//! (topic recreated, wrong Kafka) stops that partition with the remedy in the
//! log instead of skipping everything below the old fence; a gap (messages
//! expired before this group applied them) restarts the partition's coverage
//! after it, so readiness and verify see the windows before as not covered.

use testkit as common;

use std::time::{Duration, Instant};

use cluster::fence::{progress, window_state, WindowState};
use cluster::pool::ShardPools;
use common::{fresh_cluster, Broker, ConsumerProcess};
use mysql_async::prelude::Queryable;

const RULES: consumer::plan::TimeRules =
    consumer::plan::TimeRules { allowed_lateness_ms: 300_000, retention_ms: 8 * 86_400_000, ahead_ms: 3 * 86_400_000 };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_above_the_partitions_end_stops_that_partition_and_names_the_remedy() {
    let cluster = fresh_cluster("old", "fence_above").await;
    let broker = Broker::new("fence_above");
    let truth = broker.produce(4_000, 51, None).await;
    let topic = broker.topic(topics::TopicKind::QueryStats);
    // As if this cluster had applied a million messages of a topic that was
    // then deleted and recreated under the same name.
    let pools = ShardPools::new(&cluster.config);
    for pool in pools.shards() {
        let mut conn = pool.get_conn().await.expect("conn");
        conn.exec_drop(
            "INSERT INTO dw_offset_fence (topic, kafka_partition, next_offset, first_offset, first_message_ms, \
             covered_from_ms, max_message_ms, consumer_group, updated_at) \
             VALUES (?, 3, 1000000, 0, 0, 0, 0, 'earlier', UTC_TIMESTAMP(6))",
            (topic.as_str(),),
        )
        .await
        .expect("fence row");
    }

    let consumer = ConsumerProcess::spawn(&cluster, &broker, "fence-above", 2000);
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumer.lines_containing("is above the partition's end offset") == 0 {
        assert!(Instant::now() < deadline, "no stop logged:\n{}", consumer.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(consumer.lines_containing("Remedy: point --brokers at the right cluster") >= 1, "{}", consumer.log_text());
    // Partition 3's fence counts as caught up; every other partition applies.
    common::wait_caught_up(&cluster.config, &broker, Duration::from_secs(120)).await;
    let marks = broker.watermarks().await;
    let stopped_messages = marks.get(&(topic.clone(), 3)).map_or(0, |(_, high)| *high);
    assert!(stopped_messages > 0, "partition 3 holds no message: the test proves nothing");
    let log = consumer.log.clone();
    assert!(consumer.terminate().await.success());
    let lines = log.lock().expect("log").join("\n");
    // Stopped, not reset to the beginning and skipped below the fence.
    assert!(lines.contains("skipped=0"), "partition 3 was fetched and skipped:\n{lines}");
    let fences = common::fences(&cluster.config).await;
    for shard in 0..cluster.config.shards.len() {
        assert_eq!(fences.get(&(shard, topic.clone(), 3)), Some(&(1_000_000, 0)), "shard {shard}");
    }
    let applied = common::messages_applied(&cluster.config).await;
    assert_eq!(applied + stopped_messages as u64, truth.messages, "everything else applied");
    pools.disconnect().await;
    common::drop_databases(&cluster.config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_restarts_coverage_after_it_and_the_windows_before_are_not_covered() {
    let cluster = fresh_cluster("old", "gap").await;
    let (messages, _) = common::fetched_workload(6_000);
    let is_gap_partition = |m: &consumer::message::Fetched| &*m.topic == "query-stats" && m.partition == 0;
    let first: Vec<_> = messages.iter().filter(|m| m.offset < 100).cloned().collect();
    // Offsets 100..200 of query-stats/0 expired from the topic unapplied.
    let second: Vec<_> =
        messages.iter().filter(|m| m.offset >= 200 || (m.offset >= 100 && !is_gap_partition(m))).cloned().collect();
    let after_gap = second.iter().find(|m| is_gap_partition(m)).expect("messages after the gap");
    assert_eq!(after_gap.offset, 200);
    let after_gap_ms = after_gap.timestamp_ms.expect("timestamp");

    let pools = ShardPools::new(&cluster.config);
    common::apply_batch(&pools, &cluster, first, RULES, true).await;
    let before = progress(&pools).await.expect("progress");
    let start_ms = before.iter().map(|p| p.first_offset).max();
    assert_eq!(start_ms, Some(0));
    assert!(before.iter().all(|p| p.covered_from_ms == 0), "covered from the start before the gap");
    common::apply_batch(&pools, &cluster, second, RULES, false).await;

    let after = progress(&pools).await.expect("progress");
    for p in &after {
        let want = if p.topic == "query-stats" && p.partition == 0 { after_gap_ms } else { 0 };
        assert_eq!(p.covered_from_ms, want, "{}/{} coverage", p.topic, p.partition);
    }
    // Readiness and verify read coverage through `window_state`.
    let lateness = RULES.allowed_lateness_ms;
    let minute = |start: i64| window_state(&after, None, start, start + 60_000, lateness);
    let earliest = messages.iter().filter_map(|m| m.timestamp_ms).min().expect("times");
    assert_eq!(minute(earliest - earliest % 60_000), WindowState::NotCovered, "a window before the gap");
    assert_eq!(minute(after_gap_ms - 1), WindowState::NotCovered, "the window the gap ends in");
    assert_ne!(minute(after_gap_ms), WindowState::NotCovered, "from the first message after the gap on");
    pools.disconnect().await;
    common::drop_databases(&cluster.config).await;
}
