//! `dualwrite-loadtest bench`: the consumer's throughput next to the ceilings
//! it works under, all measured in the same run on the same broker and shards:
//! (a) a plain librdkafka consumer (and kcat, when installed) reading the same
//! topics, (b) multi-row INSERTs into the new cluster's shards with no
//! consumer in the way, (c) the consumer's CPU cost per event with no sink
//! (`dualwrite-consumer dry-run`), (d) one group into those same shards and
//! two groups at once (old and new), with peak RSS and the rows written per
//! message, per table, before and after coalescing. Tables, topics and the
//! ceilings' table come from the new cluster's pipeline description; a
//! second pipeline's line ([`pipeline_line`]) measures its blind rollup
//! against the INSERT ceiling of the same shards.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use rdkafka::consumer::Consumer;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::Offset;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::produce::{produce_with, ProduceConfig};
use crate::workload::WorkloadConfig;

mod ceiling;
mod line;

pub use ceiling::{ceiling_table, Ceiling};
pub use line::{pipeline_line, PipelineLine};

#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The broker and its client settings (`[kafka]`, or plaintext bootstrap servers).
    pub kafka: topics::kafka::KafkaConfig,
    /// The file those settings came from, handed to the consumer processes
    /// (`--kafka-config`); `None`: plaintext `--brokers`.
    pub kafka_config: Option<PathBuf>,
    pub topic_prefix: String,
    pub messages: u64,
    pub old: PathBuf,
    pub new: PathBuf,
    /// Where `dualwrite-consumer` is.
    pub consumer_bin: PathBuf,
    pub insert_rows: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConsumerRun {
    pub group_count: u32,
    pub messages: u64,
    pub seconds: f64,
    /// From starting the processes to the first applied batch.
    pub startup_seconds: f64,
    /// Messages applied per second, all groups together.
    pub events_per_s: f64,
    /// Rows upserted or inserted per second, all groups together.
    pub rows_per_s: f64,
    /// The same two rates from the first applied batch on.
    pub steady_events_per_s: f64,
    pub steady_rows_per_s: f64,
    pub peak_rss_mib: f64,
    /// Messages per written row.
    pub coalescing_ratio: f64,
    /// Rows written per message, per table (summed over the groups).
    pub tables: Vec<TableRows>,
}

/// One table's writes per message of the topic that feeds it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableRows {
    pub table: String,
    /// Messages of the topic feeding the table.
    pub messages: f64,
    pub rows: f64,
    /// Without coalescing every message writes one row of this table.
    pub rows_per_message_before: f64,
    pub rows_per_message_after: f64,
}

/// What `dualwrite-consumer dry-run` prints (the fields the bench reports).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NoSink {
    pub messages: u64,
    pub cpu_seconds: f64,
    /// Decode, validate, coalesce, plan and render the writes, per core.
    pub events_per_core_s: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchReport {
    pub messages: u64,
    pub produce_msgs_per_s: f64,
    /// A plain librdkafka consumer, no decoding: the read ceiling.
    pub raw_consume_msgs_per_s: f64,
    /// Debian's kcat reading the same topics, if installed.
    pub kcat_msgs_per_s: Option<f64>,
    /// Multi-row INSERTs (500 rows) into the new cluster's shards, one writer per shard.
    pub insert_ceiling_rows_per_s: f64,
    /// The shards' work per consumer row without the consumer: locked read,
    /// then upsert, half inserts and half updates (see `Ceiling`).
    pub read_modify_write_ceiling_rows_per_s: f64,
    /// The consumer with no sink, CPU time only.
    pub no_sink: NoSink,
    /// One group into the new cluster: the shards of the INSERT ceiling.
    pub one_group: ConsumerRun,
    /// `one_group.rows_per_s / insert_ceiling_rows_per_s`.
    pub one_group_ratio: f64,
    /// The same from the first applied batch on (start-up excluded).
    pub one_group_steady_ratio: f64,
    /// `one_group.steady_rows_per_s / read_modify_write_ceiling_rows_per_s`.
    pub one_group_read_modify_write_ratio: f64,
    /// Group A into the old cluster and group B into the new one, at once.
    pub two_groups: ConsumerRun,
    /// Load average (1 minute) at the start and the end: the machine is shared.
    pub load_average: [f64; 2],
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("database: {0}")]
    Db(#[from] mysql_async::Error),
}

pub async fn run(config: &BenchConfig) -> Result<BenchReport, BenchError> {
    let setup = |e: &dyn std::fmt::Display| BenchError::Setup(e.to_string());
    let old = ClusterConfig::load(&config.old).map_err(|e| setup(&e))?;
    let new = ClusterConfig::load(&config.new).map_err(|e| setup(&e))?;
    let mut report = BenchReport { messages: config.messages, ..Default::default() };
    report.load_average[0] = load_average();

    let started = Instant::now();
    let produce_config = ProduceConfig {
        brokers: config.kafka.bootstrap.clone(),
        topic_prefix: config.topic_prefix.clone(),
        messages: config.messages,
        rate: None,
        workload: WorkloadConfig::new(1, chrono::Utc::now().timestamp_millis() - 3_600_000),
    };
    produce_with(&produce_config, &config.kafka, &CancellationToken::new()).await.map_err(|e| setup(&e))?;
    report.produce_msgs_per_s = rate(config.messages, started.elapsed());

    let topics = topic_names(&new.pipeline, &config.topic_prefix);
    report.raw_consume_msgs_per_s = raw_consume(&config.kafka, &topics, config.messages).await?;
    report.kcat_msgs_per_s = kcat(&config.kafka, &topics).await;
    let table = ceiling_table(&new.pipeline)
        .ok_or_else(|| BenchError::Setup(format!("pipeline {} has no table", new.pipeline.name)))?;
    report.insert_ceiling_rows_per_s = ceiling::write_ceiling(&new, table, config.insert_rows, Ceiling::Insert).await?;
    report.read_modify_write_ceiling_rows_per_s =
        ceiling::write_ceiling(&new, table, config.insert_rows, Ceiling::ReadModifyWrite).await?;
    report.no_sink = no_sink(config).await?;

    let tag = chrono::Utc::now().format("%H%M%S").to_string();
    let spawn = Spawn::of(config);
    report.one_group = consume(&spawn, &[(&config.new, &new, format!("bench_{tag}_b1"))]).await?;
    report.one_group_ratio = report.one_group.rows_per_s / report.insert_ceiling_rows_per_s.max(1e-9);
    report.one_group_steady_ratio = report.one_group.steady_rows_per_s / report.insert_ceiling_rows_per_s.max(1e-9);
    report.one_group_read_modify_write_ratio =
        report.one_group.steady_rows_per_s / report.read_modify_write_ceiling_rows_per_s.max(1e-9);
    report.two_groups = consume(
        &spawn,
        &[(&config.old, &old, format!("bench_{tag}_a2")), (&config.new, &new, format!("bench_{tag}_b2"))],
    )
    .await?;
    report.load_average[1] = load_average();
    Ok(report)
}

/// The topics of `pipeline` under `prefix`.
fn topic_names(pipeline: &pipeline::Pipeline, prefix: &str) -> Vec<String> {
    pipeline.topics.iter().map(|t| format!("{prefix}{}", t.name)).collect()
}

/// How a consumer process is told about Kafka: the settings file, never
/// its secrets on argv.
fn kafka_args(config: &BenchConfig) -> Vec<std::ffi::OsString> {
    match &config.kafka_config {
        // --brokers next to the file replaces only its bootstrap list
        Some(file) => {
            vec!["--kafka-config".into(), file.into(), "--brokers".into(), config.kafka.bootstrap.clone().into()]
        }
        None => vec!["--brokers".into(), config.kafka.bootstrap.clone().into()],
    }
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap_or(0.0)
}

/// `dualwrite-consumer dry-run` over the produced messages, routed by the new cluster's shard map.
async fn no_sink(config: &BenchConfig) -> Result<NoSink, BenchError> {
    let out = tokio::process::Command::new(&config.consumer_bin)
        .args(["dry-run", "--cluster"])
        .arg(&config.new)
        .args(kafka_args(config))
        .args(["--topic-prefix", &config.topic_prefix])
        .args(["--messages", &config.messages.to_string()])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .map_err(|e| BenchError::Setup(format!("starting {} dry-run: {e}", config.consumer_bin.display())))?;
    if !out.status.success() {
        return Err(BenchError::Setup(format!("dry-run failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| BenchError::Setup(format!("dry-run output: {e}")))
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Reads every message of `topics` from the start with a bare consumer.
async fn raw_consume(kafka: &topics::kafka::KafkaConfig, topics: &[String], expected: u64) -> Result<f64, BenchError> {
    let (client, topics) = (kafka.client(), topics.to_vec());
    tokio::task::spawn_blocking(move || -> Result<f64, BenchError> {
        let consumer = topics::admin::standalone_consumer(&client, "bench-raw")?;
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, _, _) in topics::admin::watermarks(&consumer, &topics, Duration::from_secs(10))? {
            tpl.add_partition_offset(&topic, partition, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let started = Instant::now();
        let mut seen = 0u64;
        while seen < expected && started.elapsed() < Duration::from_secs(300) {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                seen += 1;
            }
        }
        Ok(rate(seen, started.elapsed()))
    })
    .await
    .map_err(|e| BenchError::Setup(e.to_string()))?
}

/// `kcat -C ... -e` over the same topics, when kcat is installed and the
/// broker is plaintext (kcat takes SASL and TLS settings only on its argv,
/// where a password would show in `ps`).
async fn kcat(kafka: &topics::kafka::KafkaConfig, topics: &[String]) -> Option<f64> {
    if kafka.security_protocol != "plaintext" || !kafka.properties.is_empty() {
        return None;
    }
    let brokers = kafka.bootstrap.as_str();
    let started = Instant::now();
    let mut total = 0u64;
    for topic in topics {
        let out = tokio::process::Command::new("kcat")
            .args(["-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%o\\n"])
            .output()
            .await
            .ok()?;
        if !out.status.success() {
            return None;
        }
        total += out.stdout.iter().filter(|b| **b == b'\n').count() as u64;
    }
    Some(rate(total, started.elapsed()))
}

/// How the consumer processes of a run are started.
struct Spawn {
    consumer_bin: PathBuf,
    /// Brokers (or the settings file): [`kafka_args`].
    kafka_args: Vec<std::ffi::OsString>,
    topic_prefix: String,
    /// Messages on the topics: a group is done when it applied them all.
    messages: u64,
}

impl Spawn {
    fn of(config: &BenchConfig) -> Self {
        Self {
            consumer_bin: config.consumer_bin.clone(),
            kafka_args: kafka_args(config),
            topic_prefix: config.topic_prefix.clone(),
            messages: config.messages,
        }
    }
}

/// Runs one consumer process per (cluster, database) until every group has
/// applied every message; fresh databases, dropped afterwards. The tables
/// and topics reported are those of the first cluster's pipeline.
async fn consume(config: &Spawn, runs: &[(&PathBuf, &ClusterConfig, String)]) -> Result<ConsumerRun, BenchError> {
    if runs.is_empty() {
        return Err(BenchError::Setup("no consumer to run".into()));
    }
    let mut children = Vec::new();
    for (file, cluster, db) in runs {
        let scratch = cluster
            .with_database(db)
            .and_then(|c| c.with_control_database(&format!("{db}_ctl")))
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        cluster::schema::apply(&scratch, chrono::Utc::now().timestamp())
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let port = crate::ports::free_port().map_err(|e| BenchError::Setup(e.to_string()))?;
        let child = tokio::process::Command::new(&config.consumer_bin)
            .args(["run", "--group", db, "--cluster"])
            .arg(file)
            .args(["--database", db, "--control-database", &format!("{db}_ctl")])
            .args(&config.kafka_args)
            .args(["--topic-prefix", &config.topic_prefix])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Setup(format!("starting {}: {e}", config.consumer_bin.display())))?;
        children.push((child, port, scratch));
    }
    let started = Instant::now();
    let mut peak_rss = 0f64;
    // When each consumer applied its first batch, and how much it held then.
    let mut firsts: Vec<Option<(Instant, f64)>> = vec![None; children.len()];
    loop {
        let mut done = true;
        for (i, (child, port, _)) in children.iter().enumerate() {
            let applied = metric(*port, "dualwrite_consumer_messages_total", &["outcome=\"applied\""]).await;
            if firsts[i].is_none() && applied > 0.0 {
                firsts[i] = Some((Instant::now(), applied));
            }
            done &= applied >= config.messages as f64;
            if let Some(pid) = child.id() {
                peak_rss = peak_rss.max(peak_rss_mib(pid));
            }
        }
        if done {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(BenchError::Setup("consumers did not finish within 10 minutes".into()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let finished = Instant::now();
    let seconds = finished.duration_since(started).as_secs_f64();
    // From the first applied batch on: start-up (connecting, joining the
    // group, the first fetch) is reported apart, as `startup_seconds`.
    let first = firsts.iter().flatten().map(|(at, _)| *at).max().unwrap_or(started);
    let held: f64 = firsts.iter().flatten().map(|(_, n)| n).sum();
    let startup_seconds = first.duration_since(started).as_secs_f64();
    let steady_seconds = finished.duration_since(first).as_secs_f64().max(1e-9);
    let mut rows = 0f64;
    let pipeline = &runs[0].1.pipeline.pipeline;
    // Grouped by the topic feeding them, in the description's order.
    let mut fed: Vec<&pipeline::Table> = pipeline.tables.iter().collect();
    fed.sort_by_key(|t| t.topic);
    let mut tables: Vec<TableRows> =
        fed.iter().map(|t| TableRows { table: t.name.clone(), ..Default::default() }).collect();
    let applied = "outcome=\"applied\"";
    for (_, port, _) in &children {
        rows += metric(*port, "dualwrite_consumer_rows_written_total", &[]).await;
        for (t, table) in tables.iter_mut().zip(&fed) {
            let topic = format!("topic=\"{}{}\"", config.topic_prefix, pipeline.topic_of(table).name);
            t.messages += metric(*port, "dualwrite_consumer_messages_total", &[&topic, applied]).await;
            let label = format!("table=\"{}\"", t.table);
            t.rows += metric(*port, "dualwrite_consumer_rows_written_total", &[&label]).await;
        }
    }
    for t in &mut tables {
        t.rows_per_message_before = 1.0;
        t.rows_per_message_after = t.rows / t.messages.max(1.0);
    }
    for (mut child, _, scratch) in children {
        if let Some(pid) = child.id() {
            let _ = tokio::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        }
        let _ = child.wait().await;
        drop_databases(&scratch).await?;
    }
    let messages = config.messages * runs.len() as u64;
    let steady_share = ((messages as f64 - held) / messages as f64).max(0.0);
    Ok(ConsumerRun {
        group_count: runs.len() as u32,
        messages,
        seconds,
        startup_seconds,
        events_per_s: messages as f64 / seconds,
        rows_per_s: rows / seconds,
        steady_events_per_s: (messages as f64 - held) / steady_seconds,
        steady_rows_per_s: rows * steady_share / steady_seconds,
        peak_rss_mib: peak_rss,
        coalescing_ratio: messages as f64 / rows.max(1.0),
        tables,
    })
}

async fn drop_databases(cluster: &ClusterConfig) -> Result<(), BenchError> {
    cluster::schema::drop(cluster, true).await.map_err(|e| BenchError::Setup(e.to_string()))
}

/// Sum of a Prometheus counter's series (whose labels contain every `filters`) from a `/metrics` page.
async fn metric(port: u16, name: &str, filters: &[&str]) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return 0.0 };
    let request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return 0.0;
    }
    let mut body = String::new();
    if stream.read_to_string(&mut body).await.is_err() {
        return 0.0;
    }
    body.lines()
        .filter(|l| l.starts_with(name) && filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

pub fn render(r: &BenchReport) -> String {
    let mut out = String::new();
    out.push_str(&format!("{:<52} {:>14}\n", "measure", "value"));
    let mut line = |name: &str, v: String| out.push_str(&format!("{name:<52} {v:>14}\n"));
    line("messages", r.messages.to_string());
    line("load average (1 min) at start / end", format!("{:.1} / {:.1}", r.load_average[0], r.load_average[1]));
    line("produce (msg/s)", format!("{:.0}", r.produce_msgs_per_s));
    line("raw librdkafka consume (msg/s)", format!("{:.0}", r.raw_consume_msgs_per_s));
    line("kcat consume (msg/s)", r.kcat_msgs_per_s.map_or("-".into(), |v| format!("{v:.0}")));
    line("no sink: decode+coalesce+plan (events/s per core)", format!("{:.0}", r.no_sink.events_per_core_s));
    line("multi-row INSERT ceiling, new cluster (rows/s)", format!("{:.0}", r.insert_ceiling_rows_per_s));
    line("read-modify-write ceiling, new cluster (rows/s)", format!("{:.0}", r.read_modify_write_ceiling_rows_per_s));
    for (name, run) in [("one group (new)", &r.one_group), ("two groups", &r.two_groups)] {
        line(&format!("consumer, {name} (events/s)"), format!("{:.0}", run.events_per_s));
        line(&format!("consumer, {name} (rows/s)"), format!("{:.0}", run.rows_per_s));
        line(&format!("consumer, {name} start-up to first batch (s)"), format!("{:.1}", run.startup_seconds));
        line(&format!("consumer, {name} after start-up (rows/s)"), format!("{:.0}", run.steady_rows_per_s));
        line(&format!("consumer, {name} peak RSS (MiB)"), format!("{:.1}", run.peak_rss_mib));
        line(&format!("consumer, {name} messages per row"), format!("{:.2}", run.coalescing_ratio));
    }
    line("one group rows/s / INSERT ceiling", format!("{:.2}", r.one_group_ratio));
    line("the same after start-up", format!("{:.2}", r.one_group_steady_ratio));
    line("after start-up / read-modify-write ceiling", format!("{:.2}", r.one_group_read_modify_write_ratio));
    out.push_str("\nrows written per message, one group (before coalescing = 1 per table):\n");
    out.push_str(&format!(
        "{:<22} {:>11} {:>10} {:>8} {:>10}\n",
        "table", "rows before", "rows after", "per msg", "fewer"
    ));
    let (mut before, mut after) = (0.0, 0.0);
    for t in &r.one_group.tables {
        before += t.messages;
        after += t.rows;
        out.push_str(&format!(
            "{:<22} {:>11.0} {:>10.0} {:>8.2} {:>9.0}%\n",
            t.table,
            t.messages,
            t.rows,
            t.rows_per_message_after,
            100.0 * (1.0 - t.rows_per_message_after)
        ));
    }
    out.push_str(&format!(
        "{:<22} {:>11.0} {:>10.0} {:>8.2} {:>9.0}%   (PlanetScale reports 30-40% fewer writes for Insights)\n",
        "all tables",
        before,
        after,
        after / before.max(1.0),
        100.0 * (1.0 - after / before.max(1.0))
    ));
    out
}

/// Where the other binaries are: next to this one.
pub fn sibling_binary(name: &str) -> PathBuf {
    std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default().join(name)
}
