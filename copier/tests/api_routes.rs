//! The copier on another pipeline's latest table: `api_routes` of
//! `pipelines/api.toml` (key `(tenant_id, route)`, sharded by `tenant_id`,
//! `method` and `gateway_id` merged `last`, `first_seen` min, `last_seen`
//! max). Two throwaway clusters whose cluster files name that pipeline; rows
//! written by plain SQL on the old shards owning them; while the copier
//! snapshots and catches up, a writer keeps sighting routes (on the old
//! cluster, and group B's same upsert on the new one), adds routes, deletes
//! some and renames one. The new cluster must end equal to the old one, row
//! for row, each row on the new shard owning its keyspace id, as read by this
//! file's own query.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use common::{cluster_file_with_pipeline, quick_settings, Clusters};
use copier::CopierConfig;
use mysql_async::prelude::Queryable;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

const TENANTS: u64 = 1000;
const ROUTES: u64 = 12;
const BASE_MS: i64 = 1_760_000_000_000;
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

fn api_toml() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml").canonicalize().expect("api.toml")
}

fn ksid_hex(tenant: u64) -> String {
    cluster::vindex::keyspace_id(tenant).iter().map(|b| format!("{b:02X}")).collect()
}

fn datetime(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).expect("time");
    t.format("'%Y-%m-%d %H:%M:%S%.3f'").to_string()
}

/// One sighting of a route, as a `VALUES` tuple of every column.
fn sighting(tenant: u64, route: &str, method: &str, gateway: &str, first_ms: i64, last_ms: i64) -> String {
    format!(
        "({tenant}, '{route}', X'{}', '{method}', '{gateway}', {}, {})",
        ksid_hex(tenant),
        datetime(first_ms),
        datetime(last_ms)
    )
}

/// The pipeline's merge rule written by hand (what group A and B's consumers
/// run): the last sighting's method and gateway (ties: the larger values),
/// the earliest first_seen, the latest last_seen.
const MERGE: &str = " ON DUPLICATE KEY UPDATE \
    gateway_id = IF((VALUES(last_seen), VALUES(method), VALUES(gateway_id)) > (last_seen, method, gateway_id), \
    VALUES(gateway_id), gateway_id), \
    method = IF((VALUES(last_seen), VALUES(method)) > (last_seen, method), VALUES(method), method), \
    first_seen = LEAST(first_seen, VALUES(first_seen)), last_seen = GREATEST(last_seen, VALUES(last_seen))";

/// Runs `statement(shard's tuples)` on each shard of `cluster` owning some of `rows` (tenant, tuple).
async fn per_shard(
    cluster: &ClusterConfig,
    pools: &ShardPools,
    rows: &[(u64, String)],
    statement: impl Fn(&str) -> String,
) {
    let mut by_shard: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (tenant, tuple) in rows {
        let shard = cluster.shard_index_for(&cluster::vindex::keyspace_id(*tenant));
        by_shard.entry(shard).or_default().push(tuple);
    }
    for (shard, tuples) in by_shard {
        let sql = statement(&tuples.join(","));
        let mut attempts = 0;
        loop {
            let mut conn = pools.shard(shard).get_conn().await.expect("conn");
            match conn.query_drop(&sql).await {
                // Deadlocks with the copier's writes on the new cluster are retried, as consumers retry.
                Err(mysql_async::Error::Server(e)) if matches!(e.code, 1213 | 1205) && attempts < 20 => attempts += 1,
                other => break other.expect("write"),
            }
        }
    }
}

fn route(i: u64) -> String {
    format!("/v1/r{i:03}/items")
}

async fn preload(old: &ClusterConfig) {
    let pools = ShardPools::new(old);
    let mut rows = Vec::new();
    for tenant in 1..=TENANTS {
        for r in 0..ROUTES {
            let seen = BASE_MS + (tenant * 37 + r * 1000) as i64;
            let gateway = format!("gw-{}", (tenant + r) % 7);
            rows.push((tenant, sighting(tenant, &route(r), METHODS[(r % 4) as usize], &gateway, seen, seen + 500)));
        }
    }
    for chunk in rows.chunks(1000) {
        per_shard(old, &pools, chunk, |tuples| {
            format!(
                "INSERT INTO api_routes (tenant_id, route, keyspace_id, method, gateway_id, first_seen, last_seen) \
                 VALUES {tuples}"
            )
        })
        .await;
    }
    pools.disconnect().await;
}

/// Sightings through the merge upsert on the old cluster (group A) and the
/// same on the new one (group B), new routes, deletes and a key change on
/// the old cluster, until `stop`. Returns how many statements changed rows.
/// `rounds` counts the writer's completed rounds, for a test to wait on.
async fn writer(
    old: ClusterConfig,
    new: ClusterConfig,
    stop: CancellationToken,
    rounds: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> u64 {
    let (old_pools, new_pools) = (ShardPools::new(&old), ShardPools::new(&new));
    let mut rng = StdRng::seed_from_u64(22);
    let mut changes = 0;
    let mut next_route = ROUTES;
    let upsert = |tuples: &str| {
        format!(
            "INSERT INTO api_routes (tenant_id, route, keyspace_id, method, gateway_id, first_seen, last_seen) \
             VALUES {tuples}{MERGE}"
        )
    };
    while !stop.is_cancelled() {
        let mut batch = Vec::new();
        for _ in 0..150 {
            let tenant = rng.random_range(1..=TENANTS);
            let r = rng.random_range(0..ROUTES);
            // Later sightings mostly, some earlier than the first one.
            let seen = BASE_MS + rng.random_range(-5_000_000_i64..50_000_000);
            let method = METHODS[rng.random_range(0..4)];
            let gateway = format!("gw-{}", rng.random_range(0..9));
            batch.push((tenant, sighting(tenant, &route(r), method, &gateway, seen, seen + 100)));
        }
        let tenant = rng.random_range(1..=TENANTS);
        batch.push((tenant, sighting(tenant, &route(next_route), "GET", "gw-new", BASE_MS, BASE_MS)));
        next_route += 1;
        tokio::join!(per_shard(&old, &old_pools, &batch, upsert), per_shard(&new, &new_pools, &batch, upsert));
        changes += batch.len() as u64;
        // A delete and a key change, on the old cluster only (as a source's own fix would be).
        let tenant = rng.random_range(1..=TENANTS);
        let doomed = (tenant, format!("({tenant}, '{}')", route(rng.random_range(0..ROUTES))));
        per_shard(&old, &old_pools, &[doomed], |keys| {
            format!("DELETE FROM api_routes WHERE (tenant_id, route) IN ({keys})")
        })
        .await;
        let tenant = rng.random_range(1..=TENANTS);
        let renamed = route(rng.random_range(0..ROUTES));
        let rename = (tenant, String::new());
        per_shard(&old, &old_pools, &[rename], |_| {
            format!(
                "UPDATE IGNORE api_routes SET route = CONCAT(route, '/v2') WHERE tenant_id = {tenant} AND route = '{renamed}'"
            )
        })
        .await;
        changes += 2;
        rounds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    old_pools.disconnect().await;
    new_pools.disconnect().await;
    changes
}

/// Every `api_routes` row of the cluster: (tenant, route) -> (shard, columns as text).
async fn rows(cluster: &ClusterConfig) -> BTreeMap<(u64, String), (usize, Vec<String>)> {
    let pools = ShardPools::new(cluster);
    let mut out = BTreeMap::new();
    for (shard, pool) in pools.shards().iter().enumerate() {
        let found: Vec<(u64, String, String, String, String, String, String)> = pool
            .get_conn()
            .await
            .expect("conn")
            .query(
                "SELECT tenant_id, route, HEX(keyspace_id), method, gateway_id, \
                 DATE_FORMAT(first_seen, '%Y-%m-%d %H:%i:%s.%f'), DATE_FORMAT(last_seen, '%Y-%m-%d %H:%i:%s.%f') \
                 FROM api_routes",
            )
            .await
            .expect("select");
        for (tenant, route, ksid, method, gateway, first, last) in found {
            let previous = out.insert((tenant, route.clone()), (shard, vec![ksid, method, gateway, first, last]));
            assert!(previous.is_none(), "({tenant}, {route}) on two shards");
        }
    }
    pools.disconnect().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_another_pipelines_latest_table_under_concurrent_updates() {
    let tag = format!("api{}", std::process::id());
    let old_file = cluster_file_with_pipeline("old", &tag, &api_toml());
    let new_file = cluster_file_with_pipeline("new", &tag, &api_toml());
    let _files = Removed(vec![old_file.clone(), new_file.clone()]);
    let old = ClusterConfig::load(&old_file).expect("old cluster file");
    let new = ClusterConfig::load(&new_file).expect("new cluster file");
    assert_eq!(old.pipeline.name, "api");
    let c = Clusters::with("copier_api", old, new, "api_routes").await;
    preload(&c.old).await;

    // A table the pipeline has but the copier does not copy, and one it does not have.
    for (table, why) in
        [("api_route_minute", "not a latest table of pipeline api"), ("query_patterns", "not a latest table")]
    {
        let config = CopierConfig { table: table.into(), ..config(&c) };
        let error = copier::run(config, CancellationToken::new()).await.expect_err("refused").to_string();
        assert!(error.contains(&format!("\"{table}\" is not a latest table")) && error.contains(why), "{error}");
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_dualwrite-copier"))
        .args(["start", "--table", "api_failures", "--metrics-addr", "127.0.0.1:0"])
        .arg("--from")
        .arg(&old_file)
        .arg("--to")
        .arg(&new_file)
        .output()
        .await
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("\"api_failures\" is not a latest table"), "{stderr}");

    let shutdown = CancellationToken::new();
    let copier = tokio::spawn(copier::run(config(&c), shutdown.clone()));
    let stop = CancellationToken::new();
    let rounds = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writing = tokio::spawn(writer(c.old.clone(), c.new.clone(), stop.clone(), rounds.clone()));
    // The writer runs through the snapshot's copy and catch-up phases and on
    // into replication.
    let started = Instant::now();
    let mut phases = std::collections::BTreeSet::new();
    loop {
        let streams = copier::status::streams(&c.new).await.expect("status");
        phases.extend(streams.iter().map(|s| s.phase.to_string()));
        if streams.len() == 4 && streams.iter().all(|s| s.copy_done && s.phase.to_string() == "replicating") {
            break;
        }
        assert!(!copier.is_finished(), "the copier stopped: {:?}", copier.await);
        assert!(started.elapsed() < Duration::from_secs(180), "no replication: {streams:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Five more rounds of writes (upserts, a delete, a key change each) land
    // while every stream replicates.
    let replicating_from = rounds.load(std::sync::atomic::Ordering::SeqCst);
    while rounds.load(std::sync::atomic::Ordering::SeqCst) < replicating_from + 5 {
        assert!(!writing.is_finished(), "the writer stopped");
        assert!(started.elapsed() < Duration::from_secs(300), "the writer made no progress while replicating");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let changes = writing.await.expect("writer");
    c.wait_caught_up(Duration::from_secs(120)).await;
    assert!(phases.contains("copying") && phases.contains("catching_up"), "{phases:?}");

    let (old_rows, new_rows) = (rows(&c.old).await, rows(&c.new).await);
    assert!(old_rows.len() as u64 > TENANTS * ROUTES / 2, "{} rows", old_rows.len());
    let old_values: BTreeMap<_, _> = old_rows.iter().map(|(k, (_, v))| (k, v)).collect();
    let new_values: BTreeMap<_, _> = new_rows.iter().map(|(k, (_, v))| (k, v)).collect();
    let differing: Vec<_> = old_values
        .iter()
        .filter(|(k, v)| new_values.get(*k) != Some(*v))
        .map(|(k, v)| (k, v, new_values.get(*k)))
        .take(5)
        .collect();
    assert!(differing.is_empty(), "old and new differ: {differing:#?}");
    assert_eq!(old_values.len(), new_values.len(), "rows only on the new cluster");
    for ((tenant, route), (shard, columns)) in &new_rows {
        assert_eq!(columns[0], ksid_hex(*tenant), "({tenant}, {route}) keyspace id");
        assert_eq!(
            *shard,
            c.new.shard_index_for(&cluster::vindex::keyspace_id(*tenant)),
            "({tenant}, {route}) placement"
        );
    }
    let streams = copier::status::streams(&c.new).await.expect("status");
    assert!(streams.iter().all(|s| s.table == "api_routes" && s.events_applied > 0), "{streams:#?}");
    eprintln!("{} rows equal after {changes} concurrent changes; phases seen {phases:?}", old_rows.len());

    shutdown.cancel();
    copier.await.expect("join").expect("copier");
    c.cleanup().await;
}

/// Files removed when the test ends, passed or failed.
struct Removed(Vec<PathBuf>);

impl Drop for Removed {
    fn drop(&mut self) {
        for file in &self.0 {
            let _ = std::fs::remove_file(file);
        }
    }
}

fn config(c: &Clusters) -> CopierConfig {
    CopierConfig {
        from: c.old.clone(),
        to: c.new.clone(),
        table: "api_routes".into(),
        // Short copy phases of small chunks: the snapshot takes many copy and
        // catch-up phases while the writer writes.
        settings: copier::Settings {
            chunk_rows: 100,
            copy_phase: Duration::from_millis(30),
            catch_up_phase: Duration::from_millis(300),
            ..quick_settings()
        },
        progress: false,
    }
}
