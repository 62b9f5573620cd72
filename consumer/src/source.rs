//! The Kafka side: a librdkafka poll loop on its own thread feeding a bounded
//! channel, with rebalances delivered as events on a second small channel.
//!
//! Backpressure: the data channel holds at most two batches. When the batcher
//! stops taking messages for longer than [`STALL_AFTER`] (a shard is down or
//! slow), the poll thread pauses every assigned partition and keeps polling, so
//! the group keeps its membership and rebalances are still served; fetching
//! resumes once the batcher drains. librdkafka's own prefetch queue is bounded
//! by `queued.max.messages.kbytes` (set in the consumer config), and pausing
//! purges it, so memory stays bounded however long the outage lasts.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset};
use tokio::sync::mpsc;

use crate::message::{ChannelBytes, Control, Fetched, Receivers, Watermarks};

/// How long a revoke waits for the in-flight batch before releasing anyway;
/// the fence keeps a late write from the old owner harmless.
const REVOKE_WAIT: Duration = Duration::from_secs(60);
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a stopping consumer waits for its final commit and group leave.
/// Against a live broker both take well under a second; the group's session
/// timeout bounds how long a member that left without a word holds its partitions.
const CLOSE_DEADLINE: Duration = Duration::from_secs(15);
/// A batcher that takes nothing for this long is stalled (not just busy).
pub const STALL_AFTER: Duration = Duration::from_secs(5);
const CONTROL_CAPACITY: usize = 16;

/// What decides a partition's first offset on assignment.
pub struct Resume {
    /// The runtime the shard pools live on; the poll thread blocks on it briefly.
    pub handle: tokio::runtime::Handle,
    pub pools: Arc<cluster::pool::ShardPools>,
    /// Time-based starts for partitions this cluster and group never saw.
    pub starts: Option<Arc<crate::start::Starts>>,
}

/// How long an assignment may wait for the cluster's fences.
const RESUME_LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SourceContext {
    control: mpsc::Sender<Control>,
    resume: Resume,
    watermarks: Watermarks,
    /// Set while fetching is paused for backpressure; a new assignment is
    /// paused as soon as it arrives.
    stalled: AtomicBool,
    /// When fetching last resumed (see [`RESUME_GRACE`]).
    resumed_at: Mutex<Option<std::time::Instant>>,
    /// Partitions whose fence is above their end (see [`fence_above_end`]):
    /// kept paused, never resumed by backpressure, until an operator acts.
    stopped: Mutex<std::collections::HashSet<(String, i32)>>,
    /// Whether every partition of the current assignment is known to be
    /// fetching at a resolved position (reset on every assignment): a start
    /// at `latest` is only fixed once librdkafka has looked the end up.
    fetching_all: AtomicBool,
}

/// Why a partition is stopped: the message operators act on.
fn fence_above_end(topic: &str, partition: i32, fence: i64, end: i64) -> String {
    format!(
        "partition {topic}/{partition}: this cluster's fence ({fence}) is above the partition's end offset ({end}): \
         the topic was deleted and recreated, or this consumer points at another Kafka. The partition is \
         stopped (nothing below the old fence is skipped). Remedy: point --brokers at the right cluster; \
         or, if the topic really was recreated, replay it into a fresh cluster database, or delete this \
         partition's rows from dw_offset_fence on every shard (its windows are then counted again from \
         the new topic) and restart"
    )
}

/// After fetching resumes, end offsets in statistics may still be the ones
/// from before the pause (too low); they are ignored for this long.
const RESUME_GRACE: Duration = Duration::from_secs(3);

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        self.note_fetch_states(&statistics);
        // End offsets come from fetch responses: while paused (and just after)
        // they are stale, and a stale end would claim "caught up" too early.
        if self.stalled.load(Ordering::SeqCst) {
            return;
        }
        if self.resumed_at.lock().ok().and_then(|t| *t).is_some_and(|t| t.elapsed() < RESUME_GRACE) {
            return;
        }
        let Ok(mut marks) = self.watermarks.lock() else { return };
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // The last stable offset: what a read_committed consumer can reach.
                let end = if p.ls_offset >= 0 { p.ls_offset } else { p.hi_offset };
                if *partition >= 0 && end >= 0 {
                    marks.insert((topic.clone(), *partition), end);
                }
                // librdkafka's own lag (end minus committed), for assigned partitions only.
                if *partition >= 0 && p.consumer_lag >= 0 {
                    crate::metrics::lag(topic, *partition, p.consumer_lag);
                }
            }
        }
    }
}

impl SourceContext {
    /// Logs once per assignment when every assigned partition has a resolved
    /// fetch position, so operators (and tests) see when a `latest` start
    /// has been fixed.
    fn note_fetch_states(&self, statistics: &Statistics) {
        if self.fetching_all.load(Ordering::SeqCst) {
            return;
        }
        let mut assigned = 0usize;
        let mut active = 0usize;
        for t in statistics.topics.values() {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.desired {
                    assigned += 1;
                    active += usize::from(p.fetch_state == "active");
                }
            }
        }
        if assigned > 0 && active == assigned && !self.fetching_all.swap(true, Ordering::SeqCst) {
            tracing::info!(partitions = assigned, "fetching every assigned partition");
        }
    }
}

impl ConsumerContext for SourceContext {
    /// The default rebalance, plus start offsets chosen on assignment.
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.set_start_offsets(consumer, tpl);
                let assigned = if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                if let Err(e) = assigned {
                    tracing::error!(error = %e, "assigning partitions failed");
                }
                self.pause_stopped(consumer, tpl);
                self.post_rebalance(consumer, &Rebalance::Assign(tpl));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.pre_rebalance(consumer, &Rebalance::Revoke(tpl));
                // Judged again by whoever is assigned them next.
                if let Ok(mut stopped) = self.stopped.lock() {
                    for key in tpl_pairs(tpl) {
                        stopped.remove(&key);
                    }
                }
                let released = if cooperative { consumer.incremental_unassign(tpl) } else { consumer.unassign() };
                if let Err(e) = released {
                    tracing::error!(error = %e, "releasing partitions failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; dropping the assignment");
                let _ = consumer.unassign();
            }
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else { return };
        let partitions = tpl_pairs(tpl);
        tracing::info!(count = partitions.len(), "partitions revoked, draining in-flight batch");
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        // try_send: a batcher stuck on a down shard must not block the rebalance.
        if self.control.try_send(Control::Revoke { partitions, done }).is_ok()
            && wait.recv_timeout(REVOKE_WAIT).is_err()
        {
            tracing::warn!("in-flight batch not finished before revoke; releasing anyway (fenced)");
        }
        // The mock broker (and Kafka mid-rebalance) may refuse: the fence makes a lost commit harmless.
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::info!(error = %e, "commit on revoke not accepted"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else { return };
        tracing::info!(count = tpl.count(), "partitions assigned");
        self.fetching_all.store(false, Ordering::SeqCst);
        if self.stalled.load(Ordering::SeqCst) {
            if let Err(e) = consumer.pause(tpl) {
                tracing::warn!(error = %e, "pausing the new assignment failed");
            }
        }
    }
}

impl SourceContext {
    /// Keeps the newly assigned partitions whose fence is above their end paused.
    fn pause_stopped(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let Ok(stopped) = self.stopped.lock() else { return };
        let mut pause = TopicPartitionList::new();
        for (topic, partition) in tpl_pairs(tpl).into_iter().filter(|k| stopped.contains(k)) {
            pause.add_partition(&topic, partition);
        }
        if pause.count() > 0 {
            if let Err(e) = consumer.pause(&pause) {
                tracing::error!(error = %e, "pausing partitions whose fence is above their end failed");
            }
        }
    }

    /// A fence above the partition's end offset means the log this cluster
    /// applied is not this one; resuming there would skip every new message
    /// below the old fence without a word. Such a partition is stopped.
    fn check_fence_against_end(&self, consumer: &BaseConsumer<Self>, topic: &str, partition: i32, fence: i64) {
        let end = match consumer.fetch_watermarks(topic, partition, RESUME_LOOKUP_TIMEOUT) {
            Ok((_, end)) => end,
            Err(e) => {
                tracing::warn!(%topic, partition, error = %e, "cannot read the partition's end to check its fence");
                return;
            }
        };
        if fence <= end {
            crate::metrics::partition_stopped(topic, partition, false);
            return;
        }
        tracing::error!(%topic, partition, fence, end, "{}", fence_above_end(topic, partition, fence, end));
        crate::metrics::partition_stopped(topic, partition, true);
        if let Ok(mut stopped) = self.stopped.lock() {
            stopped.insert((topic.to_string(), partition));
        }
    }

    /// The cluster's fences come first: they say exactly what every shard has
    /// applied, even if the group's committed offsets expired or never
    /// existed (a renamed group). Partitions the cluster never saw start from
    /// the group's commit, else the time-based start, else `auto.offset.reset`.
    fn set_start_offsets(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let pools = self.resume.pools.clone();
        let lookup = self.resume.handle.block_on(async move {
            tokio::time::timeout(RESUME_LOOKUP_TIMEOUT, cluster::fence::resume_points(&pools)).await
        });
        let fences = match lookup {
            Ok(Ok(fences)) => Some(fences),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the cluster's fences");
                None
            }
            Err(_) => {
                tracing::error!("reading the cluster's fences timed out");
                None
            }
        };
        let Some(fences) = fences else {
            // Without the fences, a `latest` or time-based start could jump
            // past messages this cluster never applied: start uncommitted
            // partitions from the beginning instead (the fences skip what was applied).
            tracing::warn!("starting partitions without a committed offset from the beginning");
            let committed = consumer.committed_offsets(tpl.clone(), RESUME_LOOKUP_TIMEOUT).ok();
            for (topic, partition) in tpl_pairs(tpl) {
                if !has_commit(committed.as_ref(), &topic, partition) {
                    let _ = tpl.set_partition_offset(&topic, partition, Offset::Beginning);
                }
            }
            return;
        };
        let committed = match &self.resume.starts {
            Some(_) => consumer.committed_offsets(tpl.clone(), RESUME_LOOKUP_TIMEOUT).ok(),
            None => None,
        };
        let (mut from_fence, mut from_time) = (0, 0);
        for (topic, partition) in tpl_pairs(tpl) {
            let key = (topic.clone(), partition);
            let offset = if let Some(fence) = fences.get(&key) {
                from_fence += 1;
                self.check_fence_against_end(consumer, &topic, partition, *fence);
                Some(*fence)
            } else {
                let committed_here = has_commit(committed.as_ref(), &topic, partition);
                let start = self.resume.starts.as_ref().and_then(|s| s.get(&key)).filter(|_| !committed_here);
                start.map(|s| {
                    from_time += 1;
                    s.offset
                })
            };
            if let Some(offset) = offset {
                if let Err(e) = tpl.set_partition_offset(&topic, partition, Offset::Offset(offset)) {
                    tracing::warn!(%topic, partition, error = %e, "cannot set the start offset");
                }
            }
        }
        tracing::info!(from_fence, from_time, total = tpl.count(), "start offsets chosen");
    }
}

/// Whether the group has a committed offset for the partition.
fn has_commit(committed: Option<&TopicPartitionList>, topic: &str, partition: i32) -> bool {
    committed.and_then(|c| c.find_partition(topic, partition)).is_some_and(|e| matches!(e.offset(), Offset::Offset(_)))
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

impl Drop for Source {
    /// Stops the poll thread even when `run` is dropped mid-flight.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Source {
    /// Subscribes and starts polling; messages and membership changes arrive
    /// on the returned receivers.
    pub fn start(
        client: ClientConfig,
        topics: &[String],
        capacity: usize,
        capacity_bytes: usize,
        resume: Resume,
    ) -> Result<(Self, Receivers), KafkaError> {
        let (data_tx, data) = mpsc::channel(capacity);
        let bytes = ChannelBytes::new(capacity_bytes);
        let poll_bytes = bytes.clone();
        let (control_tx, control) = mpsc::channel(CONTROL_CAPACITY);
        let watermarks = Watermarks::default();
        let context = SourceContext {
            control: control_tx,
            resume,
            watermarks: watermarks.clone(),
            stalled: AtomicBool::new(false),
            resumed_at: Mutex::new(None),
            stopped: Mutex::new(Default::default()),
            fetching_all: AtomicBool::new(false),
        };
        let consumer: Arc<BaseConsumer<SourceContext>> = Arc::new(client.create_with_context(context)?);
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let consumer = consumer.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("kafka-poll".into())
                .spawn(move || PollLoop { consumer: &consumer, tx: data_tx, bytes: poll_bytes, stop: &stop }.run())
                .map_err(|e| KafkaError::ClientCreation(format!("spawning the poll thread: {e}")))?
        };
        Ok((Self { consumer, watermarks, stop, thread: Some(thread) }, Receivers { data, control, bytes }))
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

    /// Stops polling, commits what is stored, and leaves the group, giving
    /// the commit and the leave `CLOSE_DEADLINE` at most.
    ///
    /// With the broker gone, librdkafka's synchronous commit and its close
    /// wait on the coordinator for ever, so a SIGTERM would never end the
    /// process. Past the deadline the close is abandoned on its own thread,
    /// which ends with the process: nothing is lost, because what every shard
    /// applied is in its fences, and the next member resumes from them.
    /// Returns whether the consumer closed in time.
    pub fn shutdown(mut self) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let consumer = self.consumer.clone();
        drop(self);
        let (closed, wait) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new().name("kafka-close".into()).spawn(move || {
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(error = %e, "final commit not accepted (nothing new to commit, or rebalancing)");
            }
            // Dropping the last handle closes the consumer and leaves the group.
            drop(consumer);
            let _ = closed.send(());
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot spawn the close thread; leaving without a final commit");
            return false;
        }
        if wait.recv_timeout(CLOSE_DEADLINE).is_ok() {
            return true;
        }
        tracing::warn!(
            deadline_s = CLOSE_DEADLINE.as_secs(),
            "final commit and group leave did not finish (broker unreachable?); exiting without them, the fences keep every shard exact"
        );
        false
    }
}

struct PollLoop<'a> {
    consumer: &'a BaseConsumer<SourceContext>,
    tx: mpsc::Sender<Fetched>,
    /// The channel's byte budget (the batcher gives bytes back on receipt).
    bytes: ChannelBytes,
    stop: &'a AtomicBool,
}

impl PollLoop<'_> {
    fn run(self) {
        // A private current-thread runtime only to wait on the channel with a
        // timeout; librdkafka calls never run on the async workers.
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "poll thread cannot start its timer");
                return;
            }
        };
        let mut topics: HashMap<String, Arc<str>> = HashMap::new();
        // Messages polled but not yet accepted by the batcher (at most a few
        // while pausing takes effect).
        let mut held: VecDeque<Fetched> = VecDeque::new();
        // The front of `held` already holds its share of the byte budget.
        let mut front_has_bytes = false;
        while !self.stop.load(Ordering::SeqCst) {
            if let Some(next) = held.pop_front() {
                let wait = self.wait();
                // First the message's bytes, then a slot: the channel is full
                // when either runs out.
                let has_bytes = front_has_bytes
                    || runtime.block_on(async { tokio::time::timeout(wait, self.bytes.take(&next)).await }).is_ok();
                let reserved = if has_bytes {
                    runtime.block_on(async { tokio::time::timeout(wait, self.tx.reserve()).await })
                } else {
                    Ok(Err(mpsc::error::SendError(())))
                };
                match (has_bytes, reserved) {
                    (true, Ok(Ok(permit))) => {
                        permit.send(next);
                        front_has_bytes = false;
                        // Resume with room for a batch, not at the first free slot.
                        if held.is_empty() && self.stalled() && self.room_for_a_batch() {
                            self.set_paused(false);
                        }
                    }
                    (true, Ok(Err(_closed))) => return,
                    (_, _) => {
                        front_has_bytes = has_bytes;
                        held.push_front(next);
                        if !self.stalled() {
                            self.set_paused(true);
                        }
                        // Keep serving the group (heartbeats, rebalances) while paused.
                        self.poll_into(&mut held, &mut topics);
                    }
                }
                continue;
            }
            if self.tx.is_closed() {
                return;
            }
            if self.stalled() && self.room_for_a_batch() {
                self.set_paused(false);
            }
            self.poll_into(&mut held, &mut topics);
        }
    }

    /// Half the channel free, in messages and in bytes.
    fn room_for_a_batch(&self) -> bool {
        self.tx.capacity() >= self.tx.max_capacity() / 2 && self.bytes.available() >= self.bytes.cap() / 2
    }

    /// How long to wait for the batcher before polling again.
    fn wait(&self) -> Duration {
        if self.stalled() {
            POLL_TIMEOUT
        } else {
            STALL_AFTER
        }
    }

    fn stalled(&self) -> bool {
        self.consumer.context().stalled.load(Ordering::SeqCst)
    }

    fn poll_into(&self, held: &mut VecDeque<Fetched>, topics: &mut HashMap<String, Arc<str>>) {
        match self.consumer.poll(POLL_TIMEOUT) {
            None => {}
            Some(Ok(m)) => {
                let topic = topics.entry(m.topic().to_string()).or_insert_with(|| Arc::from(m.topic())).clone();
                held.push_back(Fetched {
                    topic,
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp_ms: m.timestamp().to_millis(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                });
            }
            Some(Err(e)) => tracing::warn!(error = %e, "kafka poll error"),
        }
    }

    fn set_paused(&self, paused: bool) {
        let context = self.consumer.context();
        let assignment = match self.consumer.assignment() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "reading the assignment failed; will retry");
                return;
            }
        };
        let result = if paused {
            self.consumer.pause(&assignment)
        } else {
            // A stopped partition stays paused when backpressure ends.
            let stopped = context.stopped.lock().map(|s| s.clone()).unwrap_or_default();
            let mut resume = TopicPartitionList::new();
            for (topic, partition) in tpl_pairs(&assignment).into_iter().filter(|k| !stopped.contains(k)) {
                resume.add_partition(&topic, partition);
            }
            self.consumer.resume(&resume)
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, paused, "pause/resume failed; will retry");
            return;
        }
        // Only once it took effect, so a failure is retried on the next round.
        context.stalled.store(paused, Ordering::SeqCst);
        crate::metrics::paused(paused);
        if paused {
            // Ends seen before the pause say nothing about when it is over.
            if let Ok(mut marks) = context.watermarks.lock() {
                marks.clear();
            }
            tracing::warn!(partitions = assignment.count(), "batcher stalled (shard slow or down): fetching paused");
        } else {
            if let Ok(mut t) = context.resumed_at.lock() {
                *t = Some(std::time::Instant::now());
            }
            tracing::info!(partitions = assignment.count(), "batcher accepting again: fetching resumed");
        }
    }
}
