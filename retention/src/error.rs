//! Errors of the retention job, classified for the daemon's retry decision.

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("shard {shard}: {source}")]
    Sql { shard: String, source: Box<mysql_async::Error> },
    /// The table is not laid out the way this job manages (fatal until fixed).
    #[error("shard {shard}: {table}: {why}")]
    Layout { shard: String, table: String, why: String },
    /// A partition change failed; the table is as it was before the statement.
    #[error("shard {shard}: {table}: {statement}: {source}")]
    Alter { shard: String, table: String, statement: String, source: Box<mysql_async::Error> },
    #[error("{field}: {why}")]
    Config { field: &'static str, why: String },
}

impl RetentionError {
    pub fn sql(shard: impl Into<String>, source: mysql_async::Error) -> Self {
        Self::Sql { shard: shard.into(), source: Box::new(source) }
    }

    /// Worth another attempt on the next run: a database error that
    /// `cluster::retry` calls retryable (a lock wait, a server away); layout,
    /// configuration and other database errors need an operator.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Sql { source, .. } | Self::Alter { source, .. } => cluster::retry::is_retryable(source),
            Self::Layout { .. } | Self::Config { .. } => false,
        }
    }
}
