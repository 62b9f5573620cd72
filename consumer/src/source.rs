//! The Kafka side: a librdkafka poll loop on its own thread feeding a bounded
//! channel, with rebalances delivered in-band as events.
//!
//! Backpressure: when the batcher is busy (a slow shard), the channel fills,
//! the poll thread blocks in `blocking_send` and stops polling. librdkafka keeps
//! heartbeating from its own threads, but `max.poll.interval.ms` bounds how long
//! the group tolerates that; the consumer sets it well above the longest shard
//! retry it expects.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::{ClientContext, Offset};
use tokio::sync::mpsc;

/// How long a revoke waits for the in-flight batch before releasing anyway;
/// the fence keeps a late write from the old owner harmless.
const REVOKE_WAIT: Duration = Duration::from_secs(60);
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// One fetched message, copied out of librdkafka's buffers.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Message timestamp (create time), milliseconds.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// What the poll thread hands the batcher, in fetch order.
#[derive(Debug)]
pub enum Input {
    Message(Fetched),
    /// Partitions are about to be taken away: finish (or abandon) what is in
    /// flight for them, then reply.
    Revoke { partitions: Vec<(String, i32)>, done: std::sync::mpsc::SyncSender<()> },
    Assign { partitions: Vec<(String, i32)> },
}

/// High watermarks from librdkafka statistics, for lag and "reached the end".
pub type Watermarks = Arc<Mutex<HashMap<(String, i32), i64>>>;

pub struct SourceContext {
    tx: mpsc::Sender<Input>,
    watermarks: Watermarks,
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        let Ok(mut marks) = self.watermarks.lock() else { return };
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.hi_offset >= 0 {
                    marks.insert((topic.clone(), *partition), p.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else { return };
        let partitions = tpl_pairs(tpl);
        tracing::info!(count = partitions.len(), "partitions revoked, draining in-flight batch");
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if self.tx.blocking_send(Input::Revoke { partitions, done }).is_ok() && wait.recv_timeout(REVOKE_WAIT).is_err() {
            tracing::warn!("in-flight batch not finished before revoke; releasing anyway (fenced)");
        }
        // The mock broker (and Kafka mid-rebalance) may refuse: the fence makes a lost commit harmless.
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::info!(error = %e, "commit on revoke not accepted");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let partitions = tpl_pairs(tpl);
            tracing::info!(count = partitions.len(), "partitions assigned");
            let _ = self.tx.blocking_send(Input::Assign { partitions });
        }
    }
}

fn tpl_pairs(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
}

/// The running poll thread and a handle for storing offsets.
pub struct Source {
    pub consumer: Arc<BaseConsumer<SourceContext>>,
    pub watermarks: Watermarks,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Source {
    /// Subscribes and starts polling; events arrive on the returned receiver.
    pub fn start(
        client: ClientConfig,
        topics: &[String],
        capacity: usize,
    ) -> Result<(Self, mpsc::Receiver<Input>), KafkaError> {
        let (tx, rx) = mpsc::channel(capacity);
        let watermarks = Watermarks::default();
        let context = SourceContext { tx: tx.clone(), watermarks: watermarks.clone() };
        let consumer: Arc<BaseConsumer<SourceContext>> = Arc::new(client.create_with_context(context)?);
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let consumer = consumer.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("kafka-poll".into())
                .spawn(move || poll_loop(&consumer, &tx, &stop))
                .map_err(|e| KafkaError::ClientCreation(format!("spawning the poll thread: {e}")))?
        };
        Ok((Self { consumer, watermarks, stop, thread: Some(thread) }, rx))
    }

    /// Marks `offsets` (next offset to read, per partition) for the next commit.
    pub fn store(&self, offsets: &[(String, i32, i64)]) {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, next) in offsets {
            if tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)).is_err() {
                continue;
            }
        }
        if let Err(e) = self.consumer.store_offsets(&tpl) {
            // Happens when a partition was revoked meanwhile; its new owner resumes from the fence.
            tracing::debug!(error = %e, "offsets not stored");
        }
    }

    /// Stops polling, commits what is stored, and leaves the group.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final commit not accepted (nothing new to commit, or rebalancing)");
        }
        // Dropping the last handle closes the consumer and leaves the group.
    }
}

fn poll_loop(consumer: &BaseConsumer<SourceContext>, tx: &mpsc::Sender<Input>, stop: &AtomicBool) {
    let mut topics: HashMap<String, Arc<str>> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(POLL_TIMEOUT) {
            None => {}
            Some(Ok(m)) => {
                let topic = topics.entry(m.topic().to_string()).or_insert_with(|| Arc::from(m.topic())).clone();
                let fetched = Fetched {
                    topic,
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp_ms: m.timestamp().to_millis(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                };
                if tx.blocking_send(Input::Message(fetched)).is_err() {
                    break;
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "kafka poll error"),
        }
    }
}
