//! `dualwrite-topics`: create the topics on a Kafka cluster, or host the development broker.

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
        #[arg(long, env = "DUALWRITE_BROKERS")]
        brokers: String,
        #[arg(long, default_value_t = 16)]
        partitions: i32,
        #[arg(long, default_value_t = 3)]
        replication: i32,
        #[arg(long, default_value = "")]
        topic_prefix: String,
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
            Command::Create { brokers, partitions, replication, topic_prefix } => {
                let specs = topics::spec::default_topics(&topic_prefix, partitions, replication);
                topics::admin::create_topics(&brokers, &specs).await.context("creating topics")
            }
        }
    })
}
