//! The fleet's rules: coverage and settlement of a group started mid-stream,
//! zombie writers, start positions the broker cannot serve, and late and
//! expired events decided from the message alone.

use testkit as common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cluster::fence::{progress, window_state, WindowState};
use cluster::pool::ShardPools;
use common::{assert_matches_truth, fresh_cluster, messages_applied, Broker, ConsumerProcess, TestCluster};
use consumer::message::Fetched;
use consumer::plan::TimeRules;
use consumer::start::{resolve, StartError, StartPosition};
use topics::{Codec, TopicKind};

const MINUTE_MS: i64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_started_mid_stream_covers_only_what_follows_its_start() {
    let cluster = fresh_cluster("new", "coverage").await;
    let broker = Broker::new("coverage");
    let now = chrono::Utc::now().timestamp_millis();
    let before_start = now - 2 * 3_600_000;
    let after_start = now - 3_600_000;
    broker.produce_from(8_000, 31, None, before_start).await;

    let group_b = ConsumerProcess::spawn_with(&cluster, &broker, "b", 1000, &["--start", "latest"]);
    group_b.wait_assigned(1, Duration::from_secs(60)).await;
    // "latest" is resolved after the assignment is logged: wait until every
    // partition fetches at a resolved position before producing, or the
    // first new messages would count as before it.
    group_b.wait_log("fetching every assigned partition", 1, Duration::from_secs(60)).await;
    let at_start = broker.watermarks().await;
    let truth = broker.produce_from(8_000, 32, None, after_start).await;
    common::wait_caught_up_since(&cluster.config, &broker, &at_start, Duration::from_secs(120)).await;
    // The partitions that received messages since the group started; one
    // idle since then has no fence yet and would read as not covered.
    let with_data: Vec<(String, i32)> = broker
        .watermarks()
        .await
        .into_iter()
        .filter(|(k, (_, high))| at_start.get(k).is_some_and(|(_, before)| high > before))
        .map(|(k, _)| k)
        .collect();
    // The idle consumer confirms its caught-up partitions every few seconds.
    common::wait_reached_end(&cluster.config, &with_data, Duration::from_secs(60)).await;
    assert!(group_b.terminate().await.success());

    // Only what was produced after the start is on the cluster.
    assert_matches_truth(&cluster.config, &truth).await;
    assert_eq!(messages_applied(&cluster.config).await, truth.messages);

    let pools = ShardPools::new(&cluster.config);
    let fences = progress(&pools).await.expect("progress");
    pools.disconnect().await;
    assert!(with_data.len() >= 16);
    let lateness = 5 * MINUTE_MS;
    let minute = |start: i64| {
        let s = start.div_euclid(MINUTE_MS) * MINUTE_MS;
        window_state(&fences, Some(&with_data), s, s + MINUTE_MS, lateness)
    };
    // Windows of the stream before the start: not covered, never "different".
    for t in [before_start + MINUTE_MS, before_start + 3 * MINUTE_MS] {
        assert_eq!(minute(t), WindowState::NotCovered, "window at {t}");
    }
    // Windows after the start, fully applied: settled.
    for t in [after_start + 2 * MINUTE_MS, after_start + 5 * MINUTE_MS] {
        assert_eq!(minute(t), WindowState::Settled, "window at {t}");
    }
    // A window still to come: covered, not settled.
    assert_eq!(minute(now + 3_600_000), WindowState::CoveredNotSettled);
}

/// Messages over 4 partitions with per-partition offsets; message time =
/// event end + `delay_ms`.
fn fetched(events: &[topics::QueryStats], delay_ms: i64) -> Vec<Fetched> {
    let codec = Codec::embedded().expect("codec");
    let topic: Arc<str> = Arc::from("query-stats");
    let mut next: HashMap<i32, i64> = HashMap::new();
    events
        .iter()
        .map(|q| {
            let key = topics::message_key(q.database_id, &q.fingerprint);
            let partition = i32::from(key[7] % 4);
            let offset = next.entry(partition).or_insert(0);
            let m = Fetched {
                topic: topic.clone(),
                partition,
                offset: *offset,
                timestamp_ms: Some(q.interval_start + 15_000 + delay_ms),
                key: Some(key.to_vec()),
                payload: Some(codec.encode_query_stats(q).expect("encode")),
            };
            *offset += 1;
            m
        })
        .collect()
}

async fn apply(pools: &ShardPools, cluster: &TestCluster, batch: Vec<Fetched>, rules: TimeRules) -> (u64, u64) {
    let done = common::apply_batch(pools, cluster, batch, rules, false).await;
    (done.applied, done.skipped)
}

fn workload_events(n: usize, seed: u64) -> Vec<topics::QueryStats> {
    let start = chrono::Utc::now().timestamp_millis() - 3_600_000;
    loadtest::workload::Workload::new(loadtest::workload::WorkloadConfig::new(seed, start))
        .expect("workload")
        .filter_map(|e| match e {
            loadtest::workload::Generated::Stats(q) => Some(q),
            loadtest::workload::Generated::Slow(_) => None,
        })
        .take(n)
        .collect()
}

const RULES: TimeRules =
    TimeRules { allowed_lateness_ms: 300_000, retention_ms: 8 * 86_400_000, ahead_ms: 3 * 86_400_000 };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_that_writes_after_losing_its_partitions_changes_nothing() {
    let events = workload_events(3000, 41);
    let messages = fetched(&events, 0);
    let cluster = fresh_cluster("old", "zombie").await;
    let pools = ShardPools::new(&cluster.config);
    // The old owner fetched [0, 2000) and stalled; the new owner, resuming
    // from the last commit (0), applies everything, then the zombie wakes up
    // and commits its batch. Then both race on an overlapping batch.
    let (applied, _) = apply(&pools, &cluster, messages.clone(), RULES).await;
    assert_eq!(applied, messages.len() as u64);
    let (zombie_applied, zombie_skipped) = apply(&pools, &cluster, messages[..2000].to_vec(), RULES).await;
    assert_eq!((zombie_applied, zombie_skipped), (0, 2000));
    let (a, b) = tokio::join!(
        apply(&pools, &cluster, messages[1000..].to_vec(), RULES),
        apply(&pools, &cluster, messages[500..2500].to_vec(), RULES),
    );
    assert_eq!(a.0 + b.0, 0, "concurrent redeliveries applied something twice");
    pools.disconnect().await;

    let mut truth = loadtest::truth::TruthBuilder::default();
    for q in &events {
        truth.add_stats(q);
    }
    assert_matches_truth(&cluster.config, &truth.build()).await;
    assert_eq!(messages_applied(&cluster.config).await, messages.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_and_expired_are_decided_by_the_message_alone() {
    let events = workload_events(600, 43);
    let rules = TimeRules { allowed_lateness_ms: 60_000, retention_ms: 2 * 3_600_000, ahead_ms: 3 * 86_400_000 };
    // On time, late (applied), and older than retention at send time (not written).
    let on_time = fetched(&events[..200], 0);
    let late = fetched(&events[200..400], 10 * 60_000);
    let expired = fetched(&events[400..], 3 * 3_600_000);
    let renumber = |parts: [&Vec<Fetched>; 3]| -> Vec<Fetched> {
        let mut next: HashMap<i32, i64> = HashMap::new();
        parts
            .into_iter()
            .flatten()
            .map(|m| {
                let o = next.entry(m.partition).or_insert(0);
                let out = Fetched { offset: *o, ..m.clone() };
                *o += 1;
                out
            })
            .collect()
    };
    let stream = renumber([&on_time, &late, &expired]);

    // Two clusters, cut into batches differently, must agree exactly.
    let old = fresh_cluster("old", "late_old").await;
    let new = fresh_cluster("new", "late_new").await;
    let old_pools = ShardPools::new(&old.config);
    apply(&old_pools, &old, stream.clone(), rules).await;
    old_pools.disconnect().await;
    let new_pools = ShardPools::new(&new.config);
    for chunk in stream.chunks(77) {
        apply(&new_pools, &new, chunk.to_vec(), rules).await;
    }
    new_pools.disconnect().await;

    let mut truth = loadtest::truth::TruthBuilder::default();
    for q in &events[..400] {
        truth.add_stats(q);
    }
    let truth = truth.build();
    for cluster in [&old, &new] {
        assert_matches_truth(&cluster.config, &truth).await;
        let pools = ShardPools::new(&cluster.config);
        let fences = progress(&pools).await.expect("progress");
        pools.disconnect().await;
        let late_count: u64 = fences.iter().map(|p| p.late_messages).sum();
        let expired_count: u64 = fences.iter().map(|p| p.expired_messages).sum();
        let applied: u64 = fences.iter().map(|p| p.messages_applied).sum();
        assert_eq!((applied, late_count, expired_count), (400, 200, 200), "cluster {}", cluster.config.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_based_start_on_a_broker_without_time_lookup_is_refused() {
    let broker = Broker::new("nolookup");
    broker.produce(2_000, 51, None).await;
    let client = {
        let mut c = rdkafka::config::ClientConfig::new();
        c.set("bootstrap.servers", &broker.bootstrap);
        c
    };
    let topics = vec![broker.topic(TopicKind::QueryStats)];
    let at = chrono::Utc::now().timestamp_millis() - 1_800_000;
    for start in [StartPosition::At(at), StartPosition::WindowBoundary(3600)] {
        let result = tokio::task::spawn_blocking({
            let (client, topics) = (client.clone(), topics.clone());
            move || resolve(&client, &topics, start)
        })
        .await
        .expect("join");
        match result {
            Err(e @ StartError::NoTimeLookup { .. }) => {
                assert!(e.to_string().contains("use --start earliest or latest"), "unhelpful error: {e}");
            }
            other => panic!("{start:?} on the mock broker: expected NoTimeLookup, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_confirmed_caught_up_settles_its_last_window() {
    let events = workload_events(400, 45);
    let messages = fetched(&events, 0);
    let cluster = fresh_cluster("old", "idle").await;
    let pools = ShardPools::new(&cluster.config);
    // The broker says one more message exists on every partition: not at the end.
    let plan = common::apply_batch(&pools, &cluster, messages, RULES, true).await;
    let last_event = plan.ranges.iter().map(|r| r.max_message_ms).max().expect("ranges");
    let window =
        (last_event.div_euclid(MINUTE_MS) * MINUTE_MS, last_event.div_euclid(MINUTE_MS) * MINUTE_MS + MINUTE_MS);
    let state = |fences: &[cluster::fence::PartitionProgress]| window_state(fences, None, window.0, window.1, 60_000);
    assert_eq!(state(&progress(&pools).await.expect("progress")), WindowState::CoveredNotSettled);

    // The consumer later sees the partitions end where its fences are, and confirms them.
    let ends: Vec<(String, i32, i64)> =
        plan.ranges.iter().map(|r| (r.topic.to_string(), r.partition, r.next_offset)).collect();
    for pool in pools.shards() {
        consumer::apply::confirm_idle(pool, &ends).await.expect("confirm");
    }
    assert_eq!(state(&progress(&pools).await.expect("progress")), WindowState::Settled);

    // A claimed end beyond the fence (messages not yet applied) confirms nothing.
    let ahead: Vec<(String, i32, i64)> = ends.iter().map(|(t, p, e)| (t.clone(), *p, e + 5)).collect();
    let before = progress(&pools).await.expect("progress");
    for pool in pools.shards() {
        consumer::apply::confirm_idle(pool, &ahead).await.expect("confirm");
    }
    let after = progress(&pools).await.expect("progress");
    assert!(
        after.iter().zip(&before).all(|(a, b)| a.high_watermark == b.high_watermark),
        "an unapplied end was confirmed"
    );
    pools.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_asked_to_stop_after_its_broker_vanished_still_exits() {
    let cluster = fresh_cluster("old", "vanished").await;
    let mut broker = Broker::new("vanished");
    let truth = broker.produce(3_000, 41, None).await;
    let member = ConsumerProcess::spawn(&cluster, &broker, "a", 500);
    common::wait_caught_up(&cluster.config, &broker, Duration::from_secs(120)).await;

    // The broker goes away for good: the final commit and the group leave
    // can never complete, and must not hold the process.
    drop(broker.mock.take());
    let exit = member.terminate().await;
    assert!(exit.success(), "exit after SIGTERM without a broker: {exit}");
    // What it applied before is exact: the fences, not the lost commit, say so.
    assert_matches_truth(&cluster.config, &truth).await;
    assert_eq!(messages_applied(&cluster.config).await, truth.messages);
}
