use super::*;

#[test]
fn only_spans_both_clusters_settled_are_comparable() {
    let shadow = Shadow::default();
    assert!(!shadow.comparable(None), "no bounds yet");
    shadow.set_bounds(Role::Old, Some(Bounds { covered_from_ms: 0, settled_through_ms: 10_000 }));
    shadow.set_bounds(Role::New, Some(Bounds { covered_from_ms: 1_000, settled_through_ms: 8_000 }));
    assert!(shadow.comparable(Some((1_000, 8_000))));
    assert!(!shadow.comparable(Some((0, 8_000))), "new does not cover");
    assert!(!shadow.comparable(Some((1_000, 9_000))), "new has not settled");
    assert_eq!(shadow.settled_through_ms(), Some(8_000));
}

#[test]
fn counts_flush_and_restore() {
    let shadow = Shadow::default();
    let q = Query::SlowQueries { database_id: 1, from: 0, to: 10, limit: 5 };
    let group = TableGroup::named("timeseries").expect("a group name");
    shadow.record(&q, group, Role::Old, Outcome::Equal, None);
    shadow.record(&q, group, Role::Old, Outcome::Mismatch, Some("x differs"));
    let taken = shadow.take_pending();
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].compared, taken[0].mismatches), (2, 1));
    assert!(taken[0].last_mismatch.as_deref().is_some_and(|m| m.contains("x differs")));
    assert!(shadow.take_pending().is_empty());
    shadow.restore_pending(taken);
    assert_eq!(shadow.take_pending()[0].compared, 2);
    assert_eq!(shadow.stats().mismatches, 1);
}
