//! The snapshot copy's writers: one per target shard, each fed by a queue
//! bounded in bytes, so a slow shard holds back only its own rows until its
//! queue is full (then the reader waits), and the reader reads the next
//! chunk while every shard writes.
//!
//! A shard's parts arrive in key order. Its writer commits them in that
//! order, as many queued parts per transaction as fit in [`TXN_BYTES`], with
//! the shard's fence as of the last of them in the same transaction: the
//! fence never claims a key whose row is not committed with or before it, so
//! a kill -9 anywhere resumes from a consistent point.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::apply::{plan_copy, write_one, ShardTxn, Target, Tuples};
use crate::binlog::Position;
use crate::error::CopierError;
use crate::phase::Phase;
use crate::row::Key;
use crate::sidecar::Fence;
use crate::table::CopyRow;

/// Row-image bytes a target shard's queue may hold (per stream). With 8 new
/// shards and 4 streams that is at most 512 MiB in flight, reached only with
/// a stalled shard and rows near 1 MiB; ordinary rows (~200 B) keep it far lower.
pub const QUEUE_BYTES: usize = 16 << 20;

/// Row-image bytes one target transaction takes from its queue (at least one
/// part, whatever its size): fewer commits than one per chunk when a shard
/// falls behind, and statements stay capped by `cluster::sql::chunks`.
pub const TXN_BYTES: usize = 8 << 20;

/// Snapshot rows the reader hands out at once, split by target shard: the
/// writers start on a chunk's first rows while the source still sends the
/// rest (reading whole chunks first left the targets idle at every chunk's
/// start), and the reader holds at most a part whatever the chunk size.
pub const PART_ROWS: usize = 8192;

/// ...or fewer rows when they hold this many bytes (rows near 1 MiB).
pub const PART_BYTES: usize = 4 << 20;

/// Parts a queue holds at most, whatever their bytes (a part may be empty:
/// just the shard's fence moving past a chunk that held none of its rows).
const QUEUE_PARTS: usize = 256;

/// What a part of an empty chunk weighs in the queue.
const MIN_PART_BYTES: usize = 256;

/// One chunk's rows for one target shard, and the shard's fence once they are in.
pub struct Part {
    /// The rows (none when the chunk held none of this shard's keys).
    pub rows: Vec<CopyRow>,
    /// The fence to commit with them.
    pub fence: Fence,
    /// Released when the part is committed (or dropped).
    permit: OwnedSemaphorePermit,
    bytes: usize,
}

/// The sending side of one target shard's queue.
pub struct Queue {
    sender: mpsc::Sender<Part>,
    room: Arc<Semaphore>,
}

/// Opens one queue per target shard; the receivers go to [`write_parts`].
pub fn queues(shards: usize) -> (Vec<Queue>, Vec<mpsc::Receiver<Part>>) {
    (0..shards)
        .map(|_| {
            let (sender, receiver) = mpsc::channel(QUEUE_PARTS);
            (Queue { sender, room: Arc::new(Semaphore::new(QUEUE_BYTES)) }, receiver)
        })
        .unzip()
}

impl Queue {
    /// Waits for room, then queues `rows` with `fence`. Fails only when the
    /// shard's writer has stopped (its error is what the caller reports).
    pub async fn send(&self, rows: Vec<CopyRow>, fence: Fence) -> Result<(), ()> {
        let bytes = rows.iter().map(|r| r.tuple.len()).sum::<usize>().max(MIN_PART_BYTES);
        // A part larger than the whole queue waits for an empty queue.
        let weight = u32::try_from(bytes.min(QUEUE_BYTES)).unwrap_or(u32::MAX);
        let permit = self.room.clone().acquire_many_owned(weight).await.map_err(|_| ())?;
        self.sender.send(Part { rows, fence, permit, bytes }).await.map_err(|_| ())
    }
}

/// The reader's side of the queues: splits rows read in key order by target
/// shard and sends each shard its part with the fence that goes with it.
pub struct Splitter<'a> {
    target: &'a Target,
    /// The fences as the copy phase started (what each shard already covers).
    initial: &'a [Fence],
    queues: Vec<Queue>,
    /// Rows each shard's fences count, including the parts sent so far.
    rows_copied: Vec<u64>,
    /// The snapshot's position and GTID, for every fence.
    position: &'a Position,
    gtid: &'a str,
}

impl<'a> Splitter<'a> {
    pub fn new(
        target: &'a Target,
        initial: &'a [Fence],
        queues: Vec<Queue>,
        position: &'a Position,
        gtid: &'a str,
    ) -> Self {
        let rows_copied = initial.iter().map(|f| f.rows_copied).collect();
        Self { target, initial, queues, rows_copied, position, gtid }
    }

    /// Sends every shard its share of `rows` (the next rows of the snapshot
    /// in key order, up to and including `last`) with a fence covering
    /// `last`; `done` when the snapshot has no rows after them. Fails when a
    /// shard's writer has stopped (its error is what the caller reports).
    pub async fn send(&mut self, rows: Vec<CopyRow>, last: Option<&Key>, done: bool) -> Result<(), ()> {
        let writes = plan_copy(self.target, self.initial, rows);
        for (shard, (write, queue)) in writes.into_iter().zip(&self.queues).enumerate() {
            self.rows_copied[shard] += write.len() as u64;
            let initial = &self.initial[shard];
            let fence = Fence {
                copy_done: initial.copy_done || done,
                last_key: initial.last_key.clone().max(last.cloned()),
                position: Some(self.position.clone()),
                gtid: self.gtid.to_owned(),
                rows_copied: self.rows_copied[shard],
                events_applied: initial.events_applied,
            };
            queue.send(write, fence).await?;
        }
        Ok(())
    }
}

/// What a writer needs besides its queue.
pub struct WriterContext<'a> {
    pub target: &'a Target,
    pub table: &'a str,
    pub source_shard: &'a str,
    /// A statement slower than this pauses the writer for as long as it took.
    pub throttle_latency: Duration,
    pub shutdown: &'a CancellationToken,
    pub progress: &'a ProgressBar,
    /// Rows committed by every writer of the stream (for the rate).
    pub copied: &'a AtomicU64,
}

/// Commits `shard`'s parts in order until the queue closes; returns the
/// last fence committed (`None`: nothing arrived).
pub async fn write_parts(
    cx: &WriterContext<'_>,
    shard: usize,
    mut received: mpsc::Receiver<Part>,
) -> Result<Option<Fence>, CopierError> {
    let mut committed = None;
    while let Some(first) = received.recv().await {
        let mut bytes = first.bytes;
        let mut parts = vec![first];
        while bytes < TXN_BYTES {
            match received.try_recv() {
                Ok(part) => {
                    bytes += part.bytes;
                    parts.push(part);
                }
                Err(_) => break,
            }
        }
        let fence = parts.last().map(|p| p.fence.clone()).unwrap_or_default();
        let (mut upserts, mut permits) = (Vec::new(), Vec::new());
        for part in parts {
            upserts.extend(part.rows.into_iter().map(|r| r.tuple));
            permits.push(part.permit);
        }
        let rows = upserts.len() as u64;
        let write = Tuples { deletes: Vec::new(), upserts };
        let to = ShardTxn { target: cx.target, table: cx.table, source_shard: cx.source_shard, phase: Phase::Copying };
        let latency = write_one(&to, shard, &write, &fence).await?;
        drop(permits);
        committed = Some(fence);
        cx.copied.fetch_add(rows, Ordering::Relaxed);
        crate::metrics::rows_copied(cx.table, cx.source_shard, rows);
        cx.progress.inc(rows);
        if latency > cx.throttle_latency {
            crate::metrics::throttled(cx.table, cx.source_shard, latency);
            tracing::debug!(source_shard = %cx.source_shard, shard, ?latency, "target writes slow, pausing");
            tokio::select! {
                _ = cx.shutdown.cancelled() => {}
                _ = tokio::time::sleep(latency) => {}
            }
        }
    }
    Ok(committed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(bytes: usize) -> CopyRow {
        CopyRow { key: Key(Vec::new()), keyspace_id: [0; 8], tuple: "x".repeat(bytes) }
    }

    #[tokio::test]
    async fn a_queue_holds_at_most_its_bytes_and_frees_them_when_a_part_is_done() {
        let (mut queues, mut receivers) = queues(1);
        let (queue, mut received) = (queues.remove(0), receivers.remove(0));
        let three_quarters = QUEUE_BYTES / 4 * 3;
        queue.send(vec![image(three_quarters)], Fence::default()).await.expect("room");
        let full =
            tokio::time::timeout(Duration::from_millis(50), queue.send(vec![image(three_quarters)], Fence::default()));
        assert!(full.await.is_err(), "a second part that does not fit waits for room");
        let first = received.recv().await.expect("part");
        assert_eq!(first.rows.len(), 1);
        drop(first);
        queue.send(vec![image(three_quarters)], Fence::default()).await.expect("room again");
        // Larger than the queue: waits for an empty queue instead of forever.
        drop(received.recv().await);
        queue.send(vec![image(2 * QUEUE_BYTES)], Fence::default()).await.expect("an oversized part gets through");
        drop(received);
        assert!(queue.send(Vec::new(), Fence::default()).await.is_err(), "a stopped writer is reported");
    }
}
