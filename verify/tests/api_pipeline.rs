//! The comparators on a second pipeline (`pipelines/api.toml`: a blind-written
//! minute rollup, a folded hourly latency sketch, appended failures and the
//! unbounded routes table), with nothing Insights-specific in the way: two
//! throwaway clusters (4 and 8 shards) name the description in their cluster
//! files, identical rows are written into both with SQL on the shards that
//! own them, and offset fences settle the windows. The window comparator
//! calls them equal, then finds exactly the key of a changed count, a changed
//! sketch byte and a row moved to the wrong shard; the full diff finds a
//! changed route method; clusters naming different pipelines are refused.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use cluster::vindex::keyspace_id;
use mysql_async::prelude::Queryable;
use support::{on_shard, time_text, two_hours_ago, windows};
use testkit::{fresh_cluster_for, TestCluster};
use tokio_util::sync::CancellationToken;
use verify::diff::{DiffKind, Difference};
use verify::history::RunOutcome;
use verify::table::{run_table, TableConfig};

const TENANTS: u64 = 40;
const ROUTES: [&str; 3] = ["/v1/users", "/v1/orders/{id}", "/health"];
/// Minute windows written, from the start of the hour.
const MINUTES: i64 = 10;
/// Partitions of each topic the fences describe.
const PARTITIONS: i32 = 4;

fn api_toml() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml")
}

/// One SQL tuple per row, for `table`, grouped by the shard of `cluster` that owns it.
struct Rows {
    table: &'static str,
    /// (tenant, tuple)
    rows: Vec<(u64, String)>,
}

fn hex(bytes: &[u8]) -> String {
    format!("X'{}'", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Deterministic rows of every api table, in windows from `start` (epoch
/// seconds, an hour's start).
fn synthetic(start: i64) -> Vec<Rows> {
    let (mut minute, mut hour, mut failures, mut routes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut offset = 0u64;
    for tenant in 1..=TENANTS {
        let ksid = hex(&keyspace_id(tenant));
        for (r, route) in ROUTES.iter().enumerate() {
            let r = r as u64;
            for m in 0..MINUTES {
                let n = tenant * 100 + r * 10 + m as u64;
                minute.push((
                    tenant,
                    format!(
                        "({tenant}, '{route}', FROM_UNIXTIME({}), {ksid}, {}, {}, {}, {}, {})",
                        start + 60 * m,
                        n % 97 + 1,
                        n % 5,
                        n * 311,
                        n * 977,
                        n * 13 % 90_000
                    ),
                ));
            }
            let sketch: Vec<u8> = (0..40u64).map(|b| ((tenant * 7 + r * 3 + b) % 251) as u8).collect();
            hour.push((
                tenant,
                format!("({tenant}, '{route}', FROM_UNIXTIME({start}), {ksid}, {}, {})", tenant + r, hex(&sketch)),
            ));
            routes.push((
                tenant,
                format!(
                    "({tenant}, '{route}', {ksid}, '{}', 'gw-{}', FROM_UNIXTIME({start}.125), FROM_UNIXTIME({}.5))",
                    if r == 1 { "POST" } else { "GET" },
                    tenant % 3,
                    start + 60 * MINUTES
                ),
            ));
            // Two failed requests per tenant and route, one with an error text, one without.
            for k in 0..2u64 {
                let partition = (tenant + r) % PARTITIONS as u64;
                let at = start + 60 * ((tenant + r + k) as i64 % MINUTES);
                let error = if k == 0 { "'upstream timed out'".to_string() } else { "NULL".to_string() };
                failures.push((
                    tenant,
                    format!(
                        "({partition}, {offset}, FROM_UNIXTIME({at}.{:06}), {tenant}, {ksid}, '{route}', 'req-{offset}', {}, {}, {error}, '10.0.{}.{}')",
                        offset * 7919 % 1_000_000,
                        500 + k * 3,
                        20_000 + offset,
                        tenant,
                        r
                    ),
                ));
                offset += 1;
            }
        }
    }
    vec![
        Rows { table: "api_route_minute", rows: minute },
        Rows { table: "api_route_latency_hour", rows: hour },
        Rows { table: "api_failures", rows: failures },
        Rows { table: "api_routes", rows: routes },
    ]
}

/// Writes every row on the shard of `cluster` owning its tenant's keyspace
/// id, and fences on every shard that settle every window up to `settled_ms`.
async fn write(cluster: &ClusterConfig, tables: &[Rows], settled_ms: i64) {
    let pools = ShardPools::new(cluster);
    for shard in 0..cluster.shards.len() {
        let mut conn = pools.shard(shard).get_conn().await.expect("conn");
        for Rows { table, rows } in tables {
            let mine: Vec<&str> = rows
                .iter()
                .filter(|(tenant, _)| cluster.shard_index_for(&keyspace_id(*tenant)) == shard)
                .map(|(_, tuple)| tuple.as_str())
                .collect();
            if !mine.is_empty() {
                conn.query_drop(format!("INSERT INTO {table} VALUES {}", mine.join(", "))).await.expect("insert");
            }
        }
        // Every partition applied from offset 0 (covered from the start of
        // time) past `settled_ms`: every window ending before it, plus the
        // allowed lateness, is settled on this shard.
        let fences: Vec<String> = ["api-requests", "api-failures"]
            .iter()
            .flat_map(|topic| {
                (0..PARTITIONS).map(move |p| {
                    format!("('{topic}', {p}, 100, 0, 0, 0, {settled_ms}, 0, 100, 'test', 100, 0, 0, UTC_TIMESTAMP(6))")
                })
            })
            .collect();
        conn.query_drop(format!(
            "INSERT INTO dw_offset_fence (topic, kafka_partition, next_offset, first_offset, first_message_ms, \
             covered_from_ms, max_message_ms, reached_end, high_watermark, consumer_group, messages_applied, \
             late_messages, expired_messages, updated_at) VALUES {}",
            fences.join(", ")
        ))
        .await
        .expect("fences");
    }
    pools.disconnect().await;
}

fn keys(differences: &[Difference]) -> BTreeSet<(String, Option<i64>, String, DiffKind)> {
    differences.iter().map(|d| (d.tbl.clone(), d.window_start, d.key.clone(), d.kind)).collect()
}

/// The shard of `cluster` owning `tenant`.
fn owner(cluster: &ClusterConfig, tenant: u64) -> usize {
    cluster.shard_index_for(&keyspace_id(tenant))
}

struct Api {
    old: TestCluster,
    new: TestCluster,
    start: i64,
}

async fn api_clusters(tag: &str) -> Api {
    let (toml, old_tag, new_tag) = (api_toml(), format!("{tag}_o"), format!("{tag}_n"));
    let (old, new) = tokio::join!(fresh_cluster_for("old", &old_tag, &toml), fresh_cluster_for("new", &new_tag, &toml));
    assert_eq!((old.config.pipeline.name.as_str(), new.config.pipeline.name.as_str()), ("api", "api"));
    let start = two_hours_ago();
    let rows = synthetic(start);
    // The fences' newest message: an hour past every window written, so
    // each is settled (allowed lateness 5 min) without a clock.
    let settled_ms = (start + 2 * 3600) * 1000;
    write(&old.config, &rows, settled_ms).await;
    write(&new.config, &rows, settled_ms).await;
    Api { old, new, start }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compares_the_api_pipeline_and_finds_each_corrupted_key() {
    let Api { old, new, start } = api_clusters("api").await;
    let (o, n) = (&old.config, &new.config);
    let (from, to) = (start, start + 3600);

    let base = windows(o, n, from, to, false).await;
    assert_eq!(base.run.outcome, RunOutcome::Equal, "{:?}", base.differences);
    // Every minute of both minute tables and the one hour, all settled.
    assert_eq!((base.run.windows_equal, base.run.windows_not_settled, base.run.windows_not_covered), (121, 0, 0));
    let tables: BTreeSet<&str> = base.windows.iter().map(|w| w.tbl.as_str()).collect();
    assert_eq!(tables, ["api_failures", "api_route_latency_hour", "api_route_minute"].into());
    let rows = 2 * (TENANTS * 3 * MINUTES as u64 + TENANTS * 3 + TENANTS * 3 * 2);
    assert_eq!(base.run.rows_compared, rows, "every row of the windowed tables, on both sides");

    // 1. A count changed (the blind-written minute rollup).
    let (tenant, route, minute) = (7u64, ROUTES[1], start + 60 * 3);
    let row = format!("tenant_id = {tenant} AND route = '{route}' AND window_start = FROM_UNIXTIME({minute})");
    on_shard(
        n,
        owner(n, tenant),
        &format!("UPDATE api_route_minute SET request_count = request_count + 1 WHERE {row}"),
    )
    .await;
    let run = windows(o, n, from, to, true).await;
    assert_eq!(run.run.outcome, RunOutcome::Different);
    let key = format!("tenant_id={tenant}, route={route}, window_start={}", time_text(minute));
    assert_eq!(keys(&run.differences), [("api_route_minute".into(), Some(minute), key, DiffKind::Changed)].into());
    assert_eq!(run.differences[0].detail["columns"].as_object().map(|c| c.len()), Some(1), "only request_count");
    assert!(run.differences[0].detail["columns"]["request_count"].is_object());
    on_shard(
        n,
        owner(n, tenant),
        &format!("UPDATE api_route_minute SET request_count = request_count - 1 WHERE {row}"),
    )
    .await;

    // 2. One byte of a latency sketch (the folded hourly table).
    let (tenant, route) = (23u64, ROUTES[0]);
    let row = format!("tenant_id = {tenant} AND route = '{route}' AND window_start = FROM_UNIXTIME({start})");
    let flip = format!(
        "UPDATE api_route_latency_hour SET latency_sketch = CONCAT(LEFT(latency_sketch, 9), \
         CHAR(ASCII(SUBSTRING(latency_sketch, 10, 1)) ^ 90), SUBSTRING(latency_sketch, 11)) WHERE {row}"
    );
    on_shard(n, owner(n, tenant), &flip).await;
    let run = windows(o, n, from, to, true).await;
    let key = format!("tenant_id={tenant}, route={route}, window_start={}", time_text(start));
    assert_eq!(keys(&run.differences), [("api_route_latency_hour".into(), Some(start), key, DiffKind::Changed)].into());
    assert!(run.differences[0].detail["columns"]["latency_sketch"].is_object(), "{}", run.differences[0].detail);
    on_shard(n, owner(n, tenant), &flip).await;

    // 3. A failed request moved, unchanged, to a shard that does not own it.
    let tenant = 31u64;
    let (partition, offset, at): (u32, u64, i64) = {
        let rows: Vec<(u32, u64, i64)> = support::query_shard(
            n,
            owner(n, tenant),
            &format!(
                "SELECT src_partition, src_offset, TIMESTAMPDIFF(SECOND, '1970-01-01', occurred_at) FROM api_failures \
                 WHERE tenant_id = {tenant} AND error_text IS NULL ORDER BY src_offset LIMIT 1"
            ),
        )
        .await;
        rows[0]
    };
    let (home, wrong) = (owner(n, tenant), (owner(n, tenant) + 1) % n.shards.len());
    let copy = format!(
        "SELECT CONCAT_WS(',', src_partition, src_offset, QUOTE(occurred_at), tenant_id, CONCAT('0x', HEX(keyspace_id)), \
         QUOTE(route), QUOTE(request_id), status, latency_us, IFNULL(QUOTE(error_text), 'NULL'), QUOTE(client_ip)) \
         FROM api_failures WHERE src_offset = {offset}"
    );
    let tuple: Vec<String> = support::query_shard(n, home, &copy).await;
    on_shard(n, home, &format!("DELETE FROM api_failures WHERE src_offset = {offset}")).await;
    on_shard(n, wrong, &format!("INSERT INTO api_failures VALUES ({})", tuple[0])).await;
    let run = windows(o, n, from, to, true).await;
    let (window, key) = (at / 60 * 60, format!("src_partition={partition}, src_offset={offset}"));
    assert_eq!(keys(&run.differences), [("api_failures".into(), Some(window), key, DiffKind::Misplaced)].into());
    assert_eq!(run.differences[0].detail["shard"], n.shards[wrong].range.to_string());
    on_shard(n, wrong, &format!("DELETE FROM api_failures WHERE src_offset = {offset}")).await;
    on_shard(n, home, &format!("INSERT INTO api_failures VALUES ({})", tuple[0])).await;

    let again = windows(o, n, from, to, true).await;
    assert_eq!(again.run.outcome, RunOutcome::Equal, "restored: {:?}", again.differences);

    // The unbounded routes table: equal, then a changed method is found.
    let routes = |restart| TableConfig {
        old: o.clone(),
        new: n.clone(),
        table: verify::spec::table(o, "api_routes").expect("spec").expect("api_routes"),
        page_rows: 50,
        restart,
        stop_after_rows: None,
    };
    let equal = run_table(&routes(false), &CancellationToken::new()).await.expect("full diff");
    assert!(equal.complete);
    assert_eq!((equal.run.outcome, equal.run.rows_compared), (RunOutcome::Equal, 2 * TENANTS * 3));
    let (tenant, route) = (12u64, ROUTES[2]);
    on_shard(
        n,
        owner(n, tenant),
        &format!("UPDATE api_routes SET method = 'PATCH' WHERE tenant_id = {tenant} AND route = '{route}'"),
    )
    .await;
    let changed = run_table(&routes(true), &CancellationToken::new()).await.expect("full diff");
    assert_eq!(changed.run.outcome, RunOutcome::Different);
    let key = format!("tenant_id={tenant}, route={route}");
    assert_eq!(keys(&changed.differences), [("api_routes".into(), None, key, DiffKind::Changed)].into());
    assert_eq!(
        changed.differences[0].detail["columns"],
        serde_json::json!({ "method": { "old": "GET", "new": "PATCH" } })
    );

    // The same through the binary: `table api_routes` exits 1 (different)
    // and prints the run; no table argument diffs every unbounded table.
    let verify = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dualwrite-verify"))
            .args(args)
            .arg("--old")
            .arg(&old.file)
            .arg("--new")
            .arg(&new.file)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run dualwrite-verify")
    };
    for args in [&["table", "api_routes", "--restart"][..], &["table", "--restart"][..]] {
        let out = verify(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON run per line"))
            .collect();
        assert_eq!(lines.len(), 1, "one unbounded table: {lines:?}");
        assert_eq!((lines[0]["target"].as_str(), lines[0]["differences"].as_u64()), (Some("api_routes"), Some(1)));
    }
    // The report: a timeline per windowed api table, the routes' full diff.
    let pools = ShardPools::new(n);
    let control = pools.control().expect("control");
    let report = verify::report::build(control, n, from - 600, to + 600).await.expect("report");
    pools.disconnect().await;
    let timelines: Vec<&str> = report.timeline.timelines.iter().map(|t| t.tbl.as_str()).collect();
    assert_eq!(timelines, ["api_route_minute", "api_route_latency_hour", "api_failures"]);
    assert_eq!(report.timeline.timelines[1].window_secs, 3600);
    let runs: Vec<&str> = report.table_runs.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(runs, ["api_routes"]);

    let out = verify(&["table", "query_patterns"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"query_patterns\" is not an unbounded table of pipeline api"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    testkit::drop_databases(o).await;
    testkit::drop_databases(n).await;
}

/// `bench --generate` on the api pipeline: synthetic rows derived from each
/// windowed table's columns (a SMALLINT, a nullable text, DATETIME(6), a
/// sketch blob), the same on 4 and 8 shards, compared equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_generates_every_windowed_api_table_and_finds_them_equal() {
    let toml = api_toml();
    let (old, new) =
        tokio::join!(fresh_cluster_for("old", "apibench_o", &toml), fresh_cluster_for("new", "apibench_n", &toml));
    let (o, n) = (verify::digest::Side::new(old.config.clone()), verify::digest::Side::new(new.config.clone()));
    let start = two_hours_ago() - 3 * 3600;
    verify::bench::generate(&[&o, &n], 3000, start).await.expect("generate");
    let result = verify::bench::bench(&o, &n, start, start + 6 * 3600).await.expect("bench");
    assert!(result.equal);
    assert_eq!((result.comparator_rows, result.queries_per_shard), (2 * 3000, 3));
    // 300 minute windows of each minute table, 5 hour windows.
    assert_eq!(result.windows, 300 + 5 + 300);
    for (table, rows) in [("api_route_minute", 1000), ("api_route_latency_hour", 1000), ("api_failures", 1000)] {
        let mut total = 0;
        for shard in 0..new.config.shards.len() {
            let n: Vec<u64> = support::query_shard(&new.config, shard, &format!("SELECT COUNT(*) FROM {table}")).await;
            total += n[0];
        }
        assert_eq!(total, rows, "{table}");
    }
    let nulls: Vec<u64> =
        support::query_shard(&new.config, 0, "SELECT COUNT(*) FROM api_failures WHERE error_text IS NULL").await;
    assert!(nulls[0] > 0, "a nullable column gets NULLs");
    o.pools.disconnect().await;
    n.pools.disconnect().await;
    testkit::drop_databases(&old.config).await;
    testkit::drop_databases(&new.config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_clusters_naming_different_pipelines() {
    // The api cluster file without its pipeline line: the built-in Insights,
    // on the same (empty) databases; nothing is read before the refusal.
    let api = fresh_cluster_for("new", "mismatch", &api_toml()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let insights_file = dir.path().join("insights.toml");
    let text = std::fs::read_to_string(&api.file).expect("cluster file");
    let text: String = text.lines().filter(|l| !l.starts_with("pipeline = ")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&insights_file, text).expect("write");
    let insights = ClusterConfig::load(&insights_file).expect("insights cluster");
    assert_eq!(insights.pipeline.name, "insights");

    let config = verify::windows::WindowsConfig {
        old: insights.clone(),
        new: api.config.clone(),
        range: verify::windows::Range::Between(0, 60),
        recheck_all: false,
    };
    let e = verify::windows::run_windows(&config, &CancellationToken::new()).await.expect_err("refused");
    let message = e.to_string();
    assert!(message.starts_with("the clusters' pipelines differ (different pipeline names)"), "{message}");
    assert!(message.contains("old has pipeline insights (tables query_stats_minute"), "{message}");
    assert!(message.contains("new has api (tables api_route_minute"), "{message}");

    for command in [&["windows"][..], &["table"][..], &["bench"][..]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dualwrite-verify"))
            .args(command)
            .arg("--old")
            .arg(&insights_file)
            .arg("--new")
            .arg(&api.file)
            .env("RUST_LOG", "off")
            .output()
            .expect("run dualwrite-verify");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {stderr}");
        assert!(stderr.contains("the clusters' pipelines differ"), "{command:?}: {stderr}");
    }
    testkit::drop_databases(&api.config).await;
}
