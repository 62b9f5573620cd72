//! The batcher: cuts batches from the poll thread's stream and applies them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use futures::future::join_all;
use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use rdkafka::consumer::Consumer;
use tokio_util::sync::CancellationToken;
use topics::Codec;

use crate::apply::{apply_shard, FenceInfo, ShardOutcome};
use crate::config::ConsumerConfig;
use crate::error::ConsumerError;
use crate::isolate::{rejected_items, IsolateError};
use crate::log_limit::RateLimit;
use crate::message::{Control, Fetched, Receivers};
use crate::plan::{capped_detail, DeadLetter, ShardItem};
use crate::plan::{plan, BatchPlan, TimeRules};
use crate::schemas::ResolveError;
use crate::shape::Shape;
use crate::source::{Resume, Source};
use crate::{dead_letter, metrics};
use cluster::retry::{classify, is_retryable, Backoff, ErrorClass};

/// Dead letters are counted one by one; this many lines a minute are logged.
static DEAD_LETTER_LOG: RateLimit = RateLimit::new(Duration::from_secs(60), 20);

const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Longest one shard transaction may take before it is abandoned and retried.
const SHARD_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);
/// How often an idle consumer confirms its caught-up partitions, so that
/// windows settle on partitions that receive nothing new.
const IDLE_CONFIRM_EVERY: Duration = Duration::from_secs(5);

/// What stops a batch: a fatal error, or shutdown while a shard was failing
/// (the batch is abandoned and redelivered on restart).
enum BatchError {
    Fatal(ConsumerError),
    Abandoned,
}

/// Read-only state every batch uses (replaced, not changed, when the
/// registry adds a schema to the codec).
#[derive(Clone)]
struct Shared {
    codec: Codec,
    cluster: ClusterConfig,
    /// The cluster's pipeline, compiled: topics, tables, columns.
    shape: Arc<Shape>,
    rules: TimeRules,
    starts: Option<Arc<crate::start::Starts>>,
}

/// Runs the consumer until `shutdown` fires (then drains the batch being
/// built and commits) or a fatal error occurs (then stops with offsets where
/// they were: nothing past the failure is acknowledged).
pub async fn run(config: ConsumerConfig, shutdown: CancellationToken) -> Result<(), ConsumerError> {
    config.validate()?;
    metrics::describe(config.cluster.shards.len());
    let pools = Arc::new(ShardPools::new(&config.cluster));
    let control = pools.control().cloned().ok_or_else(|| ConsumerError::Cluster("no control database".into()))?;
    check_schema(&pools, &config.cluster).await?;

    let shape = Arc::new(Shape::for_cluster(&config.cluster, &config.topic_prefix));
    let mut topic_names: Vec<String> = shape.topic_names();
    topic_names.sort();
    let client = config.kafka_client_config();
    // Bad Kafka settings stop the job here, in one line; an outage is waited out.
    topics::metrics::describe();
    let probe = topics::preflight::Preflight::waiting(topic_names.clone());
    match topics::preflight::run_async(client.clone(), probe, shutdown.clone()).await {
        Ok(_) => {}
        Err(topics::preflight::PreflightError::Cancelled) => return Ok(()),
        Err(error) => return Err(error.into()),
    }
    let starts = {
        let (client, topics, start) = (client.clone(), topic_names.clone(), config.start);
        tokio::task::spawn_blocking(move || crate::start::resolve(&client, &topics, start))
            .await
            .map_err(|e| ConsumerError::Internal(format!("resolving start offsets: {e}")))??
            .map(Arc::new)
    };
    let resume = Resume { handle: tokio::runtime::Handle::current(), pools: pools.clone(), starts: starts.clone() };
    // Two batches in flight between the poll thread and the batcher at most,
    // in messages and in bytes.
    let (source, receivers) =
        Source::start(client, &topic_names, 2 * config.batch_max_messages, 2 * config.batch_max_bytes, resume)?;
    tracing::info!(group = %config.group, cluster = %config.cluster.name, topics = ?topic_names, "consumer started");
    ensure_members_table(&control).await;
    let ends = match topics::admin::standalone_consumer(&config.kafka.client(), "liveness") {
        Ok(client) => Some(Arc::new(client)),
        Err(e) => {
            tracing::warn!(error = %e, "no client for end offsets: the cluster's lag is not judged for liveness");
            None
        }
    };
    let watch = crate::liveness::Watch {
        group: &config.group,
        cluster: &config.cluster.name,
        member: crate::liveness::member_name(),
        bound: config.liveness_bound,
        pools: &pools,
        control: &control,
        consumer: source.consumer.clone(),
        ends,
    };

    let rules = TimeRules::from(&config.cluster.time);
    let shared = Arc::new(Shared {
        // Without a registry the description's schema files name their
        // ids; with one, only the registry's ids mean anything.
        codec: match &config.registry {
            Some(_) => config.codec.clone(),
            None => config.codec.clone().with_pipeline(&config.cluster.pipeline),
        },
        cluster: config.cluster.clone(),
        shape,
        rules,
        starts,
    });
    let shared = std::sync::Mutex::new(shared);
    let batcher = Batcher {
        config: &config,
        progress: Default::default(),
        started: Default::default(),
        shared,
        pools: &pools,
        control: control.clone(),
        source: &source,
        shutdown: &shutdown,
        abandoned: Default::default(),
    };
    // The liveness watch runs beside the batcher, in this task, until the batcher ends.
    let done = CancellationToken::new();
    let (result, ()) = tokio::join!(
        async {
            let result = batcher.run(receivers).await;
            done.cancel();
            result
        },
        watch.run(&done),
    );
    // Its consumer handle must be gone before the close below (the last handle leaves the group).
    drop(watch);
    let (applied, skipped) = {
        let p = batcher.progress.lock().await;
        (p.applied, p.skipped)
    };

    // The receivers are gone, so a revoke during close cannot block on them.
    // Whether it closed in time is logged by `shutdown`; the fences make either outcome exact.
    let _closed = tokio::task::spawn_blocking(move || source.shutdown())
        .await
        .map_err(|e| ConsumerError::Internal(format!("joining the poll thread: {e}")))?;
    // The poll thread held the other handle; it has been joined.
    if let Ok(pools) = Arc::try_unwrap(pools) {
        pools.disconnect().await;
    }
    match &result {
        // Totals for this process's lifetime: skipped = redelivered below a fence.
        Ok(()) => tracing::info!(applied, skipped, "consumer stopped"),
        Err(e) => tracing::error!(error = %e, "consumer stopped on a fatal error"),
    }
    result
}

/// The heartbeat table (`dualwrite-cluster schema` creates it; a cluster
/// whose schema predates it gets it here when the login may). Without it the
/// member still runs and judges liveness; only `status` cannot name owners.
async fn ensure_members_table(control: &Pool) {
    let created = async {
        let mut conn = control.get_conn().await?;
        cluster::schema::create_missing(&mut conn, &cluster::schema::CONSUMER_TABLES[2..]).await
    };
    if let Err(e) = created.await {
        tracing::warn!(error = %e, "no dw_consumer_members table (run dualwrite-cluster schema): status cannot name partition owners");
    }
}

/// Every shard has the fence table and every table and column the
/// pipeline describes: a description changed before the shards were (a new
/// column without its ALTER) stops the group at start, not at its first batch.
async fn check_schema(pools: &ShardPools, cluster: &ClusterConfig) -> Result<(), ConsumerError> {
    for (i, shard) in cluster.shards.iter().enumerate() {
        let probe = async {
            let mut conn = pools.shard(i).get_conn().await?;
            conn.query_drop("SELECT 1 FROM dw_offset_fence LIMIT 0").await?;
            conn.query::<(String, String), _>(
                "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()",
            )
            .await
        };
        let range = shard.range.to_string();
        let present = probe.await.map_err(|source| ConsumerError::Schema { shard: range.clone(), source })?;
        for table in &cluster.pipeline.tables {
            for column in &table.columns {
                if !present.iter().any(|(t, c)| *t == table.name && *c == column.name) {
                    return Err(ConsumerError::Pipeline {
                        shard: range,
                        why: format!(
                            "table {} has no column {} that pipeline {} describes: add it ({}) or run \
                             `dualwrite-cluster schema` for a new table",
                            table.name,
                            column.name,
                            cluster.pipeline.name,
                            pipeline::column_definition(column)
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// A number (offset or time) for one (topic, partition).
type PartitionValue = ((String, i32), i64);

/// For the periodic progress line.
#[derive(Default)]
struct Progress {
    applied: u64,
    skipped: u64,
    reported_applied: u64,
    reported_at: Option<Instant>,
    /// Lag per partition as of its last batch.
    lag: HashMap<(String, i32), i64>,
}

/// How often a running consumer logs its rate and lag.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

struct Batcher<'a> {
    config: &'a ConsumerConfig,
    progress: tokio::sync::Mutex<Progress>,
    /// Partitions known to have fence rows on this cluster.
    started: tokio::sync::Mutex<std::collections::HashSet<(String, i32)>>,
    /// Swapped whole when the registry teaches the codec a schema; a batch
    /// being planned keeps the one it started with.
    shared: std::sync::Mutex<Arc<Shared>>,
    pools: &'a Arc<ShardPools>,
    control: Pool,
    source: &'a Source,
    shutdown: &'a CancellationToken,
    /// Set once a batch was abandoned at shutdown: no later batch may be
    /// applied after it, or its fences would move past the abandoned
    /// messages (the batch after it is usually already received or planned).
    abandoned: std::sync::atomic::AtomicBool,
}

/// A batch being planned (on a blocking thread) and then applied: at most
/// one is in flight while the next one is received and planned, so the
/// decoding of one batch overlaps the shard transactions of the previous one.
type InFlight<'b> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ConsumerError>> + Send + 'b>>;

impl Batcher<'_> {
    async fn run(&self, mut rx: Receivers) -> Result<(), ConsumerError> {
        let max = self.config.batch_max_messages;
        let max_bytes = self.config.batch_max_bytes;
        let mut pending: Vec<Fetched> = Vec::with_capacity(max.min(4096));
        let mut pending_bytes = 0usize;
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut in_flight: Option<InFlight<'_>> = None;
        let mut idle_tick = tokio::time::interval(IDLE_CONFIRM_EVERY);
        idle_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let idle = pending.is_empty() && in_flight.is_none();
            let applied = async {
                match in_flight.as_mut() {
                    Some(batch) => batch.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                control = rx.control.recv() => match control {
                    Some(Control::Revoke { partitions, done }) => {
                        // What was fetched before the revoke and already handed
                        // over belongs to the batch being finished (a message the
                        // poll thread still holds comes later and is fenced).
                        while let Ok(m) = rx.data.try_recv() {
                            rx.bytes.give_back(&m);
                            pending.push(m);
                        }
                        tracing::debug!(count = partitions.len(), messages = pending.len(), "revoke: finishing the in-flight batches");
                        let finished = match in_flight.take() {
                            Some(batch) => batch.await,
                            None => Ok(()),
                        };
                        let flushed = match finished {
                            Ok(()) => self.flush(std::mem::take(&mut pending)).await,
                            Err(e) => Err(e),
                        };
                        pending.clear();
                        (deadline, pending_bytes) = (None, 0);
                        let _ = done.send(());
                        flushed?;
                    }
                    None => break,
                },
                result = applied => {
                    in_flight = None;
                    result?;
                }
                _ = timer => {
                    self.cut(&mut pending, &mut in_flight).await?;
                    (deadline, pending_bytes) = (None, 0);
                }
                _ = idle_tick.tick(), if idle => self.confirm_idle().await,
                message = rx.data.recv() => match message {
                    Some(m) => {
                        rx.bytes.give_back(&m);
                        if pending.is_empty() {
                            deadline = Some(tokio::time::Instant::now() + self.config.batch_max_wait);
                        }
                        pending_bytes += m.size();
                        pending.push(m);
                        if pending.len() >= max || pending_bytes >= max_bytes {
                            self.cut(&mut pending, &mut in_flight).await?;
                            (deadline, pending_bytes) = (None, 0);
                        }
                    }
                    None => break,
                },
            }
        }
        // Drain: what was cut into a batch is applied; what is still in the
        // channel was never acknowledged and will be fetched again.
        drop(rx);
        if let Some(batch) = in_flight.take() {
            batch.await?;
        }
        self.flush(pending).await
    }

    /// Cuts `pending` into a batch: starts planning it at once, waits for the
    /// batch before it to be applied (offsets are stored in order, and at
    /// most two batches are held beyond the channel), then leaves it in flight.
    async fn cut<'s>(
        &'s self,
        pending: &mut Vec<Fetched>,
        in_flight: &mut Option<InFlight<'s>>,
    ) -> Result<(), ConsumerError> {
        if pending.is_empty() {
            return Ok(());
        }
        let Some(messages) = self.with_schemas(std::mem::take(pending)).await? else {
            return Ok(());
        };
        let planned = self.start_plan(messages);
        if let Some(previous) = in_flight.take() {
            if let Err(e) = previous.await {
                // Joined, not left running: planning is pure, its result is dropped.
                let _ = planned.await;
                return Err(e);
            }
        }
        *in_flight = Some(Box::pin(async move {
            let plan = planned.await.map_err(|e| ConsumerError::Internal(format!("planning a batch: {e}")))?;
            self.apply_and_store(plan).await
        }));
        Ok(())
    }

    /// Coverage starts for the batch's partitions that the cluster has not
    /// started yet. Starting at offset 0 covers everything; a time-based start
    /// covers from its lookup time; otherwise the cluster holds every message
    /// after the one just before its first, whose time is read from the topic.
    async fn coverage_starts(&self, plan: &BatchPlan) -> HashMap<(String, i32), i64> {
        let mut out = HashMap::new();
        let mut known = self.started.lock().await;
        let unknown: Vec<&crate::plan::PartitionRange> =
            plan.ranges.iter().filter(|r| !known.contains(&(r.topic.to_string(), r.partition))).collect();
        if unknown.is_empty() {
            return out;
        }
        match cluster::fence::started_partitions(self.pools.shard(0)).await {
            Ok(rows) => known.extend(rows),
            Err(e) => tracing::debug!(error = %e, "reading started partitions failed"),
        }
        let mut lookups = Vec::new();
        let shared = self.shared();
        for r in unknown {
            let key = (r.topic.to_string(), r.partition);
            if known.contains(&key) {
                continue;
            }
            let from_time = shared.starts.as_ref().and_then(|s| s.get(&key)).filter(|s| s.offset == r.first_offset);
            match from_time {
                _ if r.first_offset == 0 => {
                    out.insert(key, 0);
                }
                Some(start) => {
                    out.insert(key, start.covered_from_ms);
                }
                None => {
                    out.insert(key.clone(), r.first_message_ms);
                    lookups.push((key, r.first_offset - 1));
                }
            }
        }
        for (key, time) in self.times_of(lookups).await {
            out.insert(key, time + 1);
        }
        out
    }

    /// Message times at the given offsets, for those still in the topic;
    /// one probe consumer for all of them, off the async workers.
    async fn times_of(&self, wanted: Vec<PartitionValue>) -> Vec<PartitionValue> {
        if wanted.is_empty() {
            return Vec::new();
        }
        let client = self.config.kafka_client_config();
        let read = tokio::task::spawn_blocking(move || -> Result<Vec<PartitionValue>, crate::start::StartError> {
            let probe = crate::start::probe(&client)?;
            let mut out = Vec::new();
            for ((topic, partition), offset) in wanted {
                let (low, _) = probe.fetch_watermarks(&topic, partition, Duration::from_secs(10))?;
                if offset >= low {
                    out.push((
                        (topic.clone(), partition),
                        crate::start::timestamp_at(&probe, &topic, partition, offset)?,
                    ));
                }
            }
            Ok(out)
        });
        match read.await {
            Ok(Ok(times)) => times,
            Ok(Err(e)) => {
                tracing::info!(error = %e, "previous messages unavailable; coverage starts at the first applied message");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    /// One log line every [`PROGRESS_EVERY`]: messages applied, rate, lag and
    /// the time to catch up at that rate.
    async fn report_progress(&self) {
        let mut p = self.progress.lock().await;
        let now = Instant::now();
        let Some(since) = p.reported_at else {
            p.reported_at = Some(now);
            return;
        };
        let elapsed = now.duration_since(since);
        if elapsed < PROGRESS_EVERY {
            return;
        }
        let rate = (p.applied - p.reported_applied) as f64 / elapsed.as_secs_f64();
        let lag: i64 = p.lag.values().sum();
        let eta_s = if lag > 0 && rate > 0.0 { (lag as f64 / rate) as u64 } else { 0 };
        tracing::info!(applied = p.applied, rate = rate as u64, lag, eta_s, "progress");
        p.reported_applied = p.applied;
        p.reported_at = Some(now);
    }

    /// Best effort: a failure only delays settlement until the next tick.
    async fn confirm_idle(&self) {
        // librdkafka's own view of the assignment: control events may be dropped, this may not.
        let Ok(assignment) = self.source.consumer.assignment() else { return };
        let ends: Vec<(String, i32, i64)> = match self.source.watermarks.lock() {
            Ok(marks) => assignment
                .elements()
                .iter()
                .filter_map(|e| {
                    let key = (e.topic().to_string(), e.partition());
                    marks.get(&key).map(|end| (key.0, key.1, *end))
                })
                .collect(),
            Err(_) => return,
        };
        for (i, pool) in self.pools.shards().iter().enumerate() {
            match tokio::time::timeout(Duration::from_secs(2), crate::apply::confirm_idle(pool, &ends)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(shard = i, error = %e, "confirming idle partitions failed"),
                Err(_) => tracing::debug!(shard = i, "confirming idle partitions timed out"),
            }
        }
    }

    fn shared(&self) -> Arc<Shared> {
        match self.shared.lock() {
            Ok(shared) => shared.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Learns from the registry the writer schemas of `messages` that the
    /// codec lacks, before planning (which is pure and never waits on the
    /// network). `None`: shutdown came while the registry was unavailable;
    /// the batch, and every one after it, is left to be redelivered.
    async fn with_schemas(&self, messages: Vec<Fetched>) -> Result<Option<Vec<Fetched>>, ConsumerError> {
        let Some(registry) = &self.config.registry else {
            return Ok(Some(messages));
        };
        let shared = self.shared();
        match crate::schemas::resolve(registry, &shared.codec, &messages, self.shutdown).await {
            Ok(None) => Ok(Some(messages)),
            Ok(Some(codec)) => {
                let learned = Arc::new(Shared { codec, ..Shared::clone(&shared) });
                match self.shared.lock() {
                    Ok(mut current) => *current = learned,
                    Err(poisoned) => *poisoned.into_inner() = learned,
                }
                Ok(Some(messages))
            }
            Err(ResolveError::Abandoned) => {
                tracing::warn!(
                    messages = messages.len(),
                    "batch abandoned at shutdown while the schema registry was unavailable; it will be redelivered"
                );
                self.abandoned.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(None)
            }
            Err(ResolveError::Fatal(e)) => Err(e),
        }
    }

    /// Decodes and routes `messages` on a blocking thread.
    fn start_plan(&self, messages: Vec<Fetched>) -> tokio::task::JoinHandle<BatchPlan> {
        let shared = self.shared();
        tokio::task::spawn_blocking(move || plan(messages, &shared.codec, &shared.cluster, &shared.shape, shared.rules))
    }

    /// Plans and applies `messages` and stores their offsets.
    async fn flush(&self, messages: Vec<Fetched>) -> Result<(), ConsumerError> {
        if messages.is_empty() {
            return Ok(());
        }
        let Some(messages) = self.with_schemas(messages).await? else {
            return Ok(());
        };
        let plan =
            self.start_plan(messages).await.map_err(|e| ConsumerError::Internal(format!("planning a batch: {e}")))?;
        self.apply_and_store(plan).await
    }

    /// Applies a planned batch and stores its offsets.
    async fn apply_and_store(&self, plan: BatchPlan) -> Result<(), ConsumerError> {
        use std::sync::atomic::Ordering;
        if self.abandoned.load(Ordering::SeqCst) {
            tracing::debug!(
                messages = plan.message_count(),
                "batch after an abandoned one not applied; it will be redelivered"
            );
            return Ok(());
        }
        let started = Instant::now();
        match self.apply(&plan).await {
            Ok(()) => {}
            Err(BatchError::Abandoned) => {
                self.abandoned.store(true, Ordering::SeqCst);
                tracing::warn!(messages = plan.message_count(), "batch abandoned at shutdown; it will be redelivered");
                return Ok(());
            }
            Err(BatchError::Fatal(e)) => return Err(e),
        }
        let offsets: Vec<(String, i32, i64)> =
            plan.ranges.iter().map(|r| (r.topic.to_string(), r.partition, r.next_offset)).collect();
        self.source.store(&offsets);
        metrics::batch(started.elapsed(), plan.message_count());
        self.report_progress().await;
        Ok(())
    }

    async fn apply(&self, plan: &BatchPlan) -> Result<(), BatchError> {
        // Dead letters first: once the shards' fences move past these
        // offsets, nothing would bring the messages back.
        self.record_dead_letters(&plan.dead_letters).await?;

        let coverage_starts = self.coverage_starts(plan).await;
        let high_watermarks: Vec<Option<i64>> = {
            let marks = self
                .source
                .watermarks
                .lock()
                .map_err(|_| BatchError::Fatal(ConsumerError::Internal("watermark lock poisoned".into())))?;
            plan.ranges.iter().map(|r| marks.get(&(r.topic.to_string(), r.partition)).copied()).collect()
        };
        let fence = FenceInfo {
            ranges: &plan.ranges,
            high_watermarks: &high_watermarks,
            group: &self.config.group,
            coverage_starts: &coverage_starts,
        };
        let results =
            join_all(plan.shards.iter().enumerate().map(|(i, items)| self.apply_with_retry(i, items, &fence))).await;
        let mut applied = vec![0u64; plan.ranges.len()];
        let mut skipped = vec![0u64; plan.ranges.len()];
        for result in results {
            let outcome = result?;
            for i in 0..plan.ranges.len() {
                applied[i] += outcome.counts.applied[i];
                skipped[i] += outcome.counts.skipped[i];
            }
        }
        let mut progress = self.progress.lock().await;
        for (i, r) in plan.ranges.iter().enumerate() {
            if let Some(hw) = high_watermarks[i] {
                progress.lag.insert((r.topic.to_string(), r.partition), (hw - r.next_offset).max(0));
            }
            progress.applied += applied[i];
            progress.skipped += skipped[i];
            metrics::messages(&r.topic, "applied", applied[i]);
            metrics::messages(&r.topic, "skipped_below_fence", skipped[i]);
            metrics::applied_through(&r.topic, r.partition, r.max_message_ms);
        }
        Ok(())
    }

    /// Makes `letters` durable in the control database (retrying while it is
    /// unreachable), then counts and (at a bounded rate) logs them.
    async fn record_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), BatchError> {
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
        loop {
            match dead_letter::record(&self.control, &self.config.cluster.name, &self.config.group, letters).await {
                Ok(()) => break,
                Err(e) if is_retryable(&e) => self.wait_retry(&mut backoff, "control", &e).await?,
                Err(e) => return Err(BatchError::Fatal(ConsumerError::Control(e))),
            }
        }
        for d in letters {
            metrics::dead_letter(d.reason);
            metrics::messages(&d.topic, "dead_letter", 1);
            if let Some(suppressed) = DEAD_LETTER_LOG.allow() {
                tracing::warn!(topic = %d.topic, partition = d.partition, offset = d.offset, reason = d.reason, detail = %d.detail, not_logged_before = suppressed, "message dead-lettered");
            }
        }
        Ok(())
    }

    /// The shard refused some of `items` (a data error): finds them by
    /// bisection, dead-letters them (`store_rejected`, with the server's
    /// error) and returns the others, to be applied with the fence.
    async fn set_aside_rejected(
        &self,
        shard: usize,
        items: &[ShardItem],
        fence: &FenceInfo<'_>,
        failure: mysql_async::Error,
    ) -> Result<Vec<ShardItem>, Result<mysql_async::Error, BatchError>> {
        let bad = match rejected_items(self.pools.shard(shard), &self.shared().shape, items, fence, failure).await {
            Ok(bad) => bad,
            Err(IsolateError::Database(e)) => return Err(Ok(e)),
            Err(IsolateError::Combination(source)) => {
                let range = self.config.cluster.shards[shard].range.to_string();
                return Err(Err(BatchError::Fatal(ConsumerError::Shard { shard, range, source })));
            }
        };
        let letters: Vec<DeadLetter> = bad
            .iter()
            .map(|(i, error)| {
                let item = &items[*i];
                let r = &fence.ranges[item.range];
                DeadLetter {
                    topic: r.topic.clone(),
                    partition: r.partition,
                    offset: item.offset,
                    reason: "store_rejected",
                    detail: capped_detail(error),
                    key: item.raw.key.clone(),
                    payload: item.raw.payload.clone(),
                    message_ms: item.raw.message_ms,
                }
            })
            .collect();
        self.record_dead_letters(&letters).await.map_err(Err)?;
        let mut rejected = bad.into_iter().map(|(i, _)| i).peekable();
        let mut rest = Vec::with_capacity(items.len() - letters.len());
        for (i, item) in items.iter().enumerate() {
            if rejected.peek() == Some(&i) {
                rejected.next();
            } else {
                rest.push(item.clone());
            }
        }
        Ok(rest)
    }

    async fn apply_with_retry(
        &self,
        shard: usize,
        items: &[ShardItem],
        fence: &FenceInfo<'_>,
    ) -> Result<ShardOutcome, BatchError> {
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
        let pool = self.pools.shard(shard);
        let shape = self.shared().shape.clone();
        // Replaced by the items left once rejected ones are set aside.
        let mut remaining: Option<Vec<ShardItem>> = None;
        loop {
            let items = remaining.as_deref().unwrap_or(items);
            // A shard that stops answering (frozen, partitioned) must not hang
            // the batch or shutdown: a timed-out attempt rolls back and retries.
            let attempt =
                match tokio::time::timeout(SHARD_ATTEMPT_TIMEOUT, apply_shard(pool, &shape, items, fence)).await {
                    Ok(result) => result,
                    Err(_) => Err(mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed)),
                };
            match attempt {
                Ok(outcome) => {
                    record_outcome(&shape, shard, &outcome);
                    return Ok(outcome);
                }
                Err(e) if is_retryable(&e) => {
                    metrics::shard_retry(shard);
                    self.wait_retry(&mut backoff, &self.config.cluster.shards[shard].range.to_string(), &e).await?;
                }
                Err(e) if classify(&e) == ErrorClass::Rejected => {
                    match self.set_aside_rejected(shard, items, fence, e).await {
                        Ok(rest) => remaining = Some(rest),
                        Err(Err(stop)) => return Err(stop),
                        Err(Ok(e)) if is_retryable(&e) => {
                            metrics::shard_retry(shard);
                            self.wait_retry(&mut backoff, &self.config.cluster.shards[shard].range.to_string(), &e)
                                .await?;
                        }
                        Err(Ok(source)) => {
                            let range = self.config.cluster.shards[shard].range.to_string();
                            return Err(BatchError::Fatal(ConsumerError::Shard { shard, range, source }));
                        }
                    }
                }
                Err(source) => {
                    let range = self.config.cluster.shards[shard].range.to_string();
                    return Err(BatchError::Fatal(ConsumerError::Shard { shard, range, source }));
                }
            }
        }
    }

    /// Sleeps before the next try, or gives up if shutdown was requested.
    async fn wait_retry(
        &self,
        backoff: &mut Backoff,
        target: &str,
        error: &mysql_async::Error,
    ) -> Result<(), BatchError> {
        if self.shutdown.is_cancelled() {
            return Err(BatchError::Abandoned);
        }
        let delay = backoff.next_delay();
        // Logged on the first failure and then every tenth, not on every retry.
        if backoff.attempts() == 1 || backoff.attempts().is_multiple_of(10) {
            tracing::warn!(target_db = target, attempt = backoff.attempts(), error = %error, delay_ms = delay.as_millis() as u64, "retryable database error, backing off");
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = self.shutdown.cancelled() => Err(BatchError::Abandoned),
        }
    }
}

fn record_outcome(shape: &Shape, shard: usize, o: &ShardOutcome) {
    for (table, rows) in shape.tables.iter().zip(&o.rows) {
        metrics::rows(shard, &table.name, *rows);
    }
    for (topic, partition, fence, first) in &o.gaps {
        let lost = u64::try_from(first - fence).unwrap_or(0);
        metrics::offset_gap(topic, *partition, lost);
        tracing::error!(shard, %topic, partition, fence, first_offset = first, lost, "offset gap: messages between the fence and this batch expired from the topic before this group applied them; coverage of the partition restarts after the gap");
    }
}
