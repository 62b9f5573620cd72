//! `dualwrite-retention`: time partitions ahead and behind, and cutover readiness.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cluster::config::ClusterConfig;
use retention::RetentionConfig;

#[derive(Parser)]
#[command(name = "dualwrite-retention", about = "Time partitions and cutover readiness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create partitions ahead and drop partitions wholly older than --keep, on every shard.
    Run(RunArgs),
    /// Whether the new cluster holds every window the old one serves, and if not, when it will.
    Readiness {
        #[arg(long)]
        old: PathBuf,
        #[arg(long)]
        new: PathBuf,
        /// Use this database on every shard of --old / --new instead of the cluster files'.
        #[arg(long)]
        old_database: Option<String>,
        #[arg(long)]
        new_database: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, env = "DUALWRITE_CLUSTER")]
    cluster: PathBuf,
    /// Use this database on every shard instead of the cluster file's.
    #[arg(long)]
    database: Option<String>,
    /// Keep windows younger than this (default: the cluster file's `[time] retention`).
    #[arg(long, value_parser = humantime::parse_duration)]
    keep: Option<Duration>,
    /// Keep partitions ready this far ahead (default: `[time] ahead`, 3 days).
    #[arg(long, value_parser = humantime::parse_duration)]
    ahead: Option<Duration>,
    /// Daemon mode: run again at this interval until SIGINT/SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    every: Option<Duration>,
    /// Print the statements without running them.
    #[arg(long)]
    dry_run: bool,
    /// Longest wait for a table's metadata lock (consumers' transactions) per statement.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    lock_wait: Duration,
    /// Allow a --keep shorter than `[time] retention` (needs --reason).
    #[arg(long, requires = "reason")]
    force: bool,
    /// Why --keep is shorter than `[time] retention`; logged with the run.
    #[arg(long, requires = "force")]
    reason: Option<String>,
    /// Refuse drops on a shard whose clock (UNIX_TIMESTAMP()) differs from this host's by more.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    max_clock_skew: Duration,
    #[arg(long)]
    json: bool,
    #[arg(long, env = "DUALWRITE_METRICS_ADDR", default_value = "127.0.0.1:9466")]
    metrics_addr: SocketAddr,
}

fn load(path: &Path, database: Option<&str>) -> anyhow::Result<ClusterConfig> {
    ClusterConfig::load_redirected(path, database, None)
        .with_context(|| format!("loading cluster file {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    service::init_tracing();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    match Cli::parse().command {
        Command::Readiness { old, new, old_database, new_database, json } => {
            let old = load(&old, old_database.as_deref())?;
            let new = load(&new, new_database.as_deref())?;
            let r = runtime.block_on(retention::assess(&old, &new)).context("assessing readiness")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).context("encoding json")?);
            } else {
                println!("{}", r.explanation);
                println!("  old cluster {}: serves windows from {}", r.old.cluster, r.required_from.to_rfc3339());
                if let Some(c) = r.covered_from {
                    println!("  new cluster {}: covers windows from {}", r.new.cluster, c.to_rfc3339());
                }
                if let Some(at) = r.ready_at {
                    println!("  ready at {}", at.to_rfc3339());
                }
            }
            // Exit 0 ready, 1 not ready: scripts can wait on it.
            std::process::exit(if r.ready { 0 } else { 1 });
        }
        Command::Run(args) => {
            let cluster = load(&args.cluster, args.database.as_deref())?;
            let mut config = RetentionConfig::for_cluster(cluster);
            config.keep = args.keep.unwrap_or(config.keep);
            config.ahead = args.ahead.unwrap_or(config.ahead);
            config.every = args.every;
            config.dry_run = args.dry_run;
            config.lock_wait = args.lock_wait;
            config.max_clock_skew = args.max_clock_skew;
            config.force_reason = args.reason.filter(|_| args.force);
            config.validate().context("invalid configuration")?;
            if config.keep < config.cluster.time.retention {
                tracing::warn!(
                    keep = %humantime::format_duration(config.keep),
                    retention = %humantime::format_duration(config.cluster.time.retention),
                    reason = config.force_reason.as_deref().unwrap_or_default(),
                    "--keep is shorter than the cluster's [time] retention (forced): windows the consumers still write will be dropped"
                );
            }
            let summary = runtime.block_on(async {
                if config.every.is_some() {
                    service::install_metrics(args.metrics_addr).context("metrics endpoint")?;
                    retention::metrics::describe();
                }
                cluster::pool::preflight(&config.cluster).await?;
                let shutdown = service::shutdown_on_signals();
                retention::run(config, shutdown).await.context("retention")
            })?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&summary).context("encoding json")?);
            } else {
                for shard in &summary.shards {
                    for t in &shard.tables {
                        for stmt in &t.statements {
                            println!("-- shard {}\n{stmt};", shard.shard);
                        }
                    }
                    if shard.busy {
                        println!("-- shard {}: skipped, another retention job holds it", shard.shard);
                    }
                    if let Some(why) = &shard.drops_refused {
                        println!("-- shard {}: drops limited: {why}", shard.shard);
                    }
                    if let Some(e) = &shard.error {
                        println!("-- shard {}: FAILED: {e}", shard.shard);
                    }
                }
                let verb = if summary.dry_run { "would create" } else { "created" };
                println!(
                    "cluster {}: {verb} {} partitions, {} {} (over every shard and table), {} shard errors",
                    summary.cluster,
                    summary.created,
                    if summary.dry_run { "would drop" } else { "dropped" },
                    summary.dropped,
                    summary.errors
                );
            }
            if summary.errors > 0 {
                anyhow::bail!("retention failed on {} shard(s)", summary.errors);
            }
            Ok(())
        }
    }
}
