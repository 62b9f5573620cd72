#[test]
fn reads_are_bounded_by_the_server_on_mariadb_and_mysql() {
    let timeout = std::time::Duration::from_millis(2500);
    assert_eq!(
        super::bounded("SELECT a FROM t", 10, timeout),
        "SET STATEMENT max_statement_time = 2.500 FOR SELECT a FROM t"
    );
    assert_eq!(super::bounded("SELECT a FROM t", 8, timeout), "SELECT /*+ MAX_EXECUTION_TIME(2500) */ a FROM t");
}

use super::*;

fn sketch(values: &[f64]) -> Vec<u8> {
    let mut s = LatencySketch::new();
    for v in values {
        s.add_ms(*v);
    }
    s.encode()
}

#[test]
fn series_buckets_merge_sketches() {
    let rows = vec![
        (0, 2, 30, 20, 0, sketch(&[10.0, 20.0])),
        (60, 1, 40, 40, 1, sketch(&[40.0])),
        (120, 1, 100, 100, 0, sketch(&[100.0])),
    ];
    let Answer::Series(s) = series(rows, 60, 120).expect("series") else { panic!("kind") };
    assert_eq!(s.points.len(), 2);
    assert_eq!((s.points[0].query_count, s.points[0].error_count, s.points[0].sketch_count), (3, 1, 3));
    assert_eq!((s.points[0].start, s.points[0].end), (0, 120));
    // Four values 10, 20, 40, 100: DDSketch's p99 is the third (rank 0.99 * 3), within 1%.
    let p99 = s.p99_ms.expect("p99");
    assert!((p99 - 40.0).abs() <= 0.4, "{p99}");
}

fn top(fp: &str, count: u64) -> TopPattern {
    TopPattern {
        fingerprint: fp.into(),
        query_count: count,
        total_duration_us: 1,
        max_duration_us: 1,
        rows_read: 1,
        rows_returned: 1,
        error_count: 0,
        windows: 1,
        normalized_sql: None,
    }
}

#[test]
fn comparison_ignores_order_but_not_values() {
    let a = Answer::TopPatterns(vec![top("a", 1), top("b", 1)]);
    let b = Answer::TopPatterns(vec![top("b", 1), top("a", 1)]);
    assert_eq!(compare(&a, &b, 0), Ok(()));
    let c = Answer::TopPatterns(vec![top("b", 1), top("a", 2)]);
    let got = compare(&a, &c, 0).expect_err("different");
    assert!(got.starts_with("a: primary"), "{got}");
    let d = Answer::TopPatterns(vec![top("a", 1)]);
    assert_eq!(compare(&a, &d, 0), Err("b only on the primary cluster".to_owned()));
}

#[test]
fn pattern_rows_compare_without_last_seen_and_only_when_settled() {
    let hit = |fp: &str, first: i64, last: i64| PatternHit {
        database_id: 1,
        fingerprint: fp.into(),
        normalized_sql: "SELECT 1".into(),
        tables_used: "[]".into(),
        first_seen_ms: first,
        last_seen_ms: last,
    };
    let a = Answer::Patterns(vec![hit("a", 10, 50), hit("late", 500, 500)]);
    let b = Answer::Patterns(vec![hit("a", 10, 20)]);
    assert_eq!(compare(&a, &b, 100), Ok(()));
    assert!(compare(&a, &b, 1000).is_err());
}

#[test]
fn quantiles_compare_within_tolerance() {
    assert!(close(Some(100.0), Some(101.5)));
    assert!(!close(Some(100.0), Some(103.0)));
    assert!(!close(None, Some(1.0)));
}
