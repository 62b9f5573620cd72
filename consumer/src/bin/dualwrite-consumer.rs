//! `dualwrite-consumer`: one consumer group into one cluster, exactly once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use consumer::config::{ConsumerConfig, StartPosition};

// A batch allocates and frees many small rows and sketches at once; glibc's
// malloc spent a fifth of the consumer's CPU on them (profile in
// docs/notes-consumer-throughput.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Dead letters of a cluster: list them, or replay them once their cause is fixed.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// No sink: decode, validate, coalesce and render the writes of N messages
    /// (read from the start, no group) and print the CPU cost as JSON.
    DryRun {
        /// The cluster file gives the shard map and `[time]` messages are
        /// routed by (nothing is written).
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        messages: u64,
        #[arg(long, default_value_t = 5000)]
        batch_max_messages: usize,
    },
}

/// A cluster file and the Kafka its topics are on.
#[derive(clap::Args)]
struct Target {
    #[arg(long, env = "DUALWRITE_CLUSTER")]
    cluster: PathBuf,
    #[command(flatten)]
    kafka: topics::kafka::KafkaArgs,
}

#[derive(Subcommand)]
enum DeadLetterCommand {
    /// Every dead letter of the cluster (or of --reason, or one by position), with its replay state.
    List {
        #[command(flatten)]
        select: SelectArgs,
        #[arg(long)]
        json: bool,
    },
    /// Produce the selected letters' stored key and value again to their topic and
    /// partition (each at most once); both groups then apply the copy exactly once.
    Replay {
        #[command(flatten)]
        select: SelectArgs,
        /// The Kafka to replay to (default: the cluster file's [kafka]).
        #[command(flatten)]
        kafka: topics::kafka::KafkaArgs,
        /// Replay every selected letter (without it, a --reason or --offset is required).
        #[arg(long)]
        all: bool,
    },
}

#[derive(clap::Args)]
struct SelectArgs {
    #[arg(long, env = "DUALWRITE_CLUSTER")]
    cluster: PathBuf,
    #[arg(long)]
    reason: Option<String>,
    /// One letter: --topic T --partition P --offset O.
    #[arg(long, requires_all = ["partition", "offset"])]
    topic: Option<String>,
    #[arg(long, requires = "topic")]
    partition: Option<i32>,
    #[arg(long, requires = "topic")]
    offset: Option<i64>,
}

impl SelectArgs {
    fn selection(&self) -> consumer::replay::Selection {
        let position = match (&self.topic, self.partition, self.offset) {
            (Some(t), Some(p), Some(o)) => Some((t.clone(), p, o)),
            _ => None,
        };
        consumer::replay::Selection { reason: self.reason.clone(), position }
    }
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
    #[command(flatten)]
    kafka: topics::kafka::KafkaArgs,
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
    /// ...or at this many bytes of messages (humantime-free: a plain byte
    /// count); the poll channel holds at most twice this.
    #[arg(long, env = "DUALWRITE_BATCH_MAX_BYTES", default_value_t = 16 << 20)]
    batch_max_bytes: usize,
    /// ...or this long after its first message.
    #[arg(long, env = "DUALWRITE_BATCH_MAX_WAIT", default_value = "250ms", value_parser = humantime::parse_duration)]
    batch_max_wait: Duration,
    /// How long a member may hold no partition while its cluster lags, or a
    /// lagging partition's fences may stand still, before it is logged at
    /// error and counted (dualwrite_consumer_liveness_violations_total).
    #[arg(long, env = "DUALWRITE_LIVENESS_BOUND", default_value = "60s", value_parser = humantime::parse_duration)]
    liveness_bound: Duration,
    /// Writer schemas (`<id>-<name>.avsc`); defaults to the ones built in.
    /// Not with a `[registry]` table, where ids come from the registry.
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
        Command::Status { target, json } => {
            return status(target.cluster, &target.kafka, json);
        }
        Command::DeadLetters(command) => return dead_letters(command),
        Command::DryRun { target, messages, batch_max_messages } => {
            let Target { cluster, kafka: args } = target;
            let cluster_config = cluster::config::ClusterConfig::load(&cluster)
                .with_context(|| format!("loading cluster file {}", cluster.display()))?;
            let kafka = args.resolve(Some(cluster.as_path()))?;
            let names = cluster_config.pipeline.topic_names(&args.topic_prefix);
            let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            runtime.block_on(kafka.preflight(topics::preflight::Preflight::waiting(names)))?;
            let config = consumer::dry_run::DryRunConfig {
                kafka: kafka.client(),
                topic_prefix: args.topic_prefix.clone(),
                messages,
                batch_max_messages: batch_max_messages.max(1),
                cluster: cluster_config,
                codec: topics::Codec::embedded().context("loading schemas")?,
            };
            let report = consumer::dry_run::run(&config).context("dry run")?;
            println!("{}", serde_json::to_string(&report).context("encoding json")?);
            return Ok(());
        }
    };
    let cluster = cluster::config::ClusterConfig::load_redirected(
        &args.cluster,
        args.database.as_deref(),
        args.control_database.as_deref(),
    )
    .with_context(|| format!("loading cluster file {}", args.cluster.display()))?;
    let registry = topics::registry::RegistryConfig::resolve(args.kafka.kafka_config.as_deref(), Some(&args.cluster))?
        .map(topics::registry::Registry::new)
        .transpose()?;
    let codec = match (&args.schema_dir, &registry) {
        (Some(_), Some(_)) => anyhow::bail!(
            "--schema-dir and a [registry] table exclude each other: schema ids come from one or the other"
        ),
        (Some(dir), None) => topics::Codec::from_dir(dir),
        // Replaced by the registry's codec below, once the runtime runs.
        (None, _) => topics::Codec::embedded(),
    }
    .context("loading schemas")?;
    let default_window = cluster.time.hour_window;
    let mut config = ConsumerConfig {
        group: args.group,
        kafka: args.kafka.resolve(Some(args.cluster.as_path()))?,
        cluster,
        topic_prefix: args.kafka.topic_prefix,
        batch_max_messages: args.batch_max_messages,
        batch_max_bytes: args.batch_max_bytes,
        batch_max_wait: args.batch_max_wait,
        liveness_bound: args.liveness_bound,
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
        registry,
        kafka_overrides: args.kafka_overrides,
    };
    config.validate().context("invalid configuration")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        service::install_metrics(args.metrics_addr).context("metrics endpoint")?;
        cluster::pool::preflight(&config.cluster).await?;
        if let Some(registry) = &config.registry {
            let topics: Vec<String> = config.topics();
            // Unwrapped on purpose: one line naming the registry (wrong credentials, CA or URL).
            config.codec = topics::registry::consumer_codec(registry, &topics).await?;
        }
        let shutdown = service::shutdown_on_signals();
        consumer::run(config, shutdown).await.map_err(|error| match error {
            // Already one line naming the broker, the cause and the setting.
            consumer::error::ConsumerError::KafkaSettings(error) => anyhow::Error::from(error),
            other => anyhow::Error::from(other).context("consumer"),
        })
    })
}

fn dead_letters(command: DeadLetterCommand) -> anyhow::Result<()> {
    let select = match &command {
        DeadLetterCommand::List { select, .. } | DeadLetterCommand::Replay { select, .. } => select,
    };
    let config = cluster::config::ClusterConfig::load(&select.cluster)
        .with_context(|| format!("loading cluster file {}", select.cluster.display()))?;
    let selection = select.selection();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async {
        let pools = cluster::pool::ShardPools::new(&config);
        let control = pools.control().cloned().context("the cluster file has no [control] database")?;
        let result = match &command {
            DeadLetterCommand::List { json, .. } => {
                let letters = consumer::replay::list(&control, &config.name, &selection).await?;
                if *json {
                    println!("{}", serde_json::to_string_pretty(&letters).context("encoding json")?);
                } else {
                    for l in &letters {
                        println!(
                            "{}/{}@{}\t{}\t{}\t{}\t{}",
                            l.topic,
                            l.partition,
                            l.offset,
                            l.reason,
                            l.recorded_at,
                            l.replay.as_deref().unwrap_or("-"),
                            l.detail
                        );
                    }
                    println!("{} dead letters", letters.len());
                }
                Ok(())
            }
            DeadLetterCommand::Replay { kafka, all, .. } => {
                anyhow::ensure!(
                    *all || selection.reason.is_some() || selection.position.is_some(),
                    "replay: select letters with --reason, --topic/--partition/--offset, or --all"
                );
                let client = replay_producer(&kafka.resolve(Some(select.cluster.as_path()))?);
                // Unwrapped on purpose: one line naming the broker, the cause and the setting.
                let probe = topics::preflight::Preflight::waiting(Vec::new());
                topics::preflight::run_async(client.clone(), probe, tokio_util::sync::CancellationToken::new()).await?;
                let producer: rdkafka::producer::FutureProducer = client.create().context("creating the producer")?;
                let replayed = consumer::replay::replay(&control, &config.name, &producer, &selection).await?;
                for r in &replayed {
                    match &r.outcome {
                        Ok((p, o)) => println!("{}/{}@{} -> {}/{p}@{o}", r.topic, r.partition, r.offset, r.topic),
                        Err(why) => println!("{}/{}@{} skipped: {why}", r.topic, r.partition, r.offset),
                    }
                }
                Ok(())
            }
        };
        pools.disconnect().await;
        result
    })
}

/// An idempotent producer (per-partition order kept through retries).
fn replay_producer(kafka: &topics::kafka::KafkaConfig) -> rdkafka::ClientConfig {
    let mut c = kafka.client();
    c.set("enable.idempotence", "true").set("acks", "all");
    c
}

fn status(cluster: PathBuf, args: &topics::kafka::KafkaArgs, json: bool) -> anyhow::Result<()> {
    // Lag needs a broker; without any Kafka setting the report has fences only.
    let kafka = args.resolve_if_configured(Some(cluster.as_path()))?;
    let config = cluster::config::ClusterConfig::load(&cluster)
        .with_context(|| format!("loading cluster file {}", cluster.display()))?;
    let topics: Vec<String> =
        config.pipeline.topics.iter().map(|t| format!("{}{}", args.topic_prefix, t.name)).collect();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let lateness_ms = config.time.allowed_lateness_ms();
    runtime.block_on(cluster::pool::preflight(&config))?;
    // A wrong setting is an error; with the broker unreachable the report
    // has the fences only, and says why the lag is missing.
    let kafka = match kafka {
        Some(kafka) => {
            match runtime.block_on(kafka.preflight(topics::preflight::Preflight::bounded(topics.clone())))? {
                topics::preflight::Reach::Ready => Some(kafka),
                topics::preflight::Reach::Unreachable(why) => {
                    tracing::warn!(bootstrap = %kafka.bootstrap, error = %why, "kafka unreachable: lag unknown");
                    None
                }
            }
        }
        None => None,
    };
    let report = runtime
        .block_on(consumer::status::status(&config, kafka.as_ref(), &topics, lateness_ms))
        .context("reading status")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).context("encoding json")?);
    } else {
        print!("{}", consumer::status::render(&report));
    }
    Ok(())
}
