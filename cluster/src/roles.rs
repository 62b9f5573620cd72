//! Least privilege: one MySQL login per job, and the GRANT statements that
//! let it do its job and nothing else.
//!
//! Grants are per table wherever a login writes, so a consumer can write the
//! store and its dead letters but cannot touch the routing state or drop a
//! partition, and the query API's reader can write only its own heartbeat
//! and shadow counts. A table-level grant needs its table to exist
//! (MariaDB and MySQL refuse one on a missing table unless it includes
//! CREATE), so grants come after `dualwrite-cluster schema`, which creates
//! every table (`crate::job_tables`); no job then needs a DDL privilege,
//! except retention, whose job is partition DDL.
//!
//! The copier's source side needs, on MariaDB 10.11 (checked on the local
//! stack): `REPLICATION SLAVE` (alias `REPLICATION REPLICA`) for the binlog
//! stream (COM_BINLOG_DUMP), and `BINLOG MONITOR` for `SHOW MASTER STATUS`,
//! `SHOW BINARY LOGS` and `SHOW BINLOG EVENTS`; `BINLOG_GTID_POS()` and
//! `@@gtid_binlog_pos` need nothing. MariaDB 10.5+ takes `REPLICATION
//! CLIENT` as an alias of `BINLOG MONITOR` (SHOW GRANTS then prints BINLOG
//! MONITOR), and MySQL 8 needs `REPLICATION CLIENT` for the same statements,
//! so the one statement below works on both. `REPLICATION SLAVE ADMIN` /
//! `REPLICATION REPLICA ADMIN` (replica threads) and `RELOAD` (FLUSH) are
//! not needed: the snapshot takes no lock.

use std::fmt;
use std::str::FromStr;

use crate::config::{ClusterConfig, Endpoint};
use crate::job_tables::VERIFY_TABLES;
use pipeline::Pipeline;

use crate::schema::{partitioned_tables, store_tables, CONSUMER_TABLES, FENCE_TABLE};

/// What a login is for. The copier has two: its source (old) and target
/// (new) sides need different grants, usually for the same login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `dualwrite-consumer`: writes the store and the fences, records dead letters.
    Consumer,
    /// `dualwrite-retention`: splits and drops time partitions.
    Retention,
    /// `dualwrite-verify`: reads the store, writes its history.
    Verify,
    /// `dualwrite-copier` on the old cluster: snapshot and binlog stream.
    CopierSource,
    /// `dualwrite-copier` on the new cluster: rows and its sidecar.
    CopierTarget,
    /// `dualwrite-cutover` status, switch-reads, rollback, complete: the routing state.
    Operator,
    /// `dualwrite-cutover serve`: reads, plus its heartbeat and shadow counts.
    Reader,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Consumer,
        Role::Retention,
        Role::Verify,
        Role::CopierSource,
        Role::CopierTarget,
        Role::Operator,
        Role::Reader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Consumer => "consumer",
            Role::Retention => "retention",
            Role::Verify => "verify",
            Role::CopierSource => "copier-source",
            Role::CopierTarget => "copier-target",
            Role::Operator => "operator",
            Role::Reader => "reader",
        }
    }

    /// The login the local stack creates for the role (both copier sides share one).
    pub fn default_user(self) -> &'static str {
        match self {
            Role::Consumer => "dw_consumer",
            Role::Retention => "dw_retention",
            Role::Verify => "dw_verify",
            Role::CopierSource | Role::CopierTarget => "dw_copier",
            Role::Operator => "dw_operator",
            Role::Reader => "dw_reader",
        }
    }

    /// Privileges on the whole server (`*.*`), needed on every shard server
    /// (and replica: GRANTs replicate). `PROCESS` lets the throttle
    /// (`crate::throttle`) read the InnoDB history list; `REPLICATION
    /// CLIENT` lets it read `SHOW REPLICA STATUS` on MySQL 8 (on MariaDB it
    /// is `BINLOG MONITOR`, and [`apply`] adds `SLAVE MONITOR` there).
    fn global(self) -> Option<&'static str> {
        match self {
            Role::CopierSource => Some("REPLICATION SLAVE, REPLICATION CLIENT, PROCESS"),
            Role::Verify => Some("REPLICATION CLIENT, PROCESS"),
            Role::CopierTarget => Some("PROCESS"),
            _ => None,
        }
    }

    /// Whether the throttle reads replica status with this role's login.
    fn reads_replica_status(self) -> bool {
        matches!(self, Role::Verify | Role::CopierSource)
    }

    /// `(privileges, table or None for the whole database)` on a shard's
    /// database, for the tables of `pipeline`.
    fn on_shards(self, pipeline: &Pipeline) -> Vec<(&'static str, Option<String>)> {
        let unbounded = || pipeline.unbounded().map(|t| t.name.clone());
        match self {
            Role::Consumer => {
                store_tables(pipeline).into_iter().map(|t| ("SELECT, INSERT, UPDATE", Some(t.to_string()))).collect()
            }
            Role::Retention => partitioned_tables(pipeline)
                .into_iter()
                // ALTER ... REORGANIZE / DROP / TRUNCATE PARTITION
                .map(|(t, _)| ("SELECT, ALTER, DROP", Some(t.to_string())))
                .chain([("SELECT", Some(FENCE_TABLE.to_string()))])
                .collect(),
            Role::Verify | Role::Operator | Role::Reader => vec![("SELECT", None)],
            Role::CopierSource => unbounded().map(|t| ("SELECT", Some(t))).collect(),
            Role::CopierTarget => unbounded()
                .chain(["dw_copier_streams".to_string()])
                .map(|t| ("SELECT, INSERT, UPDATE, DELETE", Some(t)))
                .collect(),
        }
    }

    /// `(privileges, table or None for the whole database)` on the control database.
    fn on_control(self) -> Vec<(&'static str, Option<&'static str>)> {
        match self {
            Role::Consumer => CONSUMER_TABLES
                .iter()
                .map(|(t, _)| {
                    // a member that stops cleanly deletes its heartbeat row
                    let privileges = if *t == "dw_consumer_members" {
                        "SELECT, INSERT, UPDATE, DELETE"
                    } else {
                        "SELECT, INSERT, UPDATE"
                    };
                    (privileges, Some(*t))
                })
                .collect(),
            Role::Verify => VERIFY_TABLES.iter().map(|(t, _)| ("SELECT, INSERT, UPDATE, DELETE", Some(*t))).collect(),
            Role::Operator => vec![
                ("SELECT", None),
                ("INSERT, UPDATE", Some("dw_read_routing")),
                ("INSERT", Some("dw_read_routing_audit")),
            ],
            Role::Reader => vec![
                ("SELECT", None),
                ("INSERT, UPDATE, DELETE", Some("dw_read_routers")),
                ("INSERT, UPDATE", Some("dw_shadow_reads")),
            ],
            Role::Retention | Role::CopierSource | Role::CopierTarget => Vec::new(),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error(
        "role: unknown {0:?} (one of consumer, retention, verify, copier-source, copier-target, operator, reader)"
    )]
    UnknownRole(String),
    #[error("user: must match [A-Za-z0-9_]{{1,32}} (MySQL 8's limit), got {0:?}")]
    User(String),
    #[error("host: must be a host name, an IP address or a pattern of [A-Za-z0-9_.%:-], got {0:?}")]
    Host(String),
    #[error("{target} ({endpoint}): {statement}: {source}")]
    Sql { target: String, endpoint: String, statement: String, source: mysql_async::Error },
}

impl FromStr for Role {
    type Err = RoleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| RoleError::UnknownRole(s.to_owned()))
    }
}

/// A MySQL account, `'user'@'host'`, checked so it can be spliced into SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub host: String,
}

impl Account {
    pub fn new(user: &str, host: &str) -> Result<Self, RoleError> {
        let user_ok = (1..=32).contains(&user.len()) && user.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !user_ok {
            return Err(RoleError::User(user.to_owned()));
        }
        let host_ok = (1..=255).contains(&host.len())
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '%' | ':' | '-'));
        if !host_ok {
            return Err(RoleError::Host(host.to_owned()));
        }
        Ok(Self { user: user.to_owned(), host: host.to_owned() })
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'@'{}'", self.user, self.host)
    }
}

/// The GRANT statements of `role` on one server: on its shard database
/// `store` and on its control database `control` (either may be absent).
/// Database names must be plain identifiers (cluster files guarantee it).
pub fn statements(
    role: Role,
    pipeline: &Pipeline,
    account: &Account,
    store: Option<&str>,
    control: Option<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut grant = |privileges: &str, database: &str, table: Option<&str>| {
        let object = match table {
            Some(t) => format!("`{database}`.`{t}`"),
            None => format!("`{database}`.*"),
        };
        out.push(format!("GRANT {privileges} ON {object} TO {account}"));
    };
    if let Some(db) = store {
        for (privileges, table) in role.on_shards(pipeline) {
            grant(privileges, db, table.as_deref());
        }
    }
    if let Some(db) = control {
        for (privileges, table) in role.on_control() {
            grant(privileges, db, table);
        }
    }
    if let (Some(privileges), Some(_)) = (role.global(), store) {
        out.push(format!("GRANT {privileges} ON *.* TO {account}"));
    }
    out
}

/// What to run where: one entry per shard and one for the control database.
pub struct Grants<'a> {
    pub target: String,
    pub endpoint: &'a Endpoint,
    pub statements: Vec<String>,
}

/// The grants of `role` on every endpoint of `config`.
pub fn plan<'a>(config: &'a ClusterConfig, role: Role, account: &Account) -> Vec<Grants<'a>> {
    let mut out: Vec<Grants<'a>> = config
        .shards
        .iter()
        .map(|s| Grants {
            target: format!("cluster {} shard {}", config.name, s.range),
            endpoint: &s.endpoint,
            statements: statements(role, &config.pipeline, account, Some(&s.endpoint.database), None),
        })
        .collect();
    if let Some(control) = &config.control {
        out.push(Grants {
            target: format!("cluster {} control", config.name),
            endpoint: control,
            statements: statements(role, &config.pipeline, account, None, Some(&control.database)),
        });
    }
    out.retain(|g| !g.statements.is_empty());
    out
}

/// Runs [`plan`] with the cluster file's own login (an administrator with
/// GRANT OPTION); the account must exist. Idempotent.
pub async fn apply(config: &ClusterConfig, role: Role, account: &Account) -> Result<(), RoleError> {
    use mysql_async::prelude::Queryable;

    for grants in plan(config, role, account) {
        let sql_err = |statement: &str, source| RoleError::Sql {
            target: grants.target.clone(),
            endpoint: grants.endpoint.to_string(),
            statement: statement.to_owned(),
            source,
        };
        let opts = mysql_async::OptsBuilder::from_opts(crate::pool::opts_for(grants.endpoint, &config.auth))
            .db_name(None::<String>);
        let mut conn = mysql_async::Conn::new(opts).await.map_err(|e| sql_err("connect", e))?;
        for statement in &grants.statements {
            conn.query_drop(statement).await.map_err(|e| sql_err(statement, e))?;
        }
        // MariaDB 10.5+ splits replica status (SLAVE MONITOR) from REPLICATION
        // CLIENT (= BINLOG MONITOR there); MySQL 8 has no SLAVE MONITOR.
        let global = grants.statements.iter().any(|s| s.contains("ON *.*"));
        if global && role.reads_replica_status() {
            let version: Option<String> =
                conn.query_first("SELECT VERSION()").await.map_err(|e| sql_err("SELECT VERSION()", e))?;
            if version.is_some_and(|v| v.contains("MariaDB")) {
                let statement = format!("GRANT SLAVE MONITOR ON *.* TO {account}");
                conn.query_drop(&statement).await.map_err(|e| sql_err(&statement, e))?;
            }
        }
        let _ = conn.disconnect().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account {
        Account::new("dw_x", "127.0.0.1").expect("account")
    }

    #[test]
    fn roles_parse_from_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().expect("parses"), role);
        }
        let message = "copier".parse::<Role>().expect_err("ambiguous").to_string();
        assert!(message.starts_with("role: unknown \"copier\""), "{message}");
    }

    #[test]
    fn accounts_are_checked_before_they_reach_sql() {
        assert_eq!(account().to_string(), "'dw_x'@'127.0.0.1'");
        assert!(Account::new("dw_x", "10.0.%").is_ok());
        let message = Account::new("x'; DROP", "h").expect_err("quote").to_string();
        assert!(message.starts_with("user: "), "{message}");
        assert!(Account::new(&"u".repeat(33), "h").is_err());
        assert!(Account::new("u", "h'").expect_err("quote").to_string().starts_with("host: "));
    }

    #[test]
    fn writers_get_table_grants_and_no_ddl_except_retention() {
        for role in Role::ALL {
            for statement in statements(role, &Pipeline::insights(), &account(), Some("s"), Some("c")) {
                let writes = ["INSERT", "UPDATE", "DELETE", "ALTER", "DROP"].iter().any(|p| statement.contains(p));
                if writes {
                    assert!(!statement.contains(".*"), "{role}: a write grant on a whole database: {statement}");
                }
                assert!(!statement.contains("CREATE"), "{role}: {statement}");
                if statement.contains("ALTER") || statement.contains("DROP") {
                    assert_eq!(role, Role::Retention, "{statement}");
                }
            }
        }
    }

    #[test]
    fn every_granted_table_is_one_the_schema_creates() {
        use crate::job_tables::{ROUTING_TABLES, SHARD_TABLES};
        let insights = Pipeline::insights();
        let known: Vec<&str> = store_tables(&insights)
            .into_iter()
            .chain(SHARD_TABLES.iter().chain(&ROUTING_TABLES).chain(&VERIFY_TABLES).map(|(n, _)| *n))
            .chain(CONSUMER_TABLES.iter().map(|(n, _)| *n))
            .collect();
        for role in Role::ALL {
            for statement in statements(role, &Pipeline::insights(), &account(), Some("s"), Some("c")) {
                let Some(table) = statement.split(".`").nth(1).and_then(|t| t.split('`').next()) else { continue };
                assert!(known.contains(&table), "{role}: {statement}");
            }
        }
    }

    #[test]
    fn the_reader_writes_only_its_heartbeat_and_shadow_counts() {
        let writes: Vec<String> = statements(Role::Reader, &Pipeline::insights(), &account(), Some("s"), Some("c"))
            .into_iter()
            .filter(|s| !s.starts_with("GRANT SELECT ON"))
            .collect();
        assert_eq!(
            writes,
            [
                "GRANT INSERT, UPDATE, DELETE ON `c`.`dw_read_routers` TO 'dw_x'@'127.0.0.1'",
                "GRANT INSERT, UPDATE ON `c`.`dw_shadow_reads` TO 'dw_x'@'127.0.0.1'",
            ]
        );
    }

    #[test]
    fn only_the_copier_and_verify_get_server_privileges_and_only_on_shards() {
        for role in Role::ALL {
            let global = statements(role, &Pipeline::insights(), &account(), Some("s"), None)
                .into_iter()
                .any(|s| s.contains("*.*"));
            let wants = matches!(role, Role::CopierSource | Role::Verify | Role::CopierTarget);
            assert_eq!(global, wants, "{role}");
            let control_only = statements(role, &Pipeline::insights(), &account(), None, Some("c"));
            assert!(control_only.iter().all(|s| !s.contains("*.*")), "{role}");
        }
    }
}
