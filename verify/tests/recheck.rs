//! A window that differs on the first read is read again once both clusters
//! applied the same offsets: one written in between (a late or out-of-order
//! message one group applied first) is left unsettled, never called
//! different; one that held still on both sides still is. The same for a key
//! of a full table diff: one a group applies between the two sides' reads is
//! equal when read again; one that held still is different.
//!
//! The old cluster is made one message behind (its fences of one partition
//! lowered, and a row removed: which message wrote it does not matter, any
//! lowered fence holds the comparator's wait for equal offsets until the
//! test catches the cluster up). `SET GLOBAL userstat` stays on if the test
//! fails midway; it only adds counters. The catch-up is
//! applied only after the first pass has read the row's shard (MariaDB's
//! `userstat` table statistics), so the order is fixed, not raced.

mod support;

use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use support::{feed_both, first_row_on_any_shard, on_shard, query_shard, time_text, windows};
use tokio_util::sync::CancellationToken;
use verify::diff::DiffKind;
use verify::history::{RunOutcome, WindowVerdict};
use verify::table::{run_table, TableConfig};
use verify::windows::{run_windows, Range, WindowsConfig, WindowsOutcome};

/// A `query_stats_minute` row of the window as an INSERT tuple, with its shard and key.
async fn stats_row(cluster: &ClusterConfig, window: &str) -> (usize, String, String) {
    let (shard, (key, tuple)) = first_row_on_any_shard(
        cluster,
        &format!(
            "SELECT CONCAT('database_id = ', database_id, ' AND fingerprint = ', QUOTE(fingerprint)), \
             CONCAT_WS(',', database_id, QUOTE(fingerprint), QUOTE(window_start), CONCAT('0x', HEX(keyspace_id)), \
             query_count, total_duration_us, max_duration_us, rows_read, rows_returned, error_count, \
             CONCAT('0x', HEX(latency_sketch))) FROM query_stats_minute WHERE {window} ORDER BY 1 LIMIT 1"
        ),
    )
    .await;
    (shard, key, tuple)
}

/// Rows of `query_stats_minute` the shard has read since `userstat` was on.
async fn rows_read(cluster: &ClusterConfig, shard: usize) -> u64 {
    let db = &cluster.shards[shard].endpoint.database;
    let rows: Vec<u64> = query_shard(
        cluster,
        shard,
        &format!(
            "SELECT ROWS_READ FROM information_schema.TABLE_STATISTICS \
             WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = 'query_stats_minute'"
        ),
    )
    .await;
    rows.into_iter().next().unwrap_or(0)
}

/// Moves every shard's fence of `partition` by `delta` messages.
async fn shift_fences(cluster: &ClusterConfig, partition: i32, delta: i64) {
    for shard in 0..cluster.shards.len() {
        on_shard(
            cluster,
            shard,
            &format!(
                "UPDATE dw_offset_fence SET next_offset = next_offset + ({delta}) \
                 WHERE topic LIKE '%query-stats' AND kafka_partition = {partition}"
            ),
        )
        .await;
    }
}

/// Runs the comparator while `catch_up` brings the old cluster level once the
/// first pass has read `shard`'s minute table.
async fn run_while_catching_up<F: std::future::Future<Output = ()>>(
    old: &ClusterConfig,
    new: &ClusterConfig,
    (from, to): (i64, i64),
    shard: usize,
    recheck_all: bool,
    catch_up: F,
) -> WindowsOutcome {
    let before = rows_read(old, shard).await;
    let config = WindowsConfig { old: old.clone(), new: new.clone(), range: Range::Between(from, to), recheck_all };
    let run = tokio::spawn(async move { run_windows(&config, &CancellationToken::new()).await.expect("windows run") });
    let deadline = Instant::now() + Duration::from_secs(60);
    while rows_read(old, shard).await == before {
        assert!(!run.is_finished(), "the run ended before the old cluster caught up");
        assert!(Instant::now() < deadline, "the first pass never read shard {shard}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    catch_up.await;
    run.await.expect("join")
}

fn state_of(outcome: &WindowsOutcome, start: i64) -> WindowVerdict {
    outcome.windows.iter().find(|w| w.tbl == "query_stats_minute" && w.window_start == start).expect("window").state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_written_between_the_reads_is_compared_again_and_a_still_one_is_different() {
    let fed = feed_both("recheck", 3000).await;
    let (old, new) = (&fed.old.config, &fed.new.config);
    let (from, to) = (fed.start, fed.start + 3600);
    let window = format!("window_start = '{}'", time_text(fed.start));
    let (shard, key, tuple) = stats_row(old, &window).await;
    for s in 0..old.shards.len() {
        on_shard(old, s, "SET GLOBAL userstat = 1").await;
    }
    let partitions: Vec<i32> = query_shard(
        old,
        0,
        "SELECT kafka_partition FROM dw_offset_fence WHERE topic LIKE '%query-stats' ORDER BY 1 LIMIT 1",
    )
    .await;
    let partition = partitions[0];
    let missing = format!("DELETE FROM query_stats_minute WHERE {key} AND {window}");

    // 1. The old group applies its last message (the row) after the first read.
    on_shard(old, shard, &missing).await;
    shift_fences(old, partition, -1).await;
    let outcome = run_while_catching_up(old, new, (from, to), shard, false, async {
        on_shard(old, shard, &format!("INSERT INTO query_stats_minute VALUES ({tuple})")).await;
        shift_fences(old, partition, 1).await;
    })
    .await;
    assert_eq!(outcome.run.windows_different, 0, "{:#?}", outcome.differences);
    assert!(outcome.differences.is_empty());
    assert_eq!(state_of(&outcome, fed.start), WindowVerdict::NotSettled, "the window that changed");
    assert_eq!(outcome.run.windows_not_settled, 1);

    // The next run digests it (it was never proven) and finds both equal.
    let next = windows(old, new, from, to, false).await;
    assert_eq!(next.run.outcome, RunOutcome::Equal, "{:#?}", next.differences);
    assert_eq!(state_of(&next, fed.start), WindowVerdict::Equal);
    assert_eq!(next.run.windows_checked, 1, "only the window left unsettled is digested again");

    // 2. The old cluster catches up without the row: a real loss holds still
    // on both sides and is reported after the wait (every window digested
    // again: the deletion stands for a loss no late message announces).
    on_shard(old, shard, &missing).await;
    shift_fences(old, partition, -1).await;
    let outcome = run_while_catching_up(old, new, (from, to), shard, true, shift_fences(old, partition, 1)).await;
    assert_eq!(outcome.run.outcome, RunOutcome::Different);
    assert_eq!(state_of(&outcome, fed.start), WindowVerdict::Different);
    let kinds: Vec<(DiffKind, bool)> =
        outcome.differences.iter().map(|d| (d.kind, d.window_start == Some(fed.start))).collect();
    assert_eq!(kinds, vec![(DiffKind::ExtraOnNew, true)], "{:#?}", outcome.differences);

    for s in 0..old.shards.len() {
        on_shard(old, s, "SET GLOBAL userstat = 0").await;
    }
    testkit::drop_databases(old).await;
    testkit::drop_databases(new).await;
}

/// Stored differences of the newest full diff of `query_patterns` with `key_text`.
async fn stored_differences(new: &ClusterConfig, key_text: &str) -> u64 {
    let pools = cluster::pool::ShardPools::new(new);
    let mut conn = pools.control().expect("control").get_conn().await.expect("control conn");
    let count: Option<u64> = mysql_async::prelude::Queryable::exec_first(
        &mut conn,
        "SELECT COUNT(*) FROM dw_verify_differences WHERE tbl = 'query_patterns' AND key_text = ? AND run_id = \
         (SELECT MAX(run_id) FROM dw_verify_runs WHERE kind = 'table' AND target = 'query_patterns')",
        (key_text,),
    )
    .await
    .expect("stored differences");
    drop(conn);
    pools.disconnect().await;
    count.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_written_between_a_full_diffs_reads_is_read_again_and_a_still_one_is_different() {
    let fed = feed_both("recheck_tbl", 2000).await;
    let (old, new) = (&fed.old.config, &fed.new.config);
    let (shard, (db, fp, last_seen)): (usize, (u64, String, String)) = first_row_on_any_shard(
        new,
        "SELECT database_id, fingerprint, CAST(last_seen AS CHAR) FROM query_patterns ORDER BY 1, 2 LIMIT 1",
    )
    .await;
    let key = format!("database_id = {db} AND fingerprint = '{fp}'");
    let key_text = format!("database_id={db}, fingerprint={fp}");
    // the new cluster's row as if group B had not applied the pattern's last sighting yet
    let behind = format!("UPDATE query_patterns SET last_seen = last_seen - INTERVAL 1 SECOND WHERE {key}");
    let partitions: Vec<i32> = query_shard(
        new,
        0,
        "SELECT kafka_partition FROM dw_offset_fence WHERE topic LIKE '%query-stats' ORDER BY 1 LIMIT 1",
    )
    .await;
    let partition = partitions[0];
    let config = |restart| TableConfig {
        old: old.clone(),
        new: new.clone(),
        table: verify::spec::table(old, "query_patterns").expect("spec").expect("query_patterns"),
        page_rows: 50,
        restart,
        stop_after_rows: None,
    };

    // 1. Group B applies the sighting after the diff read the key: the
    // recheck waits for the new cluster's fences, reads the key again and
    // finds it equal; the stored difference is gone.
    on_shard(new, shard, &behind).await;
    shift_fences(new, partition, -1).await;
    let run = {
        let config = config(true);
        tokio::spawn(async move { run_table(&config, &CancellationToken::new()).await.expect("full diff") })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while stored_differences(new, &key_text).await == 0 {
        assert!(!run.is_finished(), "the diff ended before it recorded the key");
        assert!(Instant::now() < deadline, "the diff never recorded the key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    on_shard(new, shard, &format!("UPDATE query_patterns SET last_seen = '{last_seen}' WHERE {key}")).await;
    shift_fences(new, partition, 1).await;
    let outcome = run.await.expect("join");
    assert!(outcome.complete);
    assert_eq!(outcome.run.outcome, RunOutcome::Equal, "{:#?}", outcome.differences);
    assert!(outcome.differences.is_empty());
    assert_eq!(outcome.run.differences, 0);
    assert_eq!(stored_differences(new, &key_text).await, 0, "the key read equal is no longer stored");

    // 2. A row that stays behind with both clusters at the same offsets holds
    // still on every read: different, and stored.
    on_shard(new, shard, &behind).await;
    let outcome = run_table(&config(true), &CancellationToken::new()).await.expect("full diff");
    assert_eq!(outcome.run.outcome, RunOutcome::Different);
    let kinds: Vec<(String, DiffKind)> = outcome.differences.iter().map(|d| (d.key.clone(), d.kind)).collect();
    assert_eq!(kinds, vec![(key_text.clone(), DiffKind::Changed)]);
    assert_eq!(outcome.run.differences, 1);
    assert_eq!(stored_differences(new, &key_text).await, 1);

    testkit::drop_databases(old).await;
    testkit::drop_databases(new).await;
}
