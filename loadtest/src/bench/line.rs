//! A second pipeline's figure beside the main bench: one group writing
//! its blind rollup into the new cluster's shards, against the INSERT
//! ceiling of that table on the same shards, as one JSON line.

use std::path::{Path, PathBuf};
use std::time::Instant;

use cluster::config::ClusterConfig;
use pipeline::{Pipeline, Table, TableKind, WritePath};
use serde::Serialize;

use super::ceiling::{write_ceiling, Ceiling};
use super::{consume, load_average, rate, BenchConfig, BenchError, Spawn};
use crate::api::produce::{produce, ApiProduceConfig};
use crate::api::workload::ApiWorkloadConfig;

/// Partitions of each topic on the line's own broker (as the main bench's).
const PARTITIONS: i32 = 16;

/// One pipeline's table written by one group, against the INSERT ceiling of
/// the same table on the same shards, measured in the same run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PipelineLine {
    pub pipeline: String,
    pub table: String,
    /// `blind`, `fold` or `insert`: how the consumer writes the table.
    pub write_path: String,
    pub messages: u64,
    pub produce_msgs_per_s: f64,
    /// Multi-row INSERTs (500 rows) of new rows of `table`, one writer per shard.
    pub insert_ceiling_rows_per_s: f64,
    /// Rows of `table` the group wrote.
    pub rows: f64,
    pub seconds: f64,
    pub startup_seconds: f64,
    /// Messages applied per second (every table of the pipeline).
    pub events_per_s: f64,
    pub rows_per_s: f64,
    /// From the first applied batch on.
    pub steady_rows_per_s: f64,
    /// `rows_per_s / insert_ceiling_rows_per_s`.
    pub ratio: f64,
    /// `steady_rows_per_s / insert_ceiling_rows_per_s`.
    pub steady_ratio: f64,
    pub peak_rss_mib: f64,
    /// Load average (1 minute) at the start and the end: the machine is shared.
    pub load_average: [f64; 2],
}

/// The table the line measures: the pipeline's first blind-written rollup.
pub(super) fn blind_rollup(pipeline: &Pipeline) -> Option<&Table> {
    pipeline.tables.iter().find(|t| t.kind == TableKind::Rollup && t.write_path == WritePath::Blind)
}

/// The new cluster's shards with another pipeline: a cluster file beside
/// `new` (its relative paths still resolve) naming `description`,
/// removed when dropped.
struct Repointed {
    file: PathBuf,
    config: ClusterConfig,
}

impl Repointed {
    fn new(new: &Path, description: &Path) -> Result<Self, BenchError> {
        let setup = |what: &str, e: &dyn std::fmt::Display| BenchError::Setup(format!("{what}: {e}"));
        let text = std::fs::read_to_string(new).map_err(|e| setup(&new.display().to_string(), &e))?;
        let description = description.canonicalize().map_err(|e| setup(&description.display().to_string(), &e))?;
        // The file's own `pipeline = ...` (a top-level key: before the first table) gives way.
        let mut top_level = true;
        let kept: Vec<&str> = text
            .lines()
            .filter(|line| {
                top_level &= !line.trim_start().starts_with('[');
                !(top_level && line.trim_start().starts_with("pipeline"))
            })
            .collect();
        let head = format!("pipeline = {:?}\n", description.display().to_string());
        let dir = new.parent().unwrap_or(Path::new("."));
        let file = dir.join(format!(".bench-pipeline-{}.toml", std::process::id()));
        std::fs::write(&file, head + &kept.join("\n") + "\n").map_err(|e| setup(&file.display().to_string(), &e))?;
        match ClusterConfig::load(&file) {
            Ok(config) => Ok(Self { file, config }),
            Err(e) => {
                let _ = std::fs::remove_file(&file);
                Err(setup("cluster", &e))
            }
        }
    }
}

impl Drop for Repointed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Produces `config.messages` messages of the second pipeline (the api
/// workload: `loadtest::api`) to a broker of its own (librdkafka's mock),
/// measures the INSERT ceiling of its blind rollup on the new cluster's
/// shards, then one group into those shards.
pub async fn pipeline_line(config: &BenchConfig, description: &Path) -> Result<PipelineLine, BenchError> {
    let setup = |e: &dyn std::fmt::Display| BenchError::Setup(e.to_string());
    let load_start = load_average();
    let repointed = Repointed::new(&config.new, description)?;
    let cluster = &repointed.config;
    let pipeline = cluster.pipeline.pipeline.clone();
    let table = blind_rollup(&pipeline)
        .ok_or_else(|| BenchError::Setup(format!("pipeline {} has no blind-written rollup table", pipeline.name)))?;

    let mock = rdkafka::mocking::MockCluster::new(3)?;
    let prefix = format!("{}{}.", config.topic_prefix.trim_end_matches('.'), pipeline.name);
    for topic in &pipeline.topics {
        mock.create_topic(&format!("{prefix}{}", topic.name), PARTITIONS, 1)?;
    }
    let kafka = topics::kafka::KafkaConfig::plaintext(mock.bootstrap_servers());
    let produce_config = ApiProduceConfig {
        topic_prefix: prefix.clone(),
        messages: config.messages,
        workload: ApiWorkloadConfig {
            seed: 1,
            tenants: 300,
            gateways: 3,
            start_ms: chrono::Utc::now().timestamp_millis() - 2 * 3_600_000,
        },
        minute_secs: cluster.time.minute_secs(),
        hour_secs: cluster.time.hour_secs(),
    };
    let started = Instant::now();
    produce(&produce_config, &kafka, &pipeline).await.map_err(|e| setup(&e))?;
    let produce_msgs_per_s = rate(config.messages, started.elapsed());

    let insert_ceiling_rows_per_s = write_ceiling(cluster, table, config.insert_rows, Ceiling::Insert).await?;
    let spawn = Spawn {
        consumer_bin: config.consumer_bin.clone(),
        kafka_args: vec!["--brokers".into(), kafka.bootstrap.clone().into()],
        topic_prefix: prefix,
        messages: config.messages,
    };
    let db = format!("bench_{}_{}", chrono::Utc::now().format("%H%M%S"), pipeline.name);
    let run = consume(&spawn, &[(&repointed.file, cluster, db)]).await?;
    let rows = run.tables.iter().find(|t| t.table == table.name).map_or(0.0, |t| t.rows);
    let all_rows = run.rows_per_s * run.seconds;
    let rows_per_s = rows / run.seconds.max(1e-9);
    let steady_rows_per_s = run.steady_rows_per_s * rows / all_rows.max(1.0);
    Ok(PipelineLine {
        pipeline: pipeline.name.clone(),
        table: table.name.clone(),
        write_path: match table.write_path {
            WritePath::Blind => "blind",
            WritePath::Fold => "fold",
            WritePath::Insert => "insert",
        }
        .into(),
        messages: config.messages,
        produce_msgs_per_s,
        insert_ceiling_rows_per_s,
        rows,
        seconds: run.seconds,
        startup_seconds: run.startup_seconds,
        events_per_s: run.events_per_s,
        rows_per_s,
        steady_rows_per_s,
        ratio: rows_per_s / insert_ceiling_rows_per_s.max(1e-9),
        steady_ratio: steady_rows_per_s / insert_ceiling_rows_per_s.max(1e-9),
        peak_rss_mib: run.peak_rss_mib,
        load_average: [load_start, load_average()],
    })
}
