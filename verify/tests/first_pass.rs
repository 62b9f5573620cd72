//! The first pass alone, on a 4-shard and an 8-shard cluster holding the
//! same generated rows: equal sums when equal, and a single changed byte or
//! a duplicated row always changes the bucket that holds it.

mod support;

use std::time::Instant;

use support::{on_shard, query_shard};
use testkit::fresh_cluster;
use verify::diff::DiffKind;
use verify::digest::Side;
use verify::drill::drill_window;
use verify::first_pass::{differing, first_pass, per_window, BucketKey, FirstPass};
use verify::spec::{TableSpec, QUERY_STATS_MINUTE, SLOW_QUERIES};

async fn passes(old: &Side, new: &Side, table: &TableSpec, from: i64, to: i64) -> (FirstPass, FirstPass) {
    let size = table.window.map(|(_, w)| w.secs(&old.config.time)).expect("windowed");
    let (clock, range) = (Instant::now(), [(from, to)]);
    futures::try_join!(first_pass(old, table, size, &range, clock), first_pass(new, table, size, &range, clock))
        .expect("first pass")
}

/// The one bucket whose digests differ, with both sides' digests.
fn only_difference(old: &FirstPass, new: &FirstPass) -> (BucketKey, verify::digest::Digest, verify::digest::Digest) {
    let keys: Vec<BucketKey> = old
        .buckets
        .keys()
        .chain(new.buckets.keys())
        .filter(|k| old.buckets.get(k) != new.buckets.get(k))
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(keys.len(), 1, "exactly one bucket differs: {keys:?}");
    let key = keys[0];
    (key, old.buckets.get(&key).copied().unwrap_or_default(), new.buckets.get(&key).copied().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_pass_catches_a_changed_byte_and_a_duplicated_row() {
    let (old_cluster, new_cluster) = tokio::join!(fresh_cluster("old", "fp_o"), fresh_cluster("new", "fp_n"));
    let (old, new) = (Side::new(old_cluster.config.clone()), Side::new(new_cluster.config.clone()));
    let start = support::two_hours_ago() - 3 * 3600;
    verify::bench::generate(&[&old, &new], 6000, start).await.expect("generate");
    let (from, to) = (start, start + 6 * 3600);

    let (o, n) = passes(&old, &new, &QUERY_STATS_MINUTE, from, to).await;
    assert!(differing(&o, &n).is_empty(), "same rows on 4 and 8 shards give the same buckets");
    assert_eq!(per_window(&o).len(), 300);
    assert!(o.buckets.len() > 300, "windows are split by keyspace-id nibble: {}", o.buckets.len());

    // One byte of one sketch, on the new cluster: same count, both lanes move.
    let (db, fp, window): (u64, String, i64) = {
        let mut found = None;
        for shard in 0..new.config.shards.len() {
            let rows: Vec<(u64, String, i64)> = query_shard(
                &new.config,
                shard,
                "SELECT database_id, fingerprint, TIMESTAMPDIFF(SECOND, '1970-01-01', window_start) \
                 FROM query_stats_minute ORDER BY 1, 2, 3 LIMIT 1",
            )
            .await;
            if let Some(row) = rows.into_iter().next() {
                found = Some((shard, row));
                break;
            }
        }
        let (shard, row) = found.expect("a row");
        on_shard(
            &new.config,
            shard,
            &format!(
                "UPDATE query_stats_minute SET latency_sketch = CONCAT(LEFT(latency_sketch, 9), \
                 CHAR(ASCII(SUBSTRING(latency_sketch, 10, 1)) ^ 90), SUBSTRING(latency_sketch, 11)) \
                 WHERE database_id = {} AND fingerprint = '{}' AND window_start = FROM_UNIXTIME({})",
                row.0, row.1, row.2
            ),
        )
        .await;
        row
    };
    let (o, n) = passes(&old, &new, &QUERY_STATS_MINUTE, from, to).await;
    let (key, a, b) = only_difference(&o, &n);
    assert_eq!(key.window, window);
    assert_eq!(a.rows, b.rows, "a changed byte keeps the count");
    assert_ne!(a.lane_a, b.lane_a, "CRC32 always sees a single changed byte");
    assert_ne!(a.lane_b, b.lane_b, "the SHA1 lane sees it too");
    let nibbles = differing(&o, &n).remove(&window).expect("window differs");
    let found = drill_window(&old, &new, &QUERY_STATS_MINUTE, window, window + 60, &nibbles).await.expect("drill");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].kind, DiffKind::Changed);
    assert!(found[0].key.contains(&format!("database_id={db}, fingerprint={fp}")), "{}", found[0].key);

    // A slow query stored twice (a copy on a second shard of the new cluster):
    // the count grows by one and each lane by exactly the row's own hash.
    let (o, n) = passes(&old, &new, &SLOW_QUERIES, from, to).await;
    assert!(differing(&o, &n).is_empty());
    let shard = 0;
    let rows: Vec<(i32, i64)> =
        query_shard(&new.config, shard, "SELECT src_partition, src_offset FROM slow_queries ORDER BY 1, 2 LIMIT 1")
            .await;
    let (partition, offset) = rows[0];
    let copy_to = 1;
    let tuple: Vec<String> = query_shard(
        &new.config,
        shard,
        &format!(
            "SELECT CONCAT_WS(',', src_partition, src_offset, QUOTE(occurred_at), database_id, QUOTE(fingerprint), \
             CONCAT('0x', HEX(keyspace_id)), QUOTE(proxy_id), duration_us, rows_read, rows_returned, \
             IFNULL(QUOTE(error_text), 'NULL'), QUOTE(query_text), QUOTE(tables_used)) \
             FROM slow_queries WHERE src_partition = {partition} AND src_offset = {offset}"
        ),
    )
    .await;
    on_shard(&new.config, copy_to, &format!("INSERT INTO slow_queries VALUES ({})", tuple[0])).await;
    let (o, n) = passes(&old, &new, &SLOW_QUERIES, from, to).await;
    let (_, a, b) = only_difference(&o, &n);
    assert_eq!(b.rows, a.rows + 1, "the duplicate is counted");
    assert_eq!(b.misplaced, 1, "and the copy sits on a shard that does not own it");
    let lanes: Vec<(u64, u64)> = query_shard(
        &new.config,
        copy_to,
        &format!(
            "SELECT CRC32({e}), CAST(CONV(LEFT(SHA1({e}), 16), 16, 10) AS UNSIGNED) FROM slow_queries \
             WHERE src_partition = {partition} AND src_offset = {offset}",
            e = verify::first_pass::encoding_sql(&SLOW_QUERIES)
        ),
    )
    .await;
    let (crc, sha) = lanes[0];
    assert_ne!((crc, sha), (0, 0));
    assert_eq!(b.lane_a - a.lane_a, u128::from(crc), "a duplicate adds its CRC32 again (XOR would cancel it)");
    assert_eq!(b.lane_b - a.lane_b, u128::from(sha), "and its SHA1 lane again");

    old.pools.disconnect().await;
    new.pools.disconnect().await;
    testkit::drop_databases(&old_cluster.config).await;
    testkit::drop_databases(&new_cluster.config).await;
}
