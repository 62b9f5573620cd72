//! The tables each job owns besides the store: the copier's sidecar on every
//! shard, and in the control database the read routing (cutover) and the
//! comparators' history (verify).
//!
//! They are defined here, below the crates that use them, so that
//! `dualwrite-cluster schema` creates every table once with an administrator
//! login, and each job can then run under a login without DDL privileges
//! (`crate::roles`); a job still creates what is missing when its login may
//! ([`crate::schema::create_missing`]).

// ---- the copier's sidecar (copier::sidecar), on every shard

/// The copier's sidecar: each target shard's record of each stream
/// (`copier::sidecar` explains its columns).
pub const COPIER_STREAMS: &str = "CREATE TABLE IF NOT EXISTS dw_copier_streams (
  table_name VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  -- The old cluster's shard (Vitess range name) the stream reads.
  source_shard VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  -- Fence: written only in the transaction that writes the rows it covers.
  copy_done TINYINT NOT NULL DEFAULT 0,
  -- JSON of the last copied key; NULL = nothing copied yet (no key covered).
  last_key TEXT NULL,
  binlog_file VARCHAR(255) NOT NULL DEFAULT '',
  binlog_pos BIGINT UNSIGNED NOT NULL DEFAULT 0,
  -- GTID of the last applied source transaction, for operators (MariaDB domain-server-seq).
  gtid VARCHAR(255) NOT NULL DEFAULT '',
  -- Snapshot rows and binlog row changes applied to this shard.
  rows_copied BIGINT UNSIGNED NOT NULL DEFAULT 0,
  events_applied BIGINT UNSIGNED NOT NULL DEFAULT 0,
  -- Operator view, the same on every shard of the stream.
  phase VARCHAR(16) CHARACTER SET ascii NOT NULL DEFAULT 'copying',
  rows_total BIGINT UNSIGNED NULL,
  rows_per_sec DOUBLE NULL,
  lag_events BIGINT UNSIGNED NULL,
  lag_seconds DOUBLE NULL,
  error TEXT NULL,
  error_kind VARCHAR(32) NULL,
  updated_at DATETIME(6) NOT NULL,
  PRIMARY KEY (table_name, source_shard)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

pub const READ_ROUTING: &str = "CREATE TABLE IF NOT EXISTS dw_read_routing (
  table_group VARCHAR(32) NOT NULL PRIMARY KEY,
  -- Cluster name (from its cluster file) serving the group's reads.
  active_cluster VARCHAR(64) NOT NULL,
  -- Set during a switch: routers hold new reads of the group (bounded) and drain the in-flight ones.
  pending_cluster VARCHAR(64) NULL,
  -- Set by `complete`: routers no longer read this cluster at all (no shadow reads either).
  retired_cluster VARCHAR(64) NULL,
  version BIGINT UNSIGNED NOT NULL,
  changed_by VARCHAR(255) NOT NULL,
  changed_at DATETIME(6) NOT NULL,
  reason TEXT NOT NULL,
  forced TINYINT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

pub const READ_ROUTING_AUDIT: &str = "CREATE TABLE IF NOT EXISTS dw_read_routing_audit (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  at DATETIME(6) NOT NULL,
  table_group VARCHAR(32) NOT NULL,
  -- init | prepare | switch | abort | complete
  action VARCHAR(16) NOT NULL,
  from_cluster VARCHAR(64) NOT NULL,
  to_cluster VARCHAR(64) NOT NULL,
  version BIGINT UNSIGNED NOT NULL,
  changed_by VARCHAR(255) NOT NULL,
  -- The MySQL login that made the change (CURRENT_USER()): changed_by is what the operator typed.
  db_user VARCHAR(384) NOT NULL DEFAULT '',
  reason TEXT NOT NULL,
  forced TINYINT NOT NULL,
  -- JSON: the gate results the decision was taken on, timings, routers that did not acknowledge.
  detail TEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

pub const READ_ROUTERS: &str = "CREATE TABLE IF NOT EXISTS dw_read_routers (
  router_id VARCHAR(128) NOT NULL PRIMARY KEY,
  -- Highest routing version the router has applied (and drained for, when it paused a group).
  version_seen BIGINT UNSIGNED NOT NULL,
  -- Comma-separated cluster names it may read now: active, shadow targets, clusters with reads in flight.
  may_read VARCHAR(255) NOT NULL,
  started_at DATETIME(6) NOT NULL,
  last_seen DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

pub const SHADOW_READS: &str = "CREATE TABLE IF NOT EXISTS dw_shadow_reads (
  router_id VARCHAR(128) NOT NULL,
  interval_start DATETIME NOT NULL,
  table_group VARCHAR(32) NOT NULL,
  query VARCHAR(32) NOT NULL,
  compared BIGINT UNSIGNED NOT NULL,
  mismatches BIGINT UNSIGNED NOT NULL,
  errors BIGINT UNSIGNED NOT NULL,
  -- Not comparable: outside the windows both clusters cover and have settled, or truncated by a limit.
  skipped BIGINT UNSIGNED NOT NULL,
  last_mismatch TEXT NULL,
  PRIMARY KEY (router_id, interval_start, table_group, query)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// One row per run. The columns up to `error` are the contract cutover reads.
pub const VERIFY_RUNS: &str = "CREATE TABLE IF NOT EXISTS dw_verify_runs (
  run_id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  kind VARCHAR(16) NOT NULL,
  target VARCHAR(64) NOT NULL,
  old_cluster VARCHAR(64) NOT NULL,
  new_cluster VARCHAR(64) NOT NULL,
  started_at DATETIME(3) NOT NULL,
  finished_at DATETIME(3) NULL,
  outcome VARCHAR(16) NOT NULL,
  windows_equal INT UNSIGNED,
  windows_different INT UNSIGNED,
  windows_not_settled INT UNSIGNED,
  windows_not_covered INT UNSIGNED,
  rows_compared BIGINT UNSIGNED,
  differences BIGINT UNSIGNED,
  error TEXT NULL,
  -- Windows digested by this run, and windows whose earlier 'equal' was kept without a re-check.
  windows_checked INT UNSIGNED,
  windows_reused INT UNSIGNED,
  -- Late messages applied on each cluster when the run started: a settled window can change only
  -- through one, so an 'equal' is re-checked when either count has grown since.
  late_old BIGINT UNSIGNED,
  late_new BIGINT UNSIGNED,
  range_from DATETIME NULL,
  range_to DATETIME NULL,
  duration_ms BIGINT UNSIGNED,
  KEY by_target (kind, target, run_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// The latest state of every window checked.
pub const VERIFY_WINDOWS: &str = "CREATE TABLE IF NOT EXISTS dw_verify_windows (
  tbl VARCHAR(64) NOT NULL,
  window_start DATETIME NOT NULL,
  window_end DATETIME NOT NULL,
  state VARCHAR(16) NOT NULL,
  old_rows BIGINT UNSIGNED,
  new_rows BIGINT UNSIGNED,
  run_id BIGINT UNSIGNED NOT NULL,
  checked_at DATETIME(3) NOT NULL,
  old_digest CHAR(32) NULL,
  new_digest CHAR(32) NULL,
  differences BIGINT UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (tbl, window_start),
  KEY by_state (state)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// Every differing key of every run.
pub const VERIFY_DIFFERENCES: &str = "CREATE TABLE IF NOT EXISTS dw_verify_differences (
  id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  run_id BIGINT UNSIGNED NOT NULL,
  tbl VARCHAR(64) NOT NULL,
  window_start DATETIME NULL,
  key_text TEXT NOT NULL,
  kind VARCHAR(16) NOT NULL,
  detail JSON NOT NULL,
  KEY by_run (run_id),
  KEY by_window (tbl, window_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// Where an unbounded table's full diff stopped, so the next run resumes.
pub const VERIFY_TABLE_PROGRESS: &str = "CREATE TABLE IF NOT EXISTS dw_verify_table_progress (
  tbl VARCHAR(64) NOT NULL,
  old_cluster VARCHAR(64) NOT NULL,
  new_cluster VARCHAR(64) NOT NULL,
  run_id BIGINT UNSIGNED NOT NULL,
  -- JSON array of the last key compared (every key up to it is done); NULL = from the start.
  resume_key TEXT NULL,
  rows_compared BIGINT UNSIGNED NOT NULL,
  differences BIGINT UNSIGNED NOT NULL,
  done TINYINT NOT NULL,
  updated_at DATETIME(3) NOT NULL,
  PRIMARY KEY (tbl, old_cluster, new_cluster)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// One row per key a repair (`dualwrite-verify repair`) rewrote or looked at:
/// its state (so an interrupted repair resumes), what it did, and the digests
/// (the comparator's SHA-256 row hashes) of the key's rows on the target
/// before and after.
pub const VERIFY_REPAIRS: &str = "CREATE TABLE IF NOT EXISTS dw_verify_repairs (
  run_id BIGINT UNSIGNED NOT NULL,
  -- 'old' or 'new': the authoritative cluster the rows were copied from.
  source VARCHAR(8) NOT NULL,
  tbl VARCHAR(64) NOT NULL,
  -- SHA-256 (hex) of key_text: the key's identity within the run.
  key_id CHAR(64) NOT NULL,
  window_start DATETIME NULL,
  key_text TEXT NOT NULL,
  -- The drill-down's kinds, comma-separated.
  kinds VARCHAR(128) NOT NULL,
  -- pending, applying, repaired, equal (nothing to do), waiting (the fences never lined up), skipped.
  state VARCHAR(16) NOT NULL,
  -- What was done: replaced, inserted, deleted, moved, none.
  action VARCHAR(16) NULL,
  before_digest TEXT NULL,
  after_digest TEXT NULL,
  -- The source and target fence offsets the copy was made at (JSON).
  fences TEXT NULL,
  -- The run that re-verified the key's window (or table).
  reverify_run_id BIGINT UNSIGNED NULL,
  detail TEXT NULL,
  updated_at DATETIME(3) NOT NULL,
  PRIMARY KEY (run_id, source, tbl, key_id),
  KEY by_state (state),
  KEY by_time (updated_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// Shard tables owned by jobs (created on every shard: either cluster may be a copy target).
pub const SHARD_TABLES: [(&str, &str); 1] = [("dw_copier_streams", COPIER_STREAMS)];

/// The routing state, its audit log, the routers' heartbeats and the shadow-read counts (`cutover::state`).
pub const ROUTING_TABLES: [(&str, &str); 4] = [
    ("dw_read_routing", READ_ROUTING),
    ("dw_read_routing_audit", READ_ROUTING_AUDIT),
    ("dw_read_routers", READ_ROUTERS),
    ("dw_shadow_reads", SHADOW_READS),
];

/// The comparators' history (`verify::history`).
pub const VERIFY_TABLES: [(&str, &str); 5] = [
    ("dw_verify_runs", VERIFY_RUNS),
    ("dw_verify_windows", VERIFY_WINDOWS),
    ("dw_verify_differences", VERIFY_DIFFERENCES),
    ("dw_verify_table_progress", VERIFY_TABLE_PROGRESS),
    ("dw_verify_repairs", VERIFY_REPAIRS),
];

/// Columns added after their table was first released: `(table, column,
/// ALTER)`. [`crate::schema::create_missing`] adds them to older tables.
/// (`ADD COLUMN IF NOT EXISTS` is MariaDB-only; MySQL 8 lacks it, hence the check.)
pub const ADDED_COLUMNS: [(&str, &str, &str); 1] = [(
    "dw_read_routing_audit",
    "db_user",
    "ALTER TABLE dw_read_routing_audit ADD COLUMN db_user VARCHAR(384) NOT NULL DEFAULT '' AFTER changed_by",
)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ddl_creates_the_table_it_is_listed_under() {
        for (name, ddl) in SHARD_TABLES.iter().chain(&ROUTING_TABLES).chain(&VERIFY_TABLES) {
            assert!(ddl.starts_with(&format!("CREATE TABLE IF NOT EXISTS {name} (")), "{name}");
        }
        for (table, column, alter) in ADDED_COLUMNS {
            assert!(alter.starts_with(&format!("ALTER TABLE {table} ADD COLUMN {column} ")), "{table}.{column}");
            let (_, ddl) = ROUTING_TABLES.iter().chain(&VERIFY_TABLES).find(|(n, _)| *n == table).expect("listed");
            assert!(ddl.contains(&format!("\n  {column} ")), "{table} creates {column}");
        }
    }
}
