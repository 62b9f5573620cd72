//! What can stop a stream, and whether retrying can help.
//!
//! Fatal errors carry the remedy in their message: an operator reading
//! `status` or the log must know what to do without reading code.

/// A stream's error.
#[derive(Debug, thiserror::Error)]
pub enum CopierError {
    /// The binlog the stream must resume from is gone from the source.
    #[error(
        "binlog purged: source shard {source_shard} no longer has the binlog at {position} (server said: {message}); \
         remedy: keep binlogs longer on the source (binlog_expire_logs_seconds), then restart this stream from \
         scratch with `dualwrite-copier reset --to <new.toml> --table {table} --source-shard {source_shard}` \
         and start again"
    )]
    BinlogPurged { table: String, source_shard: String, position: String, message: String },

    /// A statement in the binlog changed the copied table.
    #[error(
        "ddl on copied table: source shard {source_shard} ran `{statement}` at {position}; the copier cannot carry \
         schema changes; remedy: apply the same change to the table on every new shard, then \
         `dualwrite-copier reset --to <new.toml> --table {table} --source-shard {source_shard}` and start again \
         (a TRUNCATE or DROP also needs the target rows removed)"
    )]
    Ddl { table: String, source_shard: String, statement: String, position: String },

    /// The source table has no primary key.
    #[error(
        "no primary key: table {table} has none on the source, so rows cannot be read in key order or matched to \
         binlog events; remedy: add the primary key ({key}) on every old shard, then start again"
    )]
    NoPrimaryKey { table: String, key: String },

    /// The source table (or a binlog table map) does not have the shape the copier expects.
    #[error(
        "schema mismatch on {table}: {why}; remedy: make the source table match the pipeline's description \
         (`dualwrite-cluster schema --dry-run` prints its DDL), then start again"
    )]
    Schema { table: String, why: String },

    /// A server setting makes an exact copy impossible.
    #[error("source setting: {why}")]
    SourceSetting { why: String },
    /// A stream moving to another server of its shard cannot find its GTID
    /// there yet (a replica behind the stream): retried, so the stream waits.
    #[error("stream {source_shard}: GTID {gtid} not found on the server read now ({why}); retrying until it is there")]
    GtidNotYet { source_shard: String, gtid: String, why: String },

    /// A binlog event the copier could not decode.
    #[error("binlog decode at {position}: {why}")]
    Decode { position: String, why: String },

    /// Invalid flags or cluster files.
    #[error("config: {0}")]
    Config(String),

    /// A server or network error; retried unless [`CopierError::is_fatal`] says otherwise.
    #[error("mysql: {0}")]
    Mysql(#[from] mysql_async::Error),
}

impl CopierError {
    /// Whether retrying the stream cannot help: every kind but a MySQL
    /// error, and MySQL errors that `cluster::retry` does not call retryable
    /// (syntax, access, unknown table, a value the target refuses).
    pub fn is_fatal(&self) -> bool {
        match self {
            CopierError::Mysql(e) => !cluster::retry::is_retryable(e),
            CopierError::GtidNotYet { .. } => false,
            _ => true,
        }
    }

    /// A short kind for metrics labels and `status --json`.
    pub fn kind(&self) -> &'static str {
        match self {
            CopierError::BinlogPurged { .. } => "binlog_purged",
            CopierError::Ddl { .. } => "ddl",
            CopierError::NoPrimaryKey { .. } => "no_primary_key",
            CopierError::Schema { .. } => "schema",
            CopierError::SourceSetting { .. } => "source_setting",
            CopierError::GtidNotYet { .. } => "gtid_not_yet",
            CopierError::Decode { .. } => "decode",
            CopierError::Config(_) => "config",
            CopierError::Mysql(_) => "mysql",
        }
    }
}
