//! The binlog apply batch: whole source transactions gathered for one write
//! per target shard, and when that write is due.

use std::time::Instant;

use crate::apply::PositionedOp;
use crate::assemble::Transaction;
use crate::binlog::Position;
use crate::config::Settings;

/// Transactions read but not yet written.
#[derive(Debug)]
pub struct Batch {
    /// Their row operations, each with its transaction's end.
    pub ops: Vec<PositionedOp>,
    /// When the first operation arrived (the batch waits at most `batch_wait` for more).
    since: Option<Instant>,
    /// The boundary the shards' fences were last written at.
    written: Position,
    /// When they were (the fences also move forward on a quiet table, every `status_interval`).
    last_write: Instant,
}

impl Batch {
    /// An empty batch whose fences were last written at `from`.
    pub fn new(from: Position) -> Self {
        Self { ops: Vec::new(), since: None, written: from, last_write: Instant::now() }
    }

    /// Adds a whole transaction.
    pub fn add(&mut self, txn: Transaction) {
        if !txn.ops.is_empty() && self.since.is_none() {
            self.since = Some(Instant::now());
        }
        self.ops.extend(txn.ops.into_iter().map(|op| PositionedOp { op, txn_end: txn.end.clone() }));
    }

    /// Whether there are operations, or a boundary the fences do not record yet.
    pub fn holds_anything(&self, boundary: &Position) -> bool {
        !self.ops.is_empty() || boundary != &self.written
    }

    /// Whether to write now: enough operations, the first one waited long
    /// enough, or the fences lag the boundary for a status interval.
    pub fn due(&self, boundary: &Position, settings: &Settings) -> bool {
        self.ops.len() >= settings.batch_ops
            || self.since.is_some_and(|t| t.elapsed() >= settings.batch_wait)
            || (boundary != &self.written && self.last_write.elapsed() >= settings.status_interval)
    }

    /// Records a write of everything up to `boundary`.
    pub fn written(&mut self, boundary: &Position) {
        self.ops.clear();
        self.since = None;
        self.written = boundary.clone();
        self.last_write = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::binlog::RowOp;
    use crate::row::Key;

    fn pos(pos: u64) -> Position {
        Position { file: "binlog.000001".into(), pos }
    }

    fn txn(end: u64, ops: usize) -> Transaction {
        let op = RowOp::Delete(Key(Vec::new()));
        Transaction { ops: vec![op; ops], end: pos(end), gtid: None, timestamp: 0 }
    }

    #[test]
    fn is_due_when_full_and_positions_each_op_at_its_transaction_end() {
        let settings = Settings { batch_ops: 3, batch_wait: Duration::from_secs(3600), ..Settings::default() };
        let mut batch = Batch::new(pos(4));
        batch.add(txn(100, 2));
        assert!(!batch.due(&pos(100), &settings));
        batch.add(txn(200, 1));
        assert!(batch.due(&pos(200), &settings));
        let ends: Vec<u64> = batch.ops.iter().map(|o| o.txn_end.pos).collect();
        assert_eq!(ends, vec![100, 100, 200]);
        batch.written(&pos(200));
        assert!(!batch.holds_anything(&pos(200)));
        assert!(batch.holds_anything(&pos(300)), "a boundary past the fences is worth writing");
    }

    #[test]
    fn a_quiet_table_still_moves_the_fences_every_status_interval() {
        let settings = Settings { status_interval: Duration::ZERO, ..Settings::default() };
        let mut batch = Batch::new(pos(4));
        batch.add(txn(100, 0));
        assert!(batch.ops.is_empty());
        assert!(batch.due(&pos(100), &settings));
        assert!(!batch.due(&pos(4), &settings), "nothing to record");
    }
}
