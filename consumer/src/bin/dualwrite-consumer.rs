//! `dualwrite-consumer`: one consumer group into one cluster, exactly once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use consumer::config::{ConsumerConfig, StartPosition};

#[derive(Parser)]
#[command(name = "dualwrite-consumer", version, about = "Feed one cluster from the telemetry topics, exactly once per shard")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume until SIGINT/SIGTERM (a second signal exits without draining).
    Run(RunArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Start {
    Earliest,
    Latest,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kafka consumer group; one group per cluster.
    #[arg(long, env = "DUALWRITE_GROUP")]
    group: String,
    /// Cluster file (TOML) of the cluster this group writes.
    #[arg(long, env = "DUALWRITE_CLUSTER")]
    cluster: PathBuf,
    /// Kafka bootstrap servers.
    #[arg(long, env = "DUALWRITE_BROKERS")]
    brokers: String,
    #[arg(long, env = "DUALWRITE_TOPIC_PREFIX", default_value = "")]
    topic_prefix: String,
    /// Where a group without committed offsets starts.
    #[arg(long, value_enum, default_value = "earliest")]
    start: Start,
    /// Cut a batch at this many messages.
    #[arg(long, env = "DUALWRITE_BATCH_MAX_MESSAGES", default_value_t = 5000)]
    batch_max_messages: usize,
    /// ...or this long after its first message.
    #[arg(long, env = "DUALWRITE_BATCH_MAX_WAIT", default_value = "250ms", value_parser = humantime::parse_duration)]
    batch_max_wait: Duration,
    /// Writer schemas (`<id>-<name>.avsc`); defaults to the ones built in.
    #[arg(long, env = "DUALWRITE_SCHEMA_DIR")]
    schema_dir: Option<PathBuf>,
    /// Prometheus endpoint.
    #[arg(long, env = "DUALWRITE_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    metrics_addr: SocketAddr,
    /// Extra librdkafka property, `key=value` (repeatable), e.g. security.protocol=ssl.
    #[arg(long = "kafka", value_parser = parse_kv)]
    kafka_overrides: Vec<(String, String)>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("expected key=value, got {s:?}"))
}

fn main() -> anyhow::Result<()> {
    cluster::process::init_tracing();
    let Command::Run(args) = Cli::parse().command;
    let cluster = cluster::config::ClusterConfig::load(&args.cluster)
        .with_context(|| format!("loading cluster file {}", args.cluster.display()))?;
    let codec = match &args.schema_dir {
        Some(dir) => topics::Codec::from_dir(dir),
        None => topics::Codec::embedded(),
    }
    .context("loading schemas")?;
    let config = ConsumerConfig {
        group: args.group,
        brokers: args.brokers,
        cluster,
        topic_prefix: args.topic_prefix,
        batch_max_messages: args.batch_max_messages,
        batch_max_wait: args.batch_max_wait,
        start: match args.start {
            Start::Earliest => StartPosition::Earliest,
            Start::Latest => StartPosition::Latest,
        },
        codec,
        kafka_overrides: args.kafka_overrides,
    };
    config.validate().context("invalid configuration")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        cluster::process::install_metrics(args.metrics_addr).context("metrics endpoint")?;
        let shutdown = cluster::process::shutdown_on_signals();
        consumer::run(config, shutdown).await.context("consumer")
    })
}
