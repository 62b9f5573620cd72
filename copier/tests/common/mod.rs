//! Shared harness for the copier's integration tests: throwaway databases on
//! the local stack's real mariadbd shards (old 4, new 8).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use copier::workload;

pub(crate) fn stack_dir() -> PathBuf {
    std::env::var_os("DUALWRITE_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/local/.state"))
}

pub(crate) fn cluster_file(which: &str) -> PathBuf {
    stack_dir().join("clusters").join(format!("{which}.toml"))
}

fn template(which: &str) -> ClusterConfig {
    let path = cluster_file(which);
    ClusterConfig::load(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; start the local stack first: compose/local/stack up --no-broker", path.display())
    })
}

/// An old and a new cluster, each on its own throwaway database (dropped on `cleanup`).
pub(crate) struct Clusters {
    pub(crate) db: String,
    pub(crate) old: ClusterConfig,
    pub(crate) new: ClusterConfig,
}

impl Clusters {
    pub(crate) async fn new(tag: &str) -> Self {
        copier_tracing();
        let db = workload::unique_database(tag);
        let old = workload::create_cluster(&template("old"), &db).await.expect("old database");
        let new = workload::create_cluster(&template("new"), &db).await.expect("new database");
        Self { db, old, new }
    }

    pub(crate) async fn cleanup(self) {
        workload::drop_cluster(&self.old).await.expect("drop old");
        workload::drop_cluster(&self.new).await.expect("drop new");
    }

    /// Waits until every stream applied each old shard's binlog through its end now.
    pub(crate) async fn wait_caught_up(&self, limit: Duration) {
        let ends = workload::binlog_ends(&self.old).await.expect("binlog ends");
        let started = Instant::now();
        while !workload::caught_up(&self.old, &self.new, &ends).await.expect("status") {
            assert!(
                started.elapsed() < limit,
                "not caught up after {limit:?}: {:#?}",
                copier::status::streams(&self.new).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn assert_equal(&self) {
        let differences = workload::compare(&self.old, &self.new).await.expect("compare");
        let shown: Vec<&String> = differences.iter().take(20).collect();
        assert!(differences.is_empty(), "{} differences, first: {shown:#?}", differences.len());
    }
}

pub(crate) fn copier_tracing() {
    service::init_tracing();
}

/// Fast pacing so tests see many copy / catch-up cycles.
pub(crate) fn quick_settings() -> copier::Settings {
    copier::Settings {
        copy_phase: Duration::from_millis(700),
        catch_up_phase: Duration::from_millis(500),
        chunk_rows: 500,
        batch_ops: 500,
        batch_wait: Duration::from_millis(50),
        status_interval: Duration::from_millis(200),
        ..copier::Settings::default()
    }
}
