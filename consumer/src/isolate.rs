//! Finding the messages a shard refuses (a data error, [`ErrorClass::Rejected`])
//! by bisection, so they become dead letters and the rest of the batch applies.
//!
//! Each probe runs a subset of the shard's items in a transaction that is
//! rolled back; a half that passes is clean, a half that fails is split
//! again: O(k log n) round trips for k bad messages among n. Nothing is
//! concluded from inference alone: every message declared rejected failed a
//! probe by itself, so the verdict depends only on the message and the
//! schema (one DDL on every shard of both clusters) and both groups reach it.
//! A set that fails while every message in it passes alone (a combination
//! the merge produced) is not isolated: it stays an error.

use cluster::retry::{classify, ErrorClass};
use mysql_async::Pool;

use crate::apply::{apply_items, Attempt, FenceInfo};
use crate::plan::ShardItem;

/// Why bisection did not give an answer.
#[derive(Debug)]
pub enum IsolateError {
    /// A probe failed for another reason (retry the batch, or stop).
    Database(mysql_async::Error),
    /// The set is refused, no single message is: nothing to dead-letter.
    Combination(mysql_async::Error),
}

/// Indexes into `items` of the messages the shard refuses, each with the
/// server's error text. `failure` is the error the whole set just gave.
pub async fn rejected_items(
    pool: &Pool,
    shape: &crate::shape::Shape,
    items: &[ShardItem],
    fence: &FenceInfo<'_>,
    failure: mysql_async::Error,
) -> Result<Vec<(usize, String)>, IsolateError> {
    let probe = |set: Vec<usize>| async move {
        let subset: Vec<&ShardItem> = set.iter().map(|&i| &items[i]).collect();
        match apply_items(pool, shape, &subset, fence, Attempt::Probe).await {
            Ok(_) => Ok(None),
            Err(e) if classify(&e) == ErrorClass::Rejected => Ok(Some(e.to_string())),
            Err(e) => Err(IsolateError::Database(e)),
        }
    };
    let mut bad = Vec::new();
    // (candidates, the error they gave if they were probed as this set)
    let mut stack: Vec<(Vec<usize>, Option<String>)> = vec![((0..items.len()).collect(), Some(failure.to_string()))];
    while let Some((set, known)) = stack.pop() {
        let error = match known {
            // A single message is always probed by itself.
            Some(e) if set.len() > 1 => e,
            _ => match probe(set.clone()).await? {
                None => continue,
                Some(e) => e,
            },
        };
        if set.len() == 1 {
            bad.push((set[0], error));
            continue;
        }
        let (left, right) = set.split_at(set.len() / 2);
        match probe(left.to_vec()).await? {
            // The failure is in the right half, unless it came from a
            // combination (then the right half's own probes all pass).
            None => stack.push((right.to_vec(), None)),
            Some(e) => {
                stack.push((right.to_vec(), None));
                stack.push((left.to_vec(), Some(e)));
            }
        }
    }
    if bad.is_empty() {
        return Err(IsolateError::Combination(failure));
    }
    bad.sort_unstable();
    Ok(bad)
}
