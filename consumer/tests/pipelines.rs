//! A second pipeline end to end: the API request telemetry described in
//! `pipelines/api.toml` (a blind-written rollup, a folded sketch, an append
//! table and a copier table), fed to an old and a new cluster by two
//! independent groups, each checked against a truth written for that
//! pipeline by hand; malformed messages cost one dead letter each.

use std::time::Duration;

use loadtest::api::produce::{encode, produce, ApiProduceConfig};
use loadtest::api::workload::{ApiFailure, ApiWorkloadConfig};
use rdkafka::producer::{FutureProducer, FutureRecord};
use testkit::{fresh_cluster_of, pipeline_file, Broker, Group};

const MESSAGES: u64 = 6_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_pipeline_runs_end_to_end_on_both_clusters() {
    let file = pipeline_file("api");
    let api = pipeline::Pipeline::load(&file).expect("api pipeline");
    let old = fresh_cluster_of("old", "api_old", Some(&file), "").await;
    let new = fresh_cluster_of("new", "api_new", Some(&file), "").await;
    assert_eq!(old.config.pipeline.name, "api");
    let broker = Broker::for_pipeline("api", &api);
    let kafka = topics::kafka::KafkaConfig::plaintext(broker.bootstrap.clone());
    let time = &old.config.time;
    let config = ApiProduceConfig {
        topic_prefix: broker.prefix.clone(),
        messages: MESSAGES,
        workload: ApiWorkloadConfig {
            seed: 7,
            tenants: 300,
            gateways: 3,
            start_ms: chrono::Utc::now().timestamp_millis() - 2 * 3_600_000,
        },
        minute_secs: time.minute_secs(),
        hour_secs: time.hour_secs(),
    };
    let truth = produce(&config, &kafka, &api).await.expect("produce");
    assert!(truth.minute.len() > 500 && truth.failures.len() > 100 && truth.routes.len() > 100, "a real workload");

    // Malformed: a negative tenant, a request id with a space, not Avro at all.
    let failures = api.topic("api-failures").expect("topic");
    let bad = ApiFailure {
        tenant_id: 5,
        route: "GET /x".into(),
        request_id: "req 1".into(),
        status: 500,
        occurred_at: config.workload.start_ms * 1000,
        latency_us: 1,
        error: None,
        client_ip: "10.0.0.1".into(),
    };
    let bad_values = [
        encode(failures, &ApiFailure { tenant_id: -3, ..bad.clone() }).expect("encode"),
        encode(failures, &bad).expect("encode"),
        b"\x07not avro".to_vec(),
    ];
    let producer: FutureProducer = loadtest::produce::producer_config_for(&kafka).create().expect("producer");
    let topic = format!("{}api-failures", broker.prefix);
    for value in &bad_values {
        let record =
            FutureRecord::to(&topic).key("bad").payload(value).timestamp(chrono::Utc::now().timestamp_millis());
        producer.send(record, Duration::from_secs(30)).await.expect("send");
    }

    let a = Group::start(&old, &broker, "api-a");
    let b = Group::start(&new, &broker, "api-b");
    for cluster in [&old, &new] {
        testkit::wait_caught_up(&cluster.config, &broker, Duration::from_secs(240)).await;
        let report = loadtest::api::check::check(&cluster.config, &truth).await.expect("check");
        assert!(
            report.is_equal(),
            "cluster {}: {} differences:\n{}",
            cluster.config.name,
            report.differences.len(),
            report.differences.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
        );
        assert!(report.rows_compared > 1_000);
        let letters = testkit::dead_letters(&cluster.config).await;
        let mut reasons: Vec<&str> = letters.iter().map(|(_, _, _, r)| r.as_str()).collect();
        reasons.sort_unstable();
        assert_eq!(reasons, ["bad_magic", "invalid_field", "invalid_field"], "cluster {}", cluster.config.name);
    }
    a.stop().await;
    b.stop().await;
    testkit::drop_databases(&old.config).await;
    testkit::drop_databases(&new.config).await;
}
