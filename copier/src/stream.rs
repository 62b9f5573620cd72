//! One stream: one old shard's table copied into the new shards, then kept
//! up to date from the old shard's binlog.
//!
//! ## The cycle
//!
//! The invariant, per target shard (its fence, `state.rs`): every source key
//! <= `last_key` is on the shard as of binlog position `position`.
//!
//! 1. Open a consistent snapshot at binlog position S.
//! 2. Fast-forward: apply the binlog from the smallest fence position up to
//!    exactly S, each shard only for keys it covers and transactions past its
//!    own position. Now every covered key is as of S.
//! 3. Copy: read rows after the smallest last key from the snapshot in key
//!    order, in chunks (bounded in rows and bytes), for `copy_phase`; each
//!    chunk goes out in parts, and each part with the advanced fences (last
//!    key = the part's last key, position = S) commits together on every
//!    target shard. Covered keys stay as of S.
//! 4. Catch up: apply the binlog from S for `catch_up_phase` (or to the
//!    source's end), for the covered keys only: keys not copied yet are read
//!    from a later snapshot, which already has those changes.
//! 5. Repeat; once the copy is done, keep applying the binlog until stopped.
//!
//! The binlog never runs past S in step 2: a row copied as of S must not be
//! fenced past changes it did not get. Positions are transaction ends, so a
//! resume starts at a whole transaction.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, Pool};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::apply::{plan_binlog, write_shards, Target};
use crate::assemble::Assembler;
use crate::batch::Batch;
use crate::binlog::Position;
use crate::config::Settings;
use crate::copy::{self, Splitter, WriterContext};
use crate::error::CopierError;
use crate::phase::Phase;
use crate::reader::{self, Read};
use crate::sidecar::{self, Fence, ViewUpdate};
use crate::source::{self, Snapshot};
use crate::table::{CopyRow, KeyspaceIds};

/// Rows in a stream's first snapshot chunk, before row sizes are known.
const FIRST_CHUNK_ROWS: usize = 64;

/// Most bytes of row images one chunk may hold: with `chunk_rows` of
/// near-1 MiB `normalized_sql` values a chunk would otherwise run for
/// gigabytes past the copy phase's time limit and shutdown.
const CHUNK_BYTES: usize = 32 << 20;

/// The next chunk's row limit: `chunk_rows`, or fewer so that rows as large
/// as the largest of the last chunk (`largest` bytes) stay within [`CHUNK_BYTES`].
fn next_chunk_rows(chunk_rows: usize, largest: usize) -> usize {
    (CHUNK_BYTES / largest.max(1)).clamp(1, chunk_rows)
}

/// Longest pause between retries of a failing stream.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A stream's fixed inputs.
pub struct Stream {
    /// The copied table.
    pub table: String,
    /// The old shard's range name: the stream's name.
    pub source_shard: String,
    /// The old shard's database.
    pub source_db: String,
    /// Snapshot and metadata connections to the old shard.
    pub source_pool: Pool,
    /// Connection options for the binlog connection (its own, never pooled).
    pub source_opts: Opts,
    /// The new cluster.
    pub target: Arc<Target>,
    /// Pacing.
    pub settings: Settings,
    /// Cancelled to stop the stream (it flushes what it holds first).
    pub shutdown: CancellationToken,
    /// Progress bar (hidden when not on a terminal).
    pub progress: ProgressBar,
    /// The throttle of the old shard's server read (primary or replica).
    pub source_gate: Arc<cluster::throttle_gate::ShardGate>,
    /// The throttles of the new shards written, in shard order.
    pub target_gates: Arc<Vec<cluster::throttle_gate::ShardGate>>,
}

impl Stream {
    /// Runs until shutdown (Ok) or a fatal error (Err, also recorded in the
    /// sidecar tables). Retryable errors restart the stream from the fences
    /// the target shards hold, with backoff.
    pub async fn run(&self) -> Result<(), CopierError> {
        let mut backoff = Duration::from_secs(1);
        loop {
            let error = match self.run_once().await {
                Ok(()) => {
                    self.final_view(Phase::Stopped, None).await;
                    return Ok(());
                }
                Err(error) => error,
            };
            let fatal = error.is_fatal();
            crate::metrics::stream_error(&self.table, &self.source_shard, error.kind(), fatal);
            if fatal {
                tracing::error!(table = %self.table, source_shard = %self.source_shard, kind = error.kind(), %error, "stream failed");
                self.final_view(Phase::Failed, Some(&error)).await;
                return Err(error);
            }
            tracing::warn!(table = %self.table, source_shard = %self.source_shard, %error, ?backoff, "stream error, retrying from the target's fences");
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    self.final_view(Phase::Stopped, None).await;
                    return Ok(());
                }
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn final_view(&self, phase: Phase, error: Option<&CopierError>) {
        let view =
            ViewUpdate { phase, error: error.map(|e| (e.kind().to_owned(), e.to_string())), ..ViewUpdate::default() };
        crate::metrics::phase(&self.table, &self.source_shard, phase);
        self.progress.set_message(phase.to_string());
        self.progress.abandon();
        if let Err(e) = sidecar::write_view(self.target.pools.shards(), &self.table, &self.source_shard, &view).await {
            tracing::warn!(source_shard = %self.source_shard, error = %e, "could not record the stream's end on the target");
        }
    }

    async fn run_once(&self) -> Result<(), CopierError> {
        {
            let mut conn = self.source_pool.get_conn().await?;
            source::check_settings(&mut conn).await?;
            self.target.table.check_source(&mut conn, &self.source_db).await?;
        }
        sidecar::ensure_table(self.target.pools.shards()).await?;
        let mut fences =
            sidecar::load_fences(self.target.pools.shards(), &self.target.table, &self.source_shard).await?;
        {
            // Fences written while reading another server of this shard
            // (primary <-> replica) are re-pointed through their GTIDs.
            let mut conn = self.source_pool.get_conn().await?;
            crate::gtid_move::translate(&mut conn, &self.source_opts, &mut fences, &self.table, &self.source_shard)
                .await?;
        }
        let mut run = Run::new(self, fences);
        tracing::info!(
            source_shard = %self.source_shard,
            resume_position = ?run.resume_position().map(|p| p.to_string()),
            copy_done = run.copy_done(),
            "stream starting"
        );
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            if run.copy_done() {
                let from =
                    run.resume_position().ok_or_else(|| CopierError::Config("copy done without a position".into()))?;
                return run.apply_binlog(from, None, None, Phase::Replicating).await;
            }
            let mut snapshot = Snapshot::open(&self.source_pool).await?;
            if run.view.rows_total.is_none() {
                let total: Option<u64> =
                    snapshot.conn.query_first(format!("SELECT COUNT(*) FROM {}", self.table)).await?;
                run.view.rows_total = total;
                self.progress.set_length(total.unwrap_or(0));
            }
            if let Some(from) = run.resume_position() {
                if from < snapshot.position {
                    run.apply_binlog(from, Some(snapshot.position.clone()), None, Phase::CatchingUp).await?;
                }
            }
            if self.shutdown.is_cancelled() {
                snapshot.close().await?;
                return Ok(());
            }
            let done = run.copy(&mut snapshot).await?;
            let snapshot_position = snapshot.position.clone();
            snapshot.close().await?;
            if done || self.shutdown.is_cancelled() {
                continue;
            }
            let end = {
                let mut conn = self.source_pool.get_conn().await?;
                source::binlog_end(&mut conn).await?
            };
            let deadline = Instant::now() + self.settings.catch_up_phase;
            if snapshot_position < end {
                run.apply_binlog(snapshot_position, Some(end), Some(deadline), Phase::CatchingUp).await?;
            }
        }
    }
}

/// A snapshot row as `CopiedTable::copy_chunk_sql` selects it, as the copy writes it.
fn copy_row(
    row: mysql_async::Row,
    ids: &mut KeyspaceIds,
    table: &crate::table::CopiedTable,
) -> Result<CopyRow, CopierError> {
    table.copy_row(row.unwrap(), ids).map_err(|why| CopierError::Schema {
        table: table.name.clone(),
        why: format!("unexpected snapshot row: {why}"),
    })
}

/// A stream's moving parts during one attempt.
struct Run<'a> {
    stream: &'a Stream,
    /// Each target shard's fence, as committed.
    fences: Vec<Fence>,
    /// The operator view, refreshed every `status_interval`.
    view: ViewUpdate,
    last_view: Instant,
    started: Instant,
    /// Rows copied in this attempt (for the rate).
    copied_this_run: u64,
    /// Timestamp of the last applied binlog transaction (for the lag).
    last_event_time: Option<u32>,
    /// GTID of the last transaction seen.
    gtid: String,
}

impl<'a> Run<'a> {
    fn new(stream: &'a Stream, fences: Vec<Fence>) -> Self {
        let gtid = fences.iter().map(|f| f.gtid.clone()).max().unwrap_or_default();
        let copied: u64 = fences.iter().map(|f| f.rows_copied).sum();
        if fences.iter().all(|f| f.copy_done) {
            // No snapshot (and no row count) when resuming after the copy: the bar is full.
            stream.progress.set_length(copied);
        }
        stream.progress.set_position(copied);
        Self {
            stream,
            fences,
            view: ViewUpdate::default(),
            last_view: Instant::now() - stream.settings.status_interval,
            started: Instant::now(),
            copied_this_run: 0,
            last_event_time: None,
            gtid,
        }
    }

    fn copy_done(&self) -> bool {
        self.fences.iter().all(|f| f.copy_done)
    }

    /// Where the binlog must be read from: the smallest position of a shard that covers keys.
    fn resume_position(&self) -> Option<Position> {
        self.fences.iter().filter(|f| f.covers_any()).filter_map(|f| f.position.clone()).min()
    }

    /// Copies chunks from the snapshot for one copy phase; true when the table
    /// is done. This task reads chunks and splits them by target shard; one
    /// writer per target shard (`copy.rs`) commits its rows with its fence.
    async fn copy(&mut self, snapshot: &mut Snapshot) -> Result<bool, CopierError> {
        let s = self.stream;
        self.set_phase(Phase::Copying).await?;
        // The fences as this phase starts: what each shard already covers
        // (after a crash some may be ahead) and what every new fence extends.
        let initial = self.fences.clone();
        let (queues, receivers) = copy::queues(initial.len());
        let copied = AtomicU64::new(0);
        let cx = WriterContext {
            target: &s.target,
            table: &s.table,
            source_shard: &s.source_shard,
            throttle_latency: s.settings.throttle_latency,
            shutdown: &s.shutdown,
            progress: &s.progress,
            copied: &copied,
        };
        let writers =
            futures::future::join_all(receivers.into_iter().enumerate().map(|(i, r)| copy::write_parts(&cx, i, r)));
        let copied_before = self.copied_this_run;
        let reading = self.read_chunks(snapshot, &initial, queues, &copied, copied_before);
        let (read, written) = tokio::join!(reading, writers);
        self.copied_this_run = copied_before + copied.load(Ordering::Relaxed);
        // A writer's error is the cause of a reader's "writer stopped".
        for (fence, result) in self.fences.iter_mut().zip(written) {
            if let Some(committed) = result? {
                *fence = committed;
            }
        }
        let done = read?;
        if done {
            let rows: u64 = self.fences.iter().map(|f| f.rows_copied).sum();
            tracing::info!(source_shard = %s.source_shard, rows, "copy done");
        }
        Ok(done)
    }

    /// The copy's reader: chunks from the snapshot in key order, each split
    /// into one part per target shard with that shard's fence after it, until
    /// the table ends (true), the copy phase ends or shutdown. Dropping
    /// `queues` at the end lets the writers finish.
    async fn read_chunks(
        &mut self,
        snapshot: &mut Snapshot,
        initial: &[Fence],
        queues: Vec<copy::Queue>,
        copied: &AtomicU64,
        copied_before: u64,
    ) -> Result<bool, CopierError> {
        let s = self.stream;
        let started = Instant::now();
        let mut after = initial.iter().filter(|f| !f.copy_done).map(|f| f.last_key.clone()).min().flatten();
        let mut parts = Splitter::new(&s.target, initial, queues, &snapshot.position, &snapshot.gtid);
        let mut ids = KeyspaceIds::default();
        // The first chunk is small: row sizes are unknown until one is read.
        let mut limit = s.settings.chunk_rows.min(FIRST_CHUNK_ROWS);
        loop {
            // Rows go out in parts while the source still sends the chunk:
            // the writers start on its first rows, and what is held here
            // stays within a part whatever the chunk or row sizes. Chunks
            // stay bounded in bytes too: the phase's time limit and shutdown
            // are looked at between chunks.
            self.pass_gates().await?;
            let mut result = snapshot.conn.query_iter(s.target.table.copy_chunk_sql(after.as_ref(), limit)).await?;
            let (mut read, mut largest, mut part, mut part_bytes) = (0, 1, Vec::new(), 0);
            loop {
                let row = result.next().await?;
                let end = row.is_none();
                if let Some(row) = row {
                    read += 1;
                    let row = copy_row(row, &mut ids, &s.target.table)?;
                    largest = largest.max(row.tuple.len());
                    part_bytes += row.tuple.len();
                    part.push(row);
                }
                if end || part.len() >= copy::PART_ROWS || part_bytes >= copy::PART_BYTES {
                    let done = end && read < limit;
                    after = part.last().map(|r| r.key.clone()).or(after);
                    part_bytes = 0;
                    if (!part.is_empty() || done)
                        && parts.send(std::mem::take(&mut part), after.as_ref(), done).await.is_err()
                    {
                        // The shard's writer failed: stop reading; `copy` reports its error.
                        return Ok(false);
                    }
                }
                if end {
                    break;
                }
            }
            drop(result);
            let done = read < limit;
            limit = next_chunk_rows(s.settings.chunk_rows, largest);
            self.copied_this_run = copied_before + copied.load(Ordering::Relaxed);
            self.tick(Some(&snapshot.position)).await?;
            if done {
                return Ok(true);
            }
            if started.elapsed() >= s.settings.copy_phase || s.shutdown.is_cancelled() {
                return Ok(false);
            }
        }
    }

    /// Applies the binlog from `from` (a transaction boundary) until `until`
    /// (exactly), `deadline`, or shutdown, whichever comes first. A reader
    /// task (`reader.rs`) reads ahead while batches are written.
    async fn apply_binlog(
        &mut self,
        from: Position,
        until: Option<Position>,
        deadline: Option<Instant>,
        phase: Phase,
    ) -> Result<(), CopierError> {
        let s = self.stream;
        self.set_phase(phase).await?;
        tracing::debug!(source_shard = %s.source_shard, %from, until = ?until.as_ref().map(ToString::to_string), %phase, "applying binlog");
        let server_id = rand::random::<u32>() | 0x8000_0000;
        let events = source::open_binlog(s.source_opts.clone(), &from, server_id, &s.table, &s.source_shard).await?;
        let source = reader::Source {
            database: s.source_db.clone(),
            table: Arc::clone(&s.target.table),
            source_shard: s.source_shard.clone(),
        };
        let (sender, mut received) = mpsc::channel(reader::READ_AHEAD);
        // Not a child of `shutdown`: the applier alone stops the reader, once
        // it has taken what it will apply (a reader gone first looks like a broken stream).
        let stop_reading = CancellationToken::new();
        let reading = tokio::spawn(reader::read(
            source,
            events,
            Assembler::new(&from, until.clone()),
            sender,
            stop_reading.clone(),
        ));
        let mut batch = Batch::new(from.clone());
        let mut boundary = from;
        let applied = self.apply_reads(&mut received, &mut boundary, &mut batch, until.as_ref(), deadline, phase).await;
        stop_reading.cancel();
        drop(received);
        if let Err(join) = reading.await {
            tracing::warn!(source_shard = %s.source_shard, error = %join, "binlog reader task failed");
        }
        applied?;
        if batch.holds_anything(&boundary) {
            self.flush(&mut batch, &boundary, phase).await?;
        }
        tracing::debug!(source_shard = %s.source_shard, %boundary, "binlog applied");
        Ok(())
    }

    /// The apply loop: take what the reader assembled, batch it, flush when due.
    async fn apply_reads(
        &mut self,
        received: &mut mpsc::Receiver<Result<Read, CopierError>>,
        boundary: &mut Position,
        batch: &mut Batch,
        until: Option<&Position>,
        deadline: Option<Instant>,
        phase: Phase,
    ) -> Result<(), CopierError> {
        let s = self.stream;
        while until.is_none_or(|u| &*boundary < u) && deadline.is_none_or(|d| Instant::now() < d) {
            let next = tokio::select! {
                _ = s.shutdown.cancelled() => return Ok(()),
                next = tokio::time::timeout(s.settings.batch_wait, received.recv()) => next,
            };
            match next {
                Err(_idle) => {}
                Ok(None) => {
                    return Err(CopierError::Decode {
                        position: boundary.to_string(),
                        why: "the binlog reader stopped before the stop position".into(),
                    })
                }
                Ok(Some(Err(error))) => return Err(error),
                Ok(Some(Ok(Read::Boundary(position)))) => *boundary = position,
                Ok(Some(Ok(Read::Transaction(txn)))) => {
                    *boundary = txn.end.clone();
                    self.last_event_time = Some(txn.timestamp);
                    if let Some(gtid) = &txn.gtid {
                        self.gtid.clone_from(gtid);
                    }
                    batch.add(txn);
                }
                Ok(Some(Ok(Read::Ddl { statement, position }))) => {
                    self.flush(batch, boundary, phase).await?;
                    return Err(CopierError::Ddl {
                        table: s.table.clone(),
                        source_shard: s.source_shard.clone(),
                        statement,
                        position: position.to_string(),
                    });
                }
            }
            if batch.due(boundary, &s.settings) {
                self.flush(batch, boundary, phase).await?;
            }
            self.tick(Some(boundary)).await?;
        }
        Ok(())
    }

    /// Waits while the old shard's server or a new shard is past a
    /// `[throttle]` threshold (`cluster::throttle_gate`), and shows the
    /// pause in `status` (error kind `throttled`, the phase unchanged) while
    /// it lasts. A shutdown ends the wait (what is held is still flushed).
    async fn pass_gates(&mut self) -> Result<(), CopierError> {
        let s = self.stream;
        let gates = std::iter::once((&*s.source_gate, &s.source_pool))
            .chain(s.target_gates.iter().zip(s.target.pools.shards()));
        for (gate, pool) in gates {
            let pass = gate.pass(pool, &s.shutdown);
            tokio::pin!(pass);
            let result = tokio::select! {
                result = &mut pass => result,
                () = tokio::time::sleep(gate.check_every() * 2) => {
                    let why = cluster::throttle_gate::paused_now()
                        .into_iter()
                        .find(|p| p.job == "copier")
                        .map(|p| format!("paused on {} shard {} ({}): {}", p.cluster, p.shard, p.server, p.detail))
                        .unwrap_or_else(|| "paused by the throttle".to_owned());
                    self.view.error = Some(("throttled".to_owned(), why));
                    self.write_view_now().await;
                    let result = pass.await;
                    self.view.error = None;
                    self.write_view_now().await;
                    result
                }
            };
            match result {
                Ok(()) | Err(cluster::throttle_gate::GateError::Cancelled(_)) => {}
                Err(cluster::throttle_gate::GateError::Mysql { source, .. }) => return Err(CopierError::Mysql(source)),
            }
        }
        Ok(())
    }

    /// Writes the operator view now (best effort: the next tick writes it again).
    async fn write_view_now(&self) {
        let s = self.stream;
        if let Err(e) = sidecar::write_view(s.target.pools.shards(), &s.table, &s.source_shard, &self.view).await {
            tracing::warn!(source_shard = %s.source_shard, error = %e, "could not record the throttle in the stream's view");
        }
    }

    /// Writes the batch's operations and every shard's fence at `boundary`.
    async fn flush(&mut self, batch: &mut Batch, boundary: &Position, phase: Phase) -> Result<(), CopierError> {
        self.pass_gates().await?;
        let s = self.stream;
        let writes = plan_binlog(&s.target, &self.fences, &batch.ops);
        let applied: u64 = writes.iter().map(|w| w.applied).sum();
        let new_fences: Vec<Fence> = self
            .fences
            .iter()
            .zip(&writes)
            .map(|(f, w)| Fence {
                position: f.position.clone().max(Some(boundary.clone())),
                gtid: self.gtid.clone(),
                events_applied: f.events_applied + w.applied,
                ..f.clone()
            })
            .collect();
        let latency =
            write_shards(&s.target, &s.table, &s.source_shard, writes, &mut self.fences, new_fences, phase).await?;
        batch.written(boundary);
        crate::metrics::events_applied(&s.table, &s.source_shard, applied);
        self.throttle(latency).await;
        Ok(())
    }

    /// Pauses after a slow target write, as long as the write took.
    async fn throttle(&self, latency: Duration) {
        let s = self.stream;
        if latency <= s.settings.throttle_latency {
            return;
        }
        crate::metrics::throttled(&s.table, &s.source_shard, latency);
        tracing::debug!(source_shard = %s.source_shard, ?latency, "target writes slow, pausing");
        tokio::select! {
            _ = s.shutdown.cancelled() => {}
            _ = tokio::time::sleep(latency) => {}
        }
    }

    async fn set_phase(&mut self, phase: Phase) -> Result<(), CopierError> {
        if self.view.phase != phase {
            self.view.phase = phase;
            self.last_view = Instant::now() - self.stream.settings.status_interval;
        }
        self.tick(None).await
    }

    /// Refreshes the operator view (rate, lag) when due.
    async fn tick(&mut self, position: Option<&Position>) -> Result<(), CopierError> {
        let s = self.stream;
        if self.last_view.elapsed() < s.settings.status_interval {
            return Ok(());
        }
        self.last_view = Instant::now();
        let elapsed = self.started.elapsed().as_secs_f64();
        self.view.rows_per_sec = (elapsed > 0.0 && !self.copy_done()).then(|| self.copied_this_run as f64 / elapsed);
        let applied = position.cloned().or_else(|| self.resume_position());
        if let Some(applied) = applied {
            let mut conn = s.source_pool.get_conn().await?;
            let end = source::binlog_end(&mut conn).await?;
            let lag = source::events_after(&mut conn, &applied, &end, s.settings.lag_events_cap).await?;
            self.view.lag_events = Some(lag);
            self.view.lag_seconds = if lag == 0 {
                Some(0.0)
            } else {
                self.last_event_time.map(|t| (chrono::Utc::now().timestamp() - i64::from(t)).max(0) as f64)
            };
        }
        crate::metrics::lag(&s.table, &s.source_shard, self.view.lag_events, self.view.lag_seconds);
        crate::metrics::phase(&s.table, &s.source_shard, self.view.phase);
        s.progress.set_message(format!(
            "{} lag {} events",
            self.view.phase,
            self.view.lag_events.map(|l| l.to_string()).unwrap_or_else(|| "-".into())
        ));
        sidecar::write_view(s.target.pools.shards(), &s.table, &s.source_shard, &self.view).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_shrink_for_large_rows_and_never_below_one_row() {
        assert_eq!(next_chunk_rows(8000, 20), 8000);
        let near_mib = next_chunk_rows(8000, 1 << 20);
        assert!((1..=32).contains(&near_mib), "{near_mib} rows of ~1 MiB");
        assert_eq!(next_chunk_rows(8000, 64 << 20), 1);
        assert_eq!(next_chunk_rows(8000, 0), 8000, "an empty chunk ends the copy anyway");
    }
}
