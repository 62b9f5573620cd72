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
        /// A pipeline description to use instead of the cluster file's
        /// `pipeline` (or the built-in Query Insights): see docs/pipelines.md.
        #[arg(long, env = "DUALWRITE_PIPELINE")]
        pipeline: Option<PathBuf>,
    },
    /// Grant a job's login what its role needs on every shard and the control
    /// database (run after `schema`, with the file's administrator login; the
    /// login must exist). Idempotent.
    Grant {
        #[arg(long, env = "DUALWRITE_CLUSTER")]
        cluster: PathBuf,
        /// consumer, retention, verify, copier-source, copier-target, operator, reader.
        #[arg(long)]
        role: cluster::roles::Role,
        /// The login (default: the role's, e.g. dw_consumer).
        #[arg(long)]
        user: Option<String>,
        /// The login's host part.
        #[arg(long, default_value = "%")]
        host: String,
        /// Print the statements instead of running them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write the cluster file of shards on consecutive ports of one host (the
    /// local stack's layout); shard i of N owns the i-th of N even key ranges.
    LocalLayout {
        /// Cluster name.
        #[arg(long)]
        name: String,
        /// Shard count: a power of two from 1 to 256.
        #[arg(long)]
        shards: usize,
        /// Port of the first shard; the others follow.
        #[arg(long)]
        first_port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value = "dualwrite")]
        database: String,
        #[arg(long, default_value = "dualwrite")]
        user: String,
        /// File holding the login's password.
        #[arg(long)]
        password_file: PathBuf,
        /// DSN of the control database.
        #[arg(long)]
        control_dsn: Option<String>,
        /// CA file of TLS-only shards: writes `[tls] mode = "verify-identity"`.
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        /// Port of shard 0's replica; the next shards' replicas follow.
        #[arg(long, requires = "replica_shards")]
        replica_first_port: Option<u16>,
        /// How many shards (from the first) have a replica.
        #[arg(long, default_value_t = 0)]
        replica_shards: usize,
        /// Where to write the file (atomically replaced).
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    service::init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::LocalLayout {
            name,
            shards,
            first_port,
            host,
            database,
            user,
            password_file,
            control_dsn,
            tls_ca,
            replica_first_port,
            replica_shards,
            out,
        } => {
            let layout = cluster::layout::LocalCluster {
                name,
                shards,
                first_port,
                host,
                database,
                user,
                password_file,
                control_dsn,
                tls_ca_file: tls_ca,
                replica_first_port,
                replica_shards,
            };
            let text = layout.render().map_err(anyhow::Error::msg)?;
            let tmp = out.with_extension("toml.tmp");
            std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &out).with_context(|| format!("replacing {}", out.display()))?;
            Ok(())
        }
        Command::Grant { cluster, role, user, host, dry_run } => {
            let config = cluster::config::ClusterConfig::load(&cluster)
                .with_context(|| format!("loading cluster file {}", cluster.display()))?;
            let account = cluster::roles::Account::new(user.as_deref().unwrap_or(role.default_user()), &host)?;
            if dry_run {
                for grants in cluster::roles::plan(&config, role, &account) {
                    println!("-- {} ({})", grants.target, grants.endpoint);
                    for statement in grants.statements {
                        println!("{statement};");
                    }
                }
                return Ok(());
            }
            let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            runtime.block_on(cluster::roles::apply(&config, role, &account)).context("granting")?;
            println!("granted role {role} to {account} on cluster {}", config.name);
            Ok(())
        }
        Command::Check { cluster } => {
            let config = cluster::config::ClusterConfig::load(&cluster)
                .with_context(|| format!("loading cluster file {}", cluster.display()))?;
            println!("cluster {}: {} shards, pipeline {}", config.name, config.shards.len(), config.pipeline.name);
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
        Command::Schema { cluster, dry_run, pipeline } => {
            let mut config = cluster::config::ClusterConfig::load(&cluster)
                .with_context(|| format!("loading cluster file {}", cluster.display()))?;
            if let Some(file) = pipeline {
                config.pipeline = cluster::config::PipelineRef::load(Some(&file))?;
                config.time.check_windows(&config.pipeline)?;
            }
            // Partitions from `[time] retention` behind now to `ahead` beyond it.
            let now = chrono::Utc::now().timestamp();
            if dry_run {
                for stmt in cluster::schema::shard_ddl(&config.pipeline, &config.time, now) {
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
