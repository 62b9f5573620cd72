//! Memory is bounded in bytes: a backlog of ~0.9 MiB messages (large SQL
//! texts) keeps the consumer process under a stated RSS bound, because the
//! batch and the poll channel are capped in bytes as well as in messages.

use testkit as common;

use std::time::{Duration, Instant};

use common::{fresh_cluster, Broker, ConsumerProcess};
use rdkafka::producer::{FutureProducer, FutureRecord};
use topics::corpus::{sample_query_stats, sample_slow_query};
use topics::{Codec, QueryStats, SlowQuery, TopicKind};

/// Per topic; 200 messages of ~0.9 MiB in all (the producer's and the
/// mock's 1 MB message limit), compressed by lz4 so the mock keeps them.
const PER_TOPIC: usize = 100;
const TEXT_BYTES: usize = 900_000;
/// The bound the README states.
const RSS_BOUND_MIB: u64 = 512;

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn big_text(i: usize) -> String {
    let mut s = format!("select /* {i} */ c0");
    let mut n = 0;
    while s.len() < TEXT_BYTES {
        s.push_str(&format!(", c{n} + ?"));
        n += 1;
    }
    s.truncate(TEXT_BYTES);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_megabyte_messages_stays_under_the_rss_bound() {
    let cluster = fresh_cluster("old", "memory").await;
    let broker = Broker::new("memory");
    let codec = Codec::embedded().expect("codec");
    let producer: FutureProducer = loadtest::produce::producer_config(&broker.bootstrap).create().expect("producer");
    let now = chrono::Utc::now().timestamp_millis();
    let recent = now - 600_000 - now % 15_000;
    let mut sends = Vec::new();
    for i in 0..PER_TOPIC {
        let fp = format!("big{i:04}");
        let stats = QueryStats {
            normalized_sql: big_text(i),
            interval_start: recent,
            ..sample_query_stats(1000 + i as i64, &fp)
        };
        let slow = SlowQuery {
            query_text: big_text(i),
            occurred_at: recent * 1000,
            ..sample_slow_query(1000 + i as i64, &fp)
        };
        for (kind, payload) in [
            (TopicKind::QueryStats, codec.encode_query_stats(&stats).expect("encode")),
            (TopicKind::SlowQueries, codec.encode_slow_query(&slow).expect("encode")),
        ] {
            sends.push((broker.topic(kind), (i as i32) % common::PARTITIONS, payload));
        }
    }
    for (topic, partition, payload) in &sends {
        let record: FutureRecord<'_, [u8], Vec<u8>> =
            FutureRecord::to(topic).partition(*partition).key(&b"big"[..]).payload(payload);
        producer.send(record, Duration::from_secs(30)).await.expect("deliver");
    }

    // The whole backlog is there before the consumer starts: without byte
    // caps one 2000-message batch would take all of it at once.
    let consumer = ConsumerProcess::spawn(&cluster, &broker, "memory", 2000);
    let pid = consumer.pid();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut peak_kib = 0;
    loop {
        peak_kib = peak_kib.max(rss_kib(pid, "VmHWM:"));
        if common::messages_applied(&cluster.config).await == sends.len() as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "backlog not applied in time:\n{}", consumer.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    peak_kib = peak_kib.max(rss_kib(pid, "VmHWM:"));
    assert!(consumer.terminate().await.success());
    let peak_mib = peak_kib / 1024;
    eprintln!("memory: {} messages of {TEXT_BYTES} bytes, consumer peak RSS {peak_mib} MiB", sends.len());
    assert!(peak_kib > 0, "RSS not measured");
    assert!(peak_mib < RSS_BOUND_MIB, "peak RSS {peak_mib} MiB, over the {RSS_BOUND_MIB} MiB bound");
    assert!(common::dead_letters(&cluster.config).await.is_empty());
    common::assert_nothing_truncated(&broker).await;
    common::drop_databases(&cluster.config).await;
}
