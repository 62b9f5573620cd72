use super::*;
use crate::spec::tests::insights;

#[test]
fn encoding_leaves_out_the_window_start_and_the_last_length() {
    let stats = encoding_sql(&insights("query_stats_minute"));
    assert!(!stats.contains("window_start"), "{stats}");
    assert!(stats.starts_with("CONCAT(database_id, ',', query_count, ',',"), "{stats}");
    assert!(
        stats.ends_with(
            "LENGTH(fingerprint), ',', LENGTH(keyspace_id), ',', fingerprint, ',', keyspace_id, ',', latency_sketch)"
        ),
        "{stats}"
    );
    let slow = encoding_sql(&insights("slow_queries"));
    assert!(slow.contains("occurred_at"), "{slow}");
    assert!(slow.contains("IFNULL(LENGTH(error_text), 'N')") && slow.contains("IFNULL(error_text, '')"), "{slow}");
    assert!(!slow.contains("LENGTH(tables_used)"), "{slow}");
}

/// The encoding the hand-written specs gave (the first pass's sums of
/// stored rows must not move).
#[test]
fn insights_encodings_are_byte_identical() {
    for (name, golden) in crate::spec::tests::GOLDEN_ENCODING {
        assert_eq!(encoding_sql(&insights(name)), *golden, "{name}");
    }
}

#[test]
fn a_nullable_number_is_a_marked_scalar() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml");
    let p = pipeline::Pipeline::load(&p).expect("api");
    let t = p.table("api_failures").expect("table");
    let e = encoding_sql(&TableSpec::new(&p, t, &cluster::time::TimeConfig::default()).expect("spec"));
    assert!(
        e.starts_with("CONCAT(src_partition, ',', src_offset, ',', occurred_at, ',', tenant_id, ',', status"),
        "{e}"
    );
    assert!(e.contains("IFNULL(LENGTH(error_text), 'N')") && e.ends_with(", client_ip)"), "{e}");
}

#[test]
fn one_lane_and_the_stats_grouped_by_their_stored_time() {
    let stats = shard_sql(&insights("query_stats_minute"), 60, "0", "TRUE");
    assert!(stats.ends_with("GROUP BY window_start, k"), "{stats}");
    assert_eq!(stats.matches("SUM(").count(), 1, "one DECIMAL sum per row: {stats}");
    assert_eq!(stats.matches("SHA1(").count(), 1, "{stats}");
    let slow = shard_sql(&insights("slow_queries"), 60, "0", "TRUE");
    assert!(slow.contains("DIV 60) * 60 AS t") && slow.ends_with("GROUP BY t, k"), "{slow}");
}

#[test]
fn busy_time_is_the_union_of_spans() {
    let s = |a: u64, b: u64| (Duration::from_millis(a), Duration::from_millis(b));
    assert_eq!(union(vec![s(0, 10), s(5, 20), s(30, 40)]), Duration::from_millis(30));
    assert_eq!(union(Vec::new()), Duration::ZERO);
    let pass = |spans| FirstPass { buckets: BTreeMap::new(), spans };
    let (a, b) = (pass(vec![s(0, 10), s(0, 5)]), pass(vec![s(5, 15), s(20, 30)]));
    assert_eq!(busy([&a, &b]), Duration::from_millis(15 + 15));
}

#[test]
fn a_bucket_differs_on_content_or_misplacement() {
    let key = |window, nibble| BucketKey { window, time: window, nibble };
    let d = |rows, lane_a, misplaced| Digest { rows, lane_a, lane_b: 1, misplaced };
    let old = FirstPass {
        buckets: [(key(0, 1), d(1, 5, 0)), (key(0, 2), d(1, 5, 0)), (key(60, 3), d(1, 5, 0))].into(),
        spans: Vec::new(),
    };
    let new = FirstPass {
        buckets: [
            (key(0, 1), d(1, 6, 0)),
            (key(0, 2), d(1, 5, 0)),
            (key(60, 3), d(1, 5, 1)),
            (key(120, 0), d(1, 1, 0)),
        ]
        .into(),
        spans: Vec::new(),
    };
    let diff = differing(&old, &new);
    assert_eq!(diff, [(0, vec![1]), (60, vec![3]), (120, vec![0])].into());
    assert_eq!(per_window(&new).get(&0).map(|d| (d.rows, d.lane_a)), Some((2, 11)));
}
