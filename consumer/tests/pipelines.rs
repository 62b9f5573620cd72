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

/// The documented procedure for the common change (docs/pipelines.md):
/// a new Avro field with a default and a new merged column, added while
/// both groups run. A consumer given the new description before the ALTER
/// refuses to start, naming the column; after it, old and new messages
/// are applied and both clusters hold the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_to_a_running_pipeline_keeps_both_clusters_equal() {
    let file = pipeline_file("api");
    let api = pipeline::Pipeline::load(&file).expect("api pipeline");
    let old = fresh_cluster_of("old", "addcol_old", Some(&file), "").await;
    let new = fresh_cluster_of("new", "addcol_new", Some(&file), "").await;
    let broker = Broker::for_pipeline("addcol", &api);
    let kafka = topics::kafka::KafkaConfig::plaintext(broker.bootstrap.clone());
    let start_ms = chrono::Utc::now().timestamp_millis() - 2 * 3_600_000;
    let config = |seed, messages| ApiProduceConfig {
        topic_prefix: broker.prefix.clone(),
        messages,
        workload: ApiWorkloadConfig { seed, tenants: 100, gateways: 2, start_ms },
        minute_secs: old.config.time.minute_secs(),
        hour_secs: old.config.time.hour_secs(),
    };
    produce(&config(1, 1_500), &kafka, &api).await.expect("produce");
    let (a, b) = (Group::start(&old, &broker, "addcol-a"), Group::start(&new, &broker, "addcol-b"));
    for c in [&old, &new] {
        testkit::wait_caught_up(&c.config, &broker, Duration::from_secs(120)).await;
    }

    // Version 2 of the record: a field with a default, in a copy of the description.
    let dir = tempfile::tempdir().expect("tempdir");
    let source = file.parent().expect("pipelines dir");
    std::fs::create_dir(dir.path().join("api")).expect("mkdir");
    for f in ["11-api_requests.avsc", "12-api_failure.avsc"] {
        std::fs::copy(source.join("api").join(f), dir.path().join("api").join(f)).expect("copy schema");
    }
    let v1 = std::fs::read_to_string(source.join("api/11-api_requests.avsc")).expect("schema");
    let v2 = v1.replace(
        r#"{"name": "max_latency_us", "type": "long"},"#,
        r#"{"name": "max_latency_us", "type": "long"},
    {"name": "cache_hits", "type": "long", "default": 0},"#,
    );
    assert_ne!(v1, v2);
    std::fs::write(dir.path().join("api/13-api_requests.avsc"), v2).expect("write v2");
    let description = std::fs::read_to_string(&file).expect("description");
    let changed = description.replace("api/11-api_requests.avsc", "api/13-api_requests.avsc").replace(
        r#"  { name = "max_latency_us", type = "BIGINT UNSIGNED", from = "max_latency_us", merge = "max" },"#,
        r#"  { name = "max_latency_us", type = "BIGINT UNSIGNED", from = "max_latency_us", merge = "max" },
  { name = "cache_hits", type = "BIGINT UNSIGNED", from = "cache_hits", merge = "sum" },"#,
    );
    assert_ne!(description, changed);
    let v2_file = dir.path().join("api.toml");
    std::fs::write(&v2_file, changed).expect("write description");
    let v2_pipeline = pipeline::Pipeline::load(&v2_file).expect("the changed description loads");
    assert_eq!(v2_pipeline.topic("api-requests").expect("topic").writers.len(), 1, "version 1 is still read");

    // The new description on clusters that lack the column: refused at start.
    let repoint = |c: &testkit::TestCluster| {
        let text = std::fs::read_to_string(&c.file).expect("cluster file");
        let text = text.replacen(
            &format!("pipeline = {:?}", file.canonicalize().expect("path").display().to_string()),
            &format!("pipeline = {:?}", v2_file.display().to_string()),
            1,
        );
        let path = dir.path().join(format!("{}.toml", c.config.name));
        std::fs::write(&path, text).expect("cluster file");
        cluster::config::ClusterConfig::load(&path).expect("repointed cluster")
    };
    let old_v2 = repoint(&old);
    assert_eq!(old_v2.pipeline.table("api_route_minute").expect("t").columns.len(), 10);
    let mut early = testkit::consumer_config(&old, &broker, "addcol-early");
    early.cluster = old_v2.clone();
    let refused = consumer::run(early, tokio_util::sync::CancellationToken::new()).await.expect_err("refused");
    let text = refused.to_string();
    assert!(text.contains("table api_route_minute has no column cache_hits"), "{text}");

    // The procedure: ALTER every shard of both clusters, restart both groups
    // on the new description, then old and new producers write.
    let column = v2_pipeline.table("api_route_minute").expect("t").column("cache_hits").expect("c").clone();
    for c in [&old.config, &new.config] {
        let pools = cluster::pool::ShardPools::new(c);
        for i in 0..c.shards.len() {
            let mut conn = pools.shard(i).get_conn().await.expect("conn");
            use mysql_async::prelude::Queryable;
            conn.query_drop(format!(
                "ALTER TABLE api_route_minute ADD COLUMN {} DEFAULT 0",
                pipeline::column_definition(&column)
            ))
            .await
            .expect("alter");
        }
        pools.disconnect().await;
    }
    a.stop().await;
    b.stop().await;
    let new_v2 = repoint(&new);
    let group = |cluster: &cluster::config::ClusterConfig, tc: &testkit::TestCluster, name: &str| {
        let mut c = testkit::consumer_config(tc, &broker, name);
        c.cluster = cluster.clone();
        Group::start_with(c)
    };
    let (a, b) = (group(&old_v2, &old, "addcol-a"), group(&new_v2, &new, "addcol-b"));
    // Old producers (version 1) and upgraded ones (version 2, cache hits set).
    produce(&config(2, 1_000), &kafka, &api).await.expect("produce v1");
    let requests = v2_pipeline.topic("api-requests").expect("topic");
    let producer: FutureProducer = loadtest::produce::producer_config_for(&kafka).create().expect("producer");
    let topic = format!("{}api-requests", broker.prefix);
    let mut hits = 0u64;
    for (i, e) in
        loadtest::api::workload::generate(&ApiWorkloadConfig { seed: 3, tenants: 100, gateways: 2, start_ms }, 400)
            .into_iter()
            .enumerate()
    {
        let loadtest::api::workload::ApiEvent::Requests(r) = e else { continue };
        let payload = encode(requests, &V2Flat::from(&r, i as i64 % 5)).expect("encode v2");
        hits += (i as u64) % 5;
        let key = topics::message_key(r.tenant_id, &r.route);
        let record = FutureRecord::to(&topic).key(&key[..]).payload(&payload).timestamp(r.interval_start + 10_000);
        producer.send(record, Duration::from_secs(30)).await.expect("send");
    }
    for c in [&old_v2, &new_v2] {
        testkit::wait_caught_up(c, &broker, Duration::from_secs(120)).await;
    }
    a.stop().await;
    b.stop().await;

    // Both clusters hold the same rows, column for column, and every cache hit.
    let mut contents = Vec::new();
    for c in [&old_v2, &new_v2] {
        let pools = cluster::pool::ShardPools::new(c);
        let mut rows: Vec<(u64, String, i64, u64, u64, u64)> = Vec::new();
        for i in 0..c.shards.len() {
            use mysql_async::prelude::Queryable;
            let mut conn = pools.shard(i).get_conn().await.expect("conn");
            rows.extend(
                conn.query::<(u64, String, i64, u64, u64, u64), _>(
                    "SELECT tenant_id, route, TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', window_start), \
                     request_count, bytes_out, cache_hits FROM api_route_minute",
                )
                .await
                .expect("rows"),
            );
        }
        pools.disconnect().await;
        rows.sort();
        contents.push(rows);
    }
    assert!(contents[0].len() > 100);
    assert_eq!(contents[0], contents[1], "both clusters equal after the change");
    assert_eq!(contents[0].iter().map(|r| r.5).sum::<u64>(), hits, "every cache hit counted once");
    testkit::drop_databases(&old.config).await;
    testkit::drop_databases(&new.config).await;
}

/// Version 2 of `ApiRequests` as its Avro record (the new field last).
#[derive(serde::Serialize)]
struct V2Flat {
    tenant_id: i64,
    route: String,
    method: String,
    gateway_id: String,
    interval_start: i64,
    request_count: i64,
    error_count: i64,
    bytes_in: i64,
    bytes_out: i64,
    max_latency_us: i64,
    cache_hits: i64,
    #[serde(with = "apache_avro::serde::bytes")]
    latency_sketch: Vec<u8>,
}

impl V2Flat {
    fn from(r: &loadtest::api::workload::ApiRequests, cache_hits: i64) -> Self {
        Self {
            tenant_id: r.tenant_id,
            route: r.route.clone(),
            method: r.method.clone(),
            gateway_id: r.gateway_id.clone(),
            interval_start: r.interval_start,
            request_count: r.request_count,
            error_count: r.error_count,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            max_latency_us: r.max_latency_us,
            cache_hits,
            latency_sketch: r.latency_sketch.clone(),
        }
    }
}
