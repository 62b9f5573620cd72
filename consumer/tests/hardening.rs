//! No single message stops the fleet: 50k messages into both groups, with
//! messages the store rejects, messages that panic the decoder and malformed
//! ones interleaved on several partitions. Both groups keep running, every
//! bad message is dead-lettered on both clusters with the same reason, and
//! everything else equals the ground truth exactly.

use testkit as common;

use std::collections::BTreeMap;
use std::time::Duration;

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use common::{assert_matches_truth, fresh_cluster, messages_applied, Broker, Group};
use mysql_async::prelude::Queryable;
use rdkafka::producer::{FutureProducer, FutureRecord};
use topics::corpus::{bad_messages, sample_query_stats, sample_slow_query};
use topics::{Codec, QueryStats, SlowQuery, TopicKind};

const MESSAGES: u64 = 50_000;
/// In normalized SQL (query-stats) or the proxy id (slow-queries): the test
/// schema refuses it (a CHECK constraint, error 4025; 3819 on MySQL 8).
const STORE_REJECTS: &str = "store-rejects-me";
/// In a payload: the test's panic probe makes decoding it panic.
const PANIC_MARKER: &[u8] = b"panic-probe";

/// A schema stricter than the planner knows: what a column or constraint
/// the consumer does not model looks like (the same DDL on both clusters,
/// as in production, so both reach the same verdict).
async fn stricter_schema(config: &ClusterConfig) {
    let pools = ShardPools::new(config);
    for pool in pools.shards() {
        let mut conn = pool.get_conn().await.expect("conn");
        conn.query_drop(format!(
            "ALTER TABLE query_patterns ADD CONSTRAINT test_reject CHECK (normalized_sql NOT LIKE '%{STORE_REJECTS}%')"
        ))
        .await
        .expect("constraint");
        // A narrower column than the planner's limit: 1406 data too long.
        conn.query_drop("ALTER TABLE slow_queries MODIFY query_text VARCHAR(500) NOT NULL").await.expect("narrow");
    }
    pools.disconnect().await;
}

/// The schema as shipped, after the test's stricter one.
async fn relaxed_schema(config: &ClusterConfig) {
    let pools = ShardPools::new(config);
    for pool in pools.shards() {
        let mut conn = pool.get_conn().await.expect("conn");
        conn.query_drop("ALTER TABLE query_patterns DROP CONSTRAINT test_reject").await.expect("drop constraint");
        conn.query_drop("ALTER TABLE slow_queries MODIFY query_text MEDIUMTEXT NOT NULL").await.expect("widen");
    }
    pools.disconnect().await;
}

/// Rows of the store-rejected messages (their fingerprints start `rej` and `long`).
async fn replayed_rows(config: &ClusterConfig) -> usize {
    let pools = ShardPools::new(config);
    let mut n = 0;
    for pool in pools.shards() {
        let mut conn = pool.get_conn().await.expect("conn");
        let patterns: Option<u64> =
            conn.query_first("SELECT COUNT(*) FROM query_patterns WHERE fingerprint LIKE 'rej%'").await.expect("count");
        let slow: Option<u64> =
            conn.query_first("SELECT COUNT(*) FROM slow_queries WHERE fingerprint LIKE 'long%'").await.expect("count");
        n += patterns.unwrap_or(0) + slow.unwrap_or(0);
    }
    pools.disconnect().await;
    n as usize
}

fn probe(m: &consumer::message::Fetched) -> bool {
    m.payload.as_deref().is_some_and(|p| p.windows(PANIC_MARKER.len()).any(|w| w == PANIC_MARKER))
}

/// The bad messages of round `round`: (kind, payload, expected reason).
fn bad_round(codec: &Codec, round: usize) -> Vec<(TopicKind, Option<Vec<u8>>, String)> {
    let now = chrono::Utc::now().timestamp_millis();
    let recent = now - 10 * 60_000 - (now % 15_000);
    let db = 900_000 + round as i64;
    let stats = |sql: String, fp: &str| QueryStats {
        normalized_sql: sql,
        interval_start: recent,
        ..sample_query_stats(db, fp)
    };
    let mut out = vec![
        (
            TopicKind::QueryStats,
            codec.encode_query_stats(&stats(format!("select 1 /* {STORE_REJECTS} */"), &format!("rej{round}"))).ok(),
            "store_rejected".to_string(),
        ),
        (
            TopicKind::SlowQueries,
            codec
                .encode_slow_query(&SlowQuery {
                    query_text: "x".repeat(600),
                    occurred_at: recent * 1000,
                    ..sample_slow_query(db, &format!("long{round}"))
                })
                .ok(),
            "store_rejected".to_string(),
        ),
        (
            TopicKind::QueryStats,
            codec
                .encode_query_stats(&stats(
                    format!("select 2 /* {} */", String::from_utf8_lossy(PANIC_MARKER)),
                    &format!("pan{round}"),
                ))
                .ok(),
            "decoder_panic".to_string(),
        ),
    ];
    let corpus = bad_messages(codec);
    let pick = &corpus[round % corpus.len()];
    out.push((pick.kind, pick.payload.clone(), pick.reason.to_string()));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_groups_survive_rejected_panicking_and_malformed_messages_interleaved_in_50k() {
    consumer::plan::set_panic_probe(probe);
    let old = fresh_cluster("old", "hard_old").await;
    let new = fresh_cluster("new", "hard_new").await;
    stricter_schema(&old.config).await;
    stricter_schema(&new.config).await;
    let broker = Broker::new("hard");
    let codec = Codec::embedded().expect("codec");

    let a = Group::start(&old, &broker, "hard-a");
    let b = Group::start(&new, &broker, "hard-b");
    // The load and the bad messages at once, so bad ones sit between good
    // ones in the same partitions and batches.
    let load = common::produce_in_background(&broker, MESSAGES, 31, 12_500);
    let producer: FutureProducer = loadtest::produce::producer_config(&broker.bootstrap).create().expect("producer");
    let mut expected = BTreeMap::new();
    let mut round = 0;
    while !load.is_finished() || round < 8 {
        for (i, (kind, payload, reason)) in bad_round(&codec, round).into_iter().enumerate() {
            let topic = broker.topic(kind);
            let partition = ((round * 5 + i * 3) as i32) % common::PARTITIONS;
            let mut record: FutureRecord<'_, [u8], Vec<u8>> =
                FutureRecord::to(&topic).partition(partition).key(&b"bad"[..]);
            if let Some(p) = &payload {
                record = record.payload(p);
            }
            let delivery = producer.send(record, Duration::from_secs(10)).await.expect("deliver bad message");
            expected.insert((topic, delivery.partition, delivery.offset), reason);
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let truth = load.await.expect("load");
    let partitions: std::collections::BTreeSet<i32> = expected.keys().map(|k| k.1).collect();
    assert!(partitions.len() >= 4, "bad messages on {partitions:?} only");
    for reason in ["store_rejected", "decoder_panic"] {
        assert!(expected.values().filter(|r| *r == reason).count() >= 8, "too few {reason}");
    }

    common::wait_caught_up(&old.config, &broker, Duration::from_secs(300)).await;
    common::wait_caught_up(&new.config, &broker, Duration::from_secs(300)).await;
    assert!(a.is_running() && b.is_running(), "a group stopped");

    for cluster in [&old, &new] {
        let recorded: BTreeMap<(String, i32, i64), String> = common::dead_letters(&cluster.config)
            .await
            .into_iter()
            .map(|(t, p, o, reason)| ((t, p, o), reason))
            .collect();
        assert_eq!(recorded, expected, "dead letters of {}", cluster.config.name);
        assert_matches_truth(&cluster.config, &truth).await;
        assert_eq!(messages_applied(&cluster.config).await, truth.messages);
    }
    common::assert_nothing_truncated(&broker).await;

    // The cause fixed (the schema as shipped again), the store-rejected
    // letters are replayed once, from one cluster, and both clusters apply them.
    relaxed_schema(&old.config).await;
    relaxed_schema(&new.config).await;
    let rejected = expected.values().filter(|r| *r == "store_rejected").count();
    let selection = consumer::replay::Selection { reason: Some("store_rejected".into()), position: None };
    let pools = ShardPools::new(&new.config);
    let control = pools.control().expect("control").clone();
    let replayed = consumer::replay::replay(&control, &new.config.name, &producer, &selection).await.expect("replay");
    assert_eq!(replayed.iter().filter(|r| r.outcome.is_ok()).count(), rejected, "{replayed:?}");
    let again = consumer::replay::replay(&control, &new.config.name, &producer, &selection).await.expect("replay");
    assert!(again.iter().all(|r| r.outcome.as_ref().is_err_and(|why| why.contains("already replayed"))), "{again:?}");
    pools.disconnect().await;
    common::wait_caught_up(&old.config, &broker, Duration::from_secs(120)).await;
    common::wait_caught_up(&new.config, &broker, Duration::from_secs(120)).await;
    for cluster in [&old, &new] {
        assert_eq!(replayed_rows(&cluster.config).await, rejected, "replayed rows on {}", cluster.config.name);
        assert_eq!(messages_applied(&cluster.config).await, truth.messages + rejected as u64);
    }
    assert!(a.is_running() && b.is_running(), "a group stopped");
    a.stop().await;
    b.stop().await;
    common::drop_databases(&old.config).await;
    common::drop_databases(&new.config).await;
}
