//! Harness for the cutover tests: throwaway databases on the local stack's
//! real mariadbd shards (and control server), an in-process librdkafka mock
//! broker, in-process consumer groups, the query API in-process, and the
//! `dualwrite-cutover` binary for the operator's commands.
//!
//! The consumer crate's harness (`consumer/tests/common`) spawns its own
//! binary, which this crate's tests cannot name; the few helpers needed are
//! restated here in the same shape.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use consumer::config::{ConsumerConfig, StartPosition};
use cutover::serve::{run as serve_run, ServeConfig};
use cutover::RouterConfig;
use loadtest::produce::{produce, ProduceConfig};
use loadtest::truth::Truth;
use loadtest::workload::WorkloadConfig;
use mysql_async::prelude::Queryable;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tokio_util::sync::CancellationToken;

pub const PARTITIONS: i32 = 8;

pub fn unique(tag: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("t_{tag}_{}_{nanos}", std::process::id())
}

fn stack_dir() -> PathBuf {
    std::env::var_os("DUALWRITE_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/local/.state"))
}

/// A stack cluster pointed at fresh databases (shards and control), schema applied.
pub struct TestCluster {
    pub config: ClusterConfig,
    pub file: PathBuf,
    _dir: tempfile::TempDir,
}

/// `which` = old | new. Both clusters of a test share `tag`'s control
/// database (the new cluster's is the one the cutover uses).
pub async fn fresh_cluster(which: &str, tag: &str) -> TestCluster {
    let template_path = stack_dir().join("clusters").join(format!("{which}.toml"));
    let template = std::fs::read_to_string(&template_path).unwrap_or_else(|e| {
        panic!("{}: {e}; start the local stack first: compose/local/stack up --no-broker", template_path.display())
    });
    let db = unique(&format!("{tag}_{which}"));
    let text =
        template.replace("/dualwrite_control\"", &format!("/{db}_ctl\"")).replace("/dualwrite\"", &format!("/{db}\""));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(format!("{which}.toml"));
    std::fs::write(&file, text).expect("write cluster file");
    let config = ClusterConfig::load(&file).expect("load cluster file");
    cluster::schema::apply(&config, chrono::Utc::now().timestamp()).await.expect("apply schema");
    TestCluster { config, file, _dir: dir }
}

/// Drops every database of the cluster (shards and control).
pub async fn drop_databases(cluster: &ClusterConfig) {
    let mut endpoints: Vec<&cluster::config::Endpoint> = cluster.shards.iter().map(|s| &s.endpoint).collect();
    endpoints.extend(cluster.control.as_ref());
    for endpoint in endpoints {
        let opts = mysql_async::OptsBuilder::from_opts(cluster::pool::opts_for(endpoint, &cluster.auth))
            .db_name(None::<String>);
        match mysql_async::Conn::new(opts).await {
            Ok(mut conn) => {
                let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", endpoint.database)).await;
                let _ = conn.disconnect().await;
            }
            Err(error) => eprintln!("cleanup of {endpoint}: {error}"),
        }
    }
}

/// librdkafka's mock cluster with this test's topics.
pub struct Broker {
    pub mock: MockCluster<'static, DefaultProducerContext>,
    pub bootstrap: String,
    pub prefix: String,
}

impl Broker {
    pub fn new(tag: &str) -> Self {
        let mock = MockCluster::new(3).expect("mock cluster");
        let prefix = format!("{}.", unique(tag));
        for spec in topics::spec::default_topics(&prefix, PARTITIONS, 1) {
            mock.create_topic(&spec.name, spec.partitions, spec.replication).expect("create topic");
        }
        let bootstrap = mock.bootstrap_servers();
        Self { mock, bootstrap, prefix }
    }

    pub fn produce_config(&self, messages: u64, seed: u64, rate: Option<u64>, start_ms: i64) -> ProduceConfig {
        ProduceConfig {
            brokers: self.bootstrap.clone(),
            topic_prefix: self.prefix.clone(),
            messages,
            rate,
            workload: WorkloadConfig::new(seed, start_ms),
        }
    }

    pub async fn produce_from(&self, messages: u64, seed: u64, start_ms: i64) -> Truth {
        produce(&self.produce_config(messages, seed, None, start_ms), &CancellationToken::new()).await.expect("produce")
    }

    pub fn topics(&self) -> Vec<String> {
        [topics::TopicKind::QueryStats, topics::TopicKind::SlowQueries]
            .iter()
            .map(|k| format!("{}{}", self.prefix, k.as_str()))
            .collect()
    }
}

/// A consumer group running in this process.
pub struct Group {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), consumer::run::ConsumerError>>,
}

impl Group {
    pub fn start(cluster: &TestCluster, broker: &Broker, group: &str) -> Self {
        cluster::process::init_tracing();
        let config = ConsumerConfig {
            group: group.to_string(),
            brokers: broker.bootstrap.clone(),
            cluster: cluster.config.clone(),
            topic_prefix: broker.prefix.clone(),
            batch_max_messages: 2000,
            batch_max_wait: Duration::from_millis(100),
            start: StartPosition::Earliest,
            codec: topics::Codec::embedded().expect("codec"),
            kafka_overrides: vec![("session.timeout.ms".into(), "6000".into())],
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(consumer::run(config, shutdown.clone()));
        Self { shutdown, task }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("consumer stops within 60 s")
            .expect("join")
            .expect("consumer ran cleanly");
    }
}

/// Waits until every shard's fence reached every non-empty partition's end.
pub async fn wait_caught_up(cluster: &ClusterConfig, broker: &Broker, timeout: Duration) {
    let topics = broker.topics();
    let deadline = Instant::now() + timeout;
    loop {
        let report = consumer::status::status(cluster, Some(&broker.bootstrap), &topics, 0).await.expect("status");
        let behind = report
            .partitions
            .iter()
            .filter(|p| p.end_offset.is_some_and(|e| e > 0))
            .filter(|p| {
                p.lag_messages != Some(0) || p.progress.as_ref().is_none_or(|g| g.shards < cluster.shards.len())
            })
            .count();
        if behind == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "cluster {} not caught up after {timeout:?}: {behind} partitions behind",
            cluster.name
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The query API over a router, running in this process on an ephemeral port.
pub struct Api {
    pub base: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), cutover::serve::ServeError>>,
}

impl Api {
    pub async fn start(old: &TestCluster, new: &TestCluster, router: RouterConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let config = ServeConfig { old: old.config.clone(), new: new.config.clone(), router };
        let task = tokio::spawn(serve_run(config, listener, shutdown.clone()));
        let api = Self { base, shutdown, task };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.get(format!("{}/healthz", api.base)).send().await.is_err() {
            assert!(Instant::now() < deadline, "api did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        api
    }

    pub async fn stats(&self) -> serde_json::Value {
        reqwest::get(format!("{}/v1/router", self.base)).await.expect("stats").json().await.expect("json")
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("api stops within 30 s")
            .expect("join")
            .expect("api ran cleanly");
    }
}

/// A router config for tests: fast polls, shadow as given.
pub fn router_config(id: &str, shadow_fraction: f64) -> RouterConfig {
    let mut config = RouterConfig::new(id);
    config.shadow_fraction = shadow_fraction;
    config.shadow_max_concurrent = 8;
    config.shadow_flush_interval = Duration::from_millis(500);
    config.bounds_refresh = Duration::from_millis(300);
    config
}

/// Output of one `dualwrite-cutover` run.
pub struct CommandOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `dualwrite-cutover <args> --old <old> --new <new>`.
pub async fn cutover_command(old: &TestCluster, new: &TestCluster, args: &[&str]) -> CommandOutput {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_dualwrite-cutover"))
        .args(args)
        .arg("--old")
        .arg(&old.file)
        .arg("--new")
        .arg(&new.file)
        .args(["--operator", "cutover-test"])
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run dualwrite-cutover");
    CommandOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The control pool of the new cluster.
pub fn control(new: &TestCluster) -> mysql_async::Pool {
    cutover::serve::control_pool(&new.config).expect("control endpoint")
}

/// Runs one statement on the shard of `database_id` in `cluster`.
pub async fn on_shard_of(cluster: &ClusterConfig, database_id: u64, sql: &str) -> u64 {
    let pools = ShardPools::new(cluster);
    let mut conn = pools.shard(cluster.shard_index_for_database_id(database_id)).get_conn().await.expect("conn");
    conn.query_drop(sql).await.expect("statement");
    let affected = conn.affected_rows();
    drop(conn);
    pools.disconnect().await;
    affected
}

/// Database ids the workload writes most (Zipf rank 1, 2, ...).
pub fn hot_database(rank: u64) -> u64 {
    rank * 7919 + 100_000
}

pub type Counts = HashMap<String, u64>;
