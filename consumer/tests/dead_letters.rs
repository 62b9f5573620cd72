//! Messages no group can apply are dead-lettered with their reason, durably,
//! and nothing else in the stream is lost or changed.

use testkit as common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{assert_matches_truth, consumer_config, fresh_cluster, messages_applied, Broker};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use topics::corpus::bad_messages;
use topics::Codec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_dead_lettered_and_nothing_else_is_lost() {
    let cluster = fresh_cluster("old", "deadletter").await;
    let broker = Broker::new("deadletter");
    let corpus = bad_messages(&Codec::embedded().expect("codec"));
    assert!(corpus.len() >= 10);

    // The corpus goes first, spread over partitions, so good messages follow
    // it in the same partitions and the same batches.
    let producer: FutureProducer = loadtest::produce::producer_config(&broker.bootstrap).create().expect("producer");
    let mut expected = BTreeMap::new();
    for (i, bad) in corpus.iter().enumerate() {
        let topic = broker.topic(bad.kind);
        let partition = i as i32 % common::PARTITIONS;
        let mut record: FutureRecord<'_, [u8], Vec<u8>> =
            FutureRecord::to(&topic).partition(partition).key(&b"bad"[..]);
        if let Some(payload) = &bad.payload {
            record = record.payload(payload);
        }
        let delivery = producer.send(record, Duration::from_secs(10)).await.expect("deliver bad message");
        expected.insert((topic, delivery.partition, delivery.offset), (bad.reason.to_string(), bad.name));
    }
    let truth = broker.produce(15_000, 21, None).await;

    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(consumer::run(consumer_config(&cluster, &broker, "dl"), shutdown.clone()));
    common::wait_caught_up(&cluster.config, &broker, Duration::from_secs(120)).await;
    shutdown.cancel();
    handle.await.expect("join").expect("consumer run");

    let recorded: BTreeMap<(String, i32, i64), String> =
        common::dead_letters(&cluster.config).await.into_iter().map(|(t, p, o, reason)| ((t, p, o), reason)).collect();
    for (key, (reason, name)) in &expected {
        assert_eq!(recorded.get(key), Some(reason), "corpus message {name} at {key:?}");
    }
    assert_eq!(recorded.len(), expected.len(), "dead letters beyond the corpus: {recorded:?}");
    assert_matches_truth(&cluster.config, &truth).await;
    assert_eq!(messages_applied(&cluster.config).await, truth.messages);
}
