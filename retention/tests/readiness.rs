//! The rehearsal in compressed time on the local stack: group A
//! feeds the old cluster, group B starts later on the new one, retention runs
//! on both; readiness first says "not ready, ready at T", then "ready" at T,
//! and at that moment every window the old cluster serves is covered on the
//! new one and holds the same rows.

use testkit as common;

use std::collections::BTreeMap;
use std::time::Duration;

use cluster::config::ClusterConfig;
use cluster::fence::{progress, window_state, WindowState};
use cluster::pool::ShardPools;
use consumer::config::StartPosition;
use mysql_async::prelude::Queryable;
use retention::RetentionConfig;
use tokio_util::sync::CancellationToken;

const COMPRESSED: &str = "[time]\nminute_window = \"2s\"\nhour_window = \"10s\"\npartition = \"10s\"\n\
                          retention = \"40s\"\nahead = \"30s\"\nallowed_lateness = \"2s\"\n";

type MinuteRow = (u64, u64, u64, u64, String);
/// database_id, fingerprint, window, then the [`MinuteRow`] columns.
type StoredRow = (u64, String, i64, u64, u64, u64, u64, String);

/// Every minute-table row of windows in `[from, to)`, keyed by (db, fingerprint, window).
async fn minute_rows(config: &ClusterConfig, from: i64, to: i64) -> BTreeMap<(u64, String, i64), MinuteRow> {
    let pools = ShardPools::new(config);
    let mut out = BTreeMap::new();
    for pool in pools.shards() {
        let mut conn = pool.get_conn().await.expect("conn");
        let rows: Vec<StoredRow> = conn
            .exec(
                "SELECT database_id, fingerprint, UNIX_TIMESTAMP(window_start), query_count, total_duration_us, \
                 max_duration_us, rows_read, HEX(latency_sketch) FROM query_stats_minute \
                 WHERE window_start >= FROM_UNIXTIME(?) AND window_start < FROM_UNIXTIME(?)",
                (from, to),
            )
            .await
            .expect("rows");
        for (db, fp, w, a, b, c, d, sketch) in rows {
            out.insert((db, fp, w), (a, b, c, d, sketch));
        }
    }
    pools.disconnect().await;
    out
}

#[tokio::test]
async fn readiness_predicts_when_the_new_cluster_holds_every_retained_window() {
    let old = common::fresh_cluster_with("old", "ready_old", COMPRESSED).await;
    let new = common::fresh_cluster_with("new", "ready_new", COMPRESSED).await;
    let broker = common::Broker::new("ready");
    let time = old.config.time;
    let stop = CancellationToken::new();

    // Live proxies: one-second intervals released as they end.
    let mut workload = loadtest::workload::WorkloadConfig::new(11, chrono::Utc::now().timestamp_millis());
    (workload.interval_seconds, workload.aggregates_per_proxy, workload.realtime) = (1, 25, true);
    (workload.minute_secs, workload.hour_secs) = (time.minute_secs(), time.hour_secs());
    let produce = loadtest::produce::ProduceConfig {
        brokers: broker.bootstrap.clone(),
        topic_prefix: broker.prefix.clone(),
        messages: u64::MAX / 2,
        rate: None,
        workload,
    };
    let producer_stop = CancellationToken::new();
    let producer = {
        let stop = producer_stop.clone();
        tokio::spawn(async move { loadtest::produce::produce(&produce, &stop).await })
    };

    let mut tasks = Vec::new();
    for cluster in [&old.config, &new.config] {
        let mut config = RetentionConfig::for_cluster(cluster.clone());
        config.every = Some(Duration::from_secs(2));
        tasks.push(tokio::spawn({
            let stop = stop.clone();
            async move {
                retention::run(config, stop).await.expect("retention");
            }
        }));
    }
    let history_from = chrono::Utc::now().timestamp_millis();
    let group_a = common::Group::start(&old, &broker, "ready-a");
    // Group A builds 15 s of history (compressed time: several partitions)
    // before group B starts: the old cluster settled 15 s of message time.
    common::wait_settled(&old.config, history_from + 15_000, Duration::from_secs(120)).await;
    let mut b_config = common::consumer_config(&new, &broker, "ready-b");
    b_config.start = StartPosition::Latest;
    let group_b = common::Group::start_with(b_config);

    // Poll once a second. Before T: "not ready, ready at T", with T stable;
    // from T on: ready.
    let test_started = std::time::Instant::now();
    let mut predicted: Option<i64> = None;
    let mut said_not_ready = 0;
    let ready = loop {
        let r = retention::assess(&old.config, &new.config).await.expect("assess");
        let now = r.now.timestamp();
        if r.ready {
            break r;
        }
        if let Some(at) = r.ready_at {
            let at = at.timestamp();
            assert!(r.explanation.contains("ready at"), "{}", r.explanation);
            if let Some(p) = predicted {
                assert_eq!(p, at, "the predicted time moved: {}", r.explanation);
            }
            predicted = Some(at);
            said_not_ready += 1;
            assert!(now < at, "not ready at {now}, after the predicted {at}: {}", r.explanation);
        }
        assert!(now < predicted.unwrap_or(i64::MAX).saturating_add(20), "never became ready: {}", r.explanation);
        assert!(
            predicted.is_some() || test_started.elapsed() < Duration::from_secs(90),
            "no prediction: {}",
            r.explanation
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let predicted = predicted.expect("readiness never said 'not ready, ready at T' before it was ready");
    assert!(said_not_ready >= 5, "only {said_not_ready} not-ready readings");
    let became = ready.now.timestamp();
    assert!(
        (predicted..predicted + time.hour_secs() + 2).contains(&became),
        "ready at {became}, predicted {predicted}: {}",
        ready.explanation
    );

    // At that moment: every window the old cluster serves is covered on the
    // new one (none "not covered").
    let required = ready.required_from.timestamp();
    let new_progress = progress(&ShardPools::new(&new.config)).await.expect("new progress");
    let lateness = time.allowed_lateness_ms();
    let mut w = required;
    while w + time.hour_secs() <= became {
        let state = window_state(&new_progress, None, w * 1000, (w + time.hour_secs()) * 1000, lateness);
        assert_ne!(state, WindowState::NotCovered, "window {w} not covered on the new cluster at readiness");
        w += time.hour_secs();
    }

    // And once settled, those windows hold the same rows on both clusters.
    let compared_to = became - 2;
    common::wait_settled(&old.config, compared_to * 1000, Duration::from_secs(60)).await;
    common::wait_settled(&new.config, compared_to * 1000, Duration::from_secs(60)).await;
    producer_stop.cancel();
    let _ = producer.await;
    let (a, b) =
        (minute_rows(&old.config, required, compared_to).await, minute_rows(&new.config, required, compared_to).await);
    assert!(a.len() > 50, "only {} rows in the retained windows: proves little", a.len());
    let differing: Vec<_> = a.iter().filter(|(k, v)| b.get(*k) != Some(*v)).map(|(k, _)| k).take(5).collect();
    assert!(differing.is_empty() && a.len() == b.len(), "old {} rows, new {}, e.g. {differing:?}", a.len(), b.len());
    println!(
        "readiness: not ready {said_not_ready} times with ready_at {predicted}, ready at {became}; \
         {} retained minute rows equal on both clusters",
        a.len()
    );
    // The old cluster's own retention really dropped what aged out.
    let oldest_old = minute_rows(&old.config, 0, required).await;
    assert!(oldest_old.is_empty(), "{} old-cluster rows older than its retained start", oldest_old.len());

    stop.cancel();
    for t in tasks {
        t.await.expect("retention task");
    }
    group_a.stop().await;
    group_b.stop().await;
}
