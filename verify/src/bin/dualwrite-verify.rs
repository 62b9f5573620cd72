//! `dualwrite-verify`: prove the old and new clusters hold the same data.
//!
//! Every table compared comes from the clusters' pipeline (the cluster
//! files' `pipeline = "..."`, default the built-in Insights); two cluster
//! files naming different pipelines are refused.
//!
//! Exit codes: 0 equal, 1 different, 2 could not run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use cluster::config::{ClusterConfig, ReadFrom};
use tokio_util::sync::CancellationToken;
use verify::digest::Side;
use verify::history::RunOutcome;
use verify::table::TableConfig;
use verify::windows::{Range, WindowsConfig};

#[derive(Parser)]
#[command(
    name = "dualwrite-verify",
    version,
    about = "Compare the old and new clusters window by window and table by table"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Prometheus endpoint serving the last run's gauges while the process runs.
    #[arg(long, global = true, env = "DUALWRITE_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum Command {
    /// Compare every settled window of every windowed table of the pipeline.
    Windows {
        #[command(flatten)]
        clusters: Clusters,
        #[command(flatten)]
        range: RangeArgs,
        /// Re-digest windows an earlier run already proved equal.
        #[arg(long)]
        recheck_all: bool,
        /// Also write the report (JSON, Markdown, HTML, textfile metrics) here.
        #[arg(long, env = "DUALWRITE_VERIFY_OUT")]
        out: Option<PathBuf>,
    },
    /// Full diff of the pipeline's unbounded (latest) tables, resumable;
    /// one JSON line per table.
    Table {
        /// One unbounded table (default: each of them, in the pipeline's order).
        table: Option<String>,
        #[command(flatten)]
        clusters: Clusters,
        /// Rows read per shard per query (and per checkpoint).
        #[arg(long, default_value_t = 5000)]
        page_rows: usize,
        /// Start from the first key even if an earlier run was interrupted.
        #[arg(long)]
        restart: bool,
        #[arg(long, env = "DUALWRITE_VERIFY_OUT")]
        out: Option<PathBuf>,
    },
    /// Write the report from the history in the new cluster's control database.
    Report {
        /// The new cluster's file (its [control] database holds the history).
        #[arg(long, env = "DUALWRITE_NEW_CLUSTER")]
        new: PathBuf,
        #[command(flatten)]
        range: RangeArgs,
        #[arg(long, env = "DUALWRITE_VERIFY_OUT", default_value = "verify-report")]
        out: PathBuf,
    },
    /// Daemon: windows, every unbounded table and report on a schedule, each into a dated
    /// directory under --out; keeps the last --keep; gauges on --metrics-addr
    /// (default 127.0.0.1:9467); a run never overlaps another.
    Nightly {
        #[command(flatten)]
        clusters: Clusters,
        /// Every day at this time, UTC (HH:MM).
        #[arg(long, value_parser = verify::nightly::parse_at, conflicts_with = "every", required_unless_present = "every")]
        at: Option<chrono::NaiveTime>,
        /// Or: at start, then this long after each run started (compressed schedules).
        #[arg(long, value_parser = humantime::parse_duration)]
        every: Option<Duration>,
        /// Re-digest every window (edits behind the consumers' back) when the
        /// last such run is older than this; "off" to never.
        #[arg(long, default_value = "7d", value_parser = parse_optional_duration)]
        recheck_all_every: OptionalDuration,
        /// Windows starting in the last this long are compared.
        #[arg(long, default_value = "48h", value_parser = humantime::parse_duration)]
        since: Duration,
        /// Root of the dated report directories.
        #[arg(long, env = "DUALWRITE_VERIFY_OUT")]
        out: PathBuf,
        /// Dated report directories kept.
        #[arg(long, default_value_t = 14)]
        keep: usize,
        #[arg(long, default_value_t = 5000)]
        page_rows: usize,
    },
    /// Rewrite the differing keys of a finished run on the target cluster from
    /// the authoritative one (old before cutover, --from new after a rollback),
    /// holding both shards' offset fences so no consumer writes the key
    /// meanwhile; then compare the repaired windows and tables again. One JSON
    /// line; exit 0 when every key is repaired and compares equal, 1 when keys
    /// are left (waiting for the fences, or in windows not settled), 2 on error.
    Repair {
        #[command(flatten)]
        clusters: Clusters,
        /// The comparator run (`run_id` of `windows` or `table`) whose differences to repair.
        #[arg(long)]
        run: u64,
        /// Only this table's keys.
        #[arg(long)]
        table: Option<String>,
        /// Only the window starting at this time (RFC 3339, UTC).
        #[arg(long, value_parser = parse_time)]
        window: Option<i64>,
        /// Print the statements the repair would run; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The authoritative cluster: old (before cutover) or new (after a rollback).
        #[arg(long, default_value = "old")]
        from: verify::repair::Authority,
        /// The consumers' --topic-prefix (found from the fence rows when left out).
        #[arg(long, env = "DUALWRITE_TOPIC_PREFIX")]
        topic_prefix: Option<String>,
        /// How long one key waits for its shards' fences to line up.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        wait: Duration,
        /// Skip the final comparison of the repaired windows and tables.
        #[arg(long)]
        no_reverify: bool,
    },
    /// Comparator rows/s against CHECKSUM TABLE on the same shards, over the
    /// pipeline's windowed tables; one JSON line.
    Bench {
        #[command(flatten)]
        clusters: Clusters,
        #[command(flatten)]
        range: RangeArgs,
        /// First fill a throwaway database (this name, on every shard of both
        /// clusters) with this many synthetic rows per cluster; dropped before
        /// (rows left by an interrupted run would make the sides differ) and
        /// afterwards.
        #[arg(long, requires = "database")]
        generate: Option<u64>,
        /// Database to generate into (and bench on).
        #[arg(long)]
        database: Option<String>,
        /// Keep the generated database.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Args)]
struct Clusters {
    /// The old cluster's file.
    #[arg(long, env = "DUALWRITE_OLD_CLUSTER")]
    old: PathBuf,
    /// The new cluster's file; results go to its [control] database.
    #[arg(long, env = "DUALWRITE_NEW_CLUSTER")]
    new: PathBuf,
    /// Which server of each shard to read: its first replica where the
    /// cluster file names one (settlement then comes from the replica's own
    /// fences), or always the primary.
    #[arg(long, default_value = "replica", env = "DUALWRITE_VERIFY_READ_FROM")]
    read_from: ReadFrom,
}

impl Clusters {
    /// Both cluster files, their shards re-pointed as `--read-from` says.
    fn load(&self) -> anyhow::Result<(ClusterConfig, ClusterConfig)> {
        let (old, new) = (load(&self.old)?, load(&self.new)?);
        let (old, new) = (old.reading_from(self.read_from), new.reading_from(self.read_from));
        for side in [&old, &new] {
            let replicas: Vec<String> =
                side.shards.iter().filter(|s| s.reads_replica).map(|s| s.range.to_string()).collect();
            tracing::info!(cluster = %side.name, read_from = %self.read_from, replica_shards = ?replicas, "reading");
        }
        Ok((old, new))
    }
}

#[derive(Args)]
struct RangeArgs {
    /// Windows starting in the last this long.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration, conflicts_with_all = ["from", "to"])]
    since: Duration,
    /// Windows starting at or after this time (RFC 3339, UTC).
    #[arg(long, requires = "to", value_parser = parse_time)]
    from: Option<i64>,
    /// ...and before this time.
    #[arg(long, requires = "from", value_parser = parse_time)]
    to: Option<i64>,
}

impl RangeArgs {
    fn range(&self) -> Range {
        match (self.from, self.to) {
            (Some(from), Some(to)) => Range::Between(from, to),
            _ => Range::Since(self.since),
        }
    }

    fn bounds(&self) -> (i64, i64) {
        let now = chrono::Utc::now().timestamp();
        match self.range() {
            Range::Between(from, to) => (from, to),
            Range::Since(d) => (now - i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2), now),
        }
    }
}

/// A duration, or none ("off").
#[derive(Debug, Clone, Copy)]
struct OptionalDuration(Option<Duration>);

fn parse_optional_duration(text: &str) -> Result<OptionalDuration, String> {
    if text == "off" {
        return Ok(OptionalDuration(None));
    }
    humantime::parse_duration(text).map(|d| OptionalDuration(Some(d))).map_err(|e| e.to_string())
}

fn parse_time(text: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(text).map_err(|e| format!("{e} (expected e.g. 2026-11-21T12:00:00Z)"))?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    i64::try_from(secs).map_err(|e| e.to_string())
}

fn load(path: &PathBuf) -> anyhow::Result<ClusterConfig> {
    ClusterConfig::load(path).with_context(|| format!("loading cluster file {}", path.display()))
}

fn main() -> ExitCode {
    service::init_tracing();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dualwrite-verify: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "could not run");
            eprintln!("dualwrite-verify: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn exit_for(outcome: RunOutcome) -> ExitCode {
    ExitCode::from(exit_code(outcome))
}

fn exit_code(outcome: RunOutcome) -> u8 {
    match outcome {
        RunOutcome::Equal => 0,
        RunOutcome::Different => 1,
        RunOutcome::Running | RunOutcome::Error => 2,
    }
}

/// The new cluster's file of any command (its pipeline names the metrics' tables).
fn new_file(command: &Command) -> &PathBuf {
    match command {
        Command::Windows { clusters, .. }
        | Command::Table { clusters, .. }
        | Command::Nightly { clusters, .. }
        | Command::Bench { clusters, .. }
        | Command::Repair { clusters, .. } => &clusters.new,
        Command::Report { new, .. } => new,
    }
}

async fn write_report(new: &ClusterConfig, from: i64, to: i64, out: &std::path::Path) -> anyhow::Result<()> {
    let side = Side::new(new.clone());
    let control = side.pools.control().context("the new cluster file has no [control] dsn")?;
    let report = verify::report::build(control, new, from, to).await;
    side.pools.disconnect().await;
    let files = verify::report::write(&report?, out)?;
    for f in files {
        tracing::info!(file = %f.display(), "report written");
    }
    Ok(())
}

/// Where the nightly daemon serves its gauges unless --metrics-addr says otherwise.
const NIGHTLY_METRICS_ADDR: &str = "127.0.0.1:9467";

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let metrics_addr = match (&cli.command, cli.metrics_addr) {
        (Command::Nightly { .. }, None) => Some(NIGHTLY_METRICS_ADDR.parse()?),
        (_, addr) => addr,
    };
    if let Some(addr) = metrics_addr {
        service::install_metrics(addr)?;
        let pipeline = load(new_file(&cli.command))?.pipeline;
        verify::metrics::describe(pipeline.windowed().map(|t| t.name.as_str()));
        verify::repair::describe();
    }
    let shutdown: CancellationToken = service::shutdown_on_signals();
    match cli.command {
        Command::Windows { clusters, range, recheck_all, out } => {
            let (old, new) = clusters.load()?;
            let config = WindowsConfig { old, new, range: range.range(), recheck_all };
            verify::spec::check_same_pipeline(&config.old, &config.new)?;
            cluster::pool::preflight(&config.old).await?;
            cluster::pool::preflight(&config.new).await?;
            let outcome = verify::windows::run_windows(&config, &shutdown).await?;
            if let Some(out) = out {
                let (from, to) = range.bounds();
                write_report(&config.new, from, to, &out).await?;
            }
            println!("{}", serde_json::to_string(&outcome.run)?);
            Ok(exit_for(outcome.run.outcome))
        }
        Command::Table { table, clusters, page_rows, restart, out } => {
            let (old, new) = clusters.load()?;
            verify::spec::check_same_pipeline(&old, &new)?;
            let unbounded = verify::spec::unbounded(&new)?;
            let names = || unbounded.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ");
            let specs = match table {
                Some(name) => vec![unbounded.iter().find(|t| t.name == name).cloned().with_context(|| {
                    format!(
                        "{name:?} is not an unbounded table of pipeline {} (its unbounded tables: {})",
                        new.pipeline.name,
                        names()
                    )
                })?],
                None => unbounded.clone(),
            };
            if specs.is_empty() {
                tracing::info!(pipeline = %new.pipeline.name, "the pipeline has no unbounded table: nothing to diff");
            }
            let mut code = 0;
            for spec in specs {
                let config = TableConfig {
                    old: old.clone(),
                    new: new.clone(),
                    table: spec,
                    page_rows,
                    restart,
                    stop_after_rows: None,
                };
                let outcome = verify::table::run_table(&config, &shutdown).await?;
                println!("{}", serde_json::to_string(&outcome.run)?);
                if !outcome.complete {
                    code = 2;
                    break;
                }
                code = code.max(exit_code(outcome.run.outcome));
            }
            if let Some(out) = out {
                let now = chrono::Utc::now().timestamp();
                write_report(&new, now - 86_400, now, &out).await?;
            }
            Ok(ExitCode::from(code))
        }
        Command::Nightly { clusters, at, every, recheck_all_every, since, out, keep, page_rows } => {
            let schedule = match (at, every) {
                (Some(at), _) => verify::nightly::Schedule::DailyAt(at),
                (None, Some(every)) => verify::nightly::Schedule::Every(every),
                (None, None) => anyhow::bail!("nightly needs --at HH:MM or --every DURATION"),
            };
            let (old, new) = clusters.load()?;
            let config = verify::nightly::NightlyConfig {
                old,
                new,
                schedule,
                since,
                recheck_all_every: recheck_all_every.0,
                out,
                keep,
                page_rows,
                max_runs: None,
            };
            let stats = verify::nightly::run(config, shutdown).await?;
            tracing::info!(
                completed = stats.completed,
                busy = stats.busy,
                failed = stats.failed,
                "nightly daemon stopped"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { new, range, out } => {
            let (from, to) = range.bounds();
            write_report(&load(&new)?, from, to, &out).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Repair { clusters, run, table, window, dry_run, from, topic_prefix, wait, no_reverify } => {
            let config = verify::repair::RepairConfig {
                old: load(&clusters.old)?,
                new: load(&clusters.new)?,
                run_id: run,
                table,
                window,
                dry_run,
                from,
                topic_prefix,
                wait,
                reverify: !no_reverify,
            };
            verify::spec::check_same_pipeline(&config.old, &config.new)?;
            cluster::pool::preflight(&config.old).await?;
            cluster::pool::preflight(&config.new).await?;
            let outcome = verify::repair::run_repair(&config, &shutdown).await?;
            if dry_run {
                for statement in &outcome.statements {
                    println!("{statement}");
                }
            }
            let summary = verify::repair::RepairOutcome { statements: Vec::new(), ..outcome.clone() };
            println!("{}", serde_json::to_string(&summary)?);
            Ok(ExitCode::from(if dry_run || outcome.complete() { 0 } else { 1 }))
        }
        Command::Bench { clusters, range, generate, database, keep } => {
            let (mut old, mut new) = clusters.load()?;
            verify::spec::check_same_pipeline(&old, &new)?;
            if let Some(db) = &database {
                old = old.with_database(db)?;
                new = new.with_database(db)?;
                // The bench never writes history: keep it off the control database.
                old.control = None;
                new.control = None;
            }
            let (mut from, to) = range.bounds();
            if let Some(rows) = generate {
                cluster::schema::drop(&old, false).await?;
                cluster::schema::drop(&new, false).await?;
                let now = chrono::Utc::now().timestamp();
                cluster::schema::apply(&old, now).await?;
                cluster::schema::apply(&new, now).await?;
                from = (to - 6 * 3600) / 3600 * 3600;
                let (o, n) = (Side::new(old.clone()), Side::new(new.clone()));
                tracing::info!(rows, "generating rows on both clusters");
                verify::bench::generate(&[&o, &n], rows, from).await?;
                o.pools.disconnect().await;
                n.pools.disconnect().await;
            }
            let (o, n) = (Side::new(old.clone()), Side::new(new.clone()));
            let result = verify::bench::bench(&o, &n, from, to).await;
            o.pools.disconnect().await;
            n.pools.disconnect().await;
            if generate.is_some() && !keep {
                cluster::schema::drop(&old, false).await?;
                cluster::schema::drop(&new, false).await?;
            }
            println!("{}", serde_json::to_string(&result?)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
