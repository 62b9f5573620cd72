//! When a job that only reads or copies (verify, the copier) must leave a
//! shard alone: the cluster file's optional `[throttle]` thresholds, and one
//! probe of a server's health against them.
//!
//! ```toml
//! [throttle]                        # every field optional; defaults shown
//! max_replica_lag = "10s"           # a replica further behind its primary is left alone
//! max_threads_running = 64          # SHOW GLOBAL STATUS Threads_running
//! max_history_list_length = 1000000 # InnoDB purge backlog (undo records not yet purged)
//! check_every = "1s"                # how often a paused job probes again
//! ```
//!
//! The defaults follow Vitess's VReplication copy throttling
//! (`vreplication_copy_phase_max_innodb_history_list_length` = 1,000,000)
//! and its tablet throttler's lag threshold order of magnitude; a local
//! stack or a test lowers them.
//!
//! The probe runs three statements that read no table of ours and work on
//! MariaDB 10.11 and MySQL 8 alike:
//!
//! - `SHOW REPLICA STATUS` (MariaDB 10.5.1+ and MySQL 8.0.22+; older
//!   servers only know `SHOW SLAVE STATUS`). Its columns differ: MariaDB
//!   answers `Seconds_Behind_Master` / `Slave_SQL_Running` /
//!   `Slave_IO_Running` even under the new statement, MySQL 8 answers
//!   `Seconds_Behind_Source` / `Replica_SQL_Running` / `Replica_IO_Running`.
//!   Both are read by name. No row: the server is not a replica. A NULL lag
//!   (SQL or IO thread stopped) counts as past every threshold.
//!   Privilege: MariaDB 10.11 `SLAVE MONITOR` (alias `REPLICA MONITOR`),
//!   MySQL 8 `REPLICATION CLIENT`.
//! - `SHOW GLOBAL STATUS LIKE 'Threads_running'`: no privilege.
//! - `information_schema.INNODB_METRICS`, `NAME = 'trx_rseg_history_len'`:
//!   enabled by default on both (MariaDB 10.11 checked here; MySQL 8 lists it
//!   among its default-enabled counters); needs `PROCESS`. `SHOW ENGINE
//!   INNODB STATUS` ("History list length N") also works on both but needs
//!   the same privilege and a text parse, so it is not used.
//!
//! A probe that cannot read a value (missing privilege) does not pause the
//! job: it says so once per shard and value, and the value is `None`.

use std::fmt;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde::Deserialize;

/// Validated `[throttle]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Most seconds a replica may be behind its primary.
    pub max_replica_lag: Duration,
    /// Most `Threads_running` on a server.
    pub max_threads_running: u64,
    /// Longest InnoDB history list.
    pub max_history_list_length: u64,
    /// How often a paused job probes again (and how stale a probe may be).
    pub check_every: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            max_replica_lag: Duration::from_secs(10),
            max_threads_running: 64,
            max_history_list_length: 1_000_000,
            check_every: Duration::from_secs(1),
        }
    }
}

/// A `[throttle]` field that is not usable; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("throttle.{field}: {why}")]
pub struct ThrottleError {
    pub field: &'static str,
    pub why: String,
}

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawThrottle {
    max_replica_lag: Option<String>,
    max_threads_running: Option<u64>,
    max_history_list_length: Option<u64>,
    check_every: Option<String>,
}

impl RawThrottle {
    pub(crate) fn validate(self) -> Result<ThrottleConfig, ThrottleError> {
        let d = ThrottleConfig::default();
        let duration = |field: &'static str, text: Option<String>, default: Duration| match text {
            None => Ok(default),
            Some(text) => humantime::parse_duration(&text).map_err(|e| ThrottleError {
                field,
                why: format!("{e} (expected a duration like \"10s\"), got {text:?}"),
            }),
        };
        let config = ThrottleConfig {
            max_replica_lag: duration("max_replica_lag", self.max_replica_lag, d.max_replica_lag)?,
            max_threads_running: self.max_threads_running.unwrap_or(d.max_threads_running),
            max_history_list_length: self.max_history_list_length.unwrap_or(d.max_history_list_length),
            check_every: duration("check_every", self.check_every, d.check_every)?,
        };
        if config.check_every.is_zero() || config.check_every > Duration::from_secs(60) {
            return Err(ThrottleError { field: "check_every", why: "must be from 1ms to 60s".into() });
        }
        if config.max_threads_running == 0 {
            return Err(ThrottleError { field: "max_threads_running", why: "must be at least 1".into() });
        }
        Ok(config)
    }
}

/// What one probe read off a server; `None` where it could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// `Some(true)` when the server is a replica, `Some(false)` when not.
    pub replica: Option<bool>,
    /// Seconds behind its primary; `None` on a replica whose SQL or IO
    /// thread is stopped (the server says NULL) or on a primary.
    pub lag_secs: Option<u64>,
    /// Whether the replica's SQL and IO threads both run.
    pub threads_ok: bool,
    pub threads_running: Option<u64>,
    pub history_list_length: Option<u64>,
    /// Why a value is missing (privileges), one line each.
    pub unreadable: Vec<String>,
}

/// Why a job pauses on a shard: the first threshold the probe is past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pause {
    /// The replica's SQL or IO thread is stopped: its lag is unknown and grows.
    ReplicationStopped,
    ReplicaLag {
        secs: u64,
        max: u64,
    },
    ThreadsRunning {
        running: u64,
        max: u64,
    },
    HistoryListLength {
        length: u64,
        max: u64,
    },
}

impl Pause {
    /// A short label for metrics (`reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Pause::ReplicationStopped => "replication_stopped",
            Pause::ReplicaLag { .. } => "replica_lag",
            Pause::ThreadsRunning { .. } => "threads_running",
            Pause::HistoryListLength { .. } => "history_list_length",
        }
    }

    /// Every reason label, for metrics exported at zero.
    pub const REASONS: [&'static str; 4] =
        ["replication_stopped", "replica_lag", "threads_running", "history_list_length"];
}

impl fmt::Display for Pause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pause::ReplicationStopped => write!(f, "replica SQL or IO thread stopped (lag unknown)"),
            Pause::ReplicaLag { secs, max } => write!(f, "replica {secs}s behind its primary (max {max}s)"),
            Pause::ThreadsRunning { running, max } => write!(f, "Threads_running {running} (max {max})"),
            Pause::HistoryListLength { length, max } => write!(f, "InnoDB history list length {length} (max {max})"),
        }
    }
}

impl Health {
    /// The first threshold this reading is past, if any.
    pub fn pause(&self, limits: &ThrottleConfig) -> Option<Pause> {
        if self.replica == Some(true) {
            match self.lag_secs {
                None => return Some(Pause::ReplicationStopped),
                Some(_) if !self.threads_ok => return Some(Pause::ReplicationStopped),
                Some(secs) if secs > limits.max_replica_lag.as_secs() => {
                    return Some(Pause::ReplicaLag { secs, max: limits.max_replica_lag.as_secs() })
                }
                Some(_) => {}
            }
        }
        if let Some(running) = self.threads_running.filter(|r| *r > limits.max_threads_running) {
            return Some(Pause::ThreadsRunning { running, max: limits.max_threads_running });
        }
        if let Some(length) = self.history_list_length.filter(|l| *l > limits.max_history_list_length) {
            return Some(Pause::HistoryListLength { length, max: limits.max_history_list_length });
        }
        None
    }
}

/// `SHOW REPLICA STATUS` columns, MariaDB's name first, MySQL 8's second.
const LAG_COLUMNS: [&str; 2] = ["Seconds_Behind_Master", "Seconds_Behind_Source"];
const SQL_COLUMNS: [&str; 2] = ["Slave_SQL_Running", "Replica_SQL_Running"];
const IO_COLUMNS: [&str; 2] = ["Slave_IO_Running", "Replica_IO_Running"];

/// Reads `conn`'s server health (three statements; see the module docs).
/// Only a lost connection is an error: an unreadable value is `None`.
pub async fn probe(conn: &mut mysql_async::Conn) -> Result<Health, mysql_async::Error> {
    let mut health = Health::default();
    match conn.query::<mysql_async::Row, _>("SHOW REPLICA STATUS").await {
        Ok(rows) => match rows.into_iter().next() {
            None => health.replica = Some(false),
            Some(row) => {
                health.replica = Some(true);
                health.lag_secs = column(&row, &LAG_COLUMNS).and_then(|v| v.parse().ok());
                let yes = |names: &[&str]| column(&row, names).is_some_and(|v| v.eq_ignore_ascii_case("Yes"));
                health.threads_ok = yes(&SQL_COLUMNS) && yes(&IO_COLUMNS);
            }
        },
        Err(mysql_async::Error::Server(e)) => health.unreadable.push(format!("SHOW REPLICA STATUS: {}", e.message)),
        Err(other) => return Err(other),
    }
    match conn.query_first::<(String, String), _>("SHOW GLOBAL STATUS LIKE 'Threads_running'").await {
        Ok(row) => health.threads_running = row.and_then(|(_, v)| v.parse().ok()),
        Err(mysql_async::Error::Server(e)) => health.unreadable.push(format!("Threads_running: {}", e.message)),
        Err(other) => return Err(other),
    }
    let history = "SELECT `COUNT` FROM information_schema.INNODB_METRICS WHERE NAME = 'trx_rseg_history_len'";
    match conn.query_first::<i64, _>(history).await {
        Ok(Some(length)) => health.history_list_length = u64::try_from(length).ok(),
        Ok(None) => health.unreadable.push("trx_rseg_history_len: not in INNODB_METRICS (no PROCESS?)".into()),
        Err(mysql_async::Error::Server(e)) => health.unreadable.push(format!("INNODB_METRICS: {}", e.message)),
        Err(other) => return Err(other),
    }
    Ok(health)
}

/// The text of the first of `names` the row has, NULL as `None`.
fn column(row: &mysql_async::Row, names: &[&str]) -> Option<String> {
    let columns = row.columns_ref();
    let index = names.iter().find_map(|name| columns.iter().position(|c| c.name_str().eq_ignore_ascii_case(name)))?;
    match row.as_ref(index)? {
        mysql_async::Value::NULL => None,
        mysql_async::Value::Bytes(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        mysql_async::Value::Int(i) => Some(i.to_string()),
        mysql_async::Value::UInt(u) => Some(u.to_string()),
        other => Some(other.as_sql(true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Result<ThrottleConfig, ThrottleError> {
        toml::from_str::<RawThrottle>(text).expect("toml").validate()
    }

    #[test]
    fn defaults_and_fields() {
        assert_eq!(raw("").expect("empty"), ThrottleConfig::default());
        let config = raw("max_replica_lag = \"3s\"\nmax_threads_running = 8\ncheck_every = \"200ms\"").expect("valid");
        assert_eq!(config.max_replica_lag, Duration::from_secs(3));
        assert_eq!(config.max_threads_running, 8);
        assert_eq!(config.check_every, Duration::from_millis(200));
        let message = raw("max_replica_lag = \"soon\"").expect_err("bad").to_string();
        assert!(message.starts_with("throttle.max_replica_lag: "), "{message}");
        let message = raw("max_threads_running = 0").expect_err("zero").to_string();
        assert_eq!(message, "throttle.max_threads_running: must be at least 1");
    }

    #[test]
    fn pauses_on_the_first_threshold_passed() {
        let limits = ThrottleConfig::default();
        let healthy = Health {
            replica: Some(true),
            lag_secs: Some(0),
            threads_ok: true,
            threads_running: Some(3),
            history_list_length: Some(10),
            unreadable: Vec::new(),
        };
        assert_eq!(healthy.pause(&limits), None);
        let stopped = Health { lag_secs: None, threads_ok: false, ..healthy.clone() };
        assert_eq!(stopped.pause(&limits), Some(Pause::ReplicationStopped));
        let behind = Health { lag_secs: Some(11), ..healthy.clone() };
        assert_eq!(behind.pause(&limits), Some(Pause::ReplicaLag { secs: 11, max: 10 }));
        let busy = Health { threads_running: Some(65), ..healthy.clone() };
        assert_eq!(busy.pause(&limits).map(|p| p.reason()), Some("threads_running"));
        let purging = Health { history_list_length: Some(2_000_000), ..healthy.clone() };
        assert_eq!(
            purging.pause(&limits).map(|p| p.to_string()).as_deref(),
            Some("InnoDB history list length 2000000 (max 1000000)")
        );
        let primary = Health { replica: Some(false), lag_secs: None, threads_ok: false, ..healthy };
        assert_eq!(primary.pause(&limits), None, "a primary has no lag");
        assert_eq!(Health::default().pause(&limits), None, "nothing readable: no pause");
    }
}
