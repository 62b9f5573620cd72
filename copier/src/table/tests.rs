use mysql_async::Value;

use super::*;

/// The default pipeline's latest table (the one the copier was first written for).
pub(crate) fn insights() -> CopiedTable {
    let p = Pipeline::insights();
    let name = p.unbounded().next().expect("a latest table").name.clone();
    CopiedTable::new(&p, &name).expect("copied table")
}

pub(crate) fn api_pipeline() -> Pipeline {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml");
    Pipeline::load(&path).expect("api pipeline")
}

#[test]
fn any_latest_table_of_the_pipeline_and_nothing_else() {
    let api = api_pipeline();
    let routes = CopiedTable::new(&api, "api_routes").expect("routes");
    assert_eq!(routes.key_names(), ["tenant_id", "route"]);
    assert_eq!(routes.sharding, 0);
    // last = max_by(last_seen) of (method, gateway_id); first_seen min, last_seen max.
    assert_eq!(
        routes.merge,
        [MergeStep::Group { min: false, by: 6, members: vec![3, 4] }, MergeStep::Min(5), MergeStep::Max(6)]
    );
    let error = CopiedTable::new(&api, "api_route_minute").expect_err("a rollup").to_string();
    assert!(error.contains("\"api_route_minute\" is not a latest table of pipeline api (the copier copies api_routes"));
    let error = CopiedTable::new(&api, "nope").expect_err("unknown").to_string();
    assert!(error.contains("\"nope\" is not a latest table"), "{error}");
}

#[test]
fn the_insights_table_reads_and_writes_as_before() {
    let t = insights();
    // The same statement as the hand-written copier's.
    assert_eq!(
        t.copy_chunk_sql(None, 5),
        format!(
            "SELECT database_id, fingerprint, CONCAT_WS(',', QUOTE(normalized_sql), QUOTE(tables_used), \
             QUOTE(first_seen), QUOTE(last_seen)) FROM {} ORDER BY database_id, fingerprint LIMIT 5",
            t.name
        )
    );
    let key = Key(vec![Cell::UInt(3), Cell::Text("x'y".into())]);
    let sql = t.copy_chunk_sql(Some(&key), 10);
    assert!(sql.contains("WHERE database_id > 3 OR (database_id = 3 AND fingerprint > 'x\\'y') "), "{sql}");
    assert!(sql.ends_with("ORDER BY database_id, fingerprint LIMIT 10"));
    assert_eq!(
        t.delete_sql(&[key.tuple()]),
        format!("DELETE FROM {} WHERE (database_id, fingerprint) IN ((3,'x\\'y'))", t.name)
    );
}

#[test]
fn a_copy_row_adds_the_key_and_the_vindex_keyspace_id_to_the_servers_quoting() {
    let t = insights();
    // What QUOTE() gives for the other columns (MariaDB and MySQL 8 alike).
    let rest = "'select \\'a\\'','[\"t\"]','2023-11-14 22:13:20.123','2023-11-14 22:13:21.000'";
    let row = vec![Value::Bytes(b"7".to_vec()), Value::Bytes(b"f'1".to_vec()), Value::Bytes(rest.as_bytes().to_vec())];
    let row = t.copy_row(row, &mut KeyspaceIds::default()).expect("row");
    assert_eq!(row.key, Key(vec![Cell::UInt(7), Cell::Text("f'1".into())]));
    let ksid = sql::hex(&cluster::vindex::keyspace_id(7));
    assert_eq!(row.tuple, format!("(7,'f\\'1',{ksid},{rest})"));
    assert_eq!(row.keyspace_id, cluster::vindex::keyspace_id(7));
}

#[test]
fn runs_of_value_columns_between_key_and_keyspace_columns() {
    // A table whose columns interleave: value, key, keyspace id, value, value.
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml"))
        .expect("read")
        .replace(
            r#"  { name = "tenant_id", type = "BIGINT UNSIGNED", from = "tenant_id" },
  { name = "route", type = "VARCHAR(200)", from = "route" },
  { name = "keyspace_id", type = "BINARY(8)", derive = "keyspace_id" },
  { name = "method""#,
            r#"  { name = "gateway_id", type = "VARCHAR(255)", from = "gateway_id", merge = "last" },
  { name = "tenant_id", type = "BIGINT UNSIGNED", from = "tenant_id" },
  { name = "keyspace_id", type = "BINARY(8)", derive = "keyspace_id" },
  { name = "route", type = "VARCHAR(200)", from = "route" },
  { name = "method""#,
        )
        .replace(
            r#"  { name = "gateway_id", type = "VARCHAR(255)", from = "gateway_id", merge = "last" },
  { name = "first_seen""#,
            r#"  { name = "first_seen""#,
        );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    let p = pipeline::parse(&text, &pipeline::Dir(&dir)).expect("valid");
    let t = CopiedTable::new(&p, "api_routes").expect("routes");
    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["gateway_id", "tenant_id", "keyspace_id", "route", "method", "first_seen", "last_seen"]);
    assert_eq!(t.runs, [vec![0], vec![4, 5, 6]]);
    let row = vec![
        Value::Bytes(b"9".to_vec()),
        Value::Bytes(b"/v1/x".to_vec()),
        Value::Bytes(b"'gw'".to_vec()),
        Value::Bytes(b"'GET','2026-01-01 00:00:00.000','2026-01-01 00:00:01.000'".to_vec()),
    ];
    let row = t.copy_row(row, &mut KeyspaceIds::default()).expect("row");
    let ksid = sql::hex(&cluster::vindex::keyspace_id(9));
    assert_eq!(row.tuple, format!("('gw',9,{ksid},'/v1/x','GET','2026-01-01 00:00:00.000','2026-01-01 00:00:01.000')"));
}

#[test]
fn images_from_binlog_and_text_values_agree() {
    let t = insights();
    let binlog = [
        Value::Int(-1),
        Value::Bytes(b"fp".to_vec()),
        Value::Bytes(vec![1, 2]),
        Value::Bytes(b"select 1".to_vec()),
        Value::Bytes(b"[]".to_vec()),
        Value::Date(2026, 1, 2, 3, 4, 5, 123_000),
        Value::Date(2026, 1, 2, 3, 4, 6, 0),
    ];
    let text = [
        Value::Bytes(b"18446744073709551615".to_vec()),
        Value::Bytes(b"fp".to_vec()),
        Value::Bytes(vec![1, 2, 0, 0, 0, 0, 0, 0]),
        Value::Bytes(b"select 1".to_vec()),
        Value::Bytes(b"[]".to_vec()),
        Value::Bytes(b"2026-01-02 03:04:05.123".to_vec()),
        Value::Bytes(b"2026-01-02 03:04:06.000".to_vec()),
    ];
    let a = t.image(binlog.to_vec()).expect("binlog image");
    let b = t.image(text.to_vec()).expect("text image");
    assert_eq!(a, b);
    assert_eq!(a.key.0[0], Cell::UInt(u64::MAX));
    assert_eq!(a.keyspace_id, cluster::vindex::keyspace_id(u64::MAX));
    assert!(t.values_tuple(&a).contains("'2026-01-02 03:04:05.123000'"));
    assert!(t.image(binlog[..6].to_vec()).is_err());
}
