//! A shard's part of a batch grouped per row key: what its transaction reads
//! and writes. Pure, so the benchmark's no-sink mode runs the same code.
//!
//! Contributions are kept per key in offset order and folded onto the stored
//! row only once it has been read ([`fold`]): the sketch's sum is a float, so
//! the result depends on the order of merges, and starting from the stored
//! row makes it the same whatever the batch boundaries.

use std::collections::BTreeMap;

use crate::plan::{ItemBody, ShardItem};
use crate::rows::{PatternRow, SlowRow, StatsKey, StatsRow};

/// A `query_stats_*` key borrowed from the batch: (database_id, fingerprint,
/// window_start), ordered as [`StatsKey`] is.
pub type KeyRef<'a> = (u64, &'a str, i64);

/// Per-range message counts of one shard's transaction.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Messages applied, per batch range (index into the plan's ranges).
    pub applied: Vec<u64>,
    /// Below the fence: applied by an earlier attempt or another owner.
    pub skipped: Vec<u64>,
    /// Applied, but later than the allowed lateness.
    pub late: Vec<u64>,
    /// Older than retention: counted, not written.
    pub expired: Vec<u64>,
}

/// What one shard's transaction writes, per table.
#[derive(Debug, Default)]
pub struct Coalesced<'a> {
    /// Sorted, so that rows are locked in one order by every writer.
    pub minute: BTreeMap<KeyRef<'a>, Vec<&'a StatsRow>>,
    pub hour: BTreeMap<KeyRef<'a>, Vec<&'a StatsRow>>,
    /// (database_id, fingerprint): merged here already (the rule is
    /// order-free, and the SQL applies it again against the stored row).
    pub patterns: BTreeMap<(u64, &'a str), PatternRow>,
    pub slow: Vec<&'a SlowRow>,
    pub counts: Counts,
}

impl Coalesced<'_> {
    /// Rows written per table: minute, hour, patterns, slow queries.
    pub fn rows(&self) -> [u64; 4] {
        [self.minute.len(), self.hour.len(), self.patterns.len(), self.slow.len()].map(|n| n as u64)
    }
}

/// Groups `items` (in offset order) per key, skipping those below their
/// range's fence (`fences[item.range]`) and counting what happens to each.
pub fn coalesce<'a>(items: &[&'a ShardItem], fences: &[i64]) -> Coalesced<'a> {
    let ranges = fences.len();
    let mut out = Coalesced {
        counts: Counts {
            applied: vec![0; ranges],
            skipped: vec![0; ranges],
            late: vec![0; ranges],
            expired: vec![0; ranges],
        },
        ..Coalesced::default()
    };
    for item in items {
        let c = &mut out.counts;
        if item.offset < fences[item.range] {
            c.skipped[item.range] += 1;
            continue;
        }
        match &item.body {
            ItemBody::Expired => {
                c.expired[item.range] += 1;
                continue;
            }
            ItemBody::Stats { late: true, .. } | ItemBody::Slow { late: true, .. } => c.late[item.range] += 1,
            _ => {}
        }
        c.applied[item.range] += 1;
        match &item.body {
            // Counted above and skipped.
            ItemBody::Expired => {}
            ItemBody::Stats { minute: key, hour_window, row, pattern, .. } => {
                let fingerprint = key.fingerprint.as_str();
                out.minute.entry((key.database_id, fingerprint, key.window_start)).or_default().push(row);
                out.hour.entry((key.database_id, fingerprint, *hour_window)).or_default().push(row);
                out.patterns
                    .entry((key.database_id, fingerprint))
                    .and_modify(|p| p.merge(pattern))
                    .or_insert_with(|| pattern.clone());
            }
            ItemBody::Slow { row, .. } => out.slow.push(row),
        }
    }
    out
}

/// A key's row after this batch: its stored row (if any) with the batch's
/// contributions merged in offset order.
pub fn fold(stored: Option<StatsRow>, contributions: &[&StatsRow]) -> StatsRow {
    let (mut merged, rest) = match stored {
        Some(existing) => (existing, contributions),
        // Never empty: a key exists because something contributed to it.
        None => match contributions.split_first() {
            Some((first, rest)) => ((*first).clone(), rest),
            None => return StatsRow::empty(),
        },
    };
    for r in rest {
        merged.merge(r);
    }
    merged
}

/// The owned key of a borrowed one.
pub fn owned(key: &KeyRef<'_>) -> StatsKey {
    StatsKey { database_id: key.0, fingerprint: key.1.to_string(), window_start: key.2 }
}
