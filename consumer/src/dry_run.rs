//! The consumer's CPU cost per event without a database: the benchmark's
//! no-sink mode (`dualwrite-consumer dry-run`).
//!
//! Reads every message of the topics with a bare consumer (no group), cuts
//! batches as `run` does, and for each batch runs exactly what a batch costs
//! before the shards answer: decode and validate ([`crate::plan`]), group per
//! key ([`crate::coalesce`]), fold, encode the sketches and render every
//! statement ([`crate::apply::write_statements`]). Only that work is timed, in
//! CPU time of the thread doing it, so the result is events per second per
//! core whatever else the machine runs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::Offset;
use serde::Serialize;
use topics::Codec;

use crate::apply::{write_statements, FenceInfo, ShardOutcome};
use crate::coalesce::coalesce;
use crate::message::Fetched;
use crate::plan::{plan, ShardItem, TimeRules};
use crate::shape::Shape;

pub struct DryRunConfig {
    /// Brokers and security settings (no group is joined).
    pub kafka: ClientConfig,
    /// Prepended to the pipeline's topic names.
    pub topic_prefix: String,
    /// Stop after this many messages (or when the topics are read to their end).
    pub messages: u64,
    pub batch_max_messages: usize,
    /// The shard map messages are routed by, and `[time]`.
    pub cluster: ClusterConfig,
    pub codec: Codec,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DryRunReport {
    pub messages: u64,
    pub batches: u64,
    /// CPU time of decoding, validating, coalescing and rendering the writes.
    pub cpu_seconds: f64,
    /// `messages / cpu_seconds`: events per second one core sustains.
    pub events_per_core_s: f64,
    /// Rows the batches would write, per table.
    pub rows: std::collections::BTreeMap<String, u64>,
    /// Messages read, per topic.
    pub topic_messages: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("the topics hold {found} messages, fewer than the {wanted} asked for")]
    TooFew { found: u64, wanted: u64 },
}

/// CPU time of the calling thread, in nanoseconds, from the kernel's
/// scheduler statistics (`unsafe` is not used in this workspace, which rules
/// out `clock_gettime` through libc).
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// Blocking: call it off the async workers.
pub fn run(config: &DryRunConfig) -> Result<DryRunReport, DryRunError> {
    let consumer = topics::admin::standalone_consumer(&config.kafka, "dry-run")?;
    let shape = Shape::for_cluster(&config.cluster, &config.topic_prefix);
    let codec = config.codec.clone().with_pipeline(&config.cluster.pipeline);
    let mut names: Vec<String> = shape.topic_names();
    names.sort();
    let mut tpl = TopicPartitionList::new();
    let mut available = 0u64;
    for (topic, partition, low, high) in topics::admin::watermarks(&consumer, &names, Duration::from_secs(10))? {
        tpl.add_partition_offset(&topic, partition, Offset::Beginning)?;
        available += u64::try_from(high - low).unwrap_or(0);
    }
    if available < config.messages {
        return Err(DryRunError::TooFew { found: available, wanted: config.messages });
    }
    consumer.assign(&tpl)?;
    let rules = TimeRules::from(&config.cluster.time);
    let mut report = DryRunReport::default();
    let mut cpu = Duration::ZERO;
    let mut batch = Vec::with_capacity(config.batch_max_messages);
    let deadline = Instant::now() + Duration::from_secs(300);
    while report.messages + (batch.len() as u64) < config.messages && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else { continue };
        batch.push(Fetched {
            topic: m.topic().into(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
        });
        if batch.len() >= config.batch_max_messages {
            cpu += self::batch(std::mem::take(&mut batch), &shape, &codec, config, rules, &mut report);
        }
    }
    if !batch.is_empty() {
        cpu += self::batch(batch, &shape, &codec, config, rules, &mut report);
    }
    report.cpu_seconds = cpu.as_secs_f64();
    report.events_per_core_s = report.messages as f64 / report.cpu_seconds.max(1e-9);
    Ok(report)
}

/// One batch's work before the shards answer; returns its CPU time.
fn batch(
    messages: Vec<Fetched>,
    shape: &Shape,
    codec: &Codec,
    config: &DryRunConfig,
    rules: TimeRules,
    report: &mut DryRunReport,
) -> Duration {
    for m in &messages {
        // A lookup per message, a key allocated once per topic.
        match report.topic_messages.get_mut(&*m.topic) {
            Some(n) => *n += 1,
            None => {
                report.topic_messages.insert(m.topic.to_string(), 1);
            }
        }
    }
    let started = thread_cpu();
    let planned = plan(messages, codec, &config.cluster, shape, rules);
    let fences: Vec<i64> = planned.ranges.iter().map(|r| r.first_offset).collect();
    let high_watermarks = vec![None; planned.ranges.len()];
    let coverage_starts = HashMap::new();
    let fence = FenceInfo {
        ranges: &planned.ranges,
        high_watermarks: &high_watermarks,
        group: "dry-run",
        coverage_starts: &coverage_starts,
    };
    let mut bytes = 0usize;
    for items in &planned.shards {
        let refs: Vec<&ShardItem> = items.iter().collect();
        let coalesced = coalesce(shape, &refs, &fences);
        let outcome = ShardOutcome { counts: coalesced.counts.clone(), ..Default::default() };
        let rows = coalesced.rows();
        let statements = write_statements(shape, &coalesced, Vec::new(), &fence, &fences, &outcome);
        bytes += statements.iter().map(String::len).sum::<usize>();
        for (table, n) in shape.tables.iter().zip(rows) {
            *report.rows.entry(table.name.clone()).or_default() += n;
        }
    }
    let spent = thread_cpu().saturating_sub(started);
    // Keeps the rendering from being optimised away.
    std::hint::black_box(bytes);
    report.messages += planned.message_count();
    report.batches += 1;
    spent
}
