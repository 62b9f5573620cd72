//! Time-based start positions against a real, persistent Kafka-protocol
//! broker with offset lookup by time (Nisshi, sqlite storage): a group started
//! `at` a time or at a `window-boundary` applies exactly what follows it.

use testkit as common;

use std::time::Duration;

use common::nisshi::Nisshi;
use common::{assert_matches_truth, fresh_cluster, messages_applied, Broker, ConsumerProcess};
use consumer::start::{resolve, StartPosition};
use topics::TopicKind;

/// The harness's broker handle, pointed at Nisshi instead of the mock.
async fn nisshi_broker(nisshi: &Nisshi, tag: &str) -> Broker {
    let prefix = format!("{}.", common::unique(tag));
    let specs = topics::spec::default_topics(&prefix, common::PARTITIONS, 1);
    topics::admin::create_topics(&topics::kafka::KafkaConfig::plaintext(nisshi.bootstrap.clone()), &specs)
        .await
        .expect("create topics");
    Broker::external(&nisshi.bootstrap, &prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_started_at_a_time_or_a_window_boundary_apply_exactly_what_follows() {
    let nisshi = Nisshi::start();
    let broker = nisshi_broker(&nisshi, "timestart").await;
    let now = chrono::Utc::now().timestamp_millis();
    // Part one starts 7 minutes into an hour, so its hour is not whole; part
    // two starts on a later whole hour.
    let hour = 3_600_000;
    let part_one_start = (now - 3 * hour).div_euclid(hour) * hour + 7 * 60_000;
    let part_two_start = (now - hour).div_euclid(hour) * hour;
    broker.produce_from(6_000, 71, None, part_one_start).await;
    let part_two = broker.produce_from(6_000, 72, None, part_two_start).await;

    let client = {
        let mut c = rdkafka::config::ClientConfig::new();
        c.set("bootstrap.servers", &nisshi.bootstrap);
        c
    };
    let topics = vec![broker.topic(TopicKind::QueryStats), broker.topic(TopicKind::SlowQueries)];
    // A lookup past every message must land on the end of the log, not on 0.
    let future = resolve(&client, &topics, StartPosition::At(now + hour)).expect("resolve").expect("time start");
    let marks = broker.watermarks().await;
    for (key, start) in &future {
        assert_eq!(start.offset, marks[key].1, "{key:?}: a lookup with no match must answer the end");
    }
    let boundary = resolve(&client, &topics, StartPosition::WindowBoundary(3600)).expect("resolve").expect("start");
    let boundary_ms = boundary.values().next().expect("partitions").covered_from_ms;
    assert_eq!(boundary_ms, part_one_start.div_euclid(hour) * hour + hour, "first whole hour after part one's start");

    let at = chrono::DateTime::from_timestamp_millis(part_two_start).expect("time").to_rfc3339();
    for (tag, start) in [("at", format!("at={at}")), ("boundary", "window-boundary".to_string())] {
        let cluster = fresh_cluster("old", &format!("timestart_{tag}")).await;
        let group = format!("{}_{tag}", common::unique("g"));
        let process = ConsumerProcess::spawn_with(&cluster, &broker, &group, 1000, &["--start", &start]);
        process.wait_assigned(1, Duration::from_secs(60)).await;
        common::wait_caught_up_since(
            &cluster.config,
            &broker,
            &std::collections::HashMap::new(),
            Duration::from_secs(120),
        )
        .await;
        assert!(process.terminate().await.success());
        assert_matches_truth(&cluster.config, &part_two).await;
        assert_eq!(messages_applied(&cluster.config).await, part_two.messages, "start {start}");
    }
}
