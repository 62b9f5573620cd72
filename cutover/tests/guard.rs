//! The query API's guard on real clusters: the token, the range cap, the
//! health of the router, and reads that the server itself stops.

mod common;

use std::time::Duration;

use common::{router_config, Api, API_TOKEN};
use cutover::query::bounded;
use mysql_async::prelude::Queryable;
use testkit::{drop_databases, fresh_cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_wants_a_token_caps_ranges_and_reports_health() {
    let old = fresh_cluster("old", "guard").await;
    let new = fresh_cluster("new", "guard").await;
    let api = Api::start(&old, &new, router_config("guard-router", 0.0)).await;
    let plain = reqwest::Client::new();
    let authed = common::api_client_builder().build().expect("client");
    let top = |from: i64, to: i64| format!("{}/v1/databases/1/patterns/top?from={from}&to={to}", api.base);
    let now = chrono::Utc::now().timestamp();

    let health = plain.get(format!("{}/healthz", api.base)).send().await.expect("healthz");
    assert_eq!(health.status(), 200, "healthz needs no token and the router follows the routing state");

    for url in [top(now - 3600, now), format!("{}/v1/router", api.base), format!("{}/v1/nothing", api.base)] {
        let response = plain.get(&url).send().await.expect("request");
        assert_eq!(response.status(), 401, "{url}");
        assert_eq!(response.headers().get("www-authenticate").map(|v| v.as_bytes()), Some(&b"Bearer"[..]));
    }
    let wrong = plain.get(top(now - 3600, now)).bearer_auth("not-the-token-at-all").send().await.expect("request");
    assert_eq!(wrong.status(), 401);

    let ok = authed.get(top(now - 3600, now)).send().await.expect("request");
    assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap_or_default());

    let wide = authed.get(top(now - 40 * 86_400, now)).send().await.expect("request");
    assert_eq!(wide.status(), 400);
    let body: serde_json::Value = wide.json().await.expect("json");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("31 days")), "{body}");

    let body = authed.get(format!("{}/v1/router", api.base)).send().await.expect("stats").text().await.expect("body");
    assert!(!body.contains(API_TOKEN), "the token is never echoed");

    api.stop().await;
    drop_databases(&old.config).await;
    drop_databases(&new.config).await;
}

#[tokio::test]
async fn a_read_past_the_statement_timeout_is_stopped_by_the_server() {
    let old = fresh_cluster("old", "guard_slow").await;
    let pools = cluster::pool::ShardPools::new(&old.config);
    let mut conn = pools.shard(0).get_conn().await.expect("connect");
    let major = conn.server_version().0;
    let sql = bounded("SELECT SLEEP(?)", major, Duration::from_millis(200));
    let error = conn.exec_drop(sql, (30,)).await.expect_err("a 30 s read must be stopped");
    match error {
        // MariaDB: ER_STATEMENT_TIMEOUT; MySQL 8: ER_QUERY_TIMEOUT.
        mysql_async::Error::Server(e) => assert!(e.code == 1969 || e.code == 3024, "{e:?}"),
        other => panic!("expected a server error, got {other:?}"),
    }
    // The connection is still usable, and a quick read under the same bound passes.
    let fast: Option<i64> = conn.query_first(bounded("SELECT 1", major, Duration::from_millis(200))).await.expect("ok");
    assert_eq!(fast, Some(1));
    drop(conn);
    pools.disconnect().await;
    drop_databases(&old.config).await;
}
