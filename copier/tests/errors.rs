//! The cases that must stop a stream with a clear error and its remedy:
//! a DDL on the copied table, a purged binlog, a table without a primary key.
//! One test binary, run sequentially: the purge test purges old binlogs.

mod common;

use std::time::Duration;

use cluster::pool::ShardPools;
use common::{pattern, quick_settings, Clusters};
use copier::workload;
use copier::{CopierConfig, CopierError};
use mysql_async::prelude::Queryable;
use tokio_util::sync::CancellationToken;

/// The tests of this binary run one at a time: a binlog file that another
/// test's stream is reading cannot be purged.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config(c: &Clusters) -> CopierConfig {
    CopierConfig {
        from: c.old.clone(),
        to: c.new.clone(),
        table: "query_patterns".into(),
        settings: quick_settings(),
        progress: false,
    }
}

async fn preload(c: &Clusters, rows: u64, seed: i64) {
    let pools = ShardPools::new(&c.old);
    let images: Vec<_> =
        (0..rows).map(|i| pattern(i % 300 + 1, &format!("fp{i}"), seed + i as i64 * 1000, 0)).collect();
    common::upsert(&c.old, &pools, &images).await;
    pools.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_then_replicates_inserts_updates_and_deletes() {
    let _serial = SERIAL.lock().await;
    let c = Clusters::new("copier_basic").await;
    preload(&c, 3000, 1_700_000_000_000_000).await;
    let shutdown = CancellationToken::new();
    let copier = tokio::spawn(copier::run(config(&c), shutdown.clone()));
    // Changes while the copy runs and after it: inserts, merge updates, deletes, a key change.
    let pools = ShardPools::new(&c.old);
    let updates: Vec<_> = (0..500).map(|i| pattern(i % 300 + 1, &format!("fp{i}"), 1_800_000_000_000_000, 1)).collect();
    common::upsert(&c.old, &pools, &updates).await;
    let deletes: Vec<_> = (500..700).map(|i| common::pattern_key(i % 300 + 1, &format!("fp{i}"))).collect();
    common::delete(&c.old, &pools, &deletes).await;
    let inserts: Vec<_> =
        (5000..5500).map(|i| pattern(i % 300 + 1, &format!("fp{i}"), 1_750_000_000_000_000, 2)).collect();
    common::upsert(&c.old, &pools, &inserts).await;
    let shard = c.old.shard_index_for_database_id(1);
    pools
        .shard(shard)
        .get_conn()
        .await
        .expect("conn")
        .query_drop("UPDATE query_patterns SET fingerprint = 'renamed' WHERE database_id = 1 AND fingerprint = 'fp900'")
        .await
        .expect("key change");
    pools.disconnect().await;
    c.wait_caught_up(Duration::from_secs(90)).await;
    let streams = copier::status::streams(&c.new).await.expect("status");
    assert_eq!(streams.len(), 4);
    assert!(streams.iter().all(|s| s.copy_done && s.phase.to_string() == "replicating"), "{streams:#?}");
    shutdown.cancel();
    copier.await.expect("join").expect("copier");
    let streams = copier::status::streams(&c.new).await.expect("status");
    assert!(streams.iter().all(|s| s.phase.to_string() == "stopped"), "{streams:#?}");
    c.assert_equal().await;
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_on_the_copied_table_stops_the_stream_with_the_remedy() {
    let _serial = SERIAL.lock().await;
    let c = Clusters::new("copier_ddl").await;
    preload(&c, 500, 1_700_000_000_000_000).await;
    let shutdown = CancellationToken::new();
    let copier = tokio::spawn(copier::run(config(&c), shutdown.clone()));
    c.wait_caught_up(Duration::from_secs(60)).await;
    let pools = ShardPools::new(&c.old);
    pools
        .shard(1)
        .get_conn()
        .await
        .expect("conn")
        .query_drop("ALTER TABLE query_patterns ADD COLUMN extra INT NULL")
        .await
        .expect("alter");
    pools.disconnect().await;
    let error = tokio::time::timeout(Duration::from_secs(60), copier).await.expect("copier stops").expect("join");
    let error = error.expect_err("the copier must fail");
    assert!(matches!(error, CopierError::Ddl { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("ddl on copied table") && text.contains("ADD COLUMN extra") && text.contains("remedy"),
        "{text}"
    );
    let streams = copier::status::streams(&c.new).await.expect("status");
    let failed = streams.iter().find(|s| s.source_shard == c.old.shards[1].range.to_string()).expect("stream");
    assert_eq!(failed.phase.to_string(), "failed");
    assert_eq!(failed.error_kind.as_deref(), Some("ddl"));
    assert!(failed.error.as_deref().is_some_and(|e| e.contains("remedy")));
    shutdown.cancel();
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_binlog_stops_the_stream_with_the_remedy() {
    let _serial = SERIAL.lock().await;
    let c = Clusters::new("copier_purge").await;
    preload(&c, 500, 1_700_000_000_000_000).await;
    let shutdown = CancellationToken::new();
    let copier = tokio::spawn(copier::run(config(&c), shutdown.clone()));
    c.wait_caught_up(Duration::from_secs(60)).await;
    shutdown.cancel();
    copier.await.expect("join").expect("clean stop");

    // While the copier is down, the old shard moves to a new binlog and purges the one the stream needs.
    preload(&c, 200, 1_600_000_000_000_000).await;
    let pools = ShardPools::new(&c.old);
    let mut conn = pools.shard(0).get_conn().await.expect("conn");
    conn.query_drop("FLUSH BINARY LOGS").await.expect("flush");
    let end = copier::source::binlog_end(&mut conn).await.expect("end");
    let resume = copier::status::streams(&c.new).await.expect("status");
    let resume = resume.iter().find(|s| s.source_shard == c.old.shards[0].range.to_string()).expect("stream");
    let resume_file = resume.binlog_position.as_deref().and_then(workload::parse_position).expect("position").file;
    // PURGE keeps (with a warning) a file a dump connection still reads: retry until it is gone.
    for _ in 0..100 {
        conn.query_drop(format!("PURGE BINARY LOGS TO '{}'", end.file)).await.expect("purge");
        let files: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.expect("logs");
        let names: Vec<String> = files.into_iter().map(|mut r| r.take::<String, _>(0).unwrap_or_default()).collect();
        if !names.contains(&resume_file) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(conn);
    pools.disconnect().await;

    let error = tokio::time::timeout(Duration::from_secs(60), copier::run(config(&c), CancellationToken::new()))
        .await
        .expect("copier stops")
        .expect_err("the copier must fail");
    assert!(matches!(error, CopierError::BinlogPurged { .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains("binlog purged") && text.contains("dualwrite-copier reset"), "{text}");
    let streams = copier::status::streams(&c.new).await.expect("status");
    let failed = streams.iter().find(|s| s.source_shard == c.old.shards[0].range.to_string()).expect("stream");
    assert_eq!(failed.phase.to_string(), "failed");
    assert_eq!(failed.error_kind.as_deref(), Some("binlog_purged"));
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_primary_key_is_refused() {
    let _serial = SERIAL.lock().await;
    let c = Clusters::new("copier_nopk").await;
    let pools = ShardPools::new(&c.old);
    for pool in pools.shards() {
        pool.get_conn()
            .await
            .expect("conn")
            .query_drop("ALTER TABLE query_patterns DROP PRIMARY KEY")
            .await
            .expect("drop pk");
    }
    pools.disconnect().await;
    let error = copier::run(config(&c), CancellationToken::new()).await.expect_err("must refuse");
    assert!(matches!(error, CopierError::NoPrimaryKey { .. }), "{error}");
    assert!(error.to_string().contains("add the primary key"), "{error}");
    c.cleanup().await;
}
