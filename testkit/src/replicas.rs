//! The replication stack (`compose/local/stack-replica.conf`, state at
//! `DUALWRITE_REPLICA_STACK_DIR`, default `compose/local/.state-replica`):
//! its clusters on fresh databases, whose old shards each have a MariaDB
//! replica (GTID, `log_slave_updates`, `read_only`) named in the cluster
//! file, and the waits and switches the replica tests need. MariaDB-only
//! (`MASTER_GTID_WAIT`, `STOP SLAVE SQL_THREAD`); MySQL 8 would use
//! `WAIT_FOR_EXECUTED_GTID_SET` and `STOP REPLICA SQL_THREAD`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cluster::config::{ClusterConfig, Endpoint};
use mysql_async::prelude::Queryable;

use crate::TestCluster;

/// The replication stack's state dir.
pub fn stack_dir() -> PathBuf {
    std::env::var_os("DUALWRITE_REPLICA_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/local/.state-replica"))
}

/// A cluster of the replication stack (`old`: with replicas, `new`) on fresh
/// databases, the schema applied on the primaries and replicated.
pub async fn fresh_cluster(which: &str, tag: &str, extra: &str) -> TestCluster {
    let dir = stack_dir();
    assert!(
        dir.join("clusters").join(format!("{which}.toml")).exists(),
        "no replication stack at {}: DUALWRITE_STACK_DIR={} DUALWRITE_STACK_CONF=compose/local/stack-replica.conf \
         compose/local/stack up --no-broker",
        dir.display(),
        dir.display()
    );
    let cluster = crate::fresh_cluster_in(&dir, which, tag, "", extra).await;
    wait_caught_up(&cluster.config, Duration::from_secs(60)).await;
    cluster
}

fn opts(endpoint: &Endpoint, config: &ClusterConfig) -> mysql_async::Opts {
    mysql_async::OptsBuilder::from_opts(cluster::pool::opts_for(endpoint, &config.auth)).db_name(None::<String>).into()
}

async fn query_one(endpoint: &Endpoint, config: &ClusterConfig, sql: &str) -> Option<String> {
    let mut conn = mysql_async::Conn::new(opts(endpoint, config)).await.expect("connect");
    let value: Option<Option<String>> = conn.query_first(sql).await.expect(sql);
    let _ = conn.disconnect().await;
    value.flatten()
}

/// Waits until every replica of `config` applied what its primary had
/// written when called (`MASTER_GTID_WAIT` on the primary's `@@gtid_binlog_pos`).
pub async fn wait_caught_up(config: &ClusterConfig, timeout: Duration) {
    for shard in &config.shards {
        let pos = query_one(&shard.endpoint, config, "SELECT @@gtid_binlog_pos").await.unwrap_or_default();
        for replica in &shard.replicas {
            let sql = format!("SELECT MASTER_GTID_WAIT('{pos}', {})", timeout.as_secs());
            let got = query_one(replica, config, &sql).await;
            assert_eq!(got.as_deref(), Some("0"), "replica {replica} did not reach {pos} within {timeout:?}");
        }
    }
}

/// `STOP SLAVE SQL_THREAD` (or `START`) on shard `shard`'s first replica.
pub async fn set_sql_thread(config: &ClusterConfig, shard: usize, running: bool) {
    let replica = &config.shards[shard].replicas[0];
    let mut conn = mysql_async::Conn::new(opts(replica, config)).await.expect("connect to replica");
    let sql = if running { "START SLAVE SQL_THREAD" } else { "STOP SLAVE SQL_THREAD" };
    conn.query_drop(sql).await.expect(sql);
    let _ = conn.disconnect().await;
}

/// Waits until `check` holds, polling every 100 ms, or panics naming `what`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
