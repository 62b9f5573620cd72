//! Shadow reads on real clusters fed by both consumer groups: equal data
//! compares equal, and a difference injected on the new cluster is caught
//! (counted, persisted for `status`, gate refuses the switch) before any
//! switch, without changing what the caller gets.

mod common;

use std::time::{Duration, Instant};

use common::{control, cutover_command, hot_database, on_shard_of, router_config, Api};
use serde_json::Value;
use testkit::{drop_databases, fresh_cluster, wait_caught_up, Broker, Group};

async fn get(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.expect("request");
    assert!(response.status().is_success(), "{url}: {}", response.status());
    response.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_difference_on_the_new_cluster_is_caught_by_shadow_reads_before_any_switch() {
    let old = fresh_cluster("old", "shadow").await;
    let new = fresh_cluster("new", "shadow").await;
    let broker = Broker::new("shadow");
    let now_ms = chrono::Utc::now().timestamp_millis();
    broker.produce_from(15_000, 11, None, now_ms - 3 * 3_600_000).await;
    let group_a = Group::start(&old, &broker, "shadow-a");
    let group_b = Group::start(&new, &broker, "shadow-b");
    wait_caught_up(&old.config, &broker, Duration::from_secs(120)).await;
    wait_caught_up(&new.config, &broker, Duration::from_secs(120)).await;

    let api = Api::start(&old, &new, router_config("shadow-router", 1.0)).await;
    // Both clusters' bounds known and settled up to the idle confirmation (now - lateness).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = api.stats().await;
        let settled: Vec<i64> = stats["bounds"]
            .as_array()
            .map(|b| b.iter().filter_map(|x| x["settled_through_ms"].as_i64()).collect())
            .unwrap_or_default();
        if settled.len() == 2 && settled.iter().all(|s| *s >= now_ms - 15 * 60_000) {
            break;
        }
        assert!(Instant::now() < deadline, "bounds never settled: {stats}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let client = common::api_client_builder().build().expect("client");
    let to = (now_ms / 1000 - 600) / 3600 * 3600;
    let from = to - 6 * 3600;
    let base = &api.base;
    let top_url = |db: u64| format!("{base}/v1/databases/{db}/patterns/top?from={from}&to={to}&by=total_time&limit=10");
    let mut reads = 0;
    for rank in 1..=4 {
        let db = hot_database(rank);
        let top = get(&client, &top_url(db)).await;
        assert_eq!(top["cluster"], "old", "reads start on the old cluster");
        let rows = top["data"].as_array().expect("rows");
        assert!(!rows.is_empty(), "db {db} has patterns: {top}");
        assert!(rows[0]["normalized_sql"].is_string(), "labelled with SQL: {top}");
        let fingerprint = rows[0]["fingerprint"].as_str().expect("fingerprint");
        for url in [
            format!("{base}/v1/databases/{db}/patterns/top?from={from}&to={to}&by=count&granularity=minute"),
            format!(
                "{base}/v1/databases/{db}/patterns/{fingerprint}/series?from={from}&to={to}&granularity=minute&step=5m"
            ),
            format!("{base}/v1/databases/{db}/patterns/{fingerprint}/series?from={from}&to={to}"),
            format!("{base}/v1/databases/{db}/slow-queries?from={from}&to={to}&limit=50"),
            format!("{base}/v1/patterns/search?q=select&database_id={db}&limit=200"),
        ] {
            let answer = get(&client, &url).await;
            assert_eq!(answer["cluster"], "old");
            reads += 1;
        }
        reads += 1;
    }
    // Across databases: every shard of each cluster (4 and 8), merged; the shadow read compares the two merges.
    let needle = "orders";
    let search = get(&client, &format!("{base}/v1/patterns/search?q={needle}&limit=1000")).await;
    let hits = search["data"].as_array().expect("hits");
    let mut expected = 0;
    for i in 0..old.config.shards.len() {
        let pools = cluster::pool::ShardPools::new(&old.config);
        let mut conn = pools.shard(i).get_conn().await.expect("conn");
        let n: Option<u64> = mysql_async::prelude::Queryable::query_first(
            &mut conn,
            format!("SELECT COUNT(*) FROM query_patterns WHERE LOCATE('{needle}', LOWER(normalized_sql)) > 0"),
        )
        .await
        .expect("count");
        expected += n.unwrap_or(0);
        drop(conn);
        pools.disconnect().await;
    }
    assert!(expected > 0 && expected < 1000, "{expected}");
    assert_eq!(hits.len() as u64, expected, "every shard's matches, merged");
    let keys: Vec<(u64, String)> = hits
        .iter()
        .map(|h| (h["database_id"].as_u64().expect("id"), h["fingerprint"].as_str().expect("fp").to_owned()))
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "merged in (database_id, fingerprint) order");
    assert!(keys.iter().any(|k| k.0 != keys[0].0), "more than one database");
    reads += 1;

    let series = get(
        &client,
        &format!(
            "{base}/v1/databases/{}/patterns/{}/series?from={from}&to={to}&granularity=minute",
            hot_database(1),
            get(&client, &top_url(hot_database(1))).await["data"][0]["fingerprint"].as_str().expect("fp")
        ),
    )
    .await;
    let points = series["data"]["points"].as_array().expect("points");
    assert!(
        !points.is_empty() && points.iter().all(|p| p["p50_ms"].is_number() && p["p99_ms"].is_number()),
        "{series}"
    );
    assert_eq!(series["data"]["window_secs"], old.config.time.minute_secs());

    // Equal data compares equal: every shadow read done, none mismatched.
    let stats =
        wait_for(&api, |s| s["shadow"]["equal"].as_u64().unwrap_or(0) >= reads - 2, "shadow reads compared").await;
    assert_eq!(stats["shadow"]["mismatches"], 0, "{stats}");
    assert_eq!(stats["shadow"]["errors"], 0, "{stats}");

    // Inject a difference on the new cluster only.
    let db = hot_database(1);
    let before = get(&client, &top_url(db)).await;
    let fingerprint = before["data"][0]["fingerprint"].as_str().expect("fingerprint").to_owned();
    let changed = on_shard_of(
        &new.config,
        db,
        &format!("UPDATE query_stats_hour SET total_duration_us = total_duration_us + 777 WHERE database_id = {db} AND fingerprint = '{fingerprint}'"),
    )
    .await;
    assert!(changed > 0, "injected");

    // The caller still gets the old cluster's answer, unchanged; the shadow read catches it.
    let after = get(&client, &top_url(db)).await;
    assert_eq!(after["cluster"], "old");
    assert_eq!(after["data"], before["data"], "shadow reads never change the caller's result");
    let stats = wait_for(&api, |s| s["shadow"]["mismatches"].as_u64().unwrap_or(0) >= 1, "mismatch counted").await;
    assert_eq!(stats["reads_new"], 0, "no read was served by the new cluster");

    // Persisted for status: the shadow gate fails naming the query; the switch is refused.
    let pool = control(&new);
    let deadline = Instant::now() + Duration::from_secs(30);
    while cutover::state::shadow_totals(&pool, 0).await.expect("shadow totals").mismatches == 0 {
        assert!(Instant::now() < deadline, "the router never flushed its mismatch count");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.disconnect().await.expect("disconnect");
    let out = cutover_command(&old, &new, &["status", "--json", "--shadow-min-compared", "1"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).expect("status json");
    let gate = report["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["gate"] == "shadow_reads")
        .expect("shadow gate")
        .clone();
    assert_eq!(gate["passed"], false, "{gate}");
    let detail = gate["detail"].as_str().expect("detail");
    assert!(detail.contains("mismatched") && detail.contains(&format!("\"database_id\":{db}")), "{detail}");
    assert!(detail.contains(&fingerprint), "the mismatch names the pattern: {detail}");
    let out = cutover_command(&old, &new, &["switch-reads", "--to", "new", "--shadow-min-compared", "1"]).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("FAIL shadow_reads"), "{}", out.stderr);
    let pool = control(&new);
    let audit = cutover::state::audit_log(&pool, 50).await.expect("audit");
    assert!(audit.iter().all(|a| a.action == "init"), "no switch happened: {audit:?}");
    pool.disconnect().await.expect("disconnect");

    api.stop().await;
    group_a.stop().await;
    group_b.stop().await;
    drop_databases(&old.config).await;
    drop_databases(&new.config).await;
}

async fn wait_for(api: &Api, done: impl Fn(&Value) -> bool, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = api.stats().await;
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "{what}: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
