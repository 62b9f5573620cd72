//! `dualwrite-loadtest`: produce realistic telemetry with a ground truth, and check a cluster against it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use loadtest::produce::{produce, ProduceConfig};
use loadtest::truth::Truth;
use loadtest::workload::WorkloadConfig;

#[derive(Parser)]
#[command(name = "dualwrite-loadtest", version, about = "Realistic Insights load with a ground truth")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce N messages and write the ground truth they imply.
    Produce {
        #[arg(long, env = "DUALWRITE_BROKERS")]
        brokers: String,
        #[arg(long, env = "DUALWRITE_TOPIC_PREFIX", default_value = "")]
        topic_prefix: String,
        /// Messages to produce (both topics together).
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        /// Messages per second (0 = as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// First interval (RFC 3339); default: one hour ago.
        #[arg(long)]
        start: Option<String>,
        /// Where to write the ground truth (JSON).
        #[arg(long)]
        truth: PathBuf,
    },
    /// Compare a cluster with a ground truth; prints every difference, exits 1 if any.
    Check {
        #[arg(long, env = "DUALWRITE_CLUSTER")]
        cluster: PathBuf,
        #[arg(long)]
        truth: PathBuf,
        /// Keep checking until the cluster matches or this much time passed
        /// (for a consumer that is still catching up).
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<std::time::Duration>,
    },
}

fn main() -> anyhow::Result<()> {
    cluster::process::init_tracing();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let equal = runtime.block_on(async move {
        match cli.command {
            Command::Produce { brokers, topic_prefix, messages, rate, seed, start, truth } => {
                let start_ms = match start {
                    Some(s) => chrono::DateTime::parse_from_rfc3339(&s).context("--start")?.timestamp_millis(),
                    None => chrono::Utc::now().timestamp_millis() - 3_600_000,
                };
                let config = ProduceConfig {
                    brokers,
                    topic_prefix,
                    messages,
                    rate: Some(rate).filter(|r| *r > 0),
                    workload: WorkloadConfig::new(seed, start_ms),
                };
                let shutdown = cluster::process::shutdown_on_signals();
                let result = produce(&config, &shutdown).await.context("producing")?;
                result.save(&truth).context("writing the ground truth")?;
                println!(
                    "produced {} messages; ground truth: {} minute rows, {} hour rows, {} patterns, {} slow queries -> {}",
                    result.messages,
                    result.minute.len(),
                    result.hour.len(),
                    result.patterns.len(),
                    result.slow.len(),
                    truth.display()
                );
                Ok::<bool, anyhow::Error>(true)
            }
            Command::Check { cluster, truth, wait } => {
                let config = cluster::config::ClusterConfig::load(&cluster)
                    .with_context(|| format!("loading cluster file {}", cluster.display()))?;
                let truth = Truth::load(&truth).context("loading the ground truth")?;
                let deadline = std::time::Instant::now() + wait.unwrap_or_default();
                let report = loop {
                    let report = loadtest::check::check(&config, &truth).await.context("checking")?;
                    if report.is_equal() || std::time::Instant::now() >= deadline {
                        break report;
                    }
                    eprintln!(
                        "cluster {}: {} differences in {} rows compared, still waiting",
                        config.name,
                        report.differences.len(),
                        report.rows_compared
                    );
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                };
                for d in &report.differences {
                    println!("{d}");
                }
                if report.is_equal() {
                    println!("cluster {} matches the ground truth ({} rows compared)", config.name, report.rows_compared);
                } else {
                    println!(
                        "cluster {} DIFFERS from the ground truth: {} differences ({} rows compared)",
                        config.name,
                        report.differences.len(),
                        report.rows_compared
                    );
                }
                Ok(report.is_equal())
            }
        }
    })?;
    if !equal {
        std::process::exit(1);
    }
    Ok(())
}
