//! Why a comparator could not run. Any of these ends a run with exit code 2:
//! nothing was proven either way.

/// A comparator failure; the message names the cluster, shard or file.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The two cluster files fold events into different windows or settle them
    /// at different times: their rows cannot be compared window by window.
    #[error(
        "the clusters' [time] sections differ: old has minute_window {old_minute:?}, hour_window {old_hour:?}, \
         allowed_lateness {old_lateness:?}; new has {new_minute:?}, {new_hour:?}, {new_lateness:?}"
    )]
    TimeMismatch {
        old_minute: std::time::Duration,
        old_hour: std::time::Duration,
        old_lateness: std::time::Duration,
        new_minute: std::time::Duration,
        new_hour: std::time::Duration,
        new_lateness: std::time::Duration,
    },
    /// The two cluster files describe different pipelines: their rows are
    /// not the same tables and cannot be compared.
    #[error("the clusters' pipelines differ ({why}): old has pipeline {old}; new has {new}")]
    PipelineMismatch { old: String, new: String, why: String },
    /// The new cluster file has no `[control]` database to keep results in.
    #[error("cluster {0}: no [control] dsn: the comparator keeps its history in the control database")]
    NoControl(String),
    /// A shard query failed.
    #[error("cluster {cluster} shard {shard}: {source}")]
    Shard { cluster: String, shard: String, source: mysql_async::Error },
    /// The control database failed.
    #[error("control database: {0}")]
    Control(mysql_async::Error),
    /// A result had an unexpected shape (a schema that drifted from this code).
    #[error("{0}")]
    Unexpected(String),
    /// Bad arguments (time range, table name).
    #[error("{0}")]
    Usage(String),
    /// Writing the report.
    #[error("report {path}: {source}")]
    Report { path: String, source: std::io::Error },
    /// Stopped by a shutdown request before the end.
    #[error("stopped by shutdown before the end")]
    Cancelled,
}
