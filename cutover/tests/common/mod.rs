//! Harness for the cutover tests: the consumer crate's harness (throwaway
//! databases on the local stack's real mariadbd shards, an in-process
//! librdkafka mock broker) plus in-process consumer groups, the query API
//! in-process, and the `dualwrite-cutover` binary for the operator's commands.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use cutover::serve::{run as serve_run, ServeConfig};
use cutover::RouterConfig;
use mysql_async::prelude::Queryable;
use tokio_util::sync::CancellationToken;

use testkit::TestCluster;

/// The query API over a router, running in this process on an ephemeral port.
pub(crate) struct Api {
    pub(crate) base: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), cutover::serve::ServeError>>,
}

impl Api {
    pub(crate) async fn start(old: &TestCluster, new: &TestCluster, router: RouterConfig) -> Self {
        Self::start_with(old.config.clone(), new.config.clone(), router).await
    }

    /// [`Api::start`] with cluster configs (e.g. logging in as another user).
    pub(crate) async fn start_with(old: ClusterConfig, new: ClusterConfig, router: RouterConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let guard = cutover::guard::GuardConfig::new(cluster::secret::Secret::new(API_TOKEN));
        let console = cutover::serve::ConsoleOptions {
            shadow_period: Duration::from_secs(60),
            ..cutover::serve::ConsoleOptions::default()
        };
        let config = ServeConfig { old, new, router, guard, console };
        let task = tokio::spawn(serve_run(config, listener, shutdown.clone()));
        let api = Self { base, shutdown, task };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.get(format!("{}/healthz", api.base)).send().await.is_err() {
            assert!(Instant::now() < deadline, "api did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        api
    }

    pub(crate) async fn stats(&self) -> serde_json::Value {
        let client = api_client_builder().build().expect("client");
        client.get(format!("{}/v1/router", self.base)).send().await.expect("stats").json().await.expect("json")
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("api stops within 30 s")
            .expect("join")
            .expect("api ran cleanly");
    }
}

/// The bearer token of the in-process API.
pub(crate) const API_TOKEN: &str = "test-token-0123456789abcdef";

/// An HTTP client that sends [`API_TOKEN`].
pub(crate) fn api_client_builder() -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {API_TOKEN}")).expect("header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder().default_headers(headers)
}

/// A router config for tests: fast polls, shadow as given.
pub(crate) fn router_config(id: &str, shadow_fraction: f64) -> RouterConfig {
    let mut config = RouterConfig::new(id);
    config.shadow_fraction = shadow_fraction;
    config.shadow_max_concurrent = 8;
    config.shadow_flush_interval = Duration::from_millis(500);
    config.bounds_refresh = Duration::from_millis(300);
    config
}

/// Output of one `dualwrite-cutover` run.
pub(crate) struct CommandOutput {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `dualwrite-cutover <args> --old <old> --new <new>`.
pub(crate) async fn cutover_command(old: &TestCluster, new: &TestCluster, args: &[&str]) -> CommandOutput {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_dualwrite-cutover"))
        .args(args)
        .arg("--old")
        .arg(&old.file)
        .arg("--new")
        .arg(&new.file)
        .args(["--operator", "cutover-test"])
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run dualwrite-cutover");
    CommandOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The control pool of the new cluster.
pub(crate) fn control(new: &TestCluster) -> mysql_async::Pool {
    cutover::serve::control_pool(&new.config).expect("control endpoint")
}

/// Runs one statement on the shard of `database_id` in `cluster`.
pub(crate) async fn on_shard_of(cluster: &ClusterConfig, database_id: u64, sql: &str) -> u64 {
    let pools = ShardPools::new(cluster);
    let mut conn = pools.shard(cluster.shard_index_for_database_id(database_id)).get_conn().await.expect("conn");
    conn.query_drop(sql).await.expect("statement");
    let affected = conn.affected_rows();
    drop(conn);
    pools.disconnect().await;
    affected
}

/// Database ids the workload writes most (Zipf rank 1, 2, ...).
pub(crate) fn hot_database(rank: u64) -> u64 {
    rank * 7919 + 100_000
}
