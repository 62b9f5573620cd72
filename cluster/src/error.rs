//! Errors of the cluster file.
//!
//! Every message starts with the field it is about (`shards[2].range: ...`,
//! `auth.password_file: ...`) because the reader is an operator looking at a
//! TOML file, not at our code.
//!
//! Wrapped errors are part of the message rather than `#[source]`: a config
//! error is printed once to a human, and a message that is complete on its own
//! (with `to_string()`) beats one that repeats itself under `{:#}`.

use std::path::PathBuf;

use crate::keyrange::{KeyRange, KeyRangeError};
use crate::secret::SecretError;

/// Why a cluster file (or a copy of it re-pointed at another database) is
/// not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The cluster file itself cannot be read.
    #[error("cannot read cluster file {}: {error}", path.display())]
    ReadFile {
        /// The path as given to `ClusterConfig::load`.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },

    /// Not TOML, a missing or mistyped field, or an unknown field (every
    /// table denies unknown fields so a typo never silently means "default").
    /// The message names the line, the column and the field, but never
    /// quotes the line (the parser's usual snippet): it may be a password
    /// someone pasted into the wrong field.
    #[error("invalid cluster file: {error}")]
    Toml {
        /// `line L, column C: <the parser's message>`.
        error: String,
    },

    /// `name` does not match `[a-z0-9_]+`: it becomes part of metric labels,
    /// consumer group ids and table names, so it is kept boring.
    #[error("name: must match [a-z0-9_]+ (1 to 64 characters), got {value:?}")]
    Name {
        /// The rejected name.
        value: String,
    },

    /// `auth.user` is empty.
    #[error("auth.user: must not be empty")]
    EmptyUser,

    /// The password could not be loaded from `auth.password_env` or
    /// `auth.password_file` (the secret error names which).
    #[error("auth.{error}")]
    Password {
        /// What went wrong; it never contains the password.
        error: SecretError,
    },

    /// The pipeline description (`pipeline = "..."`) cannot be read or is
    /// not valid; the message names its table, column and field.
    #[error("pipeline: {error}")]
    Pipeline {
        /// What is wrong with the description.
        error: pipeline::LoadError,
    },

    /// No `[[shards]]` entry at all.
    #[error("shards: at least one [[shards]] entry is needed")]
    NoShards,

    /// A `[time]` field is malformed or breaks the nesting of windows and
    /// partitions (the error names the field).
    #[error("{error}")]
    Time {
        /// Which field, and why.
        error: crate::time::TimeError,
    },

    /// A shard's `range` is not a Vitess key range.
    #[error("shards[{index}].range: {error}")]
    Range {
        /// Position of the shard in the file (0-based, file order).
        index: usize,
        /// What is wrong with the range.
        error: KeyRangeError,
    },

    /// Two shards claim the same keyspace ids.
    #[error("shards[{index}].range: \"{range}\" overlaps shards[{other}] \"{other_range}\"")]
    Overlap {
        /// The later of the two shards in file order.
        index: usize,
        /// Its range.
        range: KeyRange,
        /// The earlier of the two shards in file order.
        other: usize,
        /// Its range.
        other_range: KeyRange,
    },

    /// Some keyspace ids belong to no shard. `lower` is the shard that ends
    /// where the gap starts (none: the gap starts at the beginning), `upper`
    /// the shard that starts where the gap ends (none: it runs to the end).
    #[error("shards: {}", gap_message(lower.as_ref(), upper.as_ref()))]
    Gap {
        /// `(file index, range)` of the shard just below the gap.
        lower: Option<(usize, KeyRange)>,
        /// `(file index, range)` of the shard just above the gap.
        upper: Option<(usize, KeyRange)>,
    },

    /// A DSN (`shards[i].dsn`, `control.dsn`) is unusable.
    #[error("{field}: {error}")]
    Dsn {
        /// The field, e.g. `shards[0].dsn`.
        field: String,
        /// What is wrong with it. Never contains the DSN text, which may hold
        /// a password.
        error: DsnError,
    },

    /// A replica DSN names the shard's own primary.
    #[error("{field}: names the shard's own primary (same host and port as shards[i].dsn)")]
    ReplicaIsPrimary {
        /// The field, e.g. `shards[0].replicas[1]`.
        field: String,
    },

    /// A `[throttle]` field is unusable (the error names the field).
    #[error("{error}")]
    Throttle {
        /// Which field, and why.
        error: crate::throttle::ThrottleError,
    },

    /// A `tls` table (`tls`, `shards[i].tls`, `control.tls`) is unusable.
    #[error("{field}.{error}")]
    Tls {
        /// Which table: the endpoint's own, or `tls` when it inherits.
        field: String,
        /// Which of its fields, and why.
        error: crate::tls::TlsConfigError,
    },

    /// A database name given to `with_database` / `with_control_database`
    /// is not a plain identifier.
    #[error("{field}: {error}")]
    Identifier {
        /// What the name was for, e.g. `database`.
        field: String,
        /// Why it was rejected.
        error: IdentifierError,
    },
}

fn gap_message(lower: Option<&(usize, KeyRange)>, upper: Option<&(usize, KeyRange)>) -> String {
    match (lower, upper) {
        (Some((li, lr)), Some((ui, ur))) => format!(
            "gap between shards[{li}] \"{lr}\" and shards[{ui}] \"{ur}\": keyspace ids from {} to {} are in no shard",
            hex_or(&lr.end, "the end"),
            hex_or(&ur.start, "the beginning"),
        ),
        (None, Some((ui, ur))) => format!(
            "gap before shards[{ui}] \"{ur}\": keyspace ids from the beginning to {} are in no shard \
             (the lowest range must start empty, like \"-40\")",
            hex_or(&ur.start, "the beginning"),
        ),
        (Some((li, lr)), None) => format!(
            "gap after shards[{li}] \"{lr}\": keyspace ids from {} to the end are in no shard \
             (the highest range must end empty, like \"c0-\")",
            hex_or(&lr.end, "the end"),
        ),
        (None, None) => "gap: no shard covers the keyspace".to_owned(),
    }
}

fn hex_or(bytes: &[u8], empty: &str) -> String {
    if bytes.is_empty() {
        return empty.to_owned();
    }
    crate::sql::hex_digits(bytes)
}

/// Why a `mysql://` DSN is rejected. Messages never quote the DSN: it may
/// hold a password.
#[derive(Debug, thiserror::Error)]
pub enum DsnError {
    /// Not a URL at all.
    #[error("not a valid URL: {0}")]
    Url(url::ParseError),

    /// Anything but `mysql://`.
    #[error("scheme must be mysql, got {0:?}")]
    Scheme(String),

    /// A password in the DSN would end up in files, logs and `ps` output.
    #[error("contains a password: remove it from the DSN and set auth.password_file or auth.password_env")]
    Password,

    /// `mysql:///db` and friends.
    #[error("has no host: expected mysql://user@host:port/database")]
    MissingHost,

    /// Port 0 is never a server.
    #[error("port 0 is not a valid port")]
    ZeroPort,

    /// No path: we never connect without a default database, so a shard's
    /// tables can't be created in whatever database the user happens to land in.
    #[error("has no database: expected mysql://user@host:port/database")]
    MissingDatabase,

    /// The path is not a plain database identifier.
    #[error("database: {0}")]
    Database(IdentifierError),

    /// The user name is not valid percent-encoded UTF-8.
    #[error("user is not valid percent-encoded UTF-8")]
    User,

    /// Query parameters or a fragment: connection options live in code
    /// (`pool::opts_for`), so every process connects the same way.
    #[error("{0} are not supported: connection options are fixed by dualwrite")]
    Unsupported(&'static str),
}

/// A name that will be spliced into SQL (a database, a table) and is not a
/// plain identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must match ^[A-Za-z_][A-Za-z0-9_]{{0,63}}$, got {value:?}")]
pub struct IdentifierError {
    /// The rejected text.
    pub value: String,
}
