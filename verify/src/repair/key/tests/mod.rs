//! Parsing the drill-down's key text back into SQL, on the built-in Insights tables.

use super::*;

fn spec(name: &str) -> TableSpec {
    let cluster = cluster::config::ClusterConfig::from_toml_str(
        "name = \"c\"\n[auth]\nuser = \"u\"\n[[shards]]\nrange = \"-\"\ndsn = \"mysql://h/db\"\n",
        std::path::Path::new("."),
        &|_| None,
    )
    .expect("cluster");
    crate::spec::table(&cluster, name).expect("spec").expect("table")
}

#[test]
fn parses_the_drill_down_key_text_back_into_sql() {
    let table = spec("query_stats_minute");
    let key =
        RepairKey::parse(&table, "database_id=42, fingerprint=ab, c'd, window_start=2026-12-07 10:01:00").expect("key");
    assert_eq!(
        key.where_sql,
        "database_id = 42 AND fingerprint = 'ab, c\\'d' AND window_start = '2026-12-07 10:01:00'"
    );
    assert_eq!(
        key.keyspace_id(&table, pipeline::Vindex::Hash, Some("7")),
        Some(cluster::vindex::keyspace_id(42)),
        "the key's own sharding value wins"
    );
    assert!(RepairKey::parse(&table, "database_id=x, fingerprint=a, window_start=t").is_err());
    assert!(RepairKey::parse(&table, "fingerprint=a").is_err());
}

#[test]
fn an_append_key_takes_its_sharding_value_from_the_row() {
    let table = spec("slow_queries");
    let key = RepairKey::parse(&table, "src_partition=3, src_offset=17").expect("key");
    assert_eq!(key.where_sql, "src_partition = 3 AND src_offset = 17");
    assert_eq!(key.keyspace_id(&table, pipeline::Vindex::Hash, None), None);
    assert_eq!(key.keyspace_id(&table, pipeline::Vindex::Hash, Some("9")), Some(cluster::vindex::keyspace_id(9)));
    let partition = table.column_index("src_partition").expect("column");
    assert_eq!(key.value_of(&table, partition), Some("3"));
}
