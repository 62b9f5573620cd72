//! Shadow-read bookkeeping: which answers are comparable (both clusters
//! cover and have settled the span the query reads), the counts per group and
//! query kind (cumulative for `/v1/router`, per interval for the control
//! database, where `status` reads them), and rate-limited mismatch logs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use cluster::pool::ShardPools;
use serde::Serialize;

use crate::group::{Role, TableGroup};
use crate::query::Query;
use crate::state::ShadowCount;

/// Mismatches logged per flush interval; the rest are only counted.
const MISMATCH_LOGS_PER_INTERVAL: u32 = 10;

/// What a cluster holds for sure, from its consumer group's fences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bounds {
    /// Every event from this time on is held (ms).
    pub covered_from_ms: i64,
    /// Every window ending (plus lateness) by this time is final (ms).
    pub settled_through_ms: i64,
}

/// Reads a cluster's bounds from its fences; `None` while it has none.
pub async fn read_bounds(pools: &ShardPools, lateness_ms: i64) -> Result<Option<Bounds>, mysql_async::Error> {
    let progress = cluster::fence::progress(pools).await?;
    let covered = progress.iter().map(|p| p.covered_from_ms).max();
    let settled = progress.iter().map(|p| p.settled_through_ms(lateness_ms)).min();
    Ok(covered.zip(settled).map(|(covered_from_ms, settled_through_ms)| Bounds { covered_from_ms, settled_through_ms }))
}

/// Outcome of one shadow read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Equal,
    Mismatch,
    Error,
    /// Not comparable: outside both clusters' covered and settled span, or cut by the limit.
    Skipped,
    /// No free slot: shadow reads never queue.
    Busy,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Equal => "equal",
            Outcome::Mismatch => "mismatch",
            Outcome::Error => "error",
            Outcome::Skipped => "skipped",
            Outcome::Busy => "busy",
        }
    }
}

/// Cumulative shadow counts of one router.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ShadowStats {
    pub equal: u64,
    pub mismatches: u64,
    pub errors: u64,
    pub skipped: u64,
    pub busy: u64,
}

/// Shared shadow state of a router.
#[derive(Debug, Default)]
pub struct Shadow {
    /// Per role (old, new): latest bounds, refreshed in the background.
    bounds: RwLock<[Option<Bounds>; 2]>,
    /// Counts since the last flush to the control database.
    pending: Mutex<BTreeMap<(TableGroup, &'static str), ShadowCount>>,
    equal: AtomicU64,
    mismatches: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
    busy: AtomicU64,
    logged: AtomicU32,
}

impl Shadow {
    pub fn set_bounds(&self, role: Role, bounds: Option<Bounds>) {
        self.bounds.write().unwrap_or_else(PoisonError::into_inner)[role.index()] = bounds;
    }

    pub fn bounds(&self) -> [Option<Bounds>; 2] {
        *self.bounds.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The settled bound both clusters share, if both have one.
    pub fn settled_through_ms(&self) -> Option<i64> {
        let [old, new] = self.bounds();
        Some(old?.settled_through_ms.min(new?.settled_through_ms))
    }

    /// Whether `span` (from [`Query::span_ms`]) is covered and settled on both clusters.
    pub fn comparable(&self, span: Option<(i64, i64)>) -> bool {
        let [Some(old), Some(new)] = self.bounds() else { return false };
        match span {
            Some((start, end)) => {
                start >= old.covered_from_ms.max(new.covered_from_ms)
                    && end <= old.settled_through_ms.min(new.settled_through_ms)
            }
            None => true,
        }
    }

    /// Counts an outcome; a mismatch is logged with its query (rate-limited) and kept for `status`.
    pub fn record(&self, query: &Query, group: TableGroup, primary: Role, outcome: Outcome, detail: Option<&str>) {
        crate::metrics::shadow_read(group.as_str(), query.kind(), outcome.as_str());
        let counter = match outcome {
            Outcome::Equal => &self.equal,
            Outcome::Mismatch => &self.mismatches,
            Outcome::Error => &self.errors,
            Outcome::Skipped => &self.skipped,
            Outcome::Busy => &self.busy,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let described = match outcome {
            Outcome::Mismatch | Outcome::Error => {
                let text = format!(
                    "{}: {} (primary {primary}, shadow {})",
                    serde_json::to_string(query).unwrap_or_else(|_| query.kind().to_owned()),
                    detail.unwrap_or("-"),
                    primary.other()
                );
                if self.logged.fetch_add(1, Ordering::Relaxed) < MISMATCH_LOGS_PER_INTERVAL {
                    tracing::warn!(query = ?query, primary = %primary, shadow = %primary.other(), outcome = outcome.as_str(),
                        detail = detail.unwrap_or("-"), "shadow read differs from the primary read");
                }
                Some(text)
            }
            _ => None,
        };
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = pending.entry((group, query.kind())).or_insert_with(|| ShadowCount {
            group: group.as_str().to_owned(),
            query: query.kind().to_owned(),
            ..ShadowCount::default()
        });
        match outcome {
            Outcome::Equal => entry.compared += 1,
            Outcome::Mismatch => {
                entry.compared += 1;
                entry.mismatches += 1;
            }
            Outcome::Error => entry.errors += 1,
            Outcome::Skipped | Outcome::Busy => entry.skipped += 1,
        }
        if outcome == Outcome::Mismatch {
            entry.last_mismatch = described.map(|t| t.chars().take(2000).collect());
        }
    }

    /// Takes the counts gathered since the last flush.
    pub fn take_pending(&self) -> Vec<ShadowCount> {
        self.logged.store(0, Ordering::Relaxed);
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner)).into_values().collect()
    }

    /// Puts back counts whose flush failed, so the next flush carries them.
    pub fn restore_pending(&self, counts: Vec<ShadowCount>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for c in counts {
            let Ok(group) = TableGroup::named(&c.group) else { continue };
            let kind = crate::query::kind_named(&c.query);
            let entry = pending.entry((group, kind)).or_insert_with(|| ShadowCount {
                group: c.group.clone(),
                query: c.query.clone(),
                ..ShadowCount::default()
            });
            entry.compared += c.compared;
            entry.mismatches += c.mismatches;
            entry.errors += c.errors;
            entry.skipped += c.skipped;
            if entry.last_mismatch.is_none() {
                entry.last_mismatch = c.last_mismatch;
            }
        }
    }

    pub fn stats(&self) -> ShadowStats {
        ShadowStats {
            equal: self.equal.load(Ordering::Relaxed),
            mismatches: self.mismatches.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            busy: self.busy.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests;
