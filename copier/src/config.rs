//! Everything one copier process needs, validated before it connects anywhere.

use std::time::Duration;

use cluster::config::ClusterConfig;

use crate::error::CopierError;
use crate::table::CopiedTable;

/// How streams pace themselves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a copy phase reads its snapshot before catching up on the binlog.
    pub copy_phase: Duration,
    /// How long a catch-up phase may apply binlog events before the next copy phase.
    pub catch_up_phase: Duration,
    /// Snapshot rows read (and written, over every target shard) per chunk.
    pub chunk_rows: usize,
    /// Binlog row operations per write batch...
    pub batch_ops: usize,
    /// ...or this long after the batch's first operation.
    pub batch_wait: Duration,
    /// When a statement on a target shard (a multi-row upsert capped in rows
    /// and bytes, a delete, the commit) takes longer than this, the writer
    /// pauses as long again before its next write: a sign of the target's
    /// load that does not grow with the batch size, as a whole transaction's
    /// latency would.
    pub throttle_latency: Duration,
    /// How often the operator view (rate, lag) is refreshed on the target.
    pub status_interval: Duration,
    /// Most binlog events counted for the lag (counting reads the binlog).
    pub lag_events_cap: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            copy_phase: Duration::from_secs(30),
            catch_up_phase: Duration::from_secs(10),
            chunk_rows: 32_000,
            batch_ops: 16_000,
            batch_wait: Duration::from_millis(200),
            throttle_latency: Duration::from_millis(500),
            status_interval: Duration::from_secs(2),
            lag_events_cap: 10_000,
        }
    }
}

/// One copier process: every old shard's stream of one table.
#[derive(Debug, Clone)]
pub struct CopierConfig {
    /// The old cluster (sources).
    pub from: ClusterConfig,
    /// The new cluster (targets; holds the streams' state).
    pub to: ClusterConfig,
    /// The copied table: a `latest` table of the old cluster's pipeline.
    pub table: String,
    /// Pacing.
    pub settings: Settings,
    /// Draw progress bars (on a terminal).
    pub progress: bool,
}

impl CopierConfig {
    /// Checks what can be checked without a connection; returns the copied
    /// table as both clusters' pipelines describe it.
    pub fn validate(&self) -> Result<CopiedTable, CopierError> {
        let table = CopiedTable::new(&self.from.pipeline, &self.table)?;
        table.check_same(&CopiedTable::new(&self.to.pipeline, &self.table)?)?;
        let s = &self.settings;
        if s.chunk_rows == 0 || s.batch_ops == 0 {
            return Err(CopierError::Config("chunk rows and batch operations must be at least 1".into()));
        }
        if s.copy_phase.is_zero() || s.batch_wait.is_zero() || s.status_interval.is_zero() {
            return Err(CopierError::Config("copy phase, batch wait and status interval must be positive".into()));
        }
        Ok(table)
    }
}
