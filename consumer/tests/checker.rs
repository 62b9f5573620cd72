//! The oracle behind most end-to-end tests, `loadtest::check`, proven: a
//! cluster corrupted in each of several ways behind its back is reported
//! with every difference, one per corruption, and nothing else.

use testkit as common;

use cluster::pool::ShardPools;
use common::fresh_cluster;
use mysql_async::prelude::Queryable;

const RULES: consumer::plan::TimeRules =
    consumer::plan::TimeRules { allowed_lateness_ms: 300_000, retention_ms: 8 * 86_400_000, ahead_ms: 3 * 86_400_000 };

/// One corruption: the statement, run on one shard, and a text the report
/// must contain for it.
struct Corruption {
    shard: usize,
    sql: String,
    expect: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_corruption_is_reported_with_every_difference() {
    let cluster = fresh_cluster("old", "checker").await;
    let (messages, truth) = common::fetched_workload(3000);
    let pools = ShardPools::new(&cluster.config);
    common::apply_batch(&pools, &cluster, messages, RULES, false).await;
    let clean = loadtest::check::check(&cluster.config, &truth).await.expect("check");
    assert!(clean.is_equal(), "clean cluster differs: {:?}", clean.differences);
    assert!(truth.minute.len() > 20 && truth.patterns.len() > 10 && truth.slow.len() > 10, "workload too small");

    let shard_of = |db: u64| cluster.config.shard_index_for(&cluster::vindex::keyspace_id(db));
    let key = |db: u64, fp: &str| format!("database_id = {db} AND fingerprint = '{fp}'");
    let mut corruptions = Vec::new();
    // Stats rows: one missing, then each column changed on its own row.
    let m = &truth.minute;
    let at = |i: usize| {
        format!("{} AND window_start = FROM_UNIXTIME({})", key(m[i].database_id, &m[i].fingerprint), m[i].window_start)
    };
    corruptions.push(Corruption {
        shard: shard_of(m[0].database_id),
        sql: format!("DELETE FROM query_stats_minute WHERE {}", at(0)),
        expect: format!(
            "query_stats_minute: missing ({}, \"{}\", {})",
            m[0].database_id, m[0].fingerprint, m[0].window_start
        ),
    });
    let columns = ["query_count", "total_duration_us", "max_duration_us", "rows_read", "rows_returned", "error_count"];
    for (n, column) in columns.iter().enumerate() {
        let i = n + 1;
        corruptions.push(Corruption {
            shard: shard_of(m[i].database_id),
            sql: format!("UPDATE query_stats_minute SET {column} = {column} + 1 WHERE {}", at(i)),
            expect: format!("{column} expected "),
        });
    }
    let other_sketch = {
        let mut s = topics::LatencySketch::new();
        s.add_ms(123.0);
        loadtest::truth::to_hex(&s.encode())
    };
    let i = columns.len() + 1;
    corruptions.push(Corruption {
        shard: shard_of(m[i].database_id),
        sql: format!("UPDATE query_stats_minute SET latency_sketch = X'{other_sketch}' WHERE {}", at(i)),
        expect: "latency_sketch expected".into(),
    });
    // An extra hour row: a copy of one under a window nobody wrote.
    let h = &truth.hour[0];
    corruptions.push(Corruption {
        shard: shard_of(h.database_id),
        sql: format!(
            "INSERT INTO query_stats_hour SELECT database_id, fingerprint, window_start - INTERVAL 100 DAY, keyspace_id, \
             query_count, total_duration_us, max_duration_us, rows_read, rows_returned, error_count, latency_sketch \
             FROM query_stats_hour WHERE {} AND window_start = FROM_UNIXTIME({})",
            key(h.database_id, &h.fingerprint),
            h.window_start
        ),
        expect: format!("query_stats_hour: extra ({}, \"{}\", {})", h.database_id, h.fingerprint, h.window_start - 100 * 86_400),
    });
    // Patterns: each column changed on its own row.
    let p = &truth.patterns;
    for (n, set) in [
        "normalized_sql = CONCAT(normalized_sql, ' ')",
        "tables_used = '[\"elsewhere\"]'",
        "first_seen = first_seen - INTERVAL 1 SECOND",
        "last_seen = last_seen + INTERVAL 1 SECOND",
    ]
    .iter()
    .enumerate()
    {
        corruptions.push(Corruption {
            shard: shard_of(p[n].database_id),
            sql: format!("UPDATE query_patterns SET {set} WHERE {}", key(p[n].database_id, &p[n].fingerprint)),
            expect: format!("query_patterns: ({}, \"{}\") differs", p[n].database_id, p[n].fingerprint),
        });
    }
    // A pattern on the wrong shard, and one with a wrong keyspace id.
    let (moved, home) = (&p[4], shard_of(p[4].database_id));
    let elsewhere = (home + 1) % cluster.config.shards.len();
    corruptions.push(Corruption {
        shard: home,
        sql: format!("DELETE FROM query_patterns WHERE {}", key(moved.database_id, &moved.fingerprint)),
        expect: format!(
            "query_patterns: database_id {} is on shard {}",
            moved.database_id, cluster.config.shards[elsewhere].range
        ),
    });
    corruptions.push(Corruption {
        shard: shard_of(p[5].database_id),
        sql: format!(
            "UPDATE query_patterns SET keyspace_id = X'0000000000000001' WHERE {}",
            key(p[5].database_id, &p[5].fingerprint)
        ),
        expect: format!("query_patterns: database_id {} has keyspace_id 0000000000000001", p[5].database_id),
    });
    // Slow queries: each column changed on its own row.
    let s = &truth.slow;
    for (n, set) in [
        "proxy_id = 'other'",
        "duration_us = duration_us + 1",
        "rows_read = rows_read + 1",
        "rows_returned = rows_returned + 1",
        "error_text = 'boom'",
        "query_text = 'select 2'",
        "tables_used = '[]'",
        "occurred_at = occurred_at + INTERVAL 1 MICROSECOND",
    ]
    .iter()
    .enumerate()
    {
        corruptions.push(Corruption {
            shard: shard_of(s[n].database_id),
            sql: format!(
                "UPDATE slow_queries SET {set} WHERE src_partition = {} AND src_offset = {}",
                s[n].partition, s[n].offset
            ),
            expect: format!("slow_queries: ({}, {}) differs", s[n].partition, s[n].offset),
        });
    }

    // The moved pattern row is copied to the other shard before it is deleted.
    {
        let mut from = pools.shard(home).get_conn().await.expect("conn");
        let row: (u64, String, Vec<u8>, String, String, String, String) = from
            .query_first(format!(
                "SELECT database_id, fingerprint, keyspace_id, normalized_sql, tables_used, \
                 CAST(first_seen AS CHAR), CAST(last_seen AS CHAR) FROM query_patterns WHERE {}",
                key(moved.database_id, &moved.fingerprint)
            ))
            .await
            .expect("read")
            .expect("moved row exists");
        let mut to = pools.shard(elsewhere).get_conn().await.expect("conn");
        to.exec_drop(
            "INSERT INTO query_patterns (database_id, fingerprint, keyspace_id, normalized_sql, tables_used, first_seen, \
             last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        .await
        .expect("copy");
    }
    for c in &corruptions {
        let mut conn = pools.shard(c.shard).get_conn().await.expect("conn");
        conn.query_drop(c.sql.as_str()).await.expect(&c.sql);
        assert_eq!(conn.affected_rows(), 1, "{} changed no row", c.sql);
    }
    pools.disconnect().await;

    let report = loadtest::check::check(&cluster.config, &truth).await.expect("check");
    for c in &corruptions {
        let hits = report.differences.iter().filter(|d| d.contains(&c.expect)).count();
        assert!(hits >= 1, "{:?} not reported for {}:\n{}", c.expect, c.sql, report.differences.join("\n"));
    }
    // One line per corruption, nothing more: the column changes above are all
    // on different rows, so each gives exactly one difference.
    assert_eq!(report.differences.len(), corruptions.len(), "{}", report.differences.join("\n"));
}
