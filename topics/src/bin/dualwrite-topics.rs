//! `dualwrite-topics`: create the topics on a Kafka cluster, register their
//! schemas in a schema registry, or host the development broker.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "dualwrite-topics", version, about = "Topic admin and the development broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Host librdkafka's mock cluster on 127.0.0.1 with the topics created (development only).
    DevBroker {
        #[arg(long, default_value_t = 3)]
        brokers: i32,
        #[arg(long, env = "DUALWRITE_PARTITIONS", default_value_t = 16)]
        partitions: i32,
        #[arg(long, default_value_t = 3)]
        replication: i32,
        #[arg(long, default_value = "")]
        topic_prefix: String,
        /// File to write the bootstrap address to.
        #[arg(long)]
        bootstrap_file: Option<PathBuf>,
    },
    /// Create the topics on a real Kafka cluster (existing topics are left alone).
    Create {
        #[command(flatten)]
        kafka: topics::kafka::KafkaArgs,
        /// The pipeline description whose topics to create (default: the
        /// built-in Query Insights pipeline).
        #[arg(long)]
        pipeline: Option<PathBuf>,
        #[arg(long, default_value_t = 16)]
        partitions: i32,
        #[arg(long, default_value_t = 3)]
        replication: i32,
    },
    /// Register the topics' value schemas (`<topic>-value`) in the schema
    /// registry of the [registry] table, each after the registry said it is
    /// compatible with the subject's latest version; an incompatible schema
    /// is refused with the registry's explanation and nothing is registered.
    RegisterSchemas {
        /// File with a [registry] table (a kafka config or cluster file).
        #[arg(long, env = "DUALWRITE_KAFKA_CONFIG")]
        kafka_config: Option<PathBuf>,
        /// Cluster file whose [registry] table to use (when --kafka-config has none).
        #[arg(long)]
        cluster: Option<PathBuf>,
        #[arg(long, default_value = "")]
        topic_prefix: String,
        /// The pipeline description whose topics' reader schemas are
        /// registered (default: the built-in Query Insights pipeline).
        #[arg(long, conflicts_with = "schema_dir")]
        pipeline: Option<PathBuf>,
        /// Register the newest Insights schema per record from this directory
        /// (`<id>-<name>.avsc`; the ids in the names are ignored) instead of
        /// the pipeline's reader schemas.
        #[arg(long)]
        schema_dir: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    service::init_tracing();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::DevBroker { brokers, partitions, replication, topic_prefix, bootstrap_file } => {
                let shutdown = service::shutdown_on_signals();
                let config = topics::dev_broker::DevBrokerConfig {
                    brokers,
                    partitions,
                    replication,
                    topic_prefix,
                    bootstrap_file,
                };
                topics::dev_broker::run(config, shutdown).await.context("dev broker")
            }
            Command::Create { kafka, pipeline, partitions, replication } => {
                let pipeline = pipeline::Pipeline::load_or_default(pipeline.as_deref())?;
                let specs = topics::spec::pipeline_topics(&pipeline, &kafka.topic_prefix, partitions, replication);
                let kafka = kafka.resolve(None)?;
                // Unwrapped on purpose: one line naming the broker, the cause and the setting.
                kafka.preflight(topics::preflight::Preflight::waiting(Vec::new())).await?;
                topics::admin::create_topics(&kafka, &specs).await.context("creating topics")
            }
            Command::RegisterSchemas { kafka_config, cluster, topic_prefix, pipeline, schema_dir } => {
                let config = topics::registry::RegistryConfig::resolve(kafka_config.as_deref(), cluster.as_deref())?
                    .context("no [registry] table in --kafka-config or --cluster")?;
                let registry = topics::registry::Registry::new(config)?;
                // Unwrapped on purpose: the registry's refusal is the one line to print.
                let registered = match &schema_dir {
                    Some(dir) => {
                        let schemas = topics::schemas::SchemaSet::from_dir(dir).context("loading schemas")?;
                        topics::registry::register_topic_schemas(&registry, &topic_prefix, &schemas).await?
                    }
                    None => {
                        let pipeline = pipeline::Pipeline::load_or_default(pipeline.as_deref())?;
                        topics::registry::register_pipeline_schemas(&registry, &topic_prefix, &pipeline).await?
                    }
                };
                for r in registered {
                    println!("{}\t{}\tid {}", r.subject, r.record, r.id);
                }
                Ok(())
            }
        }
    })
}
