//! Where a partition starts when this cluster has never applied it and the
//! group has never committed it: `earliest`, `latest`, `at <time>` or
//! `window-boundary` (the first message of the first whole window the topic
//! still holds, so the new cluster's first window is complete).
//!
//! Time-based starts need the broker's offset-by-time lookup, which is
//! checked before it is trusted: librdkafka's mock cluster answers every
//! lookup with the end of the log, and some brokers answer a lookup with no
//! match with offset 0. A broker that fails the check is reported, never guessed.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::Offset;

const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    Earliest,
    Latest,
    /// Milliseconds since the epoch.
    At(i64),
    /// Window size in seconds.
    WindowBoundary(i64),
}

/// Where one partition starts, and the earliest message time from which the
/// cluster will hold every message of it (its coverage start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionStart {
    pub offset: i64,
    pub covered_from_ms: i64,
}

/// A consumer outside any group for reading single messages by offset.
pub fn probe(client: &ClientConfig) -> Result<BaseConsumer, StartError> {
    Ok(topics::admin::standalone_consumer(client, "start-probe")?)
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(
        "the broker cannot look offsets up by time ({topic}/{partition}: a lookup of time 0 answered {answered}, \
         the partition starts at {low}); librdkafka's mock cluster cannot: use --start earliest or latest there"
    )]
    NoTimeLookup { topic: String, partition: i32, answered: i64, low: i64 },
    #[error("{topic}/{partition}: no message at offset {offset} within {TIMEOUT:?}")]
    Fetch { topic: String, partition: i32, offset: i64 },
    #[error("the topics hold no messages: there is no window boundary to start at")]
    Empty,
}

/// Per (topic, partition).
pub type Starts = HashMap<(String, i32), PartitionStart>;

/// Resolves time-based starts for every partition of `topics`; `Ok(None)`
/// for earliest/latest, which librdkafka's `auto.offset.reset` handles.
pub fn resolve(
    client: &ClientConfig,
    topics: &[String],
    position: StartPosition,
) -> Result<Option<Starts>, StartError> {
    let (at_ms, boundary) = match position {
        StartPosition::Earliest | StartPosition::Latest => return Ok(None),
        StartPosition::At(ms) => (ms, None),
        StartPosition::WindowBoundary(seconds) => (0, Some(seconds.max(1) * 1000)),
    };
    let probe = probe(client)?;
    let parts = topics::admin::watermarks(&probe, topics, TIMEOUT)?;
    check_time_lookup(&probe, &parts)?;
    let at_ms = match boundary {
        None => at_ms,
        Some(window_ms) => {
            // The latest "first retained message" across partitions, rounded up
            // to a window boundary: the first window every partition holds whole.
            let mut latest_first = None;
            for (topic, partition, low, high) in &parts {
                if low < high {
                    let ts = timestamp_at(&probe, topic, *partition, *low)?;
                    latest_first = latest_first.max(Some(ts));
                }
            }
            let first = latest_first.ok_or(StartError::Empty)?;
            (first + window_ms - 1).div_euclid(window_ms) * window_ms
        }
    };
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, _, _) in &parts {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(at_ms))?;
    }
    let found = probe.offsets_for_times(tpl, TIMEOUT)?;
    let mut out = HashMap::new();
    for (topic, partition, _, high) in &parts {
        let answered = found.find_partition(topic, *partition).and_then(|e| e.offset().to_raw()).unwrap_or(-1);
        let mut offset = if answered < 0 || answered > *high { *high } else { answered };
        // "No message at or after T" must mean the end of the log; a broker
        // that answers 0 instead is caught by reading what it pointed at.
        if offset < *high && timestamp_at(&probe, topic, *partition, offset)? < at_ms {
            offset = *high;
        }
        out.insert((topic.clone(), *partition), PartitionStart { offset, covered_from_ms: at_ms });
    }
    tracing::info!(start_ms = at_ms, partitions = out.len(), "start offsets resolved by time");
    Ok(Some(out))
}

/// A lookup of time 0 must answer the first retained offset of a non-empty partition.
fn check_time_lookup(probe: &BaseConsumer, parts: &[(String, i32, i64, i64)]) -> Result<(), StartError> {
    let Some((topic, partition, low, _)) = parts.iter().find(|(_, _, low, high)| low < high) else { return Ok(()) };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, *partition, Offset::Offset(0))?;
    let found = probe.offsets_for_times(tpl, TIMEOUT)?;
    let answered = found.find_partition(topic, *partition).and_then(|e| e.offset().to_raw()).unwrap_or(-1);
    if answered != *low {
        return Err(StartError::NoTimeLookup { topic: topic.clone(), partition: *partition, answered, low: *low });
    }
    Ok(())
}

/// The timestamp of the message at `offset` (or the first one after it).
pub fn timestamp_at(probe: &BaseConsumer, topic: &str, partition: i32, offset: i64) -> Result<i64, StartError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    probe.assign(&tpl)?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = probe.poll(Duration::from_millis(200)) {
            if m.topic() == topic && m.partition() == partition && m.offset() >= offset {
                return Ok(m.timestamp().to_millis().unwrap_or(0));
            }
        }
    }
    Err(StartError::Fetch { topic: topic.to_string(), partition, offset })
}
