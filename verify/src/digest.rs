//! Pushed-down digests: one grouped query per shard (all shards at once),
//! combined across shards. See [`crate::spec`] for the digest itself.

use std::collections::BTreeMap;

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use mysql_async::prelude::Queryable;
use serde::Serialize;

use crate::error::VerifyError;
use crate::spec::{TableSpec, LANES_SQL};

/// Row count and multiset digest of a set of rows, plus how many of them sit
/// on a shard whose key range does not hold their keyspace id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Digest {
    pub rows: u64,
    /// Exact sum of the rows' first hash lane (each below 2^64, so no
    /// realistic number of rows reaches 2^128).
    pub lane_a: u128,
    /// Exact sum of the rows' second hash lane.
    pub lane_b: u128,
    /// Rows outside their shard's key range (not part of the content).
    pub misplaced: u64,
}

impl Digest {
    /// Folds in another shard's digest of the same group.
    pub fn add(&mut self, other: &Digest) {
        self.rows += other.rows;
        self.lane_a += other.lane_a;
        self.lane_b += other.lane_b;
        self.misplaced += other.misplaced;
    }

    /// Same rows (as a multiset), wherever they sit.
    pub fn same_content(&self, other: &Digest) -> bool {
        (self.rows, self.lane_a, self.lane_b) == (other.rows, other.lane_a, other.lane_b)
    }

    /// The lanes modulo 2^64 as 32 hex digits, for the history table.
    pub fn hex(&self) -> String {
        // Truncation: the history shows the low 64 bits of each exact sum.
        format!("{:016x}{:016x}", self.lane_a as u64, self.lane_b as u64)
    }
}

/// A cluster's pools with its config: one side of a comparison.
pub struct Side {
    pub config: ClusterConfig,
    pub pools: ShardPools,
    /// Per shard, the throttle every shard read passes first ([`Side::conn`]).
    pub gates: Vec<cluster::throttle_gate::ShardGate>,
    /// Stops a read paused by a gate (the run's shutdown; never by default).
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl Side {
    /// The side reading `config`'s shard endpoints (a replica where
    /// `ClusterConfig::reading_from` put one).
    pub fn new(config: ClusterConfig) -> Self {
        let pools = ShardPools::new(&config);
        let gates = cluster::throttle_gate::ShardGate::for_cluster(&config, "verify");
        Self { config, pools, gates, shutdown: tokio_util::sync::CancellationToken::new() }
    }

    /// A connection to shard `i`, once its throttle gate lets it through
    /// (see `cluster::throttle_gate`): a shard past a threshold waits here,
    /// the others go on.
    pub async fn conn(&self, i: usize) -> Result<mysql_async::Conn, VerifyError> {
        if let Some(gate) = self.gates.get(i) {
            gate.pass(self.pools.shard(i), &self.shutdown).await.map_err(|e| match e {
                cluster::throttle_gate::GateError::Cancelled(_) => VerifyError::Cancelled,
                cluster::throttle_gate::GateError::Mysql { source, .. } => self.shard_error(i, source),
            })?;
        }
        self.pools.shard(i).get_conn().await.map_err(|e| self.shard_error(i, e))
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub(crate) fn shard_error(&self, shard: usize, source: mysql_async::Error) -> VerifyError {
        let name = self.config.shards.get(shard).map(|s| s.range.to_string()).unwrap_or_default();
        VerifyError::Shard { cluster: self.config.name.clone(), shard: name, source }
    }
}

/// `SELECT group, COUNT(*), SUM(lane a), SUM(lane b), SUM(misplaced) ... GROUP BY group`
/// on every shard of `side` at once, combined by group.
pub async fn grouped(
    side: &Side,
    table: &TableSpec,
    group_sql: &str,
    where_sql: &str,
) -> Result<BTreeMap<i64, Digest>, VerifyError> {
    let queries = side.config.shards.iter().enumerate().map(|(i, shard)| {
        let sql = format!(
            "SELECT g, COUNT(*), SUM(a), SUM(b), SUM(m) FROM (SELECT g, m, {LANES_SQL} FROM \
             (SELECT {group_sql} AS g, {misplaced} AS m, {hash} AS h FROM {name} WHERE {where_sql}) x) y GROUP BY g",
            misplaced = table.misplaced_sql(&shard.range),
            hash = table.row_hash_sql(),
            name = table.name,
        );
        async move {
            let mut conn = side.conn(i).await?;
            let rows: Vec<(i64, u64, String, String, String)> =
                conn.query(sql).await.map_err(|e| side.shard_error(i, e))?;
            Ok::<_, VerifyError>(rows)
        }
    });
    let mut combined: BTreeMap<i64, Digest> = BTreeMap::new();
    for result in futures::future::join_all(queries).await {
        for (group, rows, a, b, m) in result? {
            let misplaced = u64::try_from(parse_sum(&m)?).unwrap_or(u64::MAX);
            let digest = Digest { rows, lane_a: parse_sum(&a)?, lane_b: parse_sum(&b)?, misplaced };
            combined.entry(group).or_default().add(&digest);
        }
    }
    Ok(combined)
}

/// An exact DECIMAL sum of unsigned values, as MySQL prints it.
pub(crate) fn parse_sum(text: &str) -> Result<u128, VerifyError> {
    text.trim().parse().map_err(|_| VerifyError::Unexpected(format!("digest sum {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_combine_in_any_order_and_keep_duplicates() {
        let max = u128::from(u64::MAX);
        let a = Digest { rows: 1, lane_a: max, lane_b: 7, misplaced: 0 };
        let b = Digest { rows: 2, lane_a: 5, lane_b: max - 1, misplaced: 1 };
        let (mut ab, mut ba) = (a, b);
        ab.add(&b);
        ba.add(&a);
        assert_eq!(ab, ba);
        assert_eq!((ab.rows, ab.lane_a, ab.lane_b, ab.misplaced), (3, max + 5, max + 6, 1));
        assert_eq!(ab.hex(), "00000000000000040000000000000005", "history shows the sums modulo 2^64");
        let mut twice = a;
        twice.add(&a);
        assert!(!twice.same_content(&a), "a duplicated row must change the digest");
        assert_eq!(parse_sum("18446744073709551617").ok(), Some(max + 2));
        assert!(parse_sum("1e5").is_err());
    }
}
