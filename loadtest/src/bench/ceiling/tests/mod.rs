//! The ceilings of the shipped pipelines: which table, and what its made-up rows hold.

use super::*;

fn api() -> Pipeline {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml");
    Pipeline::load(&file).expect("api pipeline")
}

#[test]
fn the_ceiling_table_is_the_first_folded_rollup() {
    let insights = Pipeline::insights();
    assert_eq!(ceiling_table(&insights).map(|t| t.name.as_str()), Some("query_stats_minute"));
    assert_eq!(ceiling_table(&api()).map(|t| t.name.as_str()), Some("api_route_latency_hour"));
    assert_eq!(super::super::line::blind_rollup(&api()).map(|t| t.name.as_str()), Some("api_route_minute"));
    assert!(super::super::line::blind_rollup(&insights).is_none(), "every Insights rollup holds a sketch");
}

#[test]
fn made_up_rows_are_what_the_insights_ceiling_wrote_by_hand() {
    let insights = Pipeline::insights();
    let table = insights.table("query_stats_minute").expect("table");
    let sketch = "X'".to_string() + &"ab".repeat(200) + "'";
    let id = 5u64 << 40 | 7;
    assert_eq!(
        ceiling_insert(table, &[id], 1, false),
        format!(
            "INSERT INTO query_stats_minute (database_id, fingerprint, window_start, keyspace_id, query_count, \
             total_duration_us, max_duration_us, rows_read, rows_returned, error_count, latency_sketch) VALUES \
             ({id},'{id:016x}','2026-01-01 00:00:00',X'0000000000000000',2,5,6,7,8,9,{sketch})"
        )
    );
    let upsert = ceiling_insert(table, &[id], 0, true);
    assert!(upsert.ends_with(
        " ON DUPLICATE KEY UPDATE query_count = VALUES(query_count), total_duration_us = VALUES(total_duration_us), \
         max_duration_us = VALUES(max_duration_us), rows_read = VALUES(rows_read), \
         rows_returned = VALUES(rows_returned), error_count = VALUES(error_count), \
         latency_sketch = VALUES(latency_sketch)"
    ));
    assert_eq!(
        locked_read(table, &[1, 2]),
        "SELECT database_id, fingerprint, window_start, keyspace_id, query_count, total_duration_us, \
         max_duration_us, rows_read, rows_returned, error_count, latency_sketch FROM query_stats_minute \
         WHERE (database_id, fingerprint, window_start) IN \
         ((1,'0000000000000001','2026-01-01 00:00:00'),(2,'0000000000000002','2026-01-01 00:00:00')) FOR UPDATE"
    );
}

#[test]
fn made_up_rows_fit_the_api_rollup() {
    let api = api();
    let table = api.table("api_route_minute").expect("table");
    assert_eq!(
        ceiling_insert(table, &[3], 0, false),
        "INSERT INTO api_route_minute (tenant_id, route, window_start, keyspace_id, request_count, error_count, \
         bytes_in, bytes_out, max_latency_us) VALUES (3,'0000000000000003','2026-01-01 00:00:00',\
         X'0000000000000000',1,5,6,7,8)"
    );
}
