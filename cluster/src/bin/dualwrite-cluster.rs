//! `dualwrite-cluster`: check a cluster file and apply the store's schema to every shard.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "dualwrite-cluster", version, about = "Cluster files and the store's schema")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a cluster file and print its shard map (no connections made).
    Check {
        #[arg(long, env = "DUALWRITE_CLUSTER")]
        cluster: PathBuf,
    },
    /// Create the databases and tables on every shard and the control database (idempotent).
    Schema {
        #[arg(long, env = "DUALWRITE_CLUSTER")]
        cluster: PathBuf,
        /// Print the statements instead of running them.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> anyhow::Result<()> {
    service::init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { cluster } => {
            let config = cluster::config::ClusterConfig::load(&cluster)
                .with_context(|| format!("loading cluster file {}", cluster.display()))?;
            println!("cluster {}: {} shards", config.name, config.shards.len());
            for s in &config.shards {
                println!(
                    "  {:<8} {}:{}/{}",
                    s.range.to_string(),
                    s.endpoint.host,
                    s.endpoint.port,
                    s.endpoint.database
                );
            }
            Ok(())
        }
        Command::Schema { cluster, dry_run } => {
            let config = cluster::config::ClusterConfig::load(&cluster)
                .with_context(|| format!("loading cluster file {}", cluster.display()))?;
            // Partitions from `[time] retention` behind now to `ahead` beyond it.
            let now = chrono::Utc::now().timestamp();
            if dry_run {
                for stmt in cluster::schema::shard_ddl(&config.time, now) {
                    println!("{stmt};\n");
                }
                for stmt in cluster::schema::control_ddl() {
                    println!("-- control\n{stmt};\n");
                }
                return Ok(());
            }
            let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            runtime.block_on(cluster::schema::apply(&config, now)).context("applying the schema")?;
            println!(
                "schema applied to {} shards of cluster {} and its control database",
                config.shards.len(),
                config.name
            );
            Ok(())
        }
    }
}
