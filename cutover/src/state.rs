//! The routing state in the control database: which cluster serves each
//! table group's reads, the append-only audit log of every change, the
//! routers' heartbeats (their acknowledgements), and shadow-read counts.
//!
//! One global version orders every change: each transition locks all group
//! rows, takes `MAX(version) + 1`, and writes it on the groups it changes, so
//! a router acknowledges a single number and a switch waits for that number.
//! Liveness is judged on the control server's clock (`NOW(6)`), never on the
//! routers' or the operator's.

use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts};
use serde::Serialize;

use crate::group::TableGroup;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("control database: {0}")]
    Sql(#[from] mysql_async::Error),
    #[error("routing state: {0}")]
    Invalid(String),
}

/// One table group's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupState {
    pub group: TableGroup,
    pub active: String,
    pub pending: Option<String>,
    pub retired: Option<String>,
    pub version: u64,
    pub changed_by: String,
    /// Milliseconds since the epoch (control server clock).
    pub changed_at_ms: i64,
    pub reason: String,
    pub forced: bool,
}

/// Every group's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutingState {
    pub groups: Vec<GroupState>,
}

impl RoutingState {
    /// The global version: the highest of the groups'.
    pub fn version(&self) -> u64 {
        self.groups.iter().map(|g| g.version).max().unwrap_or(0)
    }

    pub fn group(&self, group: TableGroup) -> Option<&GroupState> {
        self.groups.iter().find(|g| g.group == group)
    }
}

/// Who changes the routing, and why: written with every change.
#[derive(Debug, Clone)]
pub struct Audit {
    pub action: &'static str,
    pub changed_by: String,
    pub reason: String,
    pub forced: bool,
    /// JSON.
    pub detail: String,
}

/// Creates the routing tables (`cluster::job_tables::ROUTING_TABLES`) where
/// missing; no DDL when `dualwrite-cluster schema` made them, so a router's
/// read-only login starts too.
pub async fn ensure_schema(pool: &Pool) -> Result<(), StateError> {
    let mut conn = pool.get_conn().await?;
    cluster::schema::create_missing(&mut conn, &cluster::job_tables::ROUTING_TABLES).await?;
    Ok(())
}

/// Creates a group's row on first use: reads start on `old_cluster`.
/// Safe when several routers start at once: `INSERT IGNORE` keeps the first
/// row, and only the insert that created it writes the `init` audit row.
/// Writes nothing once every group has its row, so a router whose login may
/// not write the routing state starts once an operator has run.
pub async fn ensure_initial(
    pool: &Pool,
    groups: &[TableGroup],
    old_cluster: &str,
    changed_by: &str,
) -> Result<(), StateError> {
    let mut conn = pool.get_conn().await?;
    let present: Vec<String> = conn.query("SELECT table_group FROM dw_read_routing").await?;
    for &group in groups {
        if present.iter().any(|g| g == group.as_str()) {
            continue;
        }
        conn.exec_drop(
            "INSERT IGNORE INTO dw_read_routing (table_group, active_cluster, version, changed_by, changed_at, reason) \
             VALUES (?, ?, 1, ?, NOW(6), 'initial state: reads on the old cluster')",
            (group.as_str(), old_cluster, changed_by),
        )
        .await?;
        if conn.affected_rows() == 0 {
            continue;
        }
        conn.exec_drop(
            "INSERT INTO dw_read_routing_audit (at, table_group, action, from_cluster, to_cluster, version, changed_by, \
             db_user, reason, forced, detail) VALUES (NOW(6), ?, 'init', '', ?, 1, ?, CURRENT_USER(), 'initial state', 0, '{}')",
            (group.as_str(), old_cluster, changed_by),
        )
        .await?;
    }
    Ok(())
}

type GroupRow = (String, String, Option<String>, Option<String>, u64, String, i64, String, u8);

const SELECT_GROUPS: &str =
    "SELECT table_group, active_cluster, pending_cluster, retired_cluster, version, changed_by, \
     CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', changed_at) DIV 1000 AS SIGNED), reason, forced \
     FROM dw_read_routing";

fn parse_groups(rows: Vec<GroupRow>) -> Result<RoutingState, StateError> {
    let mut groups = Vec::with_capacity(rows.len());
    for (group, active, pending, retired, version, changed_by, changed_at_ms, reason, forced) in rows {
        let group = TableGroup::named(&group).map_err(StateError::Invalid)?;
        groups.push(GroupState {
            group,
            active,
            pending,
            retired,
            version,
            changed_by,
            changed_at_ms,
            reason,
            forced: forced != 0,
        });
    }
    groups.sort_by_key(|g| g.group);
    Ok(RoutingState { groups })
}

/// The current routing state.
pub async fn load(pool: &Pool) -> Result<RoutingState, StateError> {
    let mut conn = pool.get_conn().await?;
    let rows: Vec<GroupRow> = conn.query(SELECT_GROUPS).await?;
    parse_groups(rows)
}

/// The current global version only: what routers poll.
pub async fn current_version(conn: &mut mysql_async::Conn) -> Result<u64, StateError> {
    let version: Option<Option<u64>> = conn.query_first("SELECT MAX(version) FROM dw_read_routing").await?;
    Ok(version.flatten().unwrap_or(0))
}

/// Applies `edit` to `groups` in one transaction under a lock on every group
/// row, gives them the next global version, and appends one audit row per
/// group. Returns the new version. `edit` sees the locked state and may
/// refuse (its error aborts the transaction).
pub async fn transition<F>(pool: &Pool, groups: &[TableGroup], audit: &Audit, mut edit: F) -> Result<u64, StateError>
where
    F: FnMut(&mut GroupState) -> Result<(), String>,
{
    let mut tx = pool.start_transaction(TxOpts::default()).await?;
    let rows: Vec<GroupRow> = tx.query(format!("{SELECT_GROUPS} FOR UPDATE")).await?;
    let state = parse_groups(rows)?;
    let version = state.version() + 1;
    for group in groups {
        let Some(before) = state.group(*group) else {
            return Err(StateError::Invalid(format!("no routing row for table group {group}")));
        };
        let mut after = before.clone();
        edit(&mut after).map_err(StateError::Invalid)?;
        tx.exec_drop(
            "UPDATE dw_read_routing SET active_cluster = ?, pending_cluster = ?, retired_cluster = ?, version = ?, \
             changed_by = ?, changed_at = NOW(6), reason = ?, forced = ? WHERE table_group = ?",
            (
                &after.active,
                &after.pending,
                &after.retired,
                version,
                &audit.changed_by,
                &audit.reason,
                u8::from(audit.forced),
                group.as_str(),
            ),
        )
        .await?;
        let to = after.pending.clone().unwrap_or_else(|| after.active.clone());
        tx.exec_drop(
            "INSERT INTO dw_read_routing_audit (at, table_group, action, from_cluster, to_cluster, version, changed_by, \
             db_user, reason, forced, detail) VALUES (NOW(6), ?, ?, ?, ?, ?, ?, CURRENT_USER(), ?, ?, ?)",
            (
                group.as_str(),
                audit.action,
                &before.active,
                to,
                version,
                &audit.changed_by,
                &audit.reason,
                u8::from(audit.forced),
                &audit.detail,
            ),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(version)
}

/// One audit row.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: u64,
    pub at_ms: i64,
    pub group: String,
    pub action: String,
    pub from: String,
    pub to: String,
    pub version: u64,
    pub changed_by: String,
    /// The MySQL login that wrote the row (`CURRENT_USER()`, `user@host`).
    pub db_user: String,
    pub reason: String,
    pub forced: bool,
    pub detail: String,
}

/// The newest `limit` audit rows, newest first.
pub async fn audit_log(pool: &Pool, limit: u32) -> Result<Vec<AuditEntry>, StateError> {
    type Row = (u64, i64, String, String, String, String, u64, String, String, String, u8, String);
    let mut conn = pool.get_conn().await?;
    let rows: Vec<Row> = conn
        .exec(
            "SELECT id, CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', at) DIV 1000 AS SIGNED), table_group, \
             action, from_cluster, to_cluster, version, changed_by, db_user, reason, forced, detail \
             FROM dw_read_routing_audit ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, at_ms, group, action, from, to, version, changed_by, db_user, reason, forced, detail)| AuditEntry {
            id,
            at_ms,
            group,
            action,
            from,
            to,
            version,
            changed_by,
            db_user,
            reason,
            forced: forced != 0,
            detail,
        })
        .collect())
}

/// A router's acknowledgement and liveness.
pub async fn heartbeat(
    conn: &mut mysql_async::Conn,
    router_id: &str,
    version_seen: u64,
    may_read: &[String],
) -> Result<(), StateError> {
    conn.exec_drop(
        "INSERT INTO dw_read_routers (router_id, version_seen, may_read, started_at, last_seen) \
         VALUES (?, ?, ?, NOW(6), NOW(6)) ON DUPLICATE KEY UPDATE \
         version_seen = VALUES(version_seen), may_read = VALUES(may_read), last_seen = VALUES(last_seen)",
        (router_id, version_seen, may_read.join(",")),
    )
    .await?;
    Ok(())
}

/// A router leaving cleanly removes its row, so nobody waits for it.
pub async fn remove_router(pool: &Pool, router_id: &str) -> Result<(), StateError> {
    let mut conn = pool.get_conn().await?;
    conn.exec_drop("DELETE FROM dw_read_routers WHERE router_id = ?", (router_id,)).await?;
    Ok(())
}

/// What a router last reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouterSeen {
    pub router_id: String,
    pub version_seen: u64,
    pub may_read: Vec<String>,
    /// Since its last heartbeat, on the control server's clock.
    pub age_ms: i64,
}

impl RouterSeen {
    pub fn is_live(&self, liveness: std::time::Duration) -> bool {
        i128::from(self.age_ms) <= liveness.as_millis() as i128
    }
}

/// Every router that ever reported (live or not).
pub async fn routers(pool: &Pool) -> Result<Vec<RouterSeen>, StateError> {
    let mut conn = pool.get_conn().await?;
    let rows: Vec<(String, u64, String, i64)> = conn
        .query(
            "SELECT router_id, version_seen, may_read, \
             CAST(TIMESTAMPDIFF(MICROSECOND, last_seen, NOW(6)) DIV 1000 AS SIGNED) \
             FROM dw_read_routers ORDER BY router_id",
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|(router_id, version_seen, may_read, age_ms)| RouterSeen {
            router_id,
            version_seen,
            may_read: may_read.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            age_ms,
        })
        .collect())
}

/// One router's shadow counts for one interval, group and query kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShadowCount {
    pub group: String,
    pub query: String,
    pub compared: u64,
    pub mismatches: u64,
    pub errors: u64,
    pub skipped: u64,
    pub last_mismatch: Option<String>,
}

/// Adds counts to the router's row for the interval starting at `interval_start_s`.
pub async fn add_shadow_counts(
    pool: &Pool,
    router_id: &str,
    interval_start_s: i64,
    counts: &[ShadowCount],
) -> Result<(), StateError> {
    let mut conn = pool.get_conn().await?;
    for c in counts {
        conn.exec_drop(
            "INSERT INTO dw_shadow_reads (router_id, interval_start, table_group, query, compared, mismatches, errors, \
             skipped, last_mismatch) VALUES (?, FROM_UNIXTIME(?), ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
             compared = compared + VALUES(compared), mismatches = mismatches + VALUES(mismatches), \
             errors = errors + VALUES(errors), skipped = skipped + VALUES(skipped), \
             last_mismatch = COALESCE(VALUES(last_mismatch), last_mismatch)",
            (router_id, interval_start_s, &c.group, &c.query, c.compared, c.mismatches, c.errors, c.skipped, &c.last_mismatch),
        )
        .await?;
    }
    Ok(())
}

/// Shadow counts summed over every router since `since_s` (seconds since the epoch).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShadowTotals {
    pub compared: u64,
    pub mismatches: u64,
    pub errors: u64,
    pub skipped: u64,
    pub routers: u64,
    /// The newest mismatch description, if any.
    pub last_mismatch: Option<String>,
}

pub async fn shadow_totals(pool: &Pool, since_s: i64) -> Result<ShadowTotals, StateError> {
    let mut conn = pool.get_conn().await?;
    let sums: Option<(u64, u64, u64, u64, u64)> = conn
        .exec_first(
            "SELECT CAST(COALESCE(SUM(compared), 0) AS UNSIGNED), CAST(COALESCE(SUM(mismatches), 0) AS UNSIGNED), \
             CAST(COALESCE(SUM(errors), 0) AS UNSIGNED), CAST(COALESCE(SUM(skipped), 0) AS UNSIGNED), \
             COUNT(DISTINCT router_id) FROM dw_shadow_reads WHERE interval_start >= FROM_UNIXTIME(?)",
            (since_s,),
        )
        .await?;
    let last: Option<Option<String>> = conn
        .exec_first(
            "SELECT last_mismatch FROM dw_shadow_reads WHERE interval_start >= FROM_UNIXTIME(?) \
             AND last_mismatch IS NOT NULL ORDER BY interval_start DESC LIMIT 1",
            (since_s,),
        )
        .await?;
    let (compared, mismatches, errors, skipped, routers) = sums.unwrap_or_default();
    Ok(ShadowTotals { compared, mismatches, errors, skipped, routers, last_mismatch: last.flatten() })
}

/// Appends audit rows without changing the routing (e.g. "every router acknowledged").
pub async fn note(
    pool: &Pool,
    groups: &[(TableGroup, String, String)],
    version: u64,
    audit: &Audit,
) -> Result<(), StateError> {
    let mut conn = pool.get_conn().await?;
    for (group, from, to) in groups {
        conn.exec_drop(
            "INSERT INTO dw_read_routing_audit (at, table_group, action, from_cluster, to_cluster, version, changed_by, \
             db_user, reason, forced, detail) VALUES (NOW(6), ?, ?, ?, ?, ?, ?, CURRENT_USER(), ?, ?, ?)",
            (group.as_str(), audit.action, from, to, version, &audit.changed_by, &audit.reason, u8::from(audit.forced), &audit.detail),
        )
        .await?;
    }
    Ok(())
}
