//! The partition job on real shards: drops never touch a retained window,
//! re-runs are no-ops, rows dated ahead survive splits, and a consumer
//! writing while partitions are split and dropped loses nothing.

use testkit as common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use mysql_async::prelude::Queryable;
use retention::{run_once, RetentionConfig};
use tokio_util::sync::CancellationToken;

/// 2 s / 10 s windows, 10 s partitions, 40 s retention, 30 s ahead.
const COMPRESSED: &str = "[time]\nminute_window = \"2s\"\nhour_window = \"10s\"\npartition = \"10s\"\n\
                          retention = \"40s\"\nahead = \"30s\"\nallowed_lateness = \"2s\"\n";

/// Retention for a test whose `now` is simulated, not the shards' clock.
fn simulated(config: &ClusterConfig) -> RetentionConfig {
    RetentionConfig { max_clock_skew: Duration::from_secs(86_400), ..RetentionConfig::for_cluster(config.clone()) }
}

/// A fence row on every shard as if a consumer had applied a message at `ms`.
async fn record_newest_applied(config: &ClusterConfig, ms: i64) {
    let pools = ShardPools::new(config);
    for pool in pools.shards() {
        let mut conn = pool.get_conn().await.expect("conn");
        conn.query_drop(format!(
            "INSERT INTO dw_offset_fence (topic, kafka_partition, next_offset, first_offset, first_message_ms, \
             covered_from_ms, max_message_ms, consumer_group, updated_at) \
             VALUES ('query-stats', 0, 1, 0, 0, 0, {ms}, 'test', UTC_TIMESTAMP(6)) \
             ON DUPLICATE KEY UPDATE max_message_ms = {ms}"
        ))
        .await
        .expect("fence row");
    }
    pools.disconnect().await;
}

async fn minute_windows(config: &ClusterConfig) -> BTreeSet<i64> {
    let pools = ShardPools::new(config);
    let mut out = BTreeSet::new();
    for pool in pools.shards() {
        let mut conn = pool.get_conn().await.expect("conn");
        let rows: Vec<i64> =
            conn.query("SELECT UNIX_TIMESTAMP(window_start) FROM query_stats_minute").await.expect("windows");
        out.extend(rows);
    }
    pools.disconnect().await;
    out
}

/// (partition name, upper bound) of a table on shard 0.
async fn layout(config: &ClusterConfig, table: &str) -> Vec<(String, Option<String>)> {
    let pools = ShardPools::new(config);
    let mut conn = pools.shard(0).get_conn().await.expect("conn");
    let rows: Vec<(String, Option<String>)> = conn
        .exec(
            "SELECT PARTITION_NAME, PARTITION_DESCRIPTION FROM information_schema.PARTITIONS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY PARTITION_ORDINAL_POSITION",
            (table,),
        )
        .await
        .expect("layout");
    drop(conn);
    pools.disconnect().await;
    rows
}

#[tokio::test]
async fn drops_only_expired_partitions_keeps_rows_dated_ahead_and_reruns_are_no_ops() {
    let cluster = common::fresh_cluster_with("old", "ret_parts", COMPRESSED).await;
    // Simulated time runs up to 1000 s ahead of the shards' clocks.
    let config = RetentionConfig { max_clock_skew: Duration::from_secs(3600), ..simulated(&cluster.config) };
    let now0 = chrono::Utc::now().timestamp();
    // The newest applied message is later than any simulated now, so only
    // `now - keep` limits drops here.
    record_newest_applied(&cluster.config, (now0 + 2000) * 1000).await;

    // One row per 2 s window from 2 minutes back to 5 minutes ahead, on every
    // shard: below p_past's bound, in the real partitions, and in p_future.
    let inserted: BTreeSet<i64> = (now0 - 120..now0 + 300).filter(|w| w % 2 == 0).collect();
    let pools = ShardPools::new(&cluster.config);
    for pool in pools.shards() {
        let mut conn = pool.get_conn().await.expect("conn");
        let values: Vec<String> = inserted
            .iter()
            .map(|w| format!("(1, 'f', FROM_UNIXTIME({w}), x'0000000000000000', 1, 1, 1, 1, 1, 0, x'00')"))
            .collect();
        conn.query_drop(format!(
            "INSERT INTO query_stats_minute (database_id, fingerprint, window_start, keyspace_id, query_count, \
             total_duration_us, max_duration_us, rows_read, rows_returned, error_count, latency_sketch) VALUES {}",
            values.join(",")
        ))
        .await
        .expect("insert");
    }
    pools.disconnect().await;

    // Time moves on in simulated steps; after each run, exactly the windows
    // at or after the retained start remain, and every window at or after the
    // cutoff (now - 40 s) is among them.
    let pools = ShardPools::new(&cluster.config);
    for step in [0, 35, 100, 260, 400] {
        let now = now0 + step;
        // Two jobs at once (a cron overlap): one works each shard, the other
        // skips it; neither fails.
        let other = ShardPools::new(&cluster.config);
        let (summary, rival) = tokio::join!(run_once(&config, &pools, now), run_once(&config, &other, now));
        other.disconnect().await;
        assert_eq!(rival.errors, 0, "{rival:?}");
        let summary =
            if summary.shards.iter().any(|s| s.busy) { run_once(&config, &pools, now).await } else { summary };
        assert_eq!(summary.errors, 0, "{summary:?}");
        let retained_from = summary.oldest_retained.expect("retained from");
        assert!(retained_from <= now - 40, "retained start {retained_from} after the cutoff {}", now - 40);
        assert!(retained_from > now - 40 - 10, "retained start {retained_from}: a whole expired partition kept");
        let want: BTreeSet<i64> = inserted.iter().copied().filter(|w| *w >= retained_from).collect();
        assert_eq!(minute_windows(&cluster.config).await, want, "at now0+{step}");

        // Partitions reach past now + ahead, and a second run changes nothing.
        let parts = layout(&cluster.config, "query_stats_minute").await;
        let last_bound = parts.iter().rev().nth(1).and_then(|p| p.1.clone()).expect("a bounded partition");
        let last = cluster::partitions::parse_bound(&last_bound).expect("bound").expect("not MAXVALUE");
        assert!(last >= now + 30, "partitions end at {last}, before now + ahead");
        let again = run_once(&config, &pools, now).await;
        let statements: usize = again.shards.iter().flat_map(|s| &s.tables).map(|t| t.statements.len()).sum();
        assert_eq!((again.created, again.dropped, statements), (0, 0, 0), "re-run at now0+{step} was not a no-op");
        assert_eq!(layout(&cluster.config, "query_stats_minute").await, parts);
    }

    // A dry run plans but changes nothing.
    let before = layout(&cluster.config, "slow_queries").await;
    let dry = RetentionConfig { dry_run: true, ..config.clone() };
    let planned = run_once(&dry, &pools, now0 + 1000).await;
    assert!(planned.created > 0 && planned.dropped > 0, "{planned:?}");
    assert_eq!(layout(&cluster.config, "slow_queries").await, before);
    pools.disconnect().await;
}

#[tokio::test]
async fn a_consumer_writing_while_partitions_are_split_and_dropped_loses_nothing() {
    let cluster = common::fresh_cluster_with("new", "ret_live", COMPRESSED).await;
    let broker = common::Broker::new("ret_live");
    let config = simulated(&cluster.config);
    let time = cluster.config.time;

    // Ten minutes of event time, produced over ~12 s while the consumer
    // applies it and retention (in simulated time that follows production)
    // splits p_future and drops partitions under it.
    let start_ms = (chrono::Utc::now().timestamp() - 300) * 1000;
    let mut workload = loadtest::workload::WorkloadConfig::new(7, start_ms);
    (workload.interval_seconds, workload.aggregates_per_proxy) = (5, 40);
    (workload.minute_secs, workload.hour_secs) = (time.minute_secs(), time.hour_secs());
    let messages = 24_000;
    let produce = loadtest::produce::ProduceConfig {
        brokers: broker.bootstrap.clone(),
        topic_prefix: broker.prefix.clone(),
        messages,
        rate: Some(2_000),
        workload,
    };
    let producer =
        tokio::spawn(
            async move { loadtest::produce::produce(&produce, &CancellationToken::new()).await.expect("produce") },
        );
    let group = common::Group::start(&cluster, &broker, "ret-live-a");

    let pools = ShardPools::new(&cluster.config);
    let started = Instant::now();
    let span_s = 600;
    let mut runs = 0;
    let mut dropped = 0;
    while !producer.is_finished() {
        // Simulated now follows production (about 12 s for the whole span).
        let progress = (started.elapsed().as_secs_f64() / 12.0).min(1.0);
        let now = start_ms / 1000 + (progress * f64::from(span_s)) as i64;
        let summary = run_once(&config, &pools, now).await;
        assert_eq!(summary.errors, 0, "{summary:?}");
        (runs, dropped) = (runs + 1, dropped + summary.dropped);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let truth = producer.await.expect("producer");
    common::wait_caught_up(&cluster.config, &broker, Duration::from_secs(120)).await;
    let last = run_once(&config, &pools, start_ms / 1000 + i64::from(span_s)).await;
    assert_eq!(last.errors, 0, "{last:?}");
    group.stop().await;
    assert!(
        runs >= 5 && dropped + last.dropped > 0,
        "retention ran {runs} times and dropped {dropped}: proves nothing"
    );
    assert_eq!(common::messages_applied(&cluster.config).await, messages, "every message applied exactly once");

    // Rows of windows older than the retained start may exist where a late
    // write landed after its partition went; they are beyond retention.
    // Everything from the retained start on must equal the truth exactly.
    let retained_from = last.oldest_retained.expect("retained from");
    for pool in pools.shards() {
        let mut conn = pool.get_conn().await.expect("conn");
        for (table, column) in cluster::schema::partitioned_tables(&cluster.config.pipeline) {
            conn.query_drop(format!("DELETE FROM {table} WHERE {column} < FROM_UNIXTIME({retained_from})"))
                .await
                .expect("trim");
        }
    }
    pools.disconnect().await;
    let kept = truth.retained_from(retained_from);
    assert!(kept.minute.len() > 100, "only {} retained minute rows: proves little", kept.minute.len());
    common::assert_matches_truth(&cluster.config, &kept).await;
    common::assert_nothing_truncated(&broker).await;
}

#[tokio::test]
async fn a_clock_two_days_ahead_drops_nothing_and_says_why() {
    let cluster = common::fresh_cluster_with("old", "ret_clock", COMPRESSED).await;
    let config = RetentionConfig::for_cluster(cluster.config.clone());
    let pools = ShardPools::new(&cluster.config);
    let now = chrono::Utc::now().timestamp();

    // Clocks agree (100 s on is within the 5 min allowed), but the newest
    // applied message is a day old: nothing newer than it minus keep goes.
    record_newest_applied(&cluster.config, (now - 86_400) * 1000).await;
    let stale = run_once(&config, &pools, now + 100).await;
    assert_eq!((stale.errors, stale.dropped), (0, 0), "{stale:?}");
    assert_eq!(stale.drops_refused.len(), cluster.config.shards.len(), "{stale:?}");
    assert!(stale.drops_refused.iter().all(|(_, why)| why.contains("newest applied message")), "{stale:?}");

    // A job clock two days ahead of the shards: nothing dropped, and why.
    record_newest_applied(&cluster.config, (now + 2 * 86_400) * 1000).await;
    let before = layout(&cluster.config, "query_stats_minute").await;
    let ahead = run_once(&config, &pools, now + 2 * 86_400).await;
    assert_eq!((ahead.errors, ahead.dropped), (0, 0), "{ahead:?}");
    assert_eq!(ahead.drops_refused.len(), cluster.config.shards.len(), "every shard says why: {ahead:?}");
    assert!(ahead.drops_refused.iter().all(|(_, why)| why.contains("clock skew")), "{:?}", ahead.drops_refused);
    let after = layout(&cluster.config, "query_stats_minute").await;
    assert!(before.iter().all(|p| after.contains(p)), "a partition was dropped: {before:?} -> {after:?}");

    // The same run with an up-to-date cluster and agreeing clocks does drop:
    // the guards, not the layout, held the drops back above.
    record_newest_applied(&cluster.config, (now + 100) * 1000).await;
    let fresh = run_once(&config, &pools, now + 100).await;
    assert_eq!(fresh.errors, 0, "{fresh:?}");
    assert!(fresh.dropped > 0 && fresh.drops_refused.is_empty(), "{fresh:?}");
    pools.disconnect().await;
}

#[test]
fn a_keep_shorter_than_retention_needs_force_and_a_reason() {
    let text = format!(
        "{}\n{COMPRESSED}",
        "name = \"k\"\n[auth]\nuser = \"u\"\n[[shards]]\nrange = \"-\"\ndsn = \"mysql://u@127.0.0.1:1/k\"\n"
    );
    let cluster = ClusterConfig::from_toml_str(&text, std::path::Path::new("."), &|_| None).expect("cluster");
    let short = RetentionConfig { keep: Duration::from_secs(20), ..RetentionConfig::for_cluster(cluster) };
    let err = short.validate().expect_err("refused").to_string();
    assert!(err.starts_with("keep:") && err.contains("--force --reason"), "{err}");
    let blank = RetentionConfig { force_reason: Some(" ".into()), ..short.clone() };
    assert!(blank.validate().is_err(), "an empty reason is no reason");
    let forced = RetentionConfig { force_reason: Some("disk full, approved by ops".into()), ..short };
    forced.validate().expect("forced with a reason");
}
