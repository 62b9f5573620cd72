use super::*;

/// Printed by the hand-written specs at commit ba231e4 (the last that had
/// them), by running their `row_hash_sql`, `select_list` and `encoding_sql`.
const GOLDEN_ROW_HASH: &[(&str, &str)] = &[
    ("query_stats_minute", "SHA2(CONCAT(database_id, ',', LENGTH(fingerprint), ':', fingerprint, window_start, ',', LENGTH(keyspace_id), ':', keyspace_id, query_count, ',', total_duration_us, ',', max_duration_us, ',', rows_read, ',', rows_returned, ',', error_count, ',', LENGTH(latency_sketch), ':', latency_sketch), 256)"),
    ("query_stats_hour", "SHA2(CONCAT(database_id, ',', LENGTH(fingerprint), ':', fingerprint, window_start, ',', LENGTH(keyspace_id), ':', keyspace_id, query_count, ',', total_duration_us, ',', max_duration_us, ',', rows_read, ',', rows_returned, ',', error_count, ',', LENGTH(latency_sketch), ':', latency_sketch), 256)"),
    ("slow_queries", "SHA2(CONCAT(src_partition, ',', src_offset, ',', occurred_at, ',', database_id, ',', LENGTH(fingerprint), ':', fingerprint, LENGTH(keyspace_id), ':', keyspace_id, LENGTH(proxy_id), ':', proxy_id, duration_us, ',', rows_read, ',', rows_returned, ',', IFNULL(CONCAT(LENGTH(error_text), ':', error_text), 'N'), LENGTH(query_text), ':', query_text, LENGTH(tables_used), ':', tables_used), 256)"),
    ("query_patterns", "SHA2(CONCAT(database_id, ',', LENGTH(fingerprint), ':', fingerprint, LENGTH(keyspace_id), ':', keyspace_id, LENGTH(normalized_sql), ':', normalized_sql, LENGTH(tables_used), ':', tables_used, first_seen, ',', last_seen, ','), 256)"),
];
const GOLDEN_SELECT: &[(&str, &str)] = &[
    ("query_stats_minute", "CAST(database_id AS CHAR), fingerprint, CAST(window_start AS CHAR), LOWER(HEX(keyspace_id)), CAST(query_count AS CHAR), CAST(total_duration_us AS CHAR), CAST(max_duration_us AS CHAR), CAST(rows_read AS CHAR), CAST(rows_returned AS CHAR), CAST(error_count AS CHAR), LOWER(HEX(latency_sketch))"),
    ("query_stats_hour", "CAST(database_id AS CHAR), fingerprint, CAST(window_start AS CHAR), LOWER(HEX(keyspace_id)), CAST(query_count AS CHAR), CAST(total_duration_us AS CHAR), CAST(max_duration_us AS CHAR), CAST(rows_read AS CHAR), CAST(rows_returned AS CHAR), CAST(error_count AS CHAR), LOWER(HEX(latency_sketch))"),
    ("slow_queries", "CAST(src_partition AS CHAR), CAST(src_offset AS CHAR), CAST(occurred_at AS CHAR), CAST(database_id AS CHAR), fingerprint, LOWER(HEX(keyspace_id)), proxy_id, CAST(duration_us AS CHAR), CAST(rows_read AS CHAR), CAST(rows_returned AS CHAR), error_text, query_text, tables_used"),
    ("query_patterns", "CAST(database_id AS CHAR), fingerprint, LOWER(HEX(keyspace_id)), normalized_sql, tables_used, CAST(first_seen AS CHAR), CAST(last_seen AS CHAR)"),
];
/// The first pass's row encoding of the windowed tables, likewise.
pub(crate) const GOLDEN_ENCODING: &[(&str, &str)] = &[
    ("query_stats_minute", "CONCAT(database_id, ',', query_count, ',', total_duration_us, ',', max_duration_us, ',', rows_read, ',', rows_returned, ',', error_count, ',', LENGTH(fingerprint), ',', LENGTH(keyspace_id), ',', fingerprint, ',', keyspace_id, ',', latency_sketch)"),
    ("query_stats_hour", "CONCAT(database_id, ',', query_count, ',', total_duration_us, ',', max_duration_us, ',', rows_read, ',', rows_returned, ',', error_count, ',', LENGTH(fingerprint), ',', LENGTH(keyspace_id), ',', fingerprint, ',', keyspace_id, ',', latency_sketch)"),
    ("slow_queries", "CONCAT(src_partition, ',', src_offset, ',', occurred_at, ',', database_id, ',', duration_us, ',', rows_read, ',', rows_returned, ',', LENGTH(fingerprint), ',', LENGTH(keyspace_id), ',', LENGTH(proxy_id), ',', IFNULL(LENGTH(error_text), 'N'), ',', LENGTH(query_text), ',', fingerprint, ',', keyspace_id, ',', proxy_id, ',', IFNULL(error_text, ''), ',', query_text, ',', tables_used)"),
];

/// A copy of `pipelines/api.toml` edited by `edit`, beside copies of its
/// schema files (the directory lives as long as the returned guard).
pub(crate) fn edited_api(edit: impl Fn(&str) -> String) -> (tempfile::TempDir, std::path::PathBuf) {
    let api = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("api")).expect("mkdir");
    for f in ["11-api_requests.avsc", "12-api_failure.avsc"] {
        std::fs::copy(api.with_file_name("api").join(f), dir.path().join("api").join(f)).expect("copy schema");
    }
    let text = std::fs::read_to_string(&api).expect("api.toml");
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changed nothing");
    let path = dir.path().join("api.toml");
    std::fs::write(&path, edited).expect("write");
    (dir, path)
}

/// The built-in Insights pipeline's table `name` at the default `[time]`.
pub(crate) fn insights(name: &str) -> TableSpec {
    let p = Pipeline::insights();
    let t = p.table(name).expect("an insights table");
    TableSpec::new(&p, t, &TimeConfig::default()).expect("spec")
}

fn columns(spec: &TableSpec) -> Vec<(&str, Col, bool)> {
    spec.columns.iter().map(|c| (c.name.as_str(), c.col, c.nullable)).collect()
}

/// The specs derived from the description are the ones the comparators
/// had written out by hand (columns, encodings, keys, windows): the
/// Insights digests are unchanged.
#[test]
fn insights_specs_are_the_hand_written_ones() {
    use Col::*;
    let stats = [
        ("database_id", Int, false),
        ("fingerprint", Text, false),
        ("window_start", DateTime, false),
        ("keyspace_id", Bytes, false),
        ("query_count", Int, false),
        ("total_duration_us", Int, false),
        ("max_duration_us", Int, false),
        ("rows_read", Int, false),
        ("rows_returned", Int, false),
        ("error_count", Int, false),
        ("latency_sketch", Bytes, false),
    ];
    for (name, secs) in [("query_stats_minute", 60), ("query_stats_hour", 3600)] {
        let spec = insights(name);
        assert_eq!(columns(&spec), stats, "{name}");
        assert_eq!(spec.key, [0, 1, 2]);
        assert_eq!(spec.window, Some(("window_start".to_string(), secs)));
        assert!(spec.time_is_window_start);
        assert_eq!(spec.placement_columns(), (0, 3));
    }
    let slow = insights("slow_queries");
    assert_eq!(
        columns(&slow),
        [
            ("src_partition", Int, false),
            ("src_offset", Int, false),
            ("occurred_at", DateTime, false),
            ("database_id", Int, false),
            ("fingerprint", Text, false),
            ("keyspace_id", Bytes, false),
            ("proxy_id", Text, false),
            ("duration_us", Int, false),
            ("rows_read", Int, false),
            ("rows_returned", Int, false),
            ("error_text", Text, true),
            ("query_text", Text, false),
            ("tables_used", Text, false),
        ]
    );
    assert_eq!(
        (slow.key.as_slice(), slow.window.clone(), slow.time_is_window_start),
        ([0, 1].as_slice(), Some(("occurred_at".to_string(), 60)), false)
    );
    assert_eq!(slow.placement_columns(), (3, 5));
    let patterns = insights("query_patterns");
    assert_eq!(
        columns(&patterns),
        [
            ("database_id", Int, false),
            ("fingerprint", Text, false),
            ("keyspace_id", Bytes, false),
            ("normalized_sql", Text, false),
            ("tables_used", Text, false),
            ("first_seen", DateTime, false),
            ("last_seen", DateTime, false),
        ]
    );
    assert_eq!((patterns.key.as_slice(), patterns.window.clone()), ([0, 1].as_slice(), None));
}

/// The SQL the hand-written specs produced, captured before the specs
/// were derived: the digests of stored rows must not move.
#[test]
fn insights_row_hashes_are_byte_identical() {
    for (name, golden) in GOLDEN_ROW_HASH {
        assert_eq!(insights(name).row_hash_sql(), *golden, "{name}");
    }
    for (name, golden) in GOLDEN_SELECT {
        assert_eq!(insights(name).select_list(), *golden, "{name}");
    }
}

#[test]
fn row_encoding_is_length_prefixed_and_marks_null() {
    let sql = insights("slow_queries").row_hash_sql();
    assert!(sql.starts_with("SHA2(CONCAT(src_partition, ',', src_offset, ','"), "{sql}");
    assert!(sql.contains("LENGTH(proxy_id), ':', proxy_id"), "{sql}");
    assert!(sql.contains("IFNULL(CONCAT(LENGTH(error_text), ':', error_text), 'N')"), "{sql}");
    assert!(sql.ends_with(", 256)"));
}

#[test]
fn a_nullable_number_is_marked_too() {
    let spec = TableSpec {
        name: "t".into(),
        columns: vec![
            ColumnSpec { name: "a".into(), col: Col::Int, nullable: true },
            ColumnSpec { name: "b".into(), col: Col::Bytes, nullable: true },
        ],
        key: vec![0],
        window: None,
        time_is_window_start: false,
        shard_column: 0,
        keyspace_column: 1,
    };
    assert_eq!(
        spec.row_hash_sql(),
        "SHA2(CONCAT(IFNULL(CONCAT(a, ','), 'N,'), IFNULL(CONCAT(LENGTH(b), ':', b), 'N')), 256)"
    );
    assert_eq!(spec.misplaced_sql(&KeyRange::parse("-40").expect("range")), "(NOT (b < X'40'))");
}

#[test]
fn misplacement_tests_the_shard_range() {
    let range = KeyRange::parse("40-80").expect("range");
    assert_eq!(misplaced_sql("keyspace_id", &range), "(NOT (keyspace_id >= X'40' AND keyspace_id < X'80'))");
    assert_eq!(misplaced_sql("keyspace_id", &KeyRange::parse("-40").expect("range")), "(NOT (keyspace_id < X'40'))");
    assert_eq!(misplaced_sql("keyspace_id", &KeyRange::full()), "0");
}

#[test]
fn ranges_and_windows() {
    assert_eq!(
        insights("query_stats_minute").range_sql(&[(0, 60)]),
        "((window_start >= '1970-01-01 00:00:00' AND window_start < '1970-01-01 00:01:00'))"
    );
    let slow = insights("slow_queries");
    assert_eq!(slow.range_sql(&[]), "FALSE");
    assert!(slow.window_sql(10).contains("occurred_at) DIV 10) * 10"));
    assert_eq!(unhex("0aFF"), Some(vec![0x0a, 0xff]));
    assert_eq!(unhex("0"), None);
    assert_eq!(insights("query_patterns").key.len(), 2);
}

/// A cluster on the description at `pipeline` (the built-in Insights when `None`).
fn cluster_on(pipeline: Option<&std::path::Path>) -> ClusterConfig {
    let head = pipeline.map(|p| format!("pipeline = {:?}\n", p.display().to_string())).unwrap_or_default();
    let text = format!("{head}name = \"c\"\n[auth]\nuser = \"u\"\n[[shards]]\nrange = \"-\"\ndsn = \"mysql://h/db\"\n");
    ClusterConfig::from_toml_str(&text, std::path::Path::new("."), &|_| None).expect("cluster")
}

#[test]
fn refuses_pipelines_that_differ_in_name_tables_or_columns() {
    let api = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml");
    let (insights, api_cluster) = (cluster_on(None), cluster_on(Some(&api)));
    assert!(check_same_pipeline(&insights, &cluster_on(None)).is_ok());
    assert!(check_same_pipeline(&api_cluster, &cluster_on(Some(&api))).is_ok());
    let e = check_same_pipeline(&insights, &api_cluster).expect_err("names").to_string();
    assert!(e.starts_with("the clusters' pipelines differ (different pipeline names): old has pipeline insights (tables query_stats_minute, query_stats_hour, slow_queries, query_patterns); new has api (tables api_route_minute,"), "{e}");

    // The same name, edited copies beside the same schema files: a wider route in the minute table.
    let (_wider_dir, path) = edited_api(|text| {
        text.replacen(
            "type = \"VARCHAR(200)\", from = \"route\" },\n  { name = \"window_start\"",
            "type = \"VARCHAR(250)\", from = \"route\" },\n  { name = \"window_start\"",
            1,
        )
    });
    let wider = cluster_on(Some(&path));
    let e = check_same_pipeline(&api_cluster, &wider).expect_err("a column's type").to_string();
    assert!(e.contains("(table api_route_minute differs (kind, columns, key, time column or window))"), "{e}");
    let (_dir, path) = edited_api(|text| {
        let start = text.find("[[tables]]\nname = \"api_routes\"").expect("routes table");
        text[..start].to_string()
    });
    let e = check_same_pipeline(&api_cluster, &cluster_on(Some(&path))).expect_err("tables").to_string();
    assert!(e.contains("(different table sets)"), "{e}");
}

#[test]
fn a_full_diff_key_must_order_by_bytes() {
    let (_dir, path) = edited_api(|text| {
        let (head, routes) = text.split_at(text.find("name = \"api_routes\"").expect("routes"));
        let ci = routes.replacen(
            r#"type = "VARCHAR(200)""#,
            r#"type = "VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci""#,
            1,
        );
        format!("{head}{ci}")
    });
    let c = cluster_on(Some(&path));
    let e = unbounded(&c).expect_err("a case-insensitive key").to_string();
    assert!(e.contains("table api_routes: key column route has a collation that does not order by bytes"), "{e}");
    assert_eq!(windowed(&c).expect("windowed tables need no order").len(), 3);
}

#[test]
fn the_api_pipeline_derives_its_specs() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml");
    let p = Pipeline::load(&path).expect("api pipeline");
    let time = TimeConfig::default();
    let specs: Vec<TableSpec> = p.tables.iter().map(|t| TableSpec::new(&p, t, &time).expect("spec")).collect();
    type Shape<'a> = (&'a str, Vec<usize>, Option<(String, i64)>, bool, (usize, usize));
    let shape: Vec<Shape<'_>> = specs
        .iter()
        .map(|s| (s.name.as_str(), s.key.clone(), s.window.clone(), s.time_is_window_start, s.placement_columns()))
        .collect();
    assert_eq!(
        shape,
        [
            ("api_route_minute", vec![0, 1, 2], Some(("window_start".into(), 60)), true, (0, 3)),
            ("api_route_latency_hour", vec![0, 1, 2], Some(("window_start".into(), 3600)), true, (0, 3)),
            ("api_failures", vec![0, 1], Some(("occurred_at".into(), 60)), false, (3, 4)),
            ("api_routes", vec![0, 1], None, false, (0, 2)),
        ]
    );
    let failures = &specs[2];
    assert_eq!(failures.columns[7].col, Col::Int, "SMALLINT status");
    assert!(failures.columns[9].nullable && failures.columns[9].col == Col::Text, "error_text");
}
