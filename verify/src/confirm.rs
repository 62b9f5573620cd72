//! A window that differs is read again before it is called different.
//!
//! Settlement is judged from the groups' offset fences, which hold only
//! while each partition's timestamps arrive in order. Two producers with
//! skewed clocks, or an aggregate reaching past its window, can still write
//! a window its fences call settled; the two groups then apply that write a
//! moment apart, and one read of each side sees a difference that is only
//! lag. Like VDiff, which stops both streams at one position before it
//! compares, the comparator waits until each cluster has applied every
//! offset either had applied when it first read (bounded by
//! [`CATCH_UP_WAIT`]), then digests the window again: a window that changed
//! on either side in between is not settled in fact and is left for a later
//! run; one that held still on both sides and still differs is different.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cluster::fence::{progress, PartitionProgress};
use tokio_util::sync::CancellationToken;

use crate::digest::{Digest, Side};
use crate::error::VerifyError;

/// How long a recheck waits for the clusters to apply the same offsets.
/// A cluster further behind than this is read anyway: a window that held
/// still on both sides for the wait is judged on what it holds.
pub(crate) const CATCH_UP_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(200);

pub(crate) async fn cluster_progress(side: &Side) -> Result<Vec<PartitionProgress>, VerifyError> {
    progress(&side.pools).await.map_err(|source| VerifyError::Shard {
        cluster: side.name().to_string(),
        shard: "(offset fences)".to_string(),
        source,
    })
}

/// Per partition, the furthest offset either cluster has applied.
fn furthest(sides: [&[PartitionProgress]; 2]) -> BTreeMap<(String, i32), i64> {
    let mut out: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for p in sides.into_iter().flatten() {
        let next = out.entry((p.topic.clone(), p.partition)).or_insert(p.next_offset);
        *next = (*next).max(p.next_offset);
    }
    out
}

/// Every partition of `target` applied up to its offset on this cluster.
fn reached(progress: &[PartitionProgress], target: &BTreeMap<(String, i32), i64>) -> bool {
    target.iter().all(|((topic, partition), offset)| {
        progress.iter().any(|p| &p.topic == topic && p.partition == *partition && p.next_offset >= *offset)
    })
}

/// Waits until both clusters have applied every offset either had applied
/// on entry, at most [`CATCH_UP_WAIT`]; a cluster still behind then is
/// logged, and the recheck reads the windows as they are.
pub(crate) async fn both_caught_up(old: &Side, new: &Side, shutdown: &CancellationToken) -> Result<(), VerifyError> {
    let (mut o, mut n) = futures::try_join!(cluster_progress(old), cluster_progress(new))?;
    let target = furthest([&o, &n]);
    let deadline = Instant::now() + CATCH_UP_WAIT;
    while !(reached(&o, &target) && reached(&n, &target)) {
        if Instant::now() >= deadline {
            tracing::warn!(
                old = old.name(),
                new = new.name(),
                wait_s = CATCH_UP_WAIT.as_secs(),
                "clusters did not apply the same offsets in time: rechecking windows as they are"
            );
            break;
        }
        tokio::select! {
            () = shutdown.cancelled() => return Err(VerifyError::Cancelled),
            () = tokio::time::sleep(POLL) => {}
        }
        (o, n) = futures::try_join!(cluster_progress(old), cluster_progress(new))?;
    }
    Ok(())
}

/// What the second read of a differing window says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recheck {
    /// Neither side changed and they still differ.
    Different,
    /// A side changed after its fences called the window settled.
    Changed,
}

/// Judges a differing window from its two reads, (old, new) each.
pub(crate) fn recheck(first: (Digest, Digest), second: (Digest, Digest)) -> Recheck {
    let held = |a: Digest, b: Digest| a.same_content(&b) && a.misplaced == b.misplaced;
    if held(first.0, second.0) && held(first.1, second.1) {
        Recheck::Different
    } else {
        Recheck::Changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(partition: i32, next_offset: i64) -> PartitionProgress {
        PartitionProgress {
            topic: "t".into(),
            partition,
            shards: 1,
            next_offset,
            first_offset: 0,
            covered_from_ms: 0,
            max_message_ms: 0,
            reached_end: false,
            updated_at_ms: 0,
            high_watermark: 0,
            consumer_group: "g".into(),
            messages_applied: 0,
            late_messages: 0,
            expired_messages: 0,
        }
    }

    fn digest(rows: u64, lane: u128) -> Digest {
        Digest { rows, lane_a: lane, lane_b: 0, misplaced: 0 }
    }

    #[test]
    fn the_target_is_the_furthest_offset_of_either_cluster() {
        let old = [fence(0, 10), fence(1, 7)];
        let new = [fence(0, 12), fence(1, 5)];
        let target = furthest([&old, &new]);
        assert_eq!(target.values().copied().collect::<Vec<_>>(), vec![12, 7]);
        assert!(!reached(&old, &target), "old is behind on partition 0");
        assert!(!reached(&new, &target), "new is behind on partition 1");
        assert!(reached(&[fence(0, 12), fence(1, 9)], &target));
        assert!(!reached(&[fence(0, 12)], &target), "a partition without a fence is not reached");
    }

    #[test]
    fn only_a_window_that_held_still_on_both_sides_is_different() {
        let (a, b, c) = (digest(3, 30), digest(4, 40), digest(4, 41));
        assert_eq!(recheck((a, b), (a, b)), Recheck::Different);
        assert_eq!(recheck((a, b), (b, b)), Recheck::Changed, "old caught up: it was lag");
        assert_eq!(recheck((a, b), (a, c)), Recheck::Changed, "new still being written");
        let moved = Digest { misplaced: 1, ..a };
        assert_eq!(recheck((a, b), (moved, b)), Recheck::Changed);
    }
}
