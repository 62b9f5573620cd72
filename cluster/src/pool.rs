//! One `mysql_async` pool per shard (and one for the control database),
//! all configured the same way.
//!
//! Never format a `mysql_async::Pool` or `Opts` with `{:?}`: their derived
//! `Debug` prints the password. [`ShardPools`] has a `Debug` that doesn't.

use std::fmt;

use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};

use crate::config::{Auth, ClusterConfig, Endpoint};

/// Fewest connections a pool keeps open.
pub const MIN_CONNECTIONS: usize = 1;

/// Most connections a pool opens. A consumer or verifier holds one
/// connection per shard per in-flight batch; 8 leaves room for a few batches
/// and a comparator without one process exhausting a shard's `max_connections`.
pub const MAX_CONNECTIONS: usize = 8;

const POOL_CONSTRAINTS: PoolConstraints = match PoolConstraints::new(MIN_CONNECTIONS, MAX_CONNECTIONS) {
    Some(constraints) => constraints,
    // Evaluated at compile time: a bad pair of constants fails the build.
    None => panic!("MIN_CONNECTIONS must be <= MAX_CONNECTIONS and MAX_CONNECTIONS > 0"),
};

/// Session settings every connection runs with.
///
/// - UTC, so `TIMESTAMP` windows mean the same instant on every shard and both
///   clusters, whatever each server's time zone.
/// - Strict mode, so an out-of-range or truncated value is an error rather
///   than a silently different row on one cluster.
///
/// They go in `setup`, not `init`: a pooled connection is reset with
/// `COM_RESET_CONNECTION` when it returns to the pool (mysql_async's default),
/// which drops session variables; mysql_async re-runs `setup` after every
/// reset but `init` only once per physical connection.
pub const SESSION_SETUP: [&str; 2] =
    ["SET time_zone = '+00:00'", "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'"];

/// Connection options for one endpoint: TCP (never a Unix socket, even on
/// localhost: the local stack runs several servers on one host and the port
/// is what tells them apart), the endpoint's database, UTC and strict mode
/// (see [`SESSION_SETUP`]), 1 to 8 connections, TLS as the endpoint's
/// `[tls]` says (the copier's binlog connection uses these options too).
///
/// The result holds the password: do not log it with `{:?}`.
pub fn opts_for(endpoint: &Endpoint, auth: &Auth) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname(endpoint.host.as_str())
        .tcp_port(endpoint.port)
        .prefer_socket(false)
        .user(Some(endpoint.user.as_str()))
        .pass(auth.password.as_ref().map(|secret| secret.expose_secret()))
        .db_name(Some(endpoint.database.as_str()))
        .ssl_opts(endpoint.tls.ssl_opts())
        .setup(SESSION_SETUP.to_vec())
        .pool_opts(PoolOpts::default().with_constraints(POOL_CONSTRAINTS))
        .into()
}

/// Why an endpoint could not be reached, in one line: the cluster, which
/// endpoint (shard range or control) and where, the cause in words when it is
/// about TLS or credentials, then the driver's own message.
#[derive(Debug, thiserror::Error)]
#[error("cluster {cluster}, {target} ({endpoint}): {cause}")]
pub struct ConnectError {
    /// The cluster's name.
    pub cluster: String,
    /// `shard -80` or `control`.
    pub target: String,
    /// The endpoint (`mysql://user@host:port/db`, no password).
    pub endpoint: String,
    /// What went wrong, newlines folded so the error stays one line.
    pub cause: String,
}

/// Connects once to every shard and the control endpoint (no default
/// database, so it works before `dualwrite-cluster schema` created one) and
/// names the first that fails. Jobs call it at start so a wrong CA, a name
/// mismatch or a plaintext client against a TLS-only server is one clear
/// line before any work, rather than a driver error deep in a batch.
pub async fn preflight(config: &ClusterConfig) -> Result<(), ConnectError> {
    let mut targets: Vec<(String, &Endpoint)> =
        config.shards.iter().map(|s| (format!("shard {}", s.range), &s.endpoint)).collect();
    if let Some(control) = &config.control {
        targets.push(("control".to_owned(), control));
    }
    let checks = targets.into_iter().map(|(target, endpoint)| async move {
        let opts = OptsBuilder::from_opts(opts_for(endpoint, &config.auth)).db_name(None::<String>);
        match mysql_async::Conn::new(opts).await {
            Ok(conn) => {
                // A failed COM_QUIT only leaves a connection for the server to time out.
                let _ = conn.disconnect().await;
                Ok(())
            }
            Err(error) => Err(ConnectError {
                cluster: config.name.clone(),
                target,
                endpoint: endpoint.to_string(),
                cause: describe(&error, &endpoint.tls),
            }),
        }
    });
    futures::future::join_all(checks).await.into_iter().collect()
}

/// `error` as one line, led by what it means when [`crate::tls::explain`]
/// knows.
pub fn describe(error: &mysql_async::Error, tls: &crate::tls::TlsConfig) -> String {
    let raw = error.to_string().replace(['\n', '\r'], " ");
    match crate::tls::explain(error, tls) {
        Some(meaning) => format!("{meaning} [{raw}]"),
        None => raw,
    }
}

/// The connection pools of one cluster: `shard(i)` serves
/// `config.shards[i]`. Pools connect lazily, so building them needs no
/// network (and no runtime).
pub struct ShardPools {
    /// One pool per shard, in the config's (sorted) shard order.
    shards: Vec<Pool>,
    /// The control database's pool, when the cluster has one.
    control: Option<Pool>,
}

impl ShardPools {
    /// Builds a pool per shard and one for the control endpoint, if any.
    pub fn new(config: &ClusterConfig) -> Self {
        let shards = config.shards.iter().map(|shard| Pool::new(opts_for(&shard.endpoint, &config.auth))).collect();
        let control = config.control.as_ref().map(|endpoint| Pool::new(opts_for(endpoint, &config.auth)));
        Self { shards, control }
    }

    /// The pool of shard `index` (the index from
    /// [`ClusterConfig::shard_index_for`]).
    ///
    /// # Panics
    ///
    /// If `index >= self.len()`, like slice indexing: shard indices come from
    /// the same config, so that is a bug, not an input error.
    pub fn shard(&self, index: usize) -> &Pool {
        &self.shards[index]
    }

    /// All shard pools, in shard order.
    pub fn shards(&self) -> &[Pool] {
        &self.shards
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Whether there are no shards (never, for a pool set built from a
    /// validated config).
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// The control database's pool, when the cluster has one.
    pub fn control(&self) -> Option<&Pool> {
        self.control.as_ref()
    }

    /// Closes every pool, waiting for connections in use to come back. A
    /// pool that fails to close is logged and skipped: at shutdown there is
    /// nothing better to do, and the others should still close.
    pub async fn disconnect(self) {
        for (shard, pool) in self.shards.into_iter().enumerate() {
            if let Err(error) = pool.disconnect().await {
                tracing::warn!(shard, %error, "closing shard pool failed");
            }
        }
        if let Some(pool) = self.control {
            if let Err(error) = pool.disconnect().await {
                tracing::warn!(%error, "closing control pool failed");
            }
        }
    }
}

/// Counts only: a `Pool`'s own `Debug` would print the password.
impl fmt::Debug for ShardPools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardPools")
            .field("shards", &self.shards.len())
            .field("control", &self.control.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::secret::Secret;

    fn config() -> ClusterConfig {
        let text = r#"
name = "new"
[auth]
user = "dualwrite"
password_env = "DW_PW"
[control]
dsn = "mysql://127.0.0.1:33300/dualwrite_control"
[[shards]]
range = "-80"
dsn = "mysql://127.0.0.1:33301/dualwrite"
[[shards]]
range = "80-"
dsn = "mysql://other@localhost:33302/dualwrite"
"#;
        let env = |name: &str| (name == "DW_PW").then(|| "hunter2".to_owned());
        ClusterConfig::from_toml_str(text, Path::new("."), &env).expect("valid")
    }

    #[test]
    fn opts_connect_over_tcp_with_utc_and_strict_mode() {
        let config = config();
        let opts = opts_for(&config.shards[1].endpoint, &config.auth);
        assert_eq!(opts.ip_or_hostname(), "localhost");
        assert_eq!(opts.tcp_port(), 33302);
        assert!(!opts.prefer_socket());
        assert_eq!(opts.user(), Some("other"));
        assert_eq!(opts.pass(), Some("hunter2"));
        assert_eq!(opts.db_name(), Some("dualwrite"));
        assert_eq!(opts.setup(), SESSION_SETUP);
        assert_eq!(opts.pool_opts().constraints(), POOL_CONSTRAINTS);
        assert_eq!((POOL_CONSTRAINTS.min(), POOL_CONSTRAINTS.max()), (1, 8));
    }

    #[test]
    fn opts_without_password() {
        let auth = Auth { user: "dualwrite".into(), password: None };
        let config = config();
        assert_eq!(opts_for(&config.shards[0].endpoint, &auth).pass(), None);
        let auth = Auth { password: Some(Secret::new("x")), ..auth };
        assert_eq!(opts_for(&config.shards[0].endpoint, &auth).pass(), Some("x"));
    }

    #[test]
    fn builds_one_pool_per_shard_plus_control() {
        let pools = ShardPools::new(&config());
        assert_eq!(pools.len(), 2);
        assert!(!pools.is_empty());
        assert!(pools.control().is_some());
        assert_eq!(pools.shards().len(), 2);
        let _first: &Pool = pools.shard(0);
        let debug = format!("{pools:?}");
        assert_eq!(debug, "ShardPools { shards: 2, control: true }");
        assert!(!debug.contains("hunter2"));
    }
}
