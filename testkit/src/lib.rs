//! The integration tests' harness, shared by every crate (dev-only): throwaway
//! databases on the local stack's real mariadbd shards, an in-process
//! librdkafka mock broker with unique topic names per test, consumer groups
//! in-process or as `dualwrite-consumer` child processes, and the waits the
//! tests synchronise on (a condition with a deadline, never a fixed sleep).

pub mod nisshi;
pub mod registry;
pub mod replicas;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use consumer::config::{ConsumerConfig, StartPosition};
use loadtest::produce::{produce, ProduceConfig};
use loadtest::truth::Truth;
use loadtest::workload::WorkloadConfig;
use mysql_async::prelude::Queryable;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::topic_partition_list::TopicPartitionList;
use tokio_util::sync::CancellationToken;

pub const PARTITIONS: i32 = 16;

/// A unique suffix: tests run concurrently and must never share names.
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

/// A cluster of the local stack (`old` or `new`) pointed at fresh databases,
/// with the schema applied, and its cluster file for child processes.
pub struct TestCluster {
    pub config: ClusterConfig,
    pub file: PathBuf,
    _dir: tempfile::TempDir,
}

pub async fn fresh_cluster(which: &str, tag: &str) -> TestCluster {
    fresh_cluster_with(which, tag, "").await
}

/// [`fresh_cluster`] with `extra` appended to the cluster file (e.g. a
/// compressed-time `[time]` section).
pub async fn fresh_cluster_with(which: &str, tag: &str, extra: &str) -> TestCluster {
    fresh_cluster_from(which, tag, "", extra).await
}

/// The repository's `pipelines/<name>.toml`.
pub fn pipeline_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("pipelines").join(format!("{name}.toml"))
}

/// [`fresh_cluster_with`] storing the pipeline described in `pipeline` (its path), if any.
pub async fn fresh_cluster_of(which: &str, tag: &str, pipeline: Option<&Path>, extra: &str) -> TestCluster {
    match pipeline {
        Some(p) => {
            let path = p.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            fresh_cluster_from(which, tag, &format!("pipeline = {:?}\n", path.display().to_string()), extra).await
        }
        None => fresh_cluster_from(which, tag, "", extra).await,
    }
}

/// [`fresh_cluster`] storing the pipeline described in `pipeline` (the
/// cluster file's `pipeline = "..."`, an absolute path), its schema applied.
pub async fn fresh_cluster_for(which: &str, tag: &str, pipeline: &std::path::Path) -> TestCluster {
    fresh_cluster_of(which, tag, Some(pipeline), "").await
}

/// The stack's cluster file for `which` on fresh databases: `head` before
/// its first line (top-level keys), `extra` after its last.
async fn fresh_cluster_from(which: &str, tag: &str, head: &str, extra: &str) -> TestCluster {
    fresh_cluster_in(&stack_dir(), which, tag, head, extra).await
}

/// The TLS stack's state dir (`stack up --tls`: shards requiring TLS, and
/// Nisshi requiring TLS + SCRAM with a `[kafka]` file per job in
/// `clusters/kafka/`): `DUALWRITE_TLS_STACK_DIR`, else `compose/local/.state-tls`.
pub fn tls_stack_dir() -> PathBuf {
    std::env::var_os("DUALWRITE_TLS_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/local/.state-tls"))
}

/// [`fresh_cluster`] on the TLS stack: its shards over TLS, the administrator's login.
pub async fn fresh_tls_cluster(which: &str, tag: &str) -> TestCluster {
    fresh_cluster_in(&tls_stack_dir(), which, tag, "", "").await
}

/// [`fresh_cluster_from`] on the stack whose state dir is `stack`.
pub(crate) async fn fresh_cluster_in(stack: &Path, which: &str, tag: &str, head: &str, extra: &str) -> TestCluster {
    let template_path = stack.join("clusters").join(format!("{which}.toml"));
    let template = std::fs::read_to_string(&template_path).unwrap_or_else(|e| {
        panic!("{}: {e}; start the local stack first: compose/local/stack up --no-broker", template_path.display())
    });
    let db = unique(tag);
    let text =
        template.replace("/dualwrite_control\"", &format!("/{db}_ctl\"")).replace("/dualwrite\"", &format!("/{db}\""));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(format!("{which}.toml"));
    std::fs::write(&file, format!("{head}{text}\n{extra}")).expect("write cluster file");
    let config = ClusterConfig::load(&file).expect("load cluster file");
    cluster::schema::apply(&config, chrono::Utc::now().timestamp()).await.expect("apply schema");
    TestCluster { config, file, _dir: dir }
}

fn insights_topics(prefix: &str) -> Vec<String> {
    topics::TopicKind::ALL.iter().map(|k| k.topic_name(prefix)).collect()
}

/// librdkafka's mock cluster (3 brokers) with this test's topics, or an
/// external broker whose topics the test created.
pub struct Broker {
    pub mock: Option<MockCluster<'static, DefaultProducerContext>>,
    pub bootstrap: String,
    pub prefix: String,
    /// The topics' full names (with the prefix): the Insights pair unless made for another pipeline.
    pub topics: Vec<String>,
}

impl Broker {
    pub fn new(tag: &str) -> Self {
        let mock = MockCluster::new(3).expect("mock cluster");
        let prefix = format!("{}.", unique(tag));
        for spec in topics::spec::default_topics(&prefix, PARTITIONS, 1) {
            mock.create_topic(&spec.name, spec.partitions, spec.replication).expect("create topic");
        }
        let bootstrap = mock.bootstrap_servers();
        let topics = insights_topics(&prefix);
        Self { mock: Some(mock), bootstrap, prefix, topics }
    }

    /// A mock cluster with the topics of `pipeline`.
    pub fn for_pipeline(tag: &str, pipeline: &pipeline::Pipeline) -> Self {
        let mock = MockCluster::new(3).expect("mock cluster");
        let prefix = format!("{}.", unique(tag));
        let topics: Vec<String> = pipeline.topics.iter().map(|t| format!("{prefix}{}", t.name)).collect();
        for name in &topics {
            mock.create_topic(name, PARTITIONS, 1).expect("create topic");
        }
        let bootstrap = mock.bootstrap_servers();
        Self { mock: Some(mock), bootstrap, prefix, topics }
    }

    pub fn external(bootstrap: &str, prefix: &str) -> Self {
        Self {
            mock: None,
            bootstrap: bootstrap.to_string(),
            prefix: prefix.to_string(),
            topics: insights_topics(prefix),
        }
    }

    pub fn topic(&self, kind: topics::TopicKind) -> String {
        kind.topic_name(&self.prefix)
    }

    pub async fn produce(&self, messages: u64, seed: u64, rate: Option<u64>) -> Truth {
        self.produce_from(messages, seed, rate, chrono::Utc::now().timestamp_millis() - 3_600_000).await
    }

    /// Produces a workload whose first interval starts at `start_ms`.
    pub async fn produce_from(&self, messages: u64, seed: u64, rate: Option<u64>, start_ms: i64) -> Truth {
        let config = ProduceConfig {
            brokers: self.bootstrap.clone(),
            topic_prefix: self.prefix.clone(),
            messages,
            rate,
            workload: WorkloadConfig::new(seed, start_ms),
        };
        produce(&config, &CancellationToken::new()).await.expect("produce")
    }

    /// Produces a workload written with `codec`'s schema ids (a registry's).
    pub async fn produce_with_codec(&self, messages: u64, seed: u64, codec: &topics::Codec) -> Truth {
        let config = ProduceConfig {
            brokers: self.bootstrap.clone(),
            topic_prefix: self.prefix.clone(),
            messages,
            rate: None,
            workload: WorkloadConfig::new(seed, chrono::Utc::now().timestamp_millis() - 3_600_000),
        };
        let kafka = topics::kafka::KafkaConfig::plaintext(self.bootstrap.clone());
        loadtest::produce::produce_with_codec(&config, &kafka, codec, &CancellationToken::new()).await.expect("produce")
    }

    fn client(&self, group: &str) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("watermark client")
    }

    /// (low, high) per partition of both topics.
    pub async fn watermarks(&self) -> HashMap<(String, i32), (i64, i64)> {
        let client = self.client("watermarks");
        let topics = self.topics.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = HashMap::new();
            for t in &topics {
                for p in 0..PARTITIONS {
                    let marks = client.fetch_watermarks(t, p, Duration::from_secs(10)).expect("watermarks");
                    out.insert((t.clone(), p), marks);
                }
            }
            out
        })
        .await
        .expect("join")
    }

    /// The offsets `group` has committed, per partition (-1 when none).
    pub async fn committed(&self, group: &str) -> HashMap<(String, i32), i64> {
        let client = self.client(group);
        let mut tpl = TopicPartitionList::new();
        for topic in &self.topics {
            for p in 0..PARTITIONS {
                tpl.add_partition(topic, p);
            }
        }
        tokio::task::spawn_blocking(move || {
            let committed = client.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
            committed
                .elements()
                .iter()
                .map(|e| ((e.topic().to_string(), e.partition()), e.offset().to_raw().unwrap_or(-1)))
                .collect()
        })
        .await
        .expect("join")
    }
}

pub fn consumer_config(cluster: &TestCluster, broker: &Broker, group: &str) -> ConsumerConfig {
    service::init_tracing();
    ConsumerConfig {
        group: group.to_string(),
        kafka: topics::kafka::KafkaConfig::plaintext(broker.bootstrap.clone()),
        cluster: cluster.config.clone(),
        topic_prefix: broker.prefix.clone(),
        batch_max_messages: 2000,
        batch_max_bytes: 16 << 20,
        batch_max_wait: Duration::from_millis(100),
        start: StartPosition::Earliest,
        codec: topics::Codec::embedded().expect("codec"),
        registry: None,
        kafka_overrides: vec![("session.timeout.ms".into(), "6000".into())],
        liveness_bound: Duration::from_secs(60),
    }
}

/// Fence rows of every shard: (shard, topic, partition) -> (next_offset, messages_applied).
pub async fn fences(cluster: &ClusterConfig) -> HashMap<(usize, String, i32), (i64, u64)> {
    let pools = ShardPools::new(cluster);
    let mut out = HashMap::new();
    for i in 0..pools.len() {
        let mut conn = pools.shard(i).get_conn().await.expect("conn");
        let rows: Vec<(String, i32, i64, u64)> = conn
            .query("SELECT topic, kafka_partition, next_offset, messages_applied FROM dw_offset_fence")
            .await
            .expect("fences");
        for (t, p, next, applied) in rows {
            out.insert((i, t, p), (next, applied));
        }
    }
    pools.disconnect().await;
    out
}

/// Waits until every shard's fence has reached the high watermark of every
/// non-empty partition.
pub async fn wait_caught_up(cluster: &ClusterConfig, broker: &Broker, timeout: Duration) {
    wait_caught_up_since(cluster, broker, &HashMap::new(), timeout).await;
}

/// Like [`wait_caught_up`], for partitions that grew past `since` (a group
/// started at the end of the log never applies the partitions that did not).
pub async fn wait_caught_up_since(
    cluster: &ClusterConfig,
    broker: &Broker,
    since: &HashMap<(String, i32), (i64, i64)>,
    timeout: Duration,
) {
    let marks: HashMap<(String, i32), (i64, i64)> = broker
        .watermarks()
        .await
        .into_iter()
        .filter(|(k, (_, high))| since.get(k).is_none_or(|(_, before)| high > before))
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        let fences = fences(cluster).await;
        let behind: Vec<_> = marks
            .iter()
            .filter(|(_, (_, high))| *high > 0)
            .filter(|((t, p), (_, high))| {
                (0..cluster.shards.len()).any(|s| fences.get(&(s, t.clone(), *p)).is_none_or(|(next, _)| next < high))
            })
            .map(|(k, _)| k.clone())
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not caught up after {timeout:?}: {} partitions behind, e.g. {:?}",
            behind.len(),
            behind.first()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the cluster's fences say every partition in `partitions`
/// reached the end of its log on every shard (the idle confirmation that
/// settles windows without new messages).
pub async fn wait_reached_end(cluster: &ClusterConfig, partitions: &[(String, i32)], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let pools = ShardPools::new(cluster);
        let progress = cluster::fence::progress(&pools).await.expect("fence progress");
        pools.disconnect().await;
        let pending: Vec<&(String, i32)> = partitions
            .iter()
            .filter(|(t, p)| !progress.iter().any(|g| &g.topic == t && g.partition == *p && g.reached_end))
            .collect();
        if pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} partitions not confirmed at their end within {timeout:?}, e.g. {:?}",
            pending.len(),
            pending[0]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until every partition the cluster has fences for is settled through
/// `through_ms` (applied, or confirmed idle, past it plus the allowed lateness).
pub async fn wait_settled(cluster: &ClusterConfig, through_ms: i64, timeout: Duration) {
    let lateness = cluster.time.allowed_lateness_ms();
    let deadline = Instant::now() + timeout;
    loop {
        let pools = ShardPools::new(cluster);
        let progress = cluster::fence::progress(&pools).await.expect("fence progress");
        pools.disconnect().await;
        let behind = progress.iter().filter(|p| p.settled_through_ms(lateness) < through_ms).count();
        if !progress.is_empty() && behind == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "cluster {}: {behind} of {} partitions not settled through {through_ms} within {timeout:?}",
            cluster.name,
            progress.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until at least `n` messages are applied on the cluster.
pub async fn wait_applied(cluster: &ClusterConfig, n: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let applied = messages_applied(cluster).await;
        if applied >= n {
            return applied;
        }
        assert!(Instant::now() < deadline, "only {applied} of {n} messages applied within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Total messages applied across every shard and partition (each message is
/// applied on exactly one shard, so this equals the messages consumed once).
pub async fn messages_applied(cluster: &ClusterConfig) -> u64 {
    fences(cluster).await.values().map(|(_, applied)| applied).sum()
}

pub async fn assert_matches_truth(cluster: &ClusterConfig, truth: &Truth) {
    let report = loadtest::check::check(cluster, truth).await.expect("check");
    assert!(
        report.is_equal(),
        "{} differences, first ones:\n{}",
        report.differences.len(),
        report.differences.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(report.rows_compared > 0);
}

/// The mock keeps ~5 MiB per partition; a test whose data was truncated
/// would prove nothing, so each asserts nothing was.
pub async fn assert_nothing_truncated(broker: &Broker) {
    for ((t, p), (low, _)) in broker.watermarks().await {
        assert_eq!(low, 0, "mock broker dropped the head of {t}/{p}: test too large for it");
    }
}

pub async fn dead_letters(cluster: &ClusterConfig) -> Vec<(String, i32, i64, String)> {
    let pools = ShardPools::new(cluster);
    let mut conn = pools.control().expect("control").get_conn().await.expect("conn");
    let rows: Vec<(String, i32, i64, String)> = conn
        .query("SELECT topic, kafka_partition, kafka_offset, reason FROM dw_dead_letters ORDER BY topic, kafka_partition, kafka_offset")
        .await
        .expect("dead letters");
    drop(conn);
    pools.disconnect().await;
    rows
}

/// The consumer binary: `DUALWRITE_CONSUMER_BIN`, or next to the test
/// executable's directory (`target/<profile>/`), where `cargo test` builds
/// the workspace's binaries.
pub fn consumer_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("DUALWRITE_CONSUMER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable");
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("dualwrite-consumer");
    assert!(path.exists(), "{} missing: build it first (cargo build --release -p consumer)", path.display());
    path
}

/// A workspace binary (`dualwrite-topics`, ...) next to the consumer's
/// (`cargo build --release --bins` builds them all).
pub fn workspace_binary(name: &str) -> PathBuf {
    let path = consumer_binary().with_file_name(name);
    assert!(path.exists(), "{} missing: build it first (cargo build --release --bins)", path.display());
    path
}

/// A `dualwrite-consumer run` child process, with its log lines collected.
pub struct ConsumerProcess {
    child: tokio::process::Child,
    /// Every log line the process wrote so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl ConsumerProcess {
    pub fn spawn(cluster: &TestCluster, broker: &Broker, group: &str, batch: usize) -> Self {
        Self::spawn_with(cluster, broker, group, batch, &[])
    }

    pub fn spawn_with(cluster: &TestCluster, broker: &Broker, group: &str, batch: usize, extra: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(consumer_binary())
            .args(["run", "--group", group, "--cluster"])
            .arg(&cluster.file)
            .args(["--brokers", &broker.bootstrap, "--topic-prefix", &broker.prefix])
            .args(["--batch-max-messages", &batch.to_string(), "--batch-max-wait", "100ms"])
            .args(["--metrics-addr", "127.0.0.1:0", "--kafka", "session.timeout.ms=6000"])
            .args(extra)
            .env("RUST_LOG", "info,rdkafka=warn")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn dualwrite-consumer");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        let reader = tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("log lock").push(line);
            }
        });
        Self { child, log, reader }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running child has a pid")
    }

    pub fn lines_containing(&self, needle: &str) -> usize {
        self.log.lock().expect("log lock").iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits for the `n`th partition assignment logged by the process.
    pub async fn wait_assigned(&self, n: usize, timeout: Duration) {
        self.wait_log("partitions assigned", n, timeout).await;
    }

    /// Waits until the process has logged `needle` at least `n` times.
    pub async fn wait_log(&self, needle: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.lines_containing(needle) < n {
            assert!(Instant::now() < deadline, "no {n}x '{needle}' within {timeout:?}; log:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// SIGKILL: no drain, no commit, no goodbye to the group.
    pub async fn kill9(mut self) {
        self.child.kill().await.expect("kill -9");
        let _ = self.reader.await;
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let status =
            std::process::Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill -TERM");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("exit after SIGTERM")
            .expect("wait");
        let _ = self.reader.await;
        exit
    }
}

/// Produces in the background (the loadtest producer, rate-limited).
pub fn produce_in_background(broker: &Broker, messages: u64, seed: u64, rate: u64) -> tokio::task::JoinHandle<Truth> {
    let config = ProduceConfig {
        brokers: broker.bootstrap.clone(),
        topic_prefix: broker.prefix.clone(),
        messages,
        rate: Some(rate),
        workload: WorkloadConfig::new(seed, chrono::Utc::now().timestamp_millis() - 3_600_000),
    };
    tokio::spawn(async move { produce(&config, &CancellationToken::new()).await.expect("produce") })
}

/// What [`apply_batch`] did.
pub struct Applied {
    pub applied: u64,
    pub skipped: u64,
    pub ranges: Vec<consumer::plan::PartitionRange>,
}

/// Plans and applies one batch on every shard, as the batcher does (coverage
/// from 0 where a partition starts at offset 0). `end_beyond_batch` tells the
/// shards the broker holds one more message per partition (not caught up).
pub async fn apply_batch(
    pools: &ShardPools,
    cluster: &TestCluster,
    batch: Vec<consumer::message::Fetched>,
    rules: consumer::plan::TimeRules,
    end_beyond_batch: bool,
) -> Applied {
    let shape = consumer::shape::Shape::for_cluster(&cluster.config, "");
    let codec = topics::Codec::embedded().expect("codec").with_pipeline(&cluster.config.pipeline);
    let plan = consumer::plan::plan(batch, &codec, &cluster.config, &shape, rules);
    assert!(plan.dead_letters.is_empty(), "unexpected dead letters: {:?}", plan.dead_letters);
    let ends: Vec<Option<i64>> = plan.ranges.iter().map(|r| end_beyond_batch.then_some(r.next_offset + 1)).collect();
    let coverage: HashMap<(String, i32), i64> =
        plan.ranges.iter().filter(|r| r.first_offset == 0).map(|r| ((r.topic.to_string(), r.partition), 0)).collect();
    let fence = consumer::apply::FenceInfo {
        ranges: &plan.ranges,
        high_watermarks: &ends,
        group: "test",
        coverage_starts: &coverage,
    };
    let outcomes = futures::future::join_all(
        plan.shards
            .iter()
            .enumerate()
            .map(|(i, items)| consumer::apply::apply_shard(pools.shard(i), &shape, items, &fence)),
    )
    .await;
    let (mut applied, mut skipped) = (0, 0);
    for outcome in outcomes {
        let o = outcome.expect("apply");
        applied += o.counts.applied.iter().sum::<u64>();
        skipped += o.counts.skipped.iter().sum::<u64>();
    }
    Applied { applied, skipped, ranges: plan.ranges }
}

/// A consumer group running in this process until stopped.
pub struct Group {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), consumer::ConsumerError>>,
}

impl Group {
    pub fn start(cluster: &TestCluster, broker: &Broker, group: &str) -> Self {
        Self::start_with(consumer_config(cluster, broker, group))
    }

    pub fn start_with(config: ConsumerConfig) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(consumer::run(config, shutdown.clone()));
        Self { shutdown, task }
    }

    /// Still running: no fatal error stopped it.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
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

/// Drops every database of a test cluster (shards and control); best effort.
pub async fn drop_databases(cluster: &ClusterConfig) {
    if let Err(error) = cluster::schema::drop(cluster, true).await {
        eprintln!("cleanup of {}: {error}", cluster.name);
    }
}

/// Messages as a consumer would fetch them: keyed events spread over 4
/// partitions with per-partition offsets, and the truth in that order.
pub fn fetched_workload(n: usize) -> (Vec<consumer::message::Fetched>, Truth) {
    let codec = topics::Codec::embedded().expect("codec");
    let stats: std::sync::Arc<str> = std::sync::Arc::from("query-stats");
    let slow: std::sync::Arc<str> = std::sync::Arc::from("slow-queries");
    let mut next_offset: HashMap<(bool, i32), i64> = HashMap::new();
    let mut truth = loadtest::truth::TruthBuilder::default();
    let mut out = Vec::new();
    let workload = loadtest::workload::Workload::new(loadtest::workload::WorkloadConfig::new(
        5,
        chrono::Utc::now().timestamp_millis() - 7_200_000,
    ))
    .expect("workload");
    for event in workload.take(n) {
        let (is_slow, key, payload) = match &event {
            loadtest::workload::Generated::Stats(q) => {
                (false, topics::message_key(q.database_id, &q.fingerprint), codec.encode_query_stats(q))
            }
            loadtest::workload::Generated::Slow(s) => {
                (true, topics::message_key(s.database_id, &s.fingerprint), codec.encode_slow_query(s))
            }
        };
        let partition = i32::from(key[7] % 4);
        let offset = next_offset.entry((is_slow, partition)).or_insert(0);
        match &event {
            loadtest::workload::Generated::Stats(q) => truth.add_stats(q),
            loadtest::workload::Generated::Slow(s) => truth.add_slow(s, partition, *offset),
        }
        out.push(consumer::message::Fetched {
            topic: if is_slow { slow.clone() } else { stats.clone() },
            partition,
            offset: *offset,
            timestamp_ms: Some(event.timestamp_ms()),
            key: Some(key.to_vec()),
            payload: Some(payload.expect("encode")),
        });
        *offset += 1;
    }
    (out, truth.build())
}
