//! `dualwrite-copier`: fill the new cluster's unbounded tables from the old one.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cluster::config::ClusterConfig;
use copier::{CopierConfig, Settings};

// The copier allocates and frees multi-MiB statements and many small row
// buffers all the time; glibc's malloc was a visible share of its CPU
// (docs/notes-copier-verify.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "dualwrite-copier", version, about = "Snapshot + binlog copier, old shards -> new shards")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copy and then replicate every old shard's table until SIGINT/SIGTERM (resumes where it left off).
    Start(Box<StartArgs>),
    /// Per stream: phase, rows copied, rows/s, ETA, binlog lag (reads the new cluster only).
    Status {
        /// Cluster file of the new cluster.
        #[arg(long, env = "DUALWRITE_TO")]
        to: PathBuf,
        /// Use this database on every new shard instead of the cluster file's.
        #[arg(long)]
        to_database: Option<String>,
        /// Only this table's streams.
        #[arg(long)]
        table: Option<String>,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Forget a stream's progress so the next `start` copies it from scratch (the remedy for a purged binlog).
    Reset {
        #[arg(long, env = "DUALWRITE_TO")]
        to: PathBuf,
        #[arg(long)]
        to_database: Option<String>,
        /// The copied table (default: the pipeline's latest table, when it has one).
        #[arg(long)]
        table: Option<String>,
        /// The old shard's range name, e.g. `-40`.
        #[arg(long, allow_hyphen_values = true)]
        source_shard: String,
    },
    /// Benchmark: copier vs `mariadb-dump | mariadb` on the same rows, and catch-up apply rate.
    Bench(Box<copier::bench::BenchArgs>),
}

#[derive(clap::Args)]
struct StartArgs {
    /// Cluster file of the old cluster (sources).
    #[arg(long, env = "DUALWRITE_FROM")]
    from: PathBuf,
    /// Cluster file of the new cluster (targets; holds the streams' state).
    #[arg(long, env = "DUALWRITE_TO")]
    to: PathBuf,
    /// Use this database on every old shard instead of the cluster file's (rehearsals, tests).
    #[arg(long)]
    from_database: Option<String>,
    /// Use this database on every new shard instead of the cluster file's.
    #[arg(long)]
    to_database: Option<String>,
    /// Which server of each old shard the snapshot and the binlog stream
    /// read: its first replica where the cluster file names one (it must
    /// have log_bin and log_slave_updates), or always the primary. A stream
    /// moves between them through GTIDs and resumes where it was.
    #[arg(long, default_value = "replica", env = "DUALWRITE_COPIER_READ_FROM")]
    read_from: cluster::config::ReadFrom,
    /// The table to copy: a latest table of the old cluster's pipeline
    /// (default: its latest table, when it has exactly one).
    #[arg(long)]
    table: Option<String>,
    /// How long a copy phase reads its snapshot before catching up on the binlog.
    #[arg(long, env = "DUALWRITE_COPY_PHASE", default_value = "30s", value_parser = humantime::parse_duration)]
    copy_phase: Duration,
    /// How long a catch-up phase applies the binlog before the next copy phase.
    #[arg(long, env = "DUALWRITE_CATCH_UP_PHASE", default_value = "10s", value_parser = humantime::parse_duration)]
    catch_up_phase: Duration,
    /// Snapshot rows per chunk.
    #[arg(long, default_value_t = copier::Settings::default().chunk_rows)]
    chunk_rows: usize,
    /// Binlog row operations per write batch (several source transactions, one target transaction per shard).
    #[arg(long, default_value_t = copier::Settings::default().batch_ops)]
    batch_ops: usize,
    /// ...or this long after the batch's first operation.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    batch_wait: Duration,
    /// Pause after a target statement (upsert, delete, commit) slower than this, as long as it took.
    #[arg(long, env = "DUALWRITE_THROTTLE_LATENCY", default_value = "500ms", value_parser = humantime::parse_duration)]
    throttle_latency: Duration,
    /// How often the operator view (rate, lag) is refreshed.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    status_interval: Duration,
    /// Prometheus endpoint.
    #[arg(long, env = "DUALWRITE_METRICS_ADDR", default_value = "127.0.0.1:9468")]
    metrics_addr: SocketAddr,
    /// Progress bars even when stderr is not a terminal (`never` / `auto` / `always`).
    #[arg(long, default_value = "auto")]
    progress: String,
}

fn load(path: &PathBuf, database: Option<&str>) -> anyhow::Result<ClusterConfig> {
    ClusterConfig::load_redirected(path, database, None).with_context(|| format!("loading {}", path.display()))
}

/// `--table`, or the pipeline's one latest table.
fn table_or_default(table: Option<String>, cluster: &ClusterConfig) -> anyhow::Result<String> {
    if let Some(table) = table {
        return Ok(table);
    }
    let latest: Vec<&str> = cluster.pipeline.unbounded().map(|t| t.name.as_str()).collect();
    match latest.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => anyhow::bail!("pipeline {} has no latest table: nothing to copy", cluster.pipeline.name),
        many => anyhow::bail!(
            "pipeline {} has several latest tables ({}): name one with --table",
            cluster.pipeline.name,
            many.join(", ")
        ),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::init_tracing();
    match Cli::parse().command {
        Command::Start(args) => {
            service::install_metrics(args.metrics_addr)?;
            copier::metrics::describe();
            let from = load(&args.from, args.from_database.as_deref())?.reading_from(args.read_from);
            let replicas: Vec<String> =
                from.shards.iter().filter(|s| s.reads_replica).map(|s| s.range.to_string()).collect();
            tracing::info!(read_from = %args.read_from, replica_shards = ?replicas, "copier source");
            let config = CopierConfig {
                table: table_or_default(args.table, &from)?,
                from,
                to: load(&args.to, args.to_database.as_deref())?,
                settings: Settings {
                    copy_phase: args.copy_phase,
                    catch_up_phase: args.catch_up_phase,
                    chunk_rows: args.chunk_rows,
                    batch_ops: args.batch_ops,
                    batch_wait: args.batch_wait,
                    throttle_latency: args.throttle_latency,
                    status_interval: args.status_interval,
                    ..Settings::default()
                },
                progress: match args.progress.as_str() {
                    "always" => true,
                    "never" => false,
                    _ => std::io::stderr().is_terminal(),
                },
            };
            // A table the pipeline does not copy fails here, before any connection.
            config.validate()?;
            cluster::pool::preflight(&config.from).await?;
            cluster::pool::preflight(&config.to).await?;
            let shutdown = service::shutdown_on_signals();
            copier::run(config, shutdown).await.context("copier stopped")?;
        }
        Command::Status { to, to_database, table, json } => {
            let target = load(&to, to_database.as_deref())?;
            cluster::pool::preflight(&target).await?;
            let mut streams = copier::status::streams(&target).await.context("reading stream status")?;
            streams.retain(|s| table.as_ref().is_none_or(|t| &s.table == t));
            if json {
                println!("{}", serde_json::to_string(&streams)?);
            } else {
                print!("{}", copier::status::render(&streams));
            }
        }
        Command::Reset { to, to_database, table, source_shard } => {
            let target = load(&to, to_database.as_deref())?;
            let table = table_or_default(table, &target)?;
            let pools = cluster::pool::ShardPools::new(&target);
            let removed = copier::sidecar::reset(pools.shards(), &table, &source_shard).await;
            pools.disconnect().await;
            let removed = removed.context("resetting the stream")?;
            tracing::info!(%table, %source_shard, shard_rows = removed, "stream reset");
        }
        Command::Bench(args) => {
            let report = copier::bench::run(*args, service::shutdown_on_signals()).await?;
            println!("{report}");
        }
    }
    Ok(())
}
