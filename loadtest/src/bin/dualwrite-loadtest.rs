//! `dualwrite-loadtest`: produce realistic telemetry with a ground truth, and check a cluster against it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use loadtest::produce::{produce_with_codec, ProduceConfig};
use loadtest::truth::Truth;
use loadtest::workload::WorkloadConfig;

#[derive(Parser)]
#[command(name = "dualwrite-loadtest", version, about = "Realistic Insights load with a ground truth")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce N messages and write the ground truth they imply.
    Produce {
        #[command(flatten)]
        kafka: topics::kafka::KafkaArgs,
        /// Messages to produce (both topics together).
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        /// Messages per second (0 = as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// First interval (RFC 3339); default: one hour ago.
        #[arg(long)]
        start: Option<String>,
        /// Where to write the ground truth (JSON).
        #[arg(long)]
        truth: PathBuf,
        /// Fold the ground truth into this cluster file's `[time]` windows
        /// (default: one minute, one hour).
        #[arg(long)]
        windows_from: Option<PathBuf>,
        /// The proxies' reporting interval (compressed-time rehearsals: 1s).
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
        /// Send each event when its interval ends (wall clock), like live proxies.
        #[arg(long)]
        realtime: bool,
        /// Prometheus endpoint for the producer's delivery rate and errors (off by default).
        #[arg(long, env = "DUALWRITE_METRICS_ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
        /// First send this many malformed messages to the query-stats topic
        /// (rehearsals: both groups dead-letter them; not in the ground truth).
        #[arg(long, default_value_t = 0)]
        malformed: u64,
    },
    /// Measure the consumer against the read and write ceilings of the same broker and shards.
    Bench {
        /// Kafka to use (plaintext bootstrap servers, or the bootstrap of
        /// --kafka-config); default: a private librdkafka mock cluster in this process.
        #[arg(long)]
        brokers: Option<String>,
        /// Kafka settings file with a [kafka] table (SASL, TLS; a cluster file works too).
        #[arg(long, env = "DUALWRITE_KAFKA_CONFIG")]
        kafka_config: Option<PathBuf>,
        #[arg(long, env = "DUALWRITE_OLD_CLUSTER")]
        old: PathBuf,
        #[arg(long, env = "DUALWRITE_NEW_CLUSTER")]
        new: PathBuf,
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
        /// Rows for the INSERT ceiling.
        #[arg(long, default_value_t = 200_000)]
        insert_rows: u64,
        /// Where to write the JSON result.
        #[arg(long, default_value = "bench.json")]
        json: PathBuf,
        /// A second pipeline's description (pipelines/api.toml): after the
        /// main figures, one group writes its blind rollup into the new
        /// cluster's shards (on a broker of its own) against the INSERT
        /// ceiling of that table on the same shards; printed as one JSON line.
        #[arg(long)]
        second_pipeline: Option<PathBuf>,
    },
    /// Compare a cluster with a ground truth; prints every difference, exits 1 if any.
    Check {
        #[arg(long, env = "DUALWRITE_CLUSTER")]
        cluster: PathBuf,
        #[arg(long)]
        truth: PathBuf,
        /// Keep checking until the cluster matches or this much time passed
        /// (for a consumer that is still catching up).
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<std::time::Duration>,
    },
}

fn main() -> anyhow::Result<()> {
    service::init_tracing();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let equal = runtime.block_on(async move {
        match cli.command {
            Command::Produce {
                kafka: args,
                messages,
                rate,
                seed,
                start,
                truth,
                windows_from,
                interval,
                realtime,
                metrics_addr,
                malformed,
            } => {
                let kafka = args.resolve(None)?;
                let topic_prefix = args.topic_prefix;
                let names: Vec<String> = topics::TopicKind::ALL.into_iter().map(|k| k.topic_name(&topic_prefix)).collect();
                // Unwrapped on purpose: one line naming the broker, the cause and the setting.
                kafka.preflight(topics::preflight::Preflight::waiting(names)).await?;
                let registry = topics::registry::RegistryConfig::resolve(args.kafka_config.as_deref(), None)?
                    .map(topics::registry::Registry::new)
                    .transpose()?;
                let codec = match &registry {
                    // Unwrapped on purpose: one line naming the registry.
                    Some(registry) => topics::registry::producer_codec(registry, &topic_prefix).await?,
                    None => topics::Codec::embedded().context("loading schemas")?,
                };
                if let Some(addr) = metrics_addr {
                    service::install_metrics(addr).context("metrics endpoint")?;
                    loadtest::metrics::describe();
                }
                let start_ms = match start {
                    Some(s) => chrono::DateTime::parse_from_rfc3339(&s).context("--start")?.timestamp_millis(),
                    None => chrono::Utc::now().timestamp_millis() - 3_600_000,
                };
                let mut workload = WorkloadConfig::new(seed, start_ms);
                workload.interval_seconds = i64::try_from(interval.as_secs()).context("--interval")?;
                workload.realtime = realtime;
                if let Some(path) = windows_from {
                    let time = cluster::config::ClusterConfig::load(&path)
                        .with_context(|| format!("loading cluster file {}", path.display()))?
                        .time;
                    (workload.minute_secs, workload.hour_secs) = (time.minute_secs(), time.hour_secs());
                }
                let brokers = kafka.bootstrap.clone();
                let config =
                    ProduceConfig { brokers, topic_prefix, messages, rate: Some(rate).filter(|r| *r > 0), workload };
                if malformed > 0 {
                    let topic = topics::TopicKind::QueryStats.topic_name(&config.topic_prefix);
                    loadtest::produce::malformed(&kafka, &topic, malformed).await.context("sending malformed messages")?;
                    println!("sent {malformed} malformed messages to {topic}");
                }
                let shutdown = service::shutdown_on_signals();
                let result = produce_with_codec(&config, &kafka, &codec, &shutdown).await.context("producing")?;
                result.save(&truth).context("writing the ground truth")?;
                println!(
                    "produced {} messages; ground truth: {} minute rows, {} hour rows, {} patterns, {} slow queries -> {}",
                    result.messages,
                    result.minute.len(),
                    result.hour.len(),
                    result.patterns.len(),
                    result.slow.len(),
                    truth.display()
                );
                Ok::<bool, anyhow::Error>(true)
            }
            Command::Bench { brokers, kafka_config, old, new, messages, insert_rows, json, second_pipeline } => {
                let prefix = format!("bench{}.", chrono::Utc::now().format("%H%M%S"));
                // The mock lives as long as this scope; a real broker needs its topics created.
                let mock;
                let kafka = if brokers.is_some() || kafka_config.is_some() {
                    let kafka =
                        topics::kafka::KafkaConfig::resolve(kafka_config.as_deref(), None, brokers.as_deref())?;
                    let specs = topics::spec::default_topics(&prefix, 16, 1);
                    kafka.preflight(topics::preflight::Preflight::waiting(Vec::new())).await?;
                    topics::admin::create_topics(&kafka, &specs).await.context("creating bench topics")?;
                    kafka
                } else {
                    mock = rdkafka::mocking::MockCluster::new(3).context("starting a mock cluster")?;
                    for spec in topics::spec::default_topics(&prefix, 16, 1) {
                        mock.create_topic(&spec.name, spec.partitions, spec.replication).context("creating topics")?;
                    }
                    topics::kafka::KafkaConfig::plaintext(mock.bootstrap_servers())
                };
                let config = loadtest::bench::BenchConfig {
                    kafka,
                    kafka_config,
                    topic_prefix: prefix,
                    messages,
                    old,
                    new,
                    consumer_bin: loadtest::bench::sibling_binary("dualwrite-consumer"),
                    insert_rows,
                };
                let report = loadtest::bench::run(&config).await.context("benchmark")?;
                print!("{}", loadtest::bench::render(&report));
                std::fs::write(&json, serde_json::to_vec_pretty(&report).context("encoding json")?)
                    .with_context(|| format!("writing {}", json.display()))?;
                println!("json: {}", json.display());
                if let Some(description) = second_pipeline {
                    let line = loadtest::bench::pipeline_line(&config, &description).await.context("second pipeline")?;
                    println!("{}", serde_json::to_string(&line).context("encoding json")?);
                }
                Ok(true)
            }
            Command::Check { cluster, truth, wait } => {
                let config = cluster::config::ClusterConfig::load(&cluster)
                    .with_context(|| format!("loading cluster file {}", cluster.display()))?;
                let truth = Truth::load(&truth).context("loading the ground truth")?;
                cluster::pool::preflight(&config).await?;
                let deadline = std::time::Instant::now() + wait.unwrap_or_default();
                let report = loop {
                    let report = loadtest::check::check(&config, &truth).await.context("checking")?;
                    if report.is_equal() || std::time::Instant::now() >= deadline {
                        break report;
                    }
                    eprintln!(
                        "cluster {}: {} differences in {} rows compared, still waiting",
                        config.name,
                        report.differences.len(),
                        report.rows_compared
                    );
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                };
                for d in &report.differences {
                    println!("{d}");
                }
                if report.is_equal() {
                    println!("cluster {} matches the ground truth ({} rows compared)", config.name, report.rows_compared);
                } else {
                    println!(
                        "cluster {} DIFFERS from the ground truth: {} differences ({} rows compared)",
                        config.name,
                        report.differences.len(),
                        report.rows_compared
                    );
                }
                Ok(report.is_equal())
            }
        }
    })?;
    if !equal {
        std::process::exit(1);
    }
    Ok(())
}
