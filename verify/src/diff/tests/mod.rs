use super::*;
use crate::spec::tests::insights;

fn row(shard: usize, values: &[&str]) -> FetchedRow {
    FetchedRow { shard, values: values.iter().map(|v| Some((*v).to_string())).collect() }
}

#[test]
fn matches_rows_as_a_multiset_per_key() {
    let a = row(0, &["1", "10", "2026-01-01 00:00:00.000000", "5", "f", "00", "p", "7"]);
    let b = row(1, &["1", "11", "2026-01-01 00:00:00.000000", "5", "f", "00", "p", "7"]);
    let mut a_later = a.clone();
    a_later.values[2] = Some("2026-01-01 00:00:00.000001".into());
    let mut c = b.clone();
    c.values[7] = Some("8".into());
    let mut out = Vec::new();
    // New: a twice (the duplicate with another time), b changed.
    diff_rows(&insights("slow_queries"), Some(0), &[a.clone(), b], &[a, a_later, c], &mut out);
    let kinds: Vec<(DiffKind, &str)> = out.iter().map(|d| (d.kind, d.key.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (DiffKind::ExtraOnNew, "src_partition=1, src_offset=10"),
            (DiffKind::Changed, "src_partition=1, src_offset=11")
        ]
    );
    assert_eq!(out[0].detail["copies_new"], 2);
    assert_eq!(out[1].detail["columns"]["duration_us"], json!({ "old": "7", "new": "8" }));
}

#[test]
fn kinds_round_trip() {
    for kind in [DiffKind::MissingOnNew, DiffKind::ExtraOnNew, DiffKind::Changed, DiffKind::Misplaced] {
        assert_eq!(DiffKind::parse(kind.as_str()), Some(kind));
    }
}
