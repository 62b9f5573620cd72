//! The copier: fills the new cluster's unbounded tables (the pipeline's
//! `latest` tables, one per process) from the old cluster, one stream per
//! old shard (consistent snapshot + binlog catch-up, re-sharded by the new
//! cluster's vindex), then keeps them up to date from the binlog until
//! cutover. Everything about the table (columns, key, sharding column, merge
//! rule, statements) derives from the pipeline description (`table.rs`,
//! `row.rs`). Writes use the table's merge rule, so they commute with
//! consumer group B's. See `stream.rs` for the cycle, `sidecar.rs` for
//! resumability and `apply.rs` for the apply rule.

pub mod apply;
pub mod assemble;
pub mod batch;
pub mod bench;
pub mod binlog;
pub mod config;
pub mod copy;
pub mod error;
pub mod gtid_move;
pub mod metrics;
pub mod phase;
pub mod reader;
pub mod row;
pub mod sidecar;
pub mod source;
pub mod status;
pub mod stream;
pub mod table;
pub mod workload;

use std::sync::Arc;

use cluster::pool::{opts_for, ShardPools};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use crate::config::{CopierConfig, Settings};
pub use crate::error::CopierError;

use crate::apply::Target;
use crate::stream::Stream;

/// Runs one stream per old shard until `shutdown` (Ok) or until a stream
/// fails with a fatal error: the others are then stopped and the first
/// error is returned (it is also recorded in the sidecar tables for `status`).
pub async fn run(config: CopierConfig, shutdown: CancellationToken) -> Result<(), CopierError> {
    let table = Arc::new(config.validate()?);
    let target = Arc::new(Target { pools: ShardPools::new(&config.to), config: config.to.clone(), table });
    let source_pools = ShardPools::new(&config.from);
    let bars = MultiProgress::with_draw_target(if config.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} rows {per_sec} eta {eta} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let target_gates = Arc::new(cluster::throttle_gate::ShardGate::for_cluster(&config.to, "copier"));
    let stop_all = shutdown.child_token();
    let mut streams = JoinSet::new();
    for (index, shard) in config.from.shards.iter().enumerate() {
        let progress = bars.add(ProgressBar::new(0).with_style(style.clone()).with_prefix(shard.range.to_string()));
        let stream = Stream {
            table: config.table.clone(),
            source_shard: shard.range.to_string(),
            source_db: shard.endpoint.database.clone(),
            source_pool: source_pools.shard(index).clone(),
            source_opts: opts_for(&shard.endpoint, &config.from.auth),
            target: Arc::clone(&target),
            settings: config.settings.clone(),
            shutdown: stop_all.clone(),
            progress,
            source_gate: Arc::new(cluster::throttle_gate::ShardGate::new(
                &config.from,
                "copier",
                &shard.range.to_string(),
                &shard.endpoint,
                shard.reads_replica,
            )),
            target_gates: Arc::clone(&target_gates),
        };
        streams.spawn(async move { stream.run().await });
    }
    let mut first_error = None;
    while let Some(joined) = streams.join_next().await {
        let error = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => error,
            Err(join) => CopierError::Config(format!("stream task panicked: {join}")),
        };
        if first_error.is_none() {
            tracing::error!(%error, "a stream failed, stopping the others");
            stop_all.cancel();
            first_error = Some(error);
        }
    }
    source_pools.disconnect().await;
    if let Ok(target) = Arc::try_unwrap(target) {
        target.pools.disconnect().await;
    }
    first_error.map_or(Ok(()), Err)
}
