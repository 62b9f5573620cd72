//! Rows whose `normalized_sql` is close to 1 MiB each, all on one old and one
//! new shard: a snapshot chunk or a binlog batch of them is far larger than
//! `max_allowed_packet` (16 MiB on MariaDB), so the copier must cap its reads
//! and its statements in bytes, not only in rows.

mod common;

use std::time::Duration;

use cluster::pool::ShardPools;
use common::{pattern_with_sql, quick_settings, Clusters};
use copier::row::Image;
use copier::workload;
use copier::CopierConfig;
use mysql_async::prelude::Queryable;
use tokio_util::sync::CancellationToken;

/// Just under 1 MiB, so each row is valid on its own.
const SQL_BYTES: usize = (1 << 20) - 512;

/// Rows of one database (one shard on either side), key `i`, each text
/// distinct (told apart by `text`).
fn large(i: u64, text: u64, seen_us: i64) -> Image {
    let filler = format!("/* {text:04} */ ");
    pattern_with_sql(7, &format!("fp{i:04}"), seen_us, &format!("select {}", filler.repeat(SQL_BYTES / filler.len())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_and_replicates_rows_of_nearly_one_mib() {
    let c = Clusters::new("copier_large").await;
    let pools = ShardPools::new(&c.old);
    let max_packet: Option<u64> = pools
        .shard(0)
        .get_conn()
        .await
        .expect("conn")
        .query_first("SELECT @@max_allowed_packet")
        .await
        .expect("packet");
    let rows = 48;
    assert!(
        rows as usize * SQL_BYTES > 2 * max_packet.expect("max_allowed_packet") as usize,
        "the rows together must not fit one statement"
    );
    let images: Vec<_> = (0..rows).map(|i| large(i, i, 1_700_000_000_000_000 + i as i64 * 1000)).collect();
    common::upsert(&c.old, &pools, &images).await;

    let config = CopierConfig {
        from: c.old.clone(),
        to: c.new.clone(),
        table: "query_patterns".into(),
        settings: quick_settings(),
        progress: false,
    };
    let shutdown = CancellationToken::new();
    let copier = tokio::spawn(copier::run(config, shutdown.clone()));
    c.wait_caught_up(Duration::from_secs(240)).await;
    // The binlog path: every large row changes once more (earlier first_seen
    // wins the text), in one transaction per shard, while the copier replicates.
    let updates: Vec<_> = (0..rows).map(|i| large(i, i + 1000, 1_600_000_000_000_000 + i as i64 * 1000)).collect();
    common::upsert(&c.old, &pools, &updates).await;
    pools.disconnect().await;
    c.wait_caught_up(Duration::from_secs(240)).await;
    assert!(!copier.is_finished(), "the copier stopped: {:?}", copier.await);
    c.assert_equal().await;
    let stored = workload::read_all(&c.new, &c.table).await.expect("read new");
    assert_eq!(stored.len(), rows as usize);
    assert!(stored.values().all(|r| r.columns[3].len() > SQL_BYTES - 16 && r.columns[3].contains("/* 10")));
    shutdown.cancel();
    copier.await.expect("join").expect("copier");
    c.cleanup().await;
}
