//! When the authoritative cluster's copy of a key may replace the target's:
//! a rule per table kind over the fences of the key's source and target
//! shards, read (and then held) `FOR UPDATE` on both. See
//! docs/ARCHITECTURE.md, "Repair: why it never races the consumers".

use std::collections::BTreeMap;

use pipeline::TableKind;
use serde_json::{json, Value};

use crate::error::VerifyError;

/// Fence offsets of one topic on one shard: `partition -> next_offset`.
pub(crate) type Fences = BTreeMap<i32, i64>;

/// What the fences of the two shards must show before a key is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Rollup rows merge every contribution (sums, sketches) exactly once:
    /// the copy must reflect exactly the offsets the target has applied, so
    /// every partition that may feed the key must stand at the same offset
    /// on both shards. Copying a row that holds a message the target has not
    /// applied yet would count it twice once the target's group applies it;
    /// copying one that lacks a message the target applied would lose it.
    SameOffsets,
    /// Latest rows merge idempotently (min, max, the `_by` family): a message
    /// applied again changes nothing, so a copy holding more than the target
    /// applied is still right once the target's group catches up. It must
    /// not hold less (what it lacks would be lost): the source must be at or
    /// past the target on every partition.
    SourceAtOrPast,
    /// An append row is one message: it may be compared and copied once
    /// both shards have applied that message (its partition's fence is past
    /// its offset on both), after which no group writes that key again.
    Applied { partition: i32, offset: i64 },
}

impl Rule {
    /// The rule of a table kind; an append key names its own partition and offset.
    pub(crate) fn of(kind: TableKind, message: Option<(i32, i64)>) -> Result<Self, VerifyError> {
        match (kind, message) {
            (TableKind::Rollup, _) => Ok(Rule::SameOffsets),
            (TableKind::Latest, _) => Ok(Rule::SourceAtOrPast),
            (TableKind::Append, Some((partition, offset))) => Ok(Rule::Applied { partition, offset }),
            (TableKind::Append, None) => {
                Err(VerifyError::Unexpected("an append key without its partition and offset".into()))
            }
        }
    }

    /// Whether a copy from `source` over `target` is exact now.
    pub(crate) fn holds(self, source: &Fences, target: &Fences) -> bool {
        match self {
            Rule::SameOffsets => source == target,
            Rule::SourceAtOrPast => target.iter().all(|(p, t)| source.get(p).is_some_and(|s| s >= t)),
            Rule::Applied { partition, offset } => {
                let past = |f: &Fences| f.get(&partition).is_some_and(|next| *next > offset);
                past(source) && past(target)
            }
        }
    }

    /// The partitions whose fence rows must be held: every partition of the
    /// topic (the producer's partitioner is not part of the pipeline
    /// description, so any of them may feed a rollup or latest key), or an
    /// append row's own.
    pub(crate) fn partition(self) -> Option<i32> {
        match self {
            Rule::Applied { partition, .. } => Some(partition),
            Rule::SameOffsets | Rule::SourceAtOrPast => None,
        }
    }
}

/// Only the partitions `rule` looks at.
pub(crate) fn relevant(rule: Rule, fences: Fences) -> Fences {
    match rule.partition() {
        Some(p) => fences.into_iter().filter(|(q, _)| *q == p).collect(),
        None => fences,
    }
}

/// The fences a copy was made at, for the audit row.
pub(crate) fn audit_json(topic: &str, source: (&str, &Fences), target: (&str, &Fences)) -> Value {
    json!({
        "topic": topic,
        "source": { "shard": source.0, "next_offsets": source.1 },
        "target": { "shard": target.0, "next_offsets": target.1 },
    })
}

/// The fence topic feeding pipeline topic `name`: `prefix + name` when the
/// prefix is given, else the only fenced topic named `name` or ending in it
/// (consumers prefix topic names; the prefix is theirs, not the pipeline's).
pub(crate) fn resolve_topic(name: &str, prefix: Option<&str>, fenced: &[String]) -> Result<String, VerifyError> {
    if let Some(prefix) = prefix {
        return Ok(format!("{prefix}{name}"));
    }
    let candidates: Vec<&String> = fenced.iter().filter(|t| t.as_str() == name || t.ends_with(name)).collect();
    match candidates.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(VerifyError::Usage(format!(
            "no fence rows for topic {name} on the target: no group has applied it (or pass --topic-prefix)"
        ))),
        many => Err(VerifyError::Usage(format!(
            "several fenced topics end in {name} ({}): pass --topic-prefix",
            many.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(i32, i64)]) -> Fences {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_rollup_copy_needs_the_same_offsets_on_every_partition() {
        let rule = Rule::of(TableKind::Rollup, None).expect("rule");
        assert!(rule.holds(&f(&[(0, 10), (1, 5)]), &f(&[(0, 10), (1, 5)])));
        assert!(!rule.holds(&f(&[(0, 11), (1, 5)]), &f(&[(0, 10), (1, 5)])), "source ahead: counted twice");
        assert!(!rule.holds(&f(&[(0, 10), (1, 5)]), &f(&[(0, 10), (1, 6)])), "source behind: lost");
        assert!(!rule.holds(&f(&[(0, 10)]), &f(&[(0, 10), (1, 6)])), "a partition one side never started");
    }

    #[test]
    fn a_latest_copy_may_hold_more_but_never_less() {
        let rule = Rule::of(TableKind::Latest, None).expect("rule");
        assert!(rule.holds(&f(&[(0, 12), (1, 5)]), &f(&[(0, 10), (1, 5)])));
        assert!(rule.holds(&f(&[(0, 12), (1, 5)]), &f(&[(0, 10)])));
        assert!(!rule.holds(&f(&[(0, 9), (1, 5)]), &f(&[(0, 10), (1, 5)])));
        assert!(!rule.holds(&f(&[(1, 5)]), &f(&[(0, 10), (1, 5)])));
    }

    #[test]
    fn an_append_row_waits_until_both_applied_its_message() {
        let rule = Rule::of(TableKind::Append, Some((3, 100))).expect("rule");
        assert_eq!(rule.partition(), Some(3));
        assert!(rule.holds(&f(&[(3, 101)]), &f(&[(3, 500)])));
        assert!(!rule.holds(&f(&[(3, 101)]), &f(&[(3, 100)])));
        assert!(Rule::of(TableKind::Append, None).is_err());
        assert_eq!(relevant(rule, f(&[(2, 1), (3, 2)])), f(&[(3, 2)]));
    }

    #[test]
    fn finds_the_prefixed_topic() {
        let fenced = vec!["t_x.query-events".to_string(), "t_x.query-stats".to_string()];
        assert_eq!(resolve_topic("query-stats", None, &fenced).expect("topic"), "t_x.query-stats");
        assert_eq!(resolve_topic("query-stats", Some("p."), &fenced).expect("topic"), "p.query-stats");
        assert!(resolve_topic("api-requests", None, &fenced).is_err());
        let twice = vec!["a.query-stats".to_string(), "b.query-stats".to_string()];
        assert!(resolve_topic("query-stats", None, &twice).is_err());
    }
}
