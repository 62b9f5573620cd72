use super::*;

/// The Insights DDL exactly as the store had it before it was described
/// (captured from the hand-written statements): the description must not
/// change a byte of it.
const GOLDEN_DDL: &str = include_str!("../../tests/golden/insights.sql");
const GOLDEN_UPSERT: &str = include_str!("../../tests/golden/query_patterns_upsert.sql");

#[test]
fn insights_ddl_is_byte_identical_to_the_hand_written_one() {
    let p = Pipeline::insights();
    let generated: Vec<String> = p.tables.iter().map(create_table).collect();
    assert_eq!(format!("{};\n", generated.join(";\n\n")), GOLDEN_DDL);
}

#[test]
fn insights_pattern_upsert_is_the_hand_written_one() {
    let p = Pipeline::insights();
    let t = p.table("query_patterns").expect("table");
    assert_eq!(upsert(t, "{values}").expect("blind"), GOLDEN_UPSERT.trim_end());
}

#[test]
fn write_paths_follow_the_merge_rules() {
    let p = Pipeline::insights();
    let path = |n: &str| p.table(n).expect(n).write_path;
    assert_eq!(path("query_stats_minute"), WritePath::Fold, "a sketch merge is folded");
    assert_eq!(path("query_stats_hour"), WritePath::Fold);
    assert_eq!(path("slow_queries"), WritePath::Insert);
    assert_eq!(path("query_patterns"), WritePath::Blind);
    let groups: Vec<(&str, Vec<&str>)> =
        p.groups().into_iter().map(|(g, t)| (g, t.iter().map(|t| t.name.as_str()).collect())).collect();
    assert_eq!(
        groups,
        [
            ("timeseries", vec!["query_stats_minute", "query_stats_hour", "slow_queries"]),
            ("query_patterns", vec!["query_patterns"])
        ]
    );
    assert_eq!(p.unbounded().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["query_patterns"]);
}

struct Files(Vec<(&'static str, &'static str)>);

impl SchemaSource for Files {
    fn read(&self, relative: &str) -> Result<String, String> {
        self.0.iter().find(|(p, _)| *p == relative).map(|(_, t)| t.to_string()).ok_or_else(|| format!("no {relative}"))
    }
}

const EVENT: &str = r#"{"type": "record", "name": "Hit", "namespace": "t", "fields": [
  {"name": "tenant_id", "type": "long"},
  {"name": "route", "type": "string"},
  {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
  {"name": "bytes", "type": "long"},
  {"name": "note", "type": ["null", "string"], "default": null},
  {"name": "latency", "type": "double"}
]}"#;

/// A small valid description; each negative test breaks one thing in it.
fn description(table: &str) -> String {
    format!(
        r#"name = "t"
[sharding]
column = "tenant_id"
[[topics]]
name = "hits"
schema = "7-hit.avsc"
key = ["tenant_id", "route"]
time = "at"
[[tables]]
{table}
"#
    )
}

const GOOD_TABLE: &str = r#"name = "hits_minute"
topic = "hits"
kind = "rollup"
window = "minute_window"
time_column = "window_start"
key = ["tenant_id", "route", "window_start"]
columns = [
  { name = "tenant_id", type = "BIGINT UNSIGNED", from = "tenant_id" },
  { name = "route", type = "VARCHAR(200)", from = "route" },
  { name = "window_start", type = "DATETIME", derive = "window_start" },
  { name = "keyspace_id", type = "BINARY(8)", derive = "keyspace_id" },
  { name = "requests", type = "BIGINT UNSIGNED", value = 1, merge = "sum" },
  { name = "bytes", type = "BIGINT UNSIGNED", from = "bytes", merge = "sum" },
]"#;

fn load(table: &str) -> Result<Pipeline, PipelineError> {
    parse(&description(table), &Files(vec![("7-hit.avsc", EVENT)]))
}

#[test]
fn a_valid_second_description_loads_and_writes_blind() {
    let p = load(GOOD_TABLE).expect("valid");
    let t = p.table("hits_minute").expect("table");
    assert_eq!(t.write_path, WritePath::Blind);
    assert_eq!(
        on_duplicate(t).expect("blind"),
        " ON DUPLICATE KEY UPDATE requests = requests + VALUES(requests), bytes = bytes + VALUES(bytes)"
    );
}

#[test]
fn bad_descriptions_name_the_table_column_and_field() {
    let cases: &[(&str, &str, &str)] = &[
        // A merge rule that does not fit the type.
        (
            r#"{ name = "bytes", type = "BIGINT UNSIGNED", from = "bytes", merge = "sum" }"#,
            r#"{ name = "bytes", type = "VARCHAR(10)", from = "route", merge = "sum" }"#,
            "table hits_minute, column bytes, merge sum: sum needs a numeric column",
        ),
        // A source field absent from the Avro schema.
        (
            r#"from = "bytes", merge"#,
            r#"from = "byts", merge"#,
            "table hits_minute, column bytes: field byts: not a field of hits's schema",
        ),
        // A key column missing.
        (
            r#"key = ["tenant_id", "route", "window_start"]"#,
            r#"key = ["tenant_id", "route", "window_start", "shard"]"#,
            "table hits_minute, key column shard: not a column of the table",
        ),
        // A window on a non-time column.
        (
            r#"time_column = "window_start""#,
            r#"time_column = "bytes""#,
            "table hits_minute, time_column bytes: a window needs a time column derived from the event time",
        ),
        // The sharding column outside the key.
        (
            r#"key = ["tenant_id", "route", "window_start"]"#,
            r#"key = ["route", "window_start"]"#,
            "table hits_minute, key: the sharding column tenant_id must be part of the key",
        ),
        // A column with no merge rule outside the key.
        (
            r#"from = "bytes", merge = "sum" }"#,
            r#"from = "bytes" }"#,
            "table hits_minute, column bytes: needs a merge rule",
        ),
        // A nullable field into a NOT NULL column.
        (
            r#"{ name = "bytes", type = "BIGINT UNSIGNED", from = "bytes", merge = "sum" }"#,
            r#"{ name = "bytes", type = "TEXT", from = "note", merge = "max" }"#,
            "table hits_minute, column bytes: field note: nullable in the schema",
        ),
        // An unknown rule and an unknown type.
        (r#"merge = "sum" }"#, r#"merge = "avg" }"#, "merge: unknown merge rule \"avg\""),
        (
            r#"type = "VARCHAR(200)""#,
            r#"type = "VARCHAR2(200)""#,
            "table hits_minute, column route, type: unknown SQL type",
        ),
        // min_by naming a column that is not merged with min.
        (
            r#"from = "bytes", merge = "sum" }"#,
            r#"from = "bytes", merge = "min_by(requests)" }"#,
            "table hits_minute, column bytes, merge: requests must itself merge with min",
        ),
        // Names spliced into SQL.
        (r#"name = "hits_minute""#, r#"name = "hits; DROP TABLE x""#, "is not a plain identifier"),
        // A group name the routing tables cannot hold.
        (
            r#"kind = "rollup""#,
            r#"kind = "rollup"
group = "a_group_name_longer_than_the_routing_column""#,
            "table hits_minute, group: \"a_group_name_longer_than_the_routing_column\" is not a plain identifier of at most 32 characters",
        ),
    ];
    for (from, to, want) in cases {
        assert!(GOOD_TABLE.contains(from), "{from}");
        let broken = GOOD_TABLE.replacen(from, to, 1);
        let e = load(&broken).expect_err(want).to_string();
        assert!(e.contains(want), "wanted {want:?} in {e:?}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
}

#[test]
fn a_float_sum_is_folded() {
    let t = GOOD_TABLE.replace(
        r#"{ name = "bytes", type = "BIGINT UNSIGNED", from = "bytes", merge = "sum" }"#,
        r#"{ name = "bytes", type = "DOUBLE", from = "latency", merge = "sum" }"#,
    );
    assert_eq!(load(&t).expect("valid").tables[0].write_path, WritePath::Fold);
}

#[test]
fn the_topic_key_must_hold_the_sharding_field() {
    let text = description(GOOD_TABLE).replace(r#"key = ["tenant_id", "route"]"#, r#"key = ["route"]"#);
    let e = parse(&text, &Files(vec![("7-hit.avsc", EVENT)])).expect_err("invalid").to_string();
    assert!(e.starts_with("topic hits, key: must hold the sharding field tenant_id"), "{e}");
}

#[test]
fn the_api_pipeline_loads_with_a_blind_a_folded_an_append_and_a_latest_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml");
    let p = Pipeline::load(&path).expect("api pipeline");
    let paths: Vec<(&str, WritePath)> = p.tables.iter().map(|t| (t.name.as_str(), t.write_path)).collect();
    assert_eq!(
        paths,
        [
            ("api_route_minute", WritePath::Blind),
            ("api_route_latency_hour", WritePath::Fold),
            ("api_failures", WritePath::Insert),
            ("api_routes", WritePath::Blind),
        ]
    );
    assert_eq!(p.topics.iter().map(|t| t.schema_id).collect::<Vec<_>>(), [11, 12]);
    let routes = p.table("api_routes").expect("routes");
    assert_eq!(
        on_duplicate(routes).expect("blind"),
        " ON DUPLICATE KEY UPDATE gateway_id = IF((VALUES(last_seen), VALUES(method), VALUES(gateway_id)) > \
         (last_seen, method, gateway_id), VALUES(gateway_id), gateway_id), method = IF((VALUES(last_seen), \
         VALUES(method)) > (last_seen, method), VALUES(method), method), first_seen = LEAST(first_seen, \
         VALUES(first_seen)), last_seen = GREATEST(last_seen, VALUES(last_seen))"
    );
}

#[test]
fn a_latest_table_refuses_merges_a_copy_would_apply_twice() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml");
    let text = std::fs::read_to_string(&path).expect("read").replace(
        r#"{ name = "method", type = "VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin", from = "method", merge = "last" }"#,
        r#"{ name = "method", type = "BIGINT UNSIGNED", from = "bytes_in", merge = "sum" }"#,
    );
    let e = parse(&text, &Dir(path.parent().expect("dir"))).expect_err("sum in latest").to_string();
    assert!(e.starts_with("table api_routes, column method: a latest table is copied by row images"), "{e}");
}
