//! `dualwrite-consumer`: one consumer group into one cluster, exactly once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use consumer::config::{ConsumerConfig, StartPosition};

#[derive(Parser)]
#[command(
    name = "dualwrite-consumer",
    version,
    about = "Feed one cluster from the telemetry topics, exactly once per shard"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume until SIGINT/SIGTERM (a second signal exits without draining).
    Run(Box<RunArgs>),
    /// Per partition: applied offset, lag (with --brokers), coverage start, settled-through time.
    Status {
        #[arg(long, env = "DUALWRITE_CLUSTER")]
        cluster: PathBuf,
        /// Adds end offsets and lag.
        #[arg(long, env = "DUALWRITE_BROKERS")]
        brokers: Option<String>,
        #[arg(long, env = "DUALWRITE_TOPIC_PREFIX", default_value = "")]
        topic_prefix: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kafka consumer group; one group per cluster.
    #[arg(long, env = "DUALWRITE_GROUP")]
    group: String,
    /// Cluster file (TOML) of the cluster this group writes.
    #[arg(long, env = "DUALWRITE_CLUSTER")]
    cluster: PathBuf,
    /// Use this database on every shard instead of the cluster file's (rehearsals, benchmarks).
    #[arg(long)]
    database: Option<String>,
    /// Use this control database instead of the cluster file's.
    #[arg(long)]
    control_database: Option<String>,
    /// Kafka bootstrap servers.
    #[arg(long, env = "DUALWRITE_BROKERS")]
    brokers: String,
    #[arg(long, env = "DUALWRITE_TOPIC_PREFIX", default_value = "")]
    topic_prefix: String,
    /// Where a partition starts when this cluster never applied it and the
    /// group never committed it: earliest, latest, at=<RFC 3339 time>, or
    /// window-boundary (first message of the first whole --window the topic holds).
    #[arg(long, env = "DUALWRITE_START", default_value = "earliest", value_parser = parse_start)]
    start: StartArg,
    /// Window size for --start window-boundary (default: the cluster file's
    /// `time.hour_window`). Lateness, retention and window sizes come from
    /// the cluster file's `[time]`, which both groups must share.
    #[arg(long, value_parser = humantime::parse_duration)]
    window: Option<Duration>,
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

#[derive(Clone, Copy)]
enum StartArg {
    Earliest,
    Latest,
    At(i64),
    WindowBoundary,
}

fn parse_start(s: &str) -> Result<StartArg, String> {
    match s {
        "earliest" => Ok(StartArg::Earliest),
        "latest" => Ok(StartArg::Latest),
        "window-boundary" => Ok(StartArg::WindowBoundary),
        _ => {
            let time = s.strip_prefix("at=").or_else(|| s.strip_prefix("at:")).ok_or_else(|| {
                format!("expected earliest, latest, window-boundary or at=<RFC 3339 time>, got {s:?}")
            })?;
            chrono::DateTime::parse_from_rfc3339(time)
                .map(|t| StartArg::At(t.timestamp_millis()))
                .map_err(|e| format!("{time:?} is not an RFC 3339 time: {e}"))
        }
    }
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

fn main() -> anyhow::Result<()> {
    service::init_tracing();
    let args = match Cli::parse().command {
        Command::Run(args) => *args,
        Command::Status { cluster, brokers, topic_prefix, json } => {
            return status(cluster, brokers, topic_prefix, json);
        }
    };
    let cluster = cluster::config::ClusterConfig::load_redirected(
        &args.cluster,
        args.database.as_deref(),
        args.control_database.as_deref(),
    )
    .with_context(|| format!("loading cluster file {}", args.cluster.display()))?;
    let codec = match &args.schema_dir {
        Some(dir) => topics::Codec::from_dir(dir),
        None => topics::Codec::embedded(),
    }
    .context("loading schemas")?;
    let default_window = cluster.time.hour_window;
    let config = ConsumerConfig {
        group: args.group,
        brokers: args.brokers,
        cluster,
        topic_prefix: args.topic_prefix,
        batch_max_messages: args.batch_max_messages,
        batch_max_wait: args.batch_max_wait,
        start: match args.start {
            StartArg::Earliest => StartPosition::Earliest,
            StartArg::Latest => StartPosition::Latest,
            StartArg::At(ms) => StartPosition::At(ms),
            StartArg::WindowBoundary => {
                let window = args.window.unwrap_or(default_window);
                StartPosition::WindowBoundary(i64::try_from(window.as_secs()).unwrap_or(3600))
            }
        },
        codec,
        kafka_overrides: args.kafka_overrides,
    };
    config.validate().context("invalid configuration")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        service::install_metrics(args.metrics_addr).context("metrics endpoint")?;
        let shutdown = service::shutdown_on_signals();
        consumer::run(config, shutdown).await.context("consumer")
    })
}

fn status(cluster: PathBuf, brokers: Option<String>, prefix: String, json: bool) -> anyhow::Result<()> {
    let config = cluster::config::ClusterConfig::load(&cluster)
        .with_context(|| format!("loading cluster file {}", cluster.display()))?;
    let topics: Vec<String> =
        [topics::TopicKind::QueryStats, topics::TopicKind::SlowQueries].iter().map(|k| k.topic_name(&prefix)).collect();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let lateness_ms = config.time.allowed_lateness_ms();
    let report = runtime
        .block_on(consumer::status::status(&config, brokers.as_deref(), &topics, lateness_ms))
        .context("reading status")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).context("encoding json")?);
    } else {
        print!("{}", consumer::status::render(&report));
    }
    Ok(())
}
