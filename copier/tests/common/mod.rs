//! Shared harness for the copier's integration tests: throwaway databases on
//! the local stack's real mariadbd shards (old 4, new 8).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use copier::row::{Cell, Image, Key};
use copier::table::CopiedTable;
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

/// The stack's cluster file `which` with a `pipeline = "<pipeline>"` line,
/// written beside it (its relative paths stay valid) as `<which>-<tag>.toml`:
/// what an operator's cluster file for another pipeline says.
pub(crate) fn cluster_file_with_pipeline(which: &str, tag: &str, pipeline: &std::path::Path) -> PathBuf {
    let text = std::fs::read_to_string(cluster_file(which)).expect("stack cluster file");
    let path = stack_dir().join("clusters").join(format!("{which}-{tag}.toml"));
    let line = format!("pipeline = {:?}\n", pipeline.display().to_string());
    std::fs::write(&path, format!("{line}{text}")).expect("write cluster file");
    path
}

/// The Insights pipeline's latest table.
pub(crate) fn patterns() -> CopiedTable {
    CopiedTable::new(&pipeline::Pipeline::insights(), "query_patterns").expect("query_patterns")
}

/// A deterministic `query_patterns` row: database `database_id`, fingerprint
/// `fingerprint`, sighted at `seen_us`, its text told apart by `variant`.
pub(crate) fn pattern(database_id: u64, fingerprint: &str, seen_us: i64, variant: u64) -> Image {
    pattern_with_sql(
        database_id,
        fingerprint,
        seen_us,
        &format!("select * from t{} where id = ? /* v{variant} */", database_id % 97),
    )
}

/// [`pattern`] with this `normalized_sql`.
pub(crate) fn pattern_with_sql(database_id: u64, fingerprint: &str, seen_us: i64, sql: &str) -> Image {
    patterns().image_of_cells(vec![
        Cell::UInt(database_id),
        Cell::Text(fingerprint.to_owned()),
        Cell::Bytes(Vec::new()),
        Cell::Text(sql.to_owned()),
        Cell::Text(format!("[\"t{}\"]", database_id % 97)),
        Cell::DateTime(seen_us / 1000 * 1000),
        Cell::DateTime(seen_us / 1000 * 1000),
    ])
}

/// The key of `pattern(database_id, fingerprint, ..)`.
pub(crate) fn pattern_key(database_id: u64, fingerprint: &str) -> Key {
    Key(vec![Cell::UInt(database_id), Cell::Text(fingerprint.to_owned())])
}

/// `query_patterns` rows written with the merge upsert, as group A or B writes them.
pub(crate) async fn upsert(config: &ClusterConfig, pools: &ShardPools, images: &[Image]) {
    workload::upsert(config, pools, &patterns(), images).await.expect("upsert");
}

pub(crate) async fn delete(config: &ClusterConfig, pools: &ShardPools, keys: &[Key]) {
    workload::delete(config, pools, &patterns(), keys).await.expect("delete");
}

/// An old and a new cluster, each on its own throwaway database (dropped on `cleanup`).
pub(crate) struct Clusters {
    pub(crate) db: String,
    pub(crate) old: ClusterConfig,
    pub(crate) new: ClusterConfig,
    /// The copied table (the clusters' pipeline's).
    pub(crate) table: CopiedTable,
}

impl Clusters {
    /// On the stack's clusters (the Insights pipeline), copying `query_patterns`.
    pub(crate) async fn new(tag: &str) -> Self {
        Self::with(tag, template("old"), template("new"), "query_patterns").await
    }

    /// On clusters whose files name another pipeline, copying `table`.
    pub(crate) async fn with(tag: &str, old: ClusterConfig, new: ClusterConfig, table: &str) -> Self {
        copier_tracing();
        let db = workload::unique_database(tag);
        let table = CopiedTable::new(&old.pipeline, table).expect("copied table");
        let old = workload::create_cluster(&old, &db).await.expect("old database");
        let new = workload::create_cluster(&new, &db).await.expect("new database");
        Self { db, old, new, table }
    }

    pub(crate) async fn cleanup(self) {
        workload::drop_cluster(&self.old).await.expect("drop old");
        workload::drop_cluster(&self.new).await.expect("drop new");
    }

    /// Waits until every stream applied each old shard's binlog through its end now.
    pub(crate) async fn wait_caught_up(&self, limit: Duration) {
        let ends = workload::binlog_ends(&self.old).await.expect("binlog ends");
        let started = Instant::now();
        while !workload::caught_up(&self.old, &self.new, &self.table.name, &ends).await.expect("status") {
            assert!(
                started.elapsed() < limit,
                "not caught up after {limit:?}: {:#?}",
                copier::status::streams(&self.new).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn assert_equal(&self) {
        let differences = workload::compare(&self.old, &self.new, &self.table).await.expect("compare");
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
