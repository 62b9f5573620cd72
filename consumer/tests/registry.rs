//! The schema registry end to end, against testkit's Confluent-compatible
//! test registry (no real registry can run here; see the README): ids
//! registered by the producer reach the shards exactly as the schema
//! directory's do, an id the registry does not know is a dead letter, an
//! outage delays and loses nothing, wrong credentials stop the start in one
//! line, and an incompatible schema is refused before anything is registered.

use testkit as common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::registry::TestRegistry;
use common::{assert_matches_truth, consumer_config, fresh_cluster, messages_applied, Broker, Group};
use mysql_async::prelude::Queryable;
use rdkafka::producer::{FutureProducer, FutureRecord};
use topics::registry::{
    consumer_codec, producer_codec, register_pipeline_schemas, register_topic_schemas, value_subject, RegisterError,
    Registry, RegistryAuth, RegistryConfig, RegistryError,
};
use topics::schemas::SchemaSet;
use topics::TopicKind;

const PASSWORD: &str = "s3cret-registry-pw";

fn client(registry: &TestRegistry, auth: RegistryAuth) -> Registry {
    let mut config = RegistryConfig::plain(&registry.url).expect("registry url");
    config.auth = auth;
    Registry::new(config).expect("registry client")
}

/// Basic auth with `password`, read from a file as in production.
fn basic(password: &str) -> RegistryAuth {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "[registry]\nurl = \"http://127.0.0.1:1\"\nusername = \"dw\"\npassword_file = \"pw\"\n";
    std::fs::write(dir.path().join("pw"), format!("{password}\n")).expect("password file");
    let config = RegistryConfig::from_toml_str(text, dir.path(), &|_| None).expect("valid").expect("table");
    config.auth
}

fn topic_names(broker: &Broker) -> Vec<String> {
    TopicKind::ALL.iter().map(|k| broker.topic(*k)).collect()
}

/// Sends `payload` as is to partition 0 of the query-stats topic; its offset.
async fn send_raw(broker: &Broker, payload: &[u8]) -> i64 {
    let producer: FutureProducer = loadtest::produce::producer_config(&broker.bootstrap).create().expect("producer");
    let topic = broker.topic(TopicKind::QueryStats);
    let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).partition(0).key(&b"raw"[..]).payload(payload);
    producer.send(record, Duration::from_secs(10)).await.expect("deliver").offset
}

/// `payload` with its schema id replaced.
fn with_id(mut payload: Vec<u8>, id: u32) -> Vec<u8> {
    payload[1..5].copy_from_slice(&id.to_be_bytes());
    payload
}

async fn dead_letter_details(cluster: &common::TestCluster) -> Vec<(i64, String, String)> {
    let pools = cluster::pool::ShardPools::new(&cluster.config);
    let mut conn = pools.control().expect("control").get_conn().await.expect("conn");
    let rows: Vec<(i64, String, String)> = conn
        .query("SELECT kafka_offset, reason, detail FROM dw_dead_letters ORDER BY kafka_offset")
        .await
        .expect("rows");
    drop(conn);
    pools.disconnect().await;
    rows
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_ids_are_applied_like_the_schema_directorys_and_unknown_ids_are_dead_letters() {
    let cluster = fresh_cluster("old", "registry").await;
    let broker = Broker::new("registry");
    let registry = TestRegistry::start_with_basic_auth("dw", PASSWORD).await;
    // Ids 1 and 2 belong to other producers' schemas, so this build's get
    // ids the schema directory does not have: only the registry can resolve them.
    registry
        .insert(1, r#"{"type":"record","name":"Other","namespace":"elsewhere","fields":[{"name":"a","type":"long"}]}"#);
    registry.insert(2, r#""string""#);
    let client = client(&registry, basic(PASSWORD));

    // The consumer's codec is made before anything is registered, so every
    // id is fetched when a message first carries it.
    let codec = consumer_codec(&client, &topic_names(&broker)).await.expect("consumer codec");
    let producing = producer_codec(&client, &broker.prefix).await.expect("producer codec");
    let stats_subject = value_subject(&broker.topic(TopicKind::QueryStats));
    let slow_subject = value_subject(&broker.topic(TopicKind::SlowQueries));
    assert_eq!((registry.versions(&stats_subject), registry.versions(&slow_subject)), (vec![3], vec![4]));

    let good = producing.encode_query_stats(&topics::corpus::sample_query_stats(7, "beef")).expect("encode");
    let unknown_offset = send_raw(&broker, &with_id(good.clone(), 999)).await;
    let other_record_offset = send_raw(&broker, &with_id(good, 1)).await;
    let truth = broker.produce_with_codec(6_000, 31, &producing).await;

    let mut config = consumer_config(&cluster, &broker, "registry");
    config.codec = codec;
    config.registry = Some(client);
    let group = Group::start_with(config);
    common::wait_caught_up(&cluster.config, &broker, Duration::from_secs(120)).await;
    group.stop().await;

    // The two raw messages are not in the truth; everything else is applied once.
    assert_matches_truth(&cluster.config, &truth).await;
    assert_eq!(messages_applied(&cluster.config).await, truth.messages);
    let letters = dead_letter_details(&cluster).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!((letters[0].0, letters[0].1.as_str()), (unknown_offset, "unknown_schema_id"));
    assert!(
        letters[0].2.starts_with(&format!("schema id 999 is not in the registry {}/", registry.url)),
        "{}",
        letters[0].2
    );
    assert_eq!((letters[1].0, letters[1].1.as_str()), (other_record_offset, "wrong_record"));
    // Each id was asked for once, however many batches and partitions
    // carried it; an unknown one three times (a lagging registry replica
    // gets a few seconds), then never again.
    let lookups = registry.all_lookups();
    assert_eq!(lookups, HashMap::from([(1, 1), (3, 1), (4, 1), (999, 3)]));
    registry.stop().await;
    common::drop_databases(&cluster.config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_delays_the_group_and_loses_nothing() {
    let cluster = fresh_cluster("old", "regoutage").await;
    let broker = Broker::new("regoutage");
    let registry = TestRegistry::start().await;
    let client = client(&registry, RegistryAuth::None);
    let codec = consumer_codec(&client, &topic_names(&broker)).await.expect("consumer codec");
    let truth =
        broker.produce_with_codec(3_000, 41, &producer_codec(&client, &broker.prefix).await.expect("codec")).await;

    registry.set_down(true);
    let mut config = consumer_config(&cluster, &broker, "regoutage");
    config.codec = codec;
    config.registry = Some(client);
    let group = Group::start_with(config);
    // The group asks, is refused, backs off and asks again...
    wait_for("three refused lookups", Duration::from_secs(60), || registry.refused() >= 3).await;
    // ...while nothing is applied, dead-lettered or lost, and the group stays up.
    assert!(group.is_running());
    assert_eq!(messages_applied(&cluster.config).await, 0);
    assert!(dead_letter_details(&cluster).await.is_empty());

    registry.set_down(false);
    common::wait_caught_up(&cluster.config, &broker, Duration::from_secs(120)).await;
    group.stop().await;
    assert_matches_truth(&cluster.config, &truth).await;
    assert_eq!(messages_applied(&cluster.config).await, truth.messages);
    assert!(dead_letter_details(&cluster).await.is_empty());
    assert!(registry.all_lookups().values().all(|n| *n == 1), "{:?}", registry.all_lookups());
    registry.stop().await;
    common::drop_databases(&cluster.config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_at_start_in_one_line_naming_the_registry() {
    let registry = TestRegistry::start_with_basic_auth("dw", PASSWORD).await;
    let wrong = "wr0ng-registry-pw";
    let error = consumer_codec(&client(&registry, basic(wrong)), &["t-query-stats".into()])
        .await
        .expect_err("wrong password")
        .to_string();
    assert!(error.starts_with(&format!("registry {}/: 401 Unauthorized", registry.url)), "{error}");
    assert!(!error.contains('\n') && !error.contains(wrong) && !error.contains(PASSWORD), "{error}");

    // The same through the binary: the kafka config file holds both tables.
    let cluster = fresh_cluster("old", "regauth").await;
    let broker = Broker::new("regauth");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("registry_password"), wrong).expect("password file");
    let kafka_file = dir.path().join("kafka.toml");
    let text = format!(
        "[kafka]\nbootstrap = \"{}\"\n\n[registry]\nurl = \"{}\"\nusername = \"dw\"\npassword_file = \"registry_password\"\n",
        broker.bootstrap, registry.url
    );
    std::fs::write(&kafka_file, text).expect("kafka file");
    let output = tokio::process::Command::new(common::consumer_binary())
        .args(["run", "--group", "regauth", "--cluster"])
        .arg(&cluster.file)
        .arg("--kafka-config")
        .arg(&kafka_file)
        .args(["--topic-prefix", &broker.prefix, "--metrics-addr", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output).await.expect("exits").expect("run binary");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("Error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].starts_with(&format!("Error: registry {}/: 401 Unauthorized", registry.url)), "{stderr}");
    assert!(!stderr.contains(wrong), "{stderr}");
    assert_eq!(registry.all_lookups(), HashMap::new(), "nothing fetched without credentials");
    registry.stop().await;
    common::drop_databases(&cluster.config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_refuses_an_incompatible_schema_with_the_registrys_message() {
    let (registry, _dir, client) = bearer_registry().await;
    let prefix = "regcompat.";
    let stats_subject = value_subject(&TopicKind::QueryStats.topic_name(prefix));
    let slow_subject = value_subject(&TopicKind::SlowQueries.topic_name(prefix));

    let first =
        register_topic_schemas(&client, prefix, &SchemaSet::embedded().expect("embedded")).await.expect("first");
    assert_eq!(first.iter().map(|r| r.id).collect::<Vec<_>>(), vec![1, 2]);
    // Registering the same schemas again changes nothing.
    let again =
        register_topic_schemas(&client, prefix, &SchemaSet::embedded().expect("embedded")).await.expect("again");
    assert_eq!(again, first);

    // A compatible evolution (an optional field) becomes a new version.
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../topics/tests/fixtures");
    let evolved = SchemaSet::from_dir(&fixtures.join("evolved")).expect("evolved");
    let next = register_topic_schemas(&client, prefix, &evolved).await.expect("compatible evolution");
    assert_eq!(next[0].id, 3);
    assert_eq!(registry.versions(&stats_subject), vec![1, 3]);

    // A required field without a default cannot read what was written before.
    let incompatible_dir = tempfile::tempdir().expect("tempdir");
    for (from, name) in [("evolved", "2-slow_query.avsc"), ("incompatible", "4-query_stats.avsc")] {
        std::fs::copy(fixtures.join(from).join(name), incompatible_dir.path().join(name)).expect("copy fixture");
    }
    let incompatible = SchemaSet::from_dir(incompatible_dir.path()).expect("incompatible set");
    let refused = register_topic_schemas(&client, prefix, &incompatible).await.expect_err("incompatible");
    assert!(
        matches!(&refused, RegisterError::Registry(RegistryError::Incompatible { subject, .. }) if *subject == stats_subject)
    );
    let message = refused.to_string();
    assert!(
        message.starts_with(&format!(
            "registry {}/: subject {stats_subject}: the schema is incompatible with the latest version: ",
            registry.url
        )),
        "{message}"
    );
    assert!(message.contains("region"), "the registry's explanation names the field: {message}");
    assert!(!message.contains('\n'), "{message}");
    assert_eq!(registry.versions(&stats_subject), vec![1, 3], "nothing registered");
    assert_eq!(registry.versions(&slow_subject), vec![2]);
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_classified_retryable_or_not() {
    let registry = TestRegistry::start().await;
    let client = client(&registry, RegistryAuth::None);
    assert_eq!(client.schema_by_id(42).await.expect("unknown id is an answer"), None);

    registry.set_down(true);
    let down = client.schema_by_id(42).await.expect_err("down");
    assert!(down.is_retryable(), "{down}");
    assert!(down.to_string().contains("503 Service Unavailable"), "{down}");
    registry.set_down(false);

    // Nothing listens: retryable too (a registry restarting).
    let url = registry.url.clone();
    registry.stop().await;
    let gone = Registry::new(RegistryConfig::plain(&url).expect("url")).expect("client");
    let refused = gone.schema_by_id(1).await.expect_err("nothing listens");
    assert!(refused.is_retryable(), "{refused}");
    assert!(refused.to_string().starts_with(&format!("registry {url}/: unavailable: schema id 1: ")), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_trusted_through_ca_file_and_refused_without_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = common::registry::make_certificates(dir.path());
    let registry = TestRegistry::start_tls(&certs.cert, &certs.key).await;
    let file = dir.path().join("kafka.toml");
    std::fs::write(&file, format!("[registry]\nurl = \"{}\"\nca_file = \"ca.pem\"\n", registry.url)).expect("config");
    let config = RegistryConfig::load(&file, &|_| None).expect("valid").expect("table");
    let trusted = Registry::new(config).expect("client");
    let registered = register_topic_schemas(&trusted, "regtls.", &SchemaSet::embedded().expect("embedded"))
        .await
        .expect("registers over https with the private CA");
    assert_eq!(registered.len(), 2);

    // The built-in web PKI roots do not hold the test CA: a TLS error, in one
    // line naming the registry, not an outage to retry.
    let untrusted = Registry::new(RegistryConfig::plain(&registry.url).expect("url")).expect("client");
    let error = consumer_codec(&untrusted, &["regtls.query-stats".into()]).await.expect_err("untrusted");
    assert!(matches!(&error, RegisterError::Registry(e) if !e.is_retryable()), "{error}");
    let message = error.to_string();
    assert!(message.starts_with(&format!("registry {}/: TLS: invalid peer certificate", registry.url)), "{message}");
    assert!(!message.contains('\n'), "{message}");
    registry.stop().await;
}

/// A test registry requiring a bearer token, and a client holding it (in a
/// token file that lives as long as the returned directory).
async fn bearer_registry() -> (TestRegistry, tempfile::TempDir, Registry) {
    let registry = TestRegistry::start_with_bearer("a-bearer-token-for-tests").await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), "a-bearer-token-for-tests\n").expect("token file");
    let text = format!("[registry]\nurl = \"{}\"\ntoken_file = \"token\"\n", registry.url);
    let config = RegistryConfig::from_toml_str(&text, dir.path(), &|_| None).expect("valid").expect("table");
    (registry, dir, Registry::new(config).expect("client"))
}

/// `register-schemas` registers a pipeline's own topics with their reader
/// schemas; for Insights that is what the producer's schema set registers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelines_topics_are_registered_with_their_reader_schemas() {
    let (registry, _dir, client) = bearer_registry().await;

    let api = pipeline::Pipeline::load(&common::pipeline_file("api")).expect("api pipeline");
    let registered = register_pipeline_schemas(&client, "regapi.", &api).await.expect("api schemas");
    let subjects: Vec<&str> = registered.iter().map(|r| r.subject.as_str()).collect();
    assert_eq!(subjects, ["regapi.api-requests-value", "regapi.api-failures-value"]);
    for (r, topic) in registered.iter().zip(&api.topics) {
        assert_eq!((r.record.as_str(), registry.versions(&r.subject)), (topic.record.as_str(), vec![r.id]));
    }

    // Insights through its description registers exactly the build's schema set: no new version.
    let insights = pipeline::Pipeline::insights();
    let described = register_pipeline_schemas(&client, "reginsights.", &insights).await.expect("insights");
    let embedded = SchemaSet::embedded().expect("embedded");
    let built = register_topic_schemas(&client, "reginsights.", &embedded).await.expect("the build's set");
    assert_eq!(described, built);
}
