//! Runs the plan on every shard of a cluster.
//!
//! Safe next to live consumers and other retention jobs:
//! - Each shard is worked on under a named lock (`GET_LOCK`) per database, so
//!   two jobs never interleave their ALTERs; the loser skips the shard.
//! - The layout is re-read under that lock right before planning, so a
//!   re-run, or a run after another job, plans nothing twice.
//! - `ALTER TABLE ... PARTITION` needs an exclusive metadata lock; while it
//!   waits for a consumer's open transaction, new transactions queue behind
//!   it. `lock_wait_timeout` bounds that wait (default 5 s, well inside the
//!   consumer's shard timeout); a timeout leaves the table as it was and is
//!   retried on the next run.
//! - Splitting `p_future` moves any rows already in it (events dated beyond
//!   the partitions ahead) into the new partitions: nothing is lost.

use std::time::Duration;

use cluster::config::ClusterConfig;
use cluster::partitions::{self, FUTURE, PAST};
use cluster::pool::ShardPools;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};
use serde::Serialize;

use crate::error::RetentionError;
use crate::plan::{plan_guarded, Part, Policy, TablePlan};

/// What one run does (or, dry, would do) to one table on one shard.
#[derive(Debug, Clone, Serialize)]
pub struct TableOutcome {
    pub shard: String,
    pub table: String,
    pub plan: TablePlan,
    /// `p_past` held rows and was emptied.
    pub emptied_past: bool,
    /// Oldest window start every row of the table is kept from (seconds).
    pub retained_from: i64,
    /// Upper bound of the newest real partition after the plan (seconds): an
    /// event dated at or past it lands in `p_future` until the next split.
    pub ready_through: i64,
    pub statements: Vec<String>,
}

/// One shard's result: its tables, or why it was skipped or failed.
#[derive(Debug, Serialize)]
pub struct ShardOutcome {
    pub shard: String,
    pub tables: Vec<TableOutcome>,
    /// Another job held the shard's retention lock.
    pub busy: bool,
    pub error: Option<String>,
    /// Why no partition was dropped on this shard, when a clock guard refused.
    pub drops_refused: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub policy: Policy,
    pub dry_run: bool,
    pub lock_wait: Duration,
    /// Largest difference between the shard's clock and this job's before
    /// drops are refused.
    pub max_clock_skew: Duration,
}

/// Where drops may go on one shard, and why not further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DropGuard {
    /// Drop partitions ending at or before this (seconds); `None`: drop nothing.
    pub cutoff: Option<i64>,
    pub refused: Option<String>,
    /// The clocks disagree by more than allowed.
    pub skewed: bool,
}

/// The clock guards: the shard's `UNIX_TIMESTAMP()` must agree with `now`
/// within `max_skew`, and nothing is dropped past the newest message this
/// cluster has applied minus `keep` (a producer or job clock days ahead can
/// then never age out windows the cluster still holds the only copy of).
pub(crate) fn drop_guard(
    now: i64,
    shard_now: i64,
    newest_applied_ms: Option<i64>,
    keep: i64,
    max_skew: Duration,
) -> DropGuard {
    let skew = now - shard_now;
    let max = i64::try_from(max_skew.as_secs()).unwrap_or(i64::MAX);
    if skew.abs() > max {
        return DropGuard {
            cutoff: None,
            skewed: true,
            refused: Some(format!(
                "clock skew: this job's clock says {now}, the shard's UNIX_TIMESTAMP() {shard_now} ({skew:+} s, more \
                 than the allowed {max} s); nothing dropped until they agree"
            )),
        };
    }
    let Some(newest_ms) = newest_applied_ms else {
        return DropGuard {
            cutoff: None,
            skewed: false,
            refused: Some(
                "no applied message recorded on this shard (dw_offset_fence is empty); nothing dropped".into(),
            ),
        };
    };
    // Within the allowed skew the job's clock is trusted (its `now` may be simulated).
    let by_clock = now - keep;
    let by_data = newest_ms.div_euclid(1000) - keep;
    let refused = (by_data < by_clock).then(|| {
        format!(
            "newest applied message is at {} s, {} s before now: drops stop at {by_data} (newest - keep)",
            newest_ms.div_euclid(1000),
            now - newest_ms.div_euclid(1000)
        )
    });
    DropGuard { cutoff: Some(by_clock.min(by_data)), refused, skewed: false }
}

/// A partitioned table of the cluster's pipeline and how much longer than
/// `[time] retention` it keeps its rows (its own `retention`, seconds).
#[derive(Debug, Clone)]
pub(crate) struct Managed {
    pub table: String,
    pub extra_keep: i64,
}

pub(crate) fn managed_tables(config: &ClusterConfig) -> Vec<Managed> {
    let base = config.time.retention_ms();
    config
        .pipeline
        .windowed()
        .map(|t| Managed {
            table: t.name.clone(),
            extra_keep: (config.time.table_retention_ms(t) - base).max(0) / 1000,
        })
        .collect()
}

/// Plans and (unless dry) applies retention on every shard, in parallel.
/// A failing shard does not stop the others; its error is in its outcome.
pub async fn run_cluster(
    config: &ClusterConfig,
    pools: &ShardPools,
    options: RunOptions,
    now: i64,
) -> Vec<ShardOutcome> {
    let tables = managed_tables(config);
    let work = config.shards.iter().zip(pools.shards()).map(|(shard, pool)| {
        let name = shard.range.to_string();
        let tables = &tables;
        async move {
            match run_shard(pool, &name, tables, options, now).await {
                Ok(Some((tables, drops_refused))) => {
                    ShardOutcome { shard: name, tables, busy: false, error: None, drops_refused }
                }
                Ok(None) => {
                    ShardOutcome { shard: name, tables: Vec::new(), busy: true, error: None, drops_refused: None }
                }
                Err(e) => ShardOutcome {
                    shard: name,
                    tables: Vec::new(),
                    busy: false,
                    error: Some(e.to_string()),
                    drops_refused: None,
                },
            }
        }
    });
    futures::future::join_all(work).await
}

/// `None` when another job holds the shard.
async fn run_shard(
    pool: &Pool,
    shard: &str,
    tables: &[Managed],
    options: RunOptions,
    now: i64,
) -> Result<Option<(Vec<TableOutcome>, Option<String>)>, RetentionError> {
    let sql = |source| RetentionError::sql(shard, source);
    let mut conn = pool.get_conn().await.map_err(sql)?;
    conn.query_drop(format!("SET SESSION lock_wait_timeout = {}", options.lock_wait.as_secs().max(1)))
        .await
        .map_err(sql)?;
    let got: Option<i64> =
        conn.query_first("SELECT GET_LOCK(CONCAT('dualwrite_retention.', DATABASE()), 0)").await.map_err(sql)?;
    if got != Some(1) {
        tracing::info!(shard, "another retention job holds this shard, skipped");
        return Ok(None);
    }
    let result = match read_clocks(&mut conn, shard).await {
        Ok((shard_now, newest)) => {
            let guard = drop_guard(now, shard_now, newest, options.policy.keep, options.max_clock_skew);
            if let Some(why) = &guard.refused {
                tracing::warn!(shard, reason = %why, "retention drops limited");
            }
            // A clock that disagrees with the shard's plans nothing from it:
            // partitions ahead follow the shard's clock, none are dropped.
            let plan_now = if guard.skewed { shard_now } else { now };
            run_tables(&mut conn, shard, tables, options, plan_now, guard.cutoff).await.map(|t| (t, guard.refused))
        }
        Err(e) => Err(e),
    };
    // Released explicitly so a pooled connection never carries the lock.
    let released: Result<Option<i64>, _> =
        conn.query_first("SELECT RELEASE_LOCK(CONCAT('dualwrite_retention.', DATABASE()))").await;
    released.map_err(sql)?;
    result.map(Some)
}

/// The shard's clock and the newest message time (ms) applied on it.
async fn read_clocks(conn: &mut Conn, shard: &str) -> Result<(i64, Option<i64>), RetentionError> {
    let sql = |source| RetentionError::sql(shard, source);
    let shard_now: Option<i64> = conn.query_first("SELECT CAST(UNIX_TIMESTAMP() AS SIGNED)").await.map_err(sql)?;
    let newest: Option<Option<i64>> =
        conn.query_first("SELECT MAX(max_message_ms) FROM dw_offset_fence").await.map_err(sql)?;
    Ok((shard_now.unwrap_or_default(), newest.flatten()))
}

async fn run_tables(
    conn: &mut Conn,
    shard: &str,
    tables: &[Managed],
    options: RunOptions,
    now: i64,
    drop_cutoff: Option<i64>,
) -> Result<Vec<TableOutcome>, RetentionError> {
    let mut out = Vec::new();
    for Managed { table, extra_keep } in tables {
        let table = table.as_str();
        // A table kept longer than `[time] retention` drops that much later.
        let mut policy = options.policy;
        policy.keep = policy.keep.saturating_add(*extra_keep);
        let cutoff = drop_cutoff.map(|c| c.saturating_sub(*extra_keep));
        let parts = read_layout(conn, shard, table).await?;
        let plan = plan_guarded(&parts, policy, now, cutoff).map_err(|e| RetentionError::Layout {
            shard: shard.to_owned(),
            table: table.to_owned(),
            why: e.0,
        })?;
        let mut statements = statements(table, &plan);
        let mut emptied_past = false;
        if plan.empty_past && past_has_rows(conn, shard, table).await? {
            statements.push(format!("ALTER TABLE {table} TRUNCATE PARTITION {PAST}"));
            emptied_past = true;
        }
        if !options.dry_run {
            for stmt in &statements {
                tracing::info!(shard, table, statement = %stmt, "retention statement");
                conn.query_drop(stmt).await.map_err(|source| RetentionError::Alter {
                    shard: shard.to_owned(),
                    table: table.to_owned(),
                    statement: stmt.clone(),
                    source: Box::new(source),
                })?;
            }
        }
        let retained_from = retained_from(&parts, &plan, options.policy.width);
        let ready_through = ready_through(&parts, &plan);
        out.push(TableOutcome {
            shard: shard.to_owned(),
            table: table.to_owned(),
            plan,
            emptied_past,
            retained_from,
            ready_through,
            statements,
        });
    }
    Ok(out)
}

fn statements(table: &str, plan: &TablePlan) -> Vec<String> {
    let mut out = Vec::new();
    if !plan.create.is_empty() {
        let mut parts: Vec<String> = plan
            .create
            .iter()
            .map(|(name, upper)| format!("PARTITION {name} VALUES LESS THAN ({})", cluster::sql::datetime(*upper)))
            .collect();
        parts.push(format!("PARTITION {FUTURE} VALUES LESS THAN (MAXVALUE)"));
        out.push(format!("ALTER TABLE {table} REORGANIZE PARTITION {FUTURE} INTO ({})", parts.join(", ")));
    }
    if !plan.drop.is_empty() {
        out.push(format!("ALTER TABLE {table} DROP PARTITION {}", plan.drop.join(", ")));
    }
    out
}

/// The oldest window start the table holds in full after the plan: the lower
/// bound of its oldest remaining real partition, taken as its upper bound
/// minus one width (the lower bound of a partition after drops below it is
/// not in the catalog; for the wide catch-up partition this is conservative).
pub(crate) fn retained_from(parts: &[Part], plan: &TablePlan, width: i64) -> i64 {
    let past_upper = parts.first().and_then(|p| p.upper).unwrap_or(i64::MIN);
    parts
        .iter()
        .filter(|p| p.name != PAST && !plan.drop.contains(&p.name))
        .filter_map(|p| p.upper)
        .chain(plan.create.iter().filter(|c| !plan.drop.contains(&c.0)).map(|c| c.1))
        .min()
        .map_or(past_upper, |upper| (upper - width).max(past_upper))
}

/// The highest bound below `p_future` once the plan ran (`p_past`'s if it is alone).
pub(crate) fn ready_through(parts: &[Part], plan: &TablePlan) -> i64 {
    parts.iter().filter_map(|p| p.upper).chain(plan.create.iter().map(|c| c.1)).max().unwrap_or(i64::MIN)
}

pub(crate) async fn read_layout(conn: &mut Conn, shard: &str, table: &str) -> Result<Vec<Part>, RetentionError> {
    let rows: Vec<(Option<String>, Option<String>, Option<String>)> = conn
        .exec(
            "SELECT PARTITION_NAME, PARTITION_METHOD, PARTITION_DESCRIPTION FROM information_schema.PARTITIONS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY PARTITION_ORDINAL_POSITION",
            (table,),
        )
        .await
        .map_err(|source| RetentionError::sql(shard, source))?;
    let layout = |why: String| RetentionError::Layout { shard: shard.to_owned(), table: table.to_owned(), why };
    if rows.is_empty() {
        return Err(layout("table does not exist (run `dualwrite-cluster schema` first)".into()));
    }
    let mut parts = Vec::with_capacity(rows.len());
    for (name, method, description) in rows {
        let Some(name) = name else { return Err(layout("table is not partitioned".into())) };
        if method.as_deref() != Some("RANGE COLUMNS") {
            return Err(layout(format!(
                "partitioned by {} instead of RANGE COLUMNS on its time column (a layout from before \
                 configurable partitions): drop the table, or point the cluster at a new database, and run \
                 `dualwrite-cluster schema`",
                method.unwrap_or_default()
            )));
        }
        let upper = partitions::parse_bound(description.as_deref().unwrap_or_default()).map_err(layout)?;
        parts.push(Part { name, upper });
    }
    Ok(parts)
}

async fn past_has_rows(conn: &mut Conn, shard: &str, table: &str) -> Result<bool, RetentionError> {
    let row: Option<u8> = conn
        .query_first(format!("SELECT 1 FROM {table} PARTITION ({PAST}) LIMIT 1"))
        .await
        .map_err(|source| RetentionError::sql(shard, source))?;
    Ok(row.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: Duration = Duration::from_secs(300);

    #[test]
    fn clocks_that_disagree_refuse_every_drop() {
        let g = drop_guard(1_000_000 + 2 * 86_400, 1_000_000, Some(1_000_000_000), 3600, SKEW);
        assert_eq!(g.cutoff, None);
        assert!(g.refused.as_deref().is_some_and(|r| r.contains("clock skew")), "{g:?}");
        assert_eq!(drop_guard(1_000_000, 1_000_000 + 301, Some(1_000_000_000), 3600, SKEW).cutoff, None);
    }

    #[test]
    fn drops_stop_at_the_newest_applied_message_minus_keep() {
        let now = 1_000_000;
        let fresh = drop_guard(now, now + 10, Some(now * 1000), 3600, SKEW);
        assert_eq!(fresh, DropGuard { cutoff: Some(now - 3600), refused: None, skewed: false });
        let stale = drop_guard(now, now, Some((now - 86_400) * 1000), 3600, SKEW);
        assert_eq!(stale.cutoff, Some(now - 86_400 - 3600));
        assert!(stale.refused.is_some());
        assert_eq!(drop_guard(now, now, None, 3600, SKEW).cutoff, None);
    }
}
