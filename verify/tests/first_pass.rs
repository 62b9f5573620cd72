//! The first pass alone, on a 4-shard and an 8-shard cluster holding the
//! same generated rows: equal sums when equal, and a single changed byte, a
//! duplicated row or a row moved to another window changes the buckets that
//! hold it.

mod support;

use std::time::Instant;

use support::{on_shard, query_shard};
use testkit::fresh_cluster;
use verify::diff::DiffKind;
use verify::digest::Side;
use verify::drill::drill_window;
use verify::first_pass::{differing, first_pass, per_window, BucketKey, FirstPass};
use verify::spec::TableSpec;

async fn passes(old: &Side, new: &Side, table: &TableSpec, from: i64, to: i64) -> (FirstPass, FirstPass) {
    let size = table.window_secs();
    assert!(size > 0, "{} is windowed", table.name);
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
async fn first_pass_catches_a_changed_byte_a_duplicated_row_and_a_moved_row() {
    let (old_cluster, new_cluster) = tokio::join!(fresh_cluster("old", "fp_o"), fresh_cluster("new", "fp_n"));
    let (old, new) = (Side::new(old_cluster.config.clone()), Side::new(new_cluster.config.clone()));
    let start = support::two_hours_ago() - 3 * 3600;
    verify::bench::generate(&[&old, &new], 6000, start).await.expect("generate");
    let (from, to) = (start, start + 6 * 3600);
    let spec = |name: &str| verify::spec::table(&old.config, name).expect("spec").expect(name);
    let (stats_minute, slow_queries) = (spec("query_stats_minute"), spec("slow_queries"));

    let (o, n) = passes(&old, &new, &stats_minute, from, to).await;
    assert!(differing(&o, &n).is_empty(), "same rows on 4 and 8 shards give the same buckets");
    assert_eq!(per_window(&o).len(), 300);
    assert!(o.buckets.len() > 300, "windows are split by keyspace-id nibble: {}", o.buckets.len());

    // One byte of one sketch, on the new cluster: same count, the lane moves.
    let (flip_shard, flip, (db, fp, window)): (usize, String, (u64, String, i64)) = {
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
        let flip = format!(
            "UPDATE query_stats_minute SET latency_sketch = CONCAT(LEFT(latency_sketch, 9), \
             CHAR(ASCII(SUBSTRING(latency_sketch, 10, 1)) ^ 90), SUBSTRING(latency_sketch, 11)) \
             WHERE database_id = {} AND fingerprint = '{}' AND window_start = FROM_UNIXTIME({})",
            row.0, row.1, row.2
        );
        on_shard(&new.config, shard, &flip).await;
        (shard, flip, row)
    };
    let (o, n) = passes(&old, &new, &stats_minute, from, to).await;
    let (key, a, b) = only_difference(&o, &n);
    assert_eq!(key.window, window);
    assert_eq!(a.rows, b.rows, "a changed byte keeps the count");
    assert_ne!(a.lane_a, b.lane_a, "the SHA1 lane sees a single changed byte");
    assert_eq!((a.lane_b, b.lane_b), (0, 0), "the first pass has one lane");
    let nibbles = differing(&o, &n).remove(&window).expect("window differs");
    let found = drill_window(&old, &new, &stats_minute, window, window + 60, &nibbles).await.expect("drill");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].kind, DiffKind::Changed);
    assert!(found[0].key.contains(&format!("database_id={db}, fingerprint={fp}")), "{}", found[0].key);
    on_shard(&new.config, flip_shard, &flip).await;

    // A slow query stored twice (a copy on a second shard of the new cluster):
    // the count grows by one and the lane by exactly the row's own hash.
    let (o, n) = passes(&old, &new, &slow_queries, from, to).await;
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
    let (o, n) = passes(&old, &new, &slow_queries, from, to).await;
    let (_, a, b) = only_difference(&o, &n);
    assert_eq!(b.rows, a.rows + 1, "the duplicate is counted");
    assert_eq!(b.misplaced, 1, "and the copy sits on a shard that does not own it");
    let lanes: Vec<u64> = query_shard(
        &new.config,
        copy_to,
        &format!(
            "SELECT CAST(CONV(LEFT(SHA1({e}), 16), 16, 10) AS UNSIGNED) FROM slow_queries \
             WHERE src_partition = {partition} AND src_offset = {offset}",
            e = verify::first_pass::encoding_sql(&slow_queries)
        ),
    )
    .await;
    assert_ne!(lanes[0], 0);
    assert_eq!(b.lane_a - a.lane_a, u128::from(lanes[0]), "a duplicate adds its hash again (XOR would cancel it)");
    on_shard(
        &new.config,
        copy_to,
        &format!("DELETE FROM slow_queries WHERE src_partition = {partition} AND src_offset = {offset}"),
    )
    .await;

    // A row moved to the next window (a stats row's window_start, whose
    // value the encoding leaves to the bucket key; a slow query's
    // occurred_at, which is in the encoding): both windows differ, and the
    // drill-down finds the row missing from one and extra in the other.
    for (table, time) in [(&stats_minute, "window_start"), (&slow_queries, "occurred_at")] {
        let (o, n) = passes(&old, &new, table, from, to).await;
        assert!(differing(&o, &n).is_empty(), "{}: equal before the move", table.name);
        let rows: Vec<(i64, i64)> = query_shard(
            &new.config,
            2,
            &format!(
                "SELECT TIMESTAMPDIFF(SECOND, '1970-01-01', {time}) DIV 60 * 60, \
                 TIMESTAMPDIFF(SECOND, '1970-01-01', {time}) FROM {name} ORDER BY 2 DESC LIMIT 1 OFFSET 20",
                name = table.name
            ),
        )
        .await;
        let (window, at) = rows[0];
        on_shard(
            &new.config,
            2,
            &format!(
                "UPDATE {name} SET {time} = {time} + INTERVAL 60 SECOND \
                 WHERE TIMESTAMPDIFF(SECOND, '1970-01-01', {time}) = {at} ORDER BY {time} LIMIT 1",
                name = table.name
            ),
        )
        .await;
        let (o, n) = passes(&old, &new, table, from, to).await;
        let diff = differing(&o, &n);
        assert_eq!(diff.keys().copied().collect::<Vec<_>>(), vec![window, window + 60], "{}", table.name);
        let (before, after) = (per_window(&o), per_window(&n));
        assert_eq!(after[&window].rows + 1, before[&window].rows, "{}", table.name);
        assert_eq!(after[&(window + 60)].rows, before[&(window + 60)].rows + 1, "{}", table.name);
        let mut kinds = Vec::new();
        for (start, nibbles) in &diff {
            let found = drill_window(&old, &new, table, *start, start + 60, nibbles).await.expect("drill");
            kinds.extend(found.iter().map(|d| d.kind));
        }
        assert_eq!(kinds, vec![DiffKind::MissingOnNew, DiffKind::ExtraOnNew], "{}", table.name);
    }

    old.pools.disconnect().await;
    new.pools.disconnect().await;
    testkit::drop_databases(&old_cluster.config).await;
    testkit::drop_databases(&new_cluster.config).await;
}
