//! `dualwrite-copier bench`: the copier's snapshot rate on a generated
//! latest table of the old cluster's pipeline (old -> new, re-sharded)
//! against `mariadb-dump --single-transaction | mariadb` of the same rows (no
//! re-sharding: old shard i into new shard i), and the binlog apply rate
//! while a writer keeps changing the old cluster. Prints one JSON line.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use tokio_util::sync::CancellationToken;

use crate::config::{CopierConfig, Settings};
use crate::table::CopiedTable;
use crate::workload;

/// Rows per sharding value in the generated table.
const PER_DATABASE: u64 = 50;

/// Benchmark flags.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Old cluster file (its servers get a throwaway database).
    #[arg(long, default_value = "compose/local/.state/clusters/old.toml")]
    pub from: PathBuf,
    /// New cluster file (its servers get throwaway databases).
    #[arg(long, default_value = "compose/local/.state/clusters/new.toml")]
    pub to: PathBuf,
    /// The latest table to generate and copy (default: the old cluster's pipeline's first).
    #[arg(long)]
    pub table: Option<String>,
    /// Rows in the generated table.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Row changes the concurrent writer makes during the catch-up measurement.
    #[arg(long, default_value_t = 200_000)]
    pub catch_up_changes: u64,
    /// Snapshot rows per chunk for the copier.
    #[arg(long, default_value_t = Settings::default().chunk_rows)]
    pub chunk_rows: usize,
    /// Keep the throwaway databases.
    #[arg(long)]
    pub keep: bool,
}

/// Runs the benchmark and returns its JSON line.
pub async fn run(args: BenchArgs, shutdown: CancellationToken) -> anyhow::Result<String> {
    let old_template = ClusterConfig::load(&args.from).with_context(|| format!("loading {}", args.from.display()))?;
    let new_template = ClusterConfig::load(&args.to).with_context(|| format!("loading {}", args.to.display()))?;
    let name = match &args.table {
        Some(name) => name.clone(),
        None => old_template
            .pipeline
            .unbounded()
            .next()
            .map(|t| t.name.clone())
            .context("the pipeline has no latest table")?,
    };
    let table = CopiedTable::new(&old_template.pipeline, &name)?;
    let db = workload::unique_database("copierbench");
    tracing::info!(database = %db, dump_database = %format!("{db}_dump"), keep = args.keep, "benchmark databases");
    let old = workload::create_cluster(&old_template, &db).await?;
    let new = workload::create_cluster(&new_template, &db).await?;
    let dump_target = workload::create_cluster(&new_template, &format!("{db}_dump")).await?;
    let result = measure(&args, &table, &old, &new, &dump_target, shutdown).await;
    if !args.keep {
        for config in [&old, &new, &dump_target] {
            if let Err(error) = workload::drop_cluster(config).await {
                tracing::warn!(%error, "dropping a benchmark database failed");
            }
        }
    }
    result
}

async fn measure(
    args: &BenchArgs,
    table: &CopiedTable,
    old: &ClusterConfig,
    new: &ClusterConfig,
    dump_target: &ClusterConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<String> {
    let old_pools = ShardPools::new(old);
    let base_us = chrono::Utc::now().timestamp_micros() - 86_400_000_000;
    let load_started = Instant::now();
    let mut loaded = 0;
    while loaded < args.rows {
        let batch: Vec<_> = (loaded..(loaded + 8000).min(args.rows))
            .map(|i| {
                let seen = base_us + i as i64 * 1000;
                workload::row(table, i / PER_DATABASE + 1, i % PER_DATABASE, seen, seen, 0)
            })
            .collect();
        loaded += batch.len() as u64;
        workload::upsert(old, &old_pools, table, &batch).await?;
    }
    tracing::info!(rows = loaded, seconds = load_started.elapsed().as_secs_f64(), "benchmark table loaded");

    // Copier: snapshot copy of every row, 4 streams at once.
    let copier_shutdown = shutdown.child_token();
    let config = CopierConfig {
        from: old.clone(),
        to: new.clone(),
        table: table.name.clone(),
        settings: Settings {
            copy_phase: Duration::from_secs(3600),
            status_interval: Duration::from_millis(500),
            chunk_rows: args.chunk_rows,
            ..Settings::default()
        },
        progress: false,
    };
    let copy_started = Instant::now();
    let config_template = config.clone();
    let copier = tokio::spawn(crate::run(config, copier_shutdown.clone()));
    loop {
        let streams = crate::status::streams(new).await?;
        if streams.len() == old.shards.len() && streams.iter().all(|s| s.copy_done) {
            break;
        }
        if copier.is_finished() || shutdown.is_cancelled() {
            anyhow::bail!("copier stopped before the copy finished");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let copy_seconds = copy_started.elapsed().as_secs_f64();
    let copied = workload::count(new, table).await?;

    // Live: a writer changes rows on the old cluster while the copier replicates.
    let applied_before = events_applied(new).await?;
    let live_started = Instant::now();
    let live_write_seconds = write_changes(old, &old_pools, table, args, 0, args.catch_up_changes, base_us).await?;
    let ends = workload::binlog_ends(old).await?;
    wait_caught_up(old, new, &table.name, &ends, &copier, &shutdown).await?;
    let live_seconds = live_started.elapsed().as_secs_f64();
    let live_applied = events_applied(new).await? - applied_before;
    copier_shutdown.cancel();
    copier.await.context("copier task")??;

    // Backlog: changes pile up while the copier is down; then it catches up
    // while the writer keeps writing (half as many more changes).
    write_changes(old, &old_pools, table, args, args.catch_up_changes, args.catch_up_changes, base_us).await?;
    let applied_before = events_applied(new).await?;
    let copier_shutdown = shutdown.child_token();
    let config = CopierConfig {
        settings: Settings { status_interval: Duration::from_millis(500), ..Settings::default() },
        ..config_template
    };
    // The backlog is what the binlog holds as the copier starts: its rate is
    // measured to the moment the copier passes those ends, while the writer
    // keeps writing. (The rate to the very end, writer's changes included,
    // cannot reach 3x: the copier cannot finish before the writer does, so it
    // is at most 3 x writer seconds / catch-up seconds, whatever the copier's speed.)
    let backlog_ends = workload::binlog_ends(old).await?;
    let catch_up_started = Instant::now();
    let copier = tokio::spawn(crate::run(config, copier_shutdown.clone()));
    let (concurrent_write_seconds, backlog) = tokio::join!(
        write_changes(old, &old_pools, table, args, 2 * args.catch_up_changes, args.catch_up_changes / 2, base_us),
        // Polled: the time is a little late, never early.
        async {
            wait_caught_up(old, new, &table.name, &backlog_ends, &copier, &shutdown).await?;
            anyhow::Ok(catch_up_started.elapsed().as_secs_f64())
        },
    );
    let (concurrent_write_seconds, backlog_seconds) = (concurrent_write_seconds?, backlog?);
    let ends = workload::binlog_ends(old).await?;
    wait_caught_up(old, new, &table.name, &ends, &copier, &shutdown).await?;
    let catch_up_seconds = catch_up_started.elapsed().as_secs_f64();
    let catch_up_applied = events_applied(new).await? - applied_before;
    copier_shutdown.cancel();
    copier.await.context("copier task")??;
    old_pools.disconnect().await;

    // Baseline: mariadb-dump --single-transaction | mariadb, old shard i -> new shard i, all at once.
    let defaults = tempfile::NamedTempFile::new()?;
    let password = old.password().map(|p| p.expose_secret().to_owned()).unwrap_or_default();
    std::fs::write(defaults.path(), format!("[client]\nuser={}\npassword={password}\n", old.auth.user))?;
    let dump_started = Instant::now();
    let pipes = old
        .shards
        .iter()
        .zip(&dump_target.shards)
        .map(|(source, target)| dump_into(defaults.path(), &table.name, &source.endpoint, &target.endpoint));
    for result in futures::future::join_all(pipes).await {
        result?;
    }
    let dump_seconds = dump_started.elapsed().as_secs_f64();
    let dumped = workload::count(dump_target, table).await?;

    let copier_rows_per_sec = copied as f64 / copy_seconds;
    let dump_rows_per_sec = dumped as f64 / dump_seconds;
    let catch_up_apply_events_per_sec = catch_up_applied as f64 / catch_up_seconds;
    // The backlog is exactly the changes written while the copier was down (one row event each).
    let backlog_apply_events_per_sec = args.catch_up_changes as f64 / backlog_seconds;
    let catch_up_writer_changes_per_sec = (args.catch_up_changes / 2) as f64 / concurrent_write_seconds;
    Ok(serde_json::json!({
        "bench": "copier",
        "table": table.name,
        // The issue 14 goals: snapshot >= 1.0x of dump | restore, catch-up
        // (the backlog's apply rate) >= 3x the concurrent writer's rate.
        "snapshot_vs_dump_ratio": copier_rows_per_sec / dump_rows_per_sec.max(1e-9),
        "catch_up_vs_writer_ratio": backlog_apply_events_per_sec / catch_up_writer_changes_per_sec.max(1e-9),
        // Until the writer's last change is applied too (the figure before; below 3 by construction).
        "catch_up_to_end_vs_writer_ratio": catch_up_apply_events_per_sec / catch_up_writer_changes_per_sec.max(1e-9),
        "rows": args.rows,
        "copier_rows": copied,
        "copier_seconds": copy_seconds,
        "copier_rows_per_sec": copier_rows_per_sec,
        "dump_rows": dumped,
        "dump_seconds": dump_seconds,
        "dump_rows_per_sec": dump_rows_per_sec,
        "live_changes": args.catch_up_changes,
        "live_writer_changes_per_sec": args.catch_up_changes as f64 / live_write_seconds,
        "live_row_events_applied": live_applied,
        "live_seconds_to_caught_up": live_seconds,
        "live_apply_events_per_sec": live_applied as f64 / live_seconds,
        "catch_up_backlog_changes": args.catch_up_changes,
        "catch_up_concurrent_writer_changes": args.catch_up_changes / 2,
        "catch_up_backlog_seconds": backlog_seconds,
        "catch_up_backlog_apply_events_per_sec": backlog_apply_events_per_sec,
        "catch_up_row_events_applied": catch_up_applied,
        "catch_up_seconds": catch_up_seconds,
        "catch_up_apply_events_per_sec": catch_up_apply_events_per_sec,
        "catch_up_writer_changes_per_sec": catch_up_writer_changes_per_sec,
    })
    .to_string())
}

/// `mariadb-dump --single-transaction ... | mariadb ...` as two child
/// processes joined by a pipe, without a shell (no quoting of names, nothing
/// for a shell to interpret); fails if either side fails, like `pipefail`.
async fn dump_into(
    defaults: &std::path::Path,
    table: &str,
    source: &cluster::config::Endpoint,
    target: &cluster::config::Endpoint,
) -> anyhow::Result<()> {
    let client = |tool: &str, endpoint: &cluster::config::Endpoint| {
        let mut command = tokio::process::Command::new(tool);
        command
            .arg(format!("--defaults-extra-file={}", defaults.display()))
            .arg("--protocol=tcp")
            .arg(format!("--host={}", endpoint.host))
            .arg(format!("--port={}", endpoint.port))
            .kill_on_drop(true);
        command
    };
    let mut dump = client("mariadb-dump", source)
        .args(["--single-transaction", "--skip-add-locks", "--no-create-info", &source.database, table])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting mariadb-dump")?;
    let pipe: std::process::Stdio =
        dump.stdout.take().context("mariadb-dump's stdout")?.try_into().context("mariadb-dump's stdout as a pipe")?;
    let mut restore =
        client("mariadb", target).arg(&target.database).stdin(pipe).spawn().context("starting mariadb")?;
    let (dumped, restored) = tokio::join!(dump.wait(), restore.wait());
    let (dumped, restored) = (dumped.context("waiting for mariadb-dump")?, restored.context("waiting for mariadb")?);
    anyhow::ensure!(dumped.success(), "mariadb-dump from {source} failed: {dumped}");
    anyhow::ensure!(restored.success(), "mariadb into {target} failed: {restored}");
    Ok(())
}

async fn events_applied(new: &ClusterConfig) -> anyhow::Result<u64> {
    Ok(crate::status::streams(new).await?.iter().map(|s| s.events_applied).sum())
}

async fn wait_caught_up(
    old: &ClusterConfig,
    new: &ClusterConfig,
    table: &str,
    ends: &[crate::binlog::Position],
    copier: &tokio::task::JoinHandle<Result<(), crate::CopierError>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    while !workload::caught_up(old, new, table, ends).await? {
        if copier.is_finished() || shutdown.is_cancelled() {
            anyhow::bail!("copier stopped before catching up");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Changes `count` existing rows (a later sighting) through the merge upsert; returns the seconds it took.
async fn write_changes(
    old: &ClusterConfig,
    pools: &ShardPools,
    table: &CopiedTable,
    args: &BenchArgs,
    from: u64,
    count: u64,
    base_us: i64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut written = from;
    while written < from + count {
        let batch: Vec<_> = (written..(written + 2000).min(from + count))
            .map(|i| {
                let row = (i * 7919) % args.rows;
                let later = base_us + 86_400_000_000 + i as i64 * 1000;
                workload::row(table, row / PER_DATABASE + 1, row % PER_DATABASE, base_us, later, 0)
            })
            .collect();
        written += batch.len() as u64;
        workload::upsert(old, pools, table, &batch).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}
