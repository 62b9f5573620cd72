//! The cluster file: which shards a cluster has, which keyspace ids each
//! owns, and how to reach them.
//!
//! ```toml
//! name = "old"
//! [auth]
//! user = "dualwrite"
//! password_file = "secrets/mysql_password"   # or password_env = "…"; neither = no password
//! [control]                                  # optional
//! dsn = "mysql://dualwrite@127.0.0.1:33300/dualwrite_control"
//! [[shards]]
//! range = "-80"
//! dsn = "mysql://dualwrite@127.0.0.1:33301/dualwrite"
//! [[shards]]
//! range = "80-"
//! dsn = "mysql://dualwrite@127.0.0.1:33302/dualwrite"
//! replicas = ["mysql://dualwrite@127.0.0.1:33312/dualwrite"]  # optional: read-only jobs may read these
//! [throttle]                                 # optional: see crate::throttle
//! max_replica_lag = "10s"
//! ```
//!
//! Everything is checked at load time, so a job never starts against a map
//! that would drop or double-write a row: the ranges must partition the
//! keyspace, DSNs must not hold passwords, and names spliced into SQL must be
//! plain identifiers. Errors name the field they are about.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::{Host, Url};

use crate::error::{ConfigError, DsnError};
use crate::keyrange::{validate_partition, KeyRange, KeyRangeError, PartitionError};
use crate::secret::{process_env, PasswordSource, Secret};
use crate::throttle::{RawThrottle, ThrottleConfig};
use crate::time::{RawTime, TimeConfig};
use crate::tls::{RawTls, TlsConfig};
use crate::vindex;

/// Re-exported next to [`validate_identifier`], which returns it.
pub use crate::error::IdentifierError;

/// MySQL's port, used when a DSN names none.
pub const DEFAULT_PORT: u16 = 3306;

/// Longest cluster name: it ends up in metric labels and consumer group ids.
const MAX_NAME_LEN: usize = 64;

/// A validated cluster file.
///
/// Invariant (checked by every constructor, relied on by
/// [`ClusterConfig::shard_index_for`]): `shards` is non-empty, sorted by range
/// start, and the ranges partition the keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Short name (`[a-z0-9_]+`), e.g. `old` / `new`: labels metrics and logs
    /// and tells the two clusters apart everywhere.
    pub name: String,
    /// The shards, sorted by range start; a shard's index is its position here.
    pub shards: Vec<ShardConfig>,
    /// Where the cluster's control tables live (routing state, reports), if
    /// the cluster has a separate control database.
    pub control: Option<Endpoint>,
    /// Credentials shared by every endpoint of the cluster.
    pub auth: Auth,
    /// Window sizes, lateness, retention and partitioning (`[time]`).
    pub time: TimeConfig,
    /// What the cluster stores: its `pipeline = "FILE"` (relative to the
    /// cluster file), or the built-in Query Insights pipeline.
    pub pipeline: PipelineRef,
    /// When read-only jobs (verify, the copier) leave a shard alone (`[throttle]`).
    pub throttle: ThrottleConfig,
}

/// Which server of a shard a read-only job reads (`--read-from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadFrom {
    /// The shard's primary, always.
    Primary,
    /// The shard's first replica where the cluster file names one, else its
    /// primary (the default).
    #[default]
    Replica,
}

impl std::str::FromStr for ReadFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "primary" => Ok(ReadFrom::Primary),
            "replica" => Ok(ReadFrom::Replica),
            other => Err(format!("must be primary or replica, got {other:?}")),
        }
    }
}

impl fmt::Display for ReadFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadFrom::Primary => "primary",
            ReadFrom::Replica => "replica",
        })
    }
}

/// A cluster's pipeline, loaded and checked with the cluster file, shared
/// (it is read on every batch) and compared by where it came from.
#[derive(Debug, Clone)]
pub struct PipelineRef {
    /// The description file; None for the built-in default.
    pub file: Option<PathBuf>,
    pub pipeline: std::sync::Arc<pipeline::Pipeline>,
}

impl PipelineRef {
    /// The built-in Query Insights pipeline.
    pub fn insights() -> Self {
        Self { file: None, pipeline: std::sync::Arc::new(pipeline::Pipeline::insights()) }
    }

    /// `file`, or the built-in default.
    pub fn load(file: Option<&Path>) -> Result<Self, pipeline::LoadError> {
        Ok(Self {
            file: file.map(Path::to_path_buf),
            pipeline: std::sync::Arc::new(pipeline::Pipeline::load_or_default(file)?),
        })
    }
}

impl PartialEq for PipelineRef {
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file && self.pipeline.name == other.pipeline.name
    }
}

impl Eq for PipelineRef {}

impl std::ops::Deref for PipelineRef {
    type Target = pipeline::Pipeline;
    fn deref(&self) -> &pipeline::Pipeline {
        &self.pipeline
    }
}

/// One shard: the keyspace ids it owns and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardConfig {
    /// Keyspace ids owned by this shard; its Vitess shard name is the range's
    /// `Display`.
    pub range: KeyRange,
    /// The MySQL server and database holding it: the primary, or after
    /// [`ClusterConfig::reading_from`] the server a read-only job reads.
    pub endpoint: Endpoint,
    /// Its replicas (`replicas = [...]`), same login and TLS as the shard;
    /// only read-only jobs ever connect to them.
    pub replicas: Vec<Endpoint>,
    /// Whether `endpoint` is one of the replicas (set by
    /// [`ClusterConfig::reading_from`]); labels logs and metrics.
    pub reads_replica: bool,
}

/// A MySQL server and database, parsed from a `mysql://` DSN. Holds no
/// password: that lives in [`Auth`], once per cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port; [`DEFAULT_PORT`] when the DSN names none.
    pub port: u16,
    /// MySQL user; `auth.user` when the DSN names none.
    pub user: String,
    /// Default database; always set so tables land where we expect.
    pub database: String,
    /// How connections to it are secured (`[tls]`, overridable per shard).
    pub tls: TlsConfig,
}

/// The cluster's credentials, from `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Default MySQL user for DSNs that don't name one.
    pub user: String,
    /// The password, read at load time from `password_env` or
    /// `password_file`; `None` for a passwordless user (local stacks).
    pub password: Option<Secret>,
}

/// The file as written; turned into [`ClusterConfig`] by validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: String,
    auth: RawAuth,
    control: Option<RawControl>,
    #[serde(default)]
    shards: Vec<RawShard>,
    #[serde(default)]
    time: RawTime,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    throttle: RawThrottle,
    /// The pipeline description file, relative to the cluster file.
    pipeline: Option<PathBuf>,
    /// The Kafka client settings (`topics::kafka` reads them from the same
    /// file); accepted here so the file can hold them.
    #[serde(default)]
    #[allow(dead_code)]
    kafka: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    user: String,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    dsn: String,
    tls: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShard {
    range: String,
    dsn: String,
    tls: Option<RawTls>,
    #[serde(default)]
    replicas: Vec<String>,
}

impl ClusterConfig {
    /// [`ClusterConfig::load`], then re-pointed at other shard and control
    /// databases when given (the binaries' `--database` / `--control-database`
    /// for rehearsals and benchmarks on the same servers).
    pub fn load_redirected(
        path: impl AsRef<Path>,
        database: Option<&str>,
        control_database: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::load(path)?;
        if let Some(db) = database {
            config = config.with_database(db)?;
        }
        if let Some(db) = control_database {
            config = config.with_control_database(db)?;
        }
        Ok(config)
    }

    /// Reads and validates a cluster file; the password comes from the
    /// process environment or from a file next to the cluster file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, &process_env)
    }

    /// [`ClusterConfig::load`] with an injected environment lookup.
    pub fn load_with_env(path: impl AsRef<Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => return Err(ConfigError::ReadFile { path: path.to_owned(), error }),
        };
        let base_dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        Self::from_toml_str(&text, base_dir, env)
    }

    /// Parses and validates a cluster file's text. `base_dir` resolves a
    /// relative `auth.password_file` (it is the cluster file's directory);
    /// `env` looks up `auth.password_env`.
    pub fn from_toml_str(
        text: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawCluster = toml::from_str(text)
            .map_err(|error| ConfigError::Toml { error: service::toml_error_without_source(text, &error) })?;

        validate_name(&raw.name)?;
        if raw.auth.user.is_empty() {
            return Err(ConfigError::EmptyUser);
        }
        let password = PasswordSource::from_fields(raw.auth.password_env, raw.auth.password_file)
            .and_then(|source| source.map(|s| s.load(base_dir, env)).transpose())
            .map_err(|error| ConfigError::Password { error })?;
        let auth = Auth { user: raw.auth.user, password };

        if raw.shards.is_empty() {
            return Err(ConfigError::NoShards);
        }
        let mut shards = Vec::with_capacity(raw.shards.len());
        for (index, shard) in raw.shards.iter().enumerate() {
            let range = KeyRange::parse(&shard.range).map_err(|error| ConfigError::Range { index, error })?;
            let mut endpoint = Endpoint::from_dsn(&shard.dsn, &auth.user)
                .map_err(|error| ConfigError::Dsn { field: format!("shards[{index}].dsn"), error })?;
            let field = if shard.tls.is_some() { format!("shards[{index}].tls") } else { "tls".to_owned() };
            endpoint.tls = resolve_tls(shard.tls.as_ref(), &raw.tls, &endpoint.host, base_dir, field)?;
            let mut replicas = Vec::with_capacity(shard.replicas.len());
            for (r, dsn) in shard.replicas.iter().enumerate() {
                let field = format!("shards[{index}].replicas[{r}]");
                let mut replica = Endpoint::from_dsn(dsn, &endpoint.user)
                    .map_err(|error| ConfigError::Dsn { field: field.clone(), error })?;
                if replica.host == endpoint.host && replica.port == endpoint.port {
                    return Err(ConfigError::ReplicaIsPrimary { field });
                }
                let tls_field = if shard.tls.is_some() { format!("shards[{index}].tls") } else { "tls".to_owned() };
                replica.tls = resolve_tls(shard.tls.as_ref(), &raw.tls, &replica.host, base_dir, tls_field)?;
                replicas.push(replica);
            }
            shards.push(ShardConfig { range, endpoint, replicas, reads_replica: false });
        }
        let ranges: Vec<KeyRange> = shards.iter().map(|s| s.range.clone()).collect();
        validate_partition(&ranges).map_err(partition_error)?;
        // Starts are distinct once the partition holds, so this order is total.
        shards.sort_by(|a, b| a.range.start.cmp(&b.range.start));

        let control = match raw.control {
            Some(control) => {
                let mut endpoint = Endpoint::from_dsn(&control.dsn, &auth.user)
                    .map_err(|error| ConfigError::Dsn { field: "control.dsn".to_owned(), error })?;
                let field = if control.tls.is_some() { "control.tls" } else { "tls" }.to_owned();
                endpoint.tls = resolve_tls(control.tls.as_ref(), &raw.tls, &endpoint.host, base_dir, field)?;
                Some(endpoint)
            }
            None => None,
        };

        let time = raw.time.validate().map_err(|error| ConfigError::Time { error })?;
        let pipeline_file = raw.pipeline.map(|p| base_dir.join(p));
        let pipeline = PipelineRef::load(pipeline_file.as_deref()).map_err(|error| ConfigError::Pipeline { error })?;
        time.check_windows(&pipeline).map_err(|error| ConfigError::Time { error })?;
        let throttle = raw.throttle.validate().map_err(|error| ConfigError::Throttle { error })?;

        Ok(Self { name: raw.name, shards, control, auth, time, pipeline, throttle })
    }

    /// Index of the shard owning `keyspace_id` (a binary search over the
    /// sorted starts). Every id has exactly one owner because the ranges
    /// partition the keyspace.
    ///
    /// Exact for ids at least as long as the range bounds, i.e. for every
    /// 8-byte [`vindex::keyspace_id`] with the usual 1- to 8-byte bounds.
    pub fn shard_index_for(&self, keyspace_id: &[u8]) -> usize {
        // The first start is empty, so at least one shard passes the test.
        self.shards.partition_point(|s| s.range.start.as_slice() <= keyspace_id).saturating_sub(1)
    }

    /// Index of the shard owning `database_id`'s rows (through the Vitess
    /// `hash` vindex).
    pub fn shard_index_for_database_id(&self, database_id: u64) -> usize {
        self.shard_index_for(&vindex::keyspace_id(database_id))
    }

    /// A copy whose shards (not the control endpoint) all use database `db`:
    /// tests give each run its own throwaway database on the same servers.
    pub fn with_database(&self, db: &str) -> Result<Self, ConfigError> {
        validate_identifier(db).map_err(|error| ConfigError::Identifier { field: "database".to_owned(), error })?;
        let mut copy = self.clone();
        for shard in &mut copy.shards {
            shard.endpoint.database = db.to_owned();
            for replica in &mut shard.replicas {
                replica.database = db.to_owned();
            }
        }
        Ok(copy)
    }

    /// A copy whose control endpoint uses database `db` (shards untouched).
    /// A cluster without a control endpoint is returned unchanged.
    pub fn with_control_database(&self, db: &str) -> Result<Self, ConfigError> {
        validate_identifier(db)
            .map_err(|error| ConfigError::Identifier { field: "control database".to_owned(), error })?;
        let mut copy = self.clone();
        if let Some(control) = &mut copy.control {
            control.database = db.to_owned();
        }
        Ok(copy)
    }

    /// A copy that logs in as `user` with `password` on every endpoint: a
    /// job's own login (`crate::roles`) on the same servers.
    pub fn with_login(&self, user: &str, password: Option<Secret>) -> Self {
        let mut copy = self.clone();
        copy.auth = Auth { user: user.to_owned(), password };
        for shard in &mut copy.shards {
            shard.endpoint.user = user.to_owned();
            for replica in &mut shard.replicas {
                replica.user = user.to_owned();
            }
        }
        if let Some(control) = &mut copy.control {
            control.user = user.to_owned();
        }
        copy
    }

    /// A copy whose shard endpoints are the servers a read-only job reads:
    /// with [`ReadFrom::Replica`], each shard's first replica where it names
    /// one (the others keep their primary); with [`ReadFrom::Primary`], the
    /// primaries. Never for a job that writes the shards.
    pub fn reading_from(&self, read_from: ReadFrom) -> Self {
        let mut copy = self.clone();
        if read_from == ReadFrom::Replica {
            for shard in &mut copy.shards {
                if let Some(replica) = shard.replicas.first() {
                    shard.endpoint = replica.clone();
                    shard.reads_replica = true;
                }
            }
        }
        copy
    }

    /// Whether any shard names a replica.
    pub fn has_replicas(&self) -> bool {
        self.shards.iter().any(|s| !s.replicas.is_empty())
    }

    /// The cluster's password, if it has one.
    pub fn password(&self) -> Option<Secret> {
        self.auth.password.clone()
    }
}

impl Endpoint {
    /// Parses `mysql://[user@]host[:port]/database`. The user defaults to
    /// `default_user`, the port to 3306. A DSN holding a password is refused:
    /// DSNs get copied into files, logs and process lists. TLS is left
    /// disabled: the cluster file's `[tls]` sets it afterwards.
    pub fn from_dsn(dsn: &str, default_user: &str) -> Result<Self, DsnError> {
        let url = Url::parse(dsn).map_err(DsnError::Url)?;
        if url.scheme() != "mysql" {
            return Err(DsnError::Scheme(url.scheme().to_owned()));
        }
        if url.password().is_some() {
            return Err(DsnError::Password);
        }
        let host = match url.host() {
            None => return Err(DsnError::MissingHost),
            Some(Host::Domain("")) => return Err(DsnError::MissingHost),
            Some(Host::Domain(name)) => name.to_owned(),
            Some(Host::Ipv4(addr)) => addr.to_string(),
            Some(Host::Ipv6(addr)) => addr.to_string(),
        };
        let port = url.port().unwrap_or(DEFAULT_PORT);
        if port == 0 {
            return Err(DsnError::ZeroPort);
        }
        if url.query().is_some() {
            return Err(DsnError::Unsupported("query parameters"));
        }
        if url.fragment().is_some() {
            return Err(DsnError::Unsupported("fragments"));
        }
        let database = url.path().strip_prefix('/').unwrap_or(url.path());
        if database.is_empty() {
            return Err(DsnError::MissingDatabase);
        }
        validate_identifier(database).map_err(DsnError::Database)?;
        let user = match url.username() {
            "" => default_user.to_owned(),
            encoded => percent_decode(encoded).ok_or(DsnError::User)?,
        };
        Ok(Self { host, port, user, database: database.to_owned(), tls: TlsConfig::DISABLED })
    }
}

/// `mysql://user@host:port/database`, for logs (there is no password to hide).
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "mysql://{}@[{}]:{}/{}", self.user, self.host, self.port, self.database)
        } else {
            write!(f, "mysql://{}@{}:{}/{}", self.user, self.host, self.port, self.database)
        }
    }
}

/// Checks that `s` can be spliced into SQL as a database, table or column
/// name without quoting surprises: `^[A-Za-z_][A-Za-z0-9_]{0,63}$`.
/// Stricter than MySQL on purpose (no `$`, no unicode, no leading digit).
pub fn validate_identifier(s: &str) -> Result<(), IdentifierError> {
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if first_ok && rest_ok && s.len() <= 64 {
        return Ok(());
    }
    Err(IdentifierError { value: s.to_owned() })
}

fn validate_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        return Ok(());
    }
    Err(ConfigError::Name { value: name.to_owned() })
}

/// An endpoint's TLS: its own `tls` table over the cluster's `[tls]`.
fn resolve_tls(
    own: Option<&RawTls>,
    cluster: &RawTls,
    host: &str,
    base_dir: &Path,
    field: String,
) -> Result<TlsConfig, ConfigError> {
    let merged = own.map_or_else(|| cluster.clone(), |own| own.over(cluster));
    merged.resolve(host, base_dir).map_err(|error| ConfigError::Tls { field, error })
}

fn partition_error(error: PartitionError) -> ConfigError {
    match error {
        PartitionError::NoRanges => ConfigError::NoShards,
        PartitionError::EmptyRange { index, range } => {
            ConfigError::Range { index, error: KeyRangeError::Empty(range.to_string()) }
        }
        PartitionError::Overlap { index, range, other, other_range } => {
            ConfigError::Overlap { index, range, other, other_range }
        }
        PartitionError::Gap { lower, upper } => ConfigError::Gap { lower, upper },
    }
}

/// Decodes `%XX` escapes (URL user names are percent-encoded); `None` on a
/// malformed escape or non-UTF-8 result.
fn percent_decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const FOUR: [&str; 4] = ["-40", "40-80", "80-c0", "c0-"];
    const EIGHT: [&str; 8] = ["-20", "20-40", "40-60", "60-80", "80-a0", "a0-c0", "c0-e0", "e0-"];

    fn env(name: &str) -> Option<String> {
        HashMap::from([("DW_PW", "from-env")]).get(name).map(|v| (*v).to_owned())
    }

    fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::from_toml_str(text, Path::new("/nonexistent"), &env)
    }

    fn must_fail(text: &str) -> String {
        parse(text).expect_err("must be rejected").to_string()
    }

    /// A cluster file with the given shard ranges, shard i on port 33301 + i.
    fn cluster_toml(ranges: &[&str]) -> String {
        let mut text = String::from("name = \"new\"\n[auth]\nuser = \"dualwrite\"\n");
        for (i, range) in ranges.iter().enumerate() {
            text += &format!("[[shards]]\nrange = \"{range}\"\ndsn = \"mysql://127.0.0.1:{}/dualwrite\"\n", 33301 + i);
        }
        text
    }

    fn cluster(ranges: &[&str]) -> ClusterConfig {
        parse(&cluster_toml(ranges)).expect("valid cluster")
    }

    #[test]
    fn time_section_is_validated_and_defaults_apply() {
        assert_eq!(cluster(&["-"]).time, crate::time::TimeConfig::default());
        let compressed = parse(&(cluster_toml(&["-"]) + "[time]\nminute_window = \"10s\"\nhour_window = \"60s\"\n"));
        assert_eq!(compressed.expect("valid").time.minute_secs(), 10);
        let got = must_fail(&(cluster_toml(&["-"]) + "[time]\npartition = \"7s\"\n"));
        assert!(got.starts_with("time.partition: must be a positive multiple of hour_window"), "{got}");
        let got = must_fail(&(cluster_toml(&["-"]) + "[time]\nwindow = \"7s\"\n"));
        assert!(got.contains("unknown field `window`"), "{got}");
    }

    #[test]
    fn loads_the_documented_example() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("secrets")).expect("mkdir");
        std::fs::write(dir.path().join("secrets/mysql_password"), "pw-from-file\n").expect("write");
        let path = dir.path().join("old.toml");
        std::fs::write(
            &path,
            r#"
name = "old"
[auth]
user = "dualwrite"
password_file = "secrets/mysql_password"
[control]
dsn = "mysql://dualwrite@127.0.0.1:33300/dualwrite_control"
[[shards]]
range = "80-"
dsn = "mysql://dualwrite@127.0.0.1:33302/dualwrite"
[[shards]]
range = "-80"
dsn = "mysql://reader@db-1.internal/dualwrite"
"#,
        )
        .expect("write");

        let config = ClusterConfig::load_with_env(&path, &env).expect("valid");
        assert_eq!(config.name, "old");
        assert_eq!(config.password().map(|s| s.expose_secret().to_owned()), Some("pw-from-file".to_owned()));
        let names: Vec<String> = config.shards.iter().map(|s| s.range.to_string()).collect();
        assert_eq!(names, ["-80", "80-"], "sorted by range start");
        assert_eq!(
            config.shards[0].endpoint,
            Endpoint {
                host: "db-1.internal".into(),
                port: 3306,
                user: "reader".into(),
                database: "dualwrite".into(),
                tls: crate::tls::TlsConfig {
                    mode: crate::tls::TlsMode::VerifyIdentity,
                    ..crate::tls::TlsConfig::DISABLED
                },
            }
        );
        assert_eq!(config.shards[1].endpoint.port, 33302);
        let control = config.control.as_ref().expect("control");
        assert_eq!(control.database, "dualwrite_control");
        assert_eq!(control.to_string(), "mysql://dualwrite@127.0.0.1:33300/dualwrite_control");
        assert!(!format!("{config:?}").contains("pw-from-file"), "Debug must not print the password");
    }

    #[test]
    fn tls_is_per_cluster_and_overridable_per_shard_and_control() {
        use crate::tls::TlsMode;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), "pem").expect("write");
        let text = r#"
name = "new"
[auth]
user = "dualwrite"
[tls]
mode = "verify-identity"
ca_file = "ca.pem"
[control]
dsn = "mysql://db-control/c"
tls = { mode = "required" }
[[shards]]
range = "-80"
dsn = "mysql://db-0/dualwrite"
[[shards]]
range = "80-"
dsn = "mysql://127.0.0.1:3307/dualwrite"
tls = { server_name = "db-1.internal" }
"#;
        let config = ClusterConfig::from_toml_str(text, dir.path(), &env).expect("valid");
        let ca = Some(dir.path().join("ca.pem"));
        assert_eq!(config.shards[0].endpoint.tls.mode, TlsMode::VerifyIdentity);
        assert_eq!(config.shards[0].endpoint.tls.ca_file, ca);
        assert_eq!(config.shards[1].endpoint.tls.mode, TlsMode::VerifyIdentity, "inherited, though loopback");
        assert_eq!(config.shards[1].endpoint.tls.server_name.as_deref(), Some("db-1.internal"));
        let control = config.control.as_ref().expect("control");
        assert_eq!((control.tls.mode, &control.tls.ca_file), (TlsMode::Required, &ca));
    }

    #[test]
    fn tls_defaults_to_verify_identity_off_loopback_and_names_the_table_in_errors() {
        use crate::tls::TlsMode;
        let text = cluster_toml(&["-80", "80-"]).replace("mysql://127.0.0.1:33302/", "mysql://db-1.internal/");
        let config = parse(&text).expect("valid");
        assert_eq!(config.shards[0].endpoint.tls.mode, TlsMode::Disabled, "loopback, nothing said");
        assert_eq!(config.shards[1].endpoint.tls.mode, TlsMode::VerifyIdentity, "remote, nothing said");

        let message = must_fail(&(cluster_toml(&["-"]) + "[tls]\nmode = \"prefer\"\n"));
        assert!(message.starts_with("tls.mode: must be disabled, required, verify-ca or verify-identity"), "{message}");
        let text = cluster_toml(&["-80", "80-"])
            .replace("range = \"80-\"\n", "range = \"80-\"\ntls = { mode = \"required\", ca_file = \"nope.pem\" }\n");
        let message = must_fail(&text);
        assert!(message.starts_with("shards[1].tls.ca_file: cannot read /nonexistent/nope.pem"), "{message}");
        let message = must_fail(&(cluster_toml(&["-"]) + "[tls]\nmode = \"required\"\nca = \"x\"\n"));
        assert!(message.contains("unknown field `ca`"), "{message}");
    }

    #[test]
    fn replicas_inherit_the_shards_login_and_tls_and_errors_name_the_field() {
        let text = cluster_toml(&["-80", "80-"]).replace(
            "dsn = \"mysql://127.0.0.1:33302/dualwrite\"\n",
            "dsn = \"mysql://app@127.0.0.1:33302/dualwrite\"\nreplicas = [\"mysql://127.0.0.1:33312/dualwrite\", \"mysql://db-r2.internal/dualwrite\"]\n",
        );
        let config = parse(&text).expect("valid");
        assert!(config.shards[0].replicas.is_empty());
        let replicas = &config.shards[1].replicas;
        assert_eq!((replicas[0].port, replicas[0].user.as_str()), (33312, "app"), "the shard's user");
        assert_eq!(replicas[1].tls.mode, crate::tls::TlsMode::VerifyIdentity, "remote: verify-identity");
        assert!(config.has_replicas());
        assert_eq!(config.throttle, crate::throttle::ThrottleConfig::default());
        let copy = config.with_database("t_x").expect("valid").with_login("dw_verify", None);
        assert_eq!(
            (copy.shards[1].replicas[0].database.as_str(), copy.shards[1].replicas[0].user.as_str()),
            ("t_x", "dw_verify")
        );
        let reading = copy.reading_from(ReadFrom::Replica);
        assert_eq!(reading.shards[1].endpoint.port, 33312);
        assert!(!reading.shards[0].reads_replica);

        let message = must_fail(&text.replace("mysql://127.0.0.1:33312/", "mysql://u:hunter2@127.0.0.1:33312/"));
        assert!(message.starts_with("shards[1].replicas[0]: contains a password"), "{message}");
        assert!(!message.contains("hunter2"));
        let message = must_fail(&text.replace("mysql://db-r2.internal/", "mysql://127.0.0.1:33302/"));
        assert!(message.starts_with("shards[1].replicas[1]: names the shard's own primary"), "{message}");
        let message = must_fail(&(text.clone() + "[throttle]\nmax_replica_lag = \"x\"\n"));
        assert!(message.starts_with("throttle.max_replica_lag:"), "{message}");
        assert_eq!("replica".parse::<ReadFrom>(), Ok(ReadFrom::Replica));
        assert!("secondary".parse::<ReadFrom>().is_err());
    }

    #[test]
    fn a_toml_error_never_quotes_the_line() {
        let text = cluster_toml(&["-"]).replace("user = \"dualwrite\"\n", "user = \"dualwrite\"\npassword = hunter2\n");
        let message = must_fail(&text);
        assert!(message.starts_with("invalid cluster file: line 4, column"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn password_from_env_or_none() {
        let text =
            cluster_toml(&["-"]).replace("user = \"dualwrite\"\n", "user = \"dualwrite\"\npassword_env = \"DW_PW\"\n");
        let config = parse(&text).expect("valid");
        assert_eq!(config.password().map(|s| s.expose_secret().to_owned()), Some("from-env".to_owned()));

        assert_eq!(cluster(&["-"]).password(), None);
    }

    #[test]
    fn defaults_user_and_port_and_accepts_ipv6() {
        let text = cluster_toml(&["-"]).replace("mysql://127.0.0.1:33301/", "mysql://[::1]/");
        let endpoint = &parse(&text).expect("valid").shards[0].endpoint;
        assert_eq!(
            *endpoint,
            Endpoint {
                host: "::1".into(),
                port: 3306,
                user: "dualwrite".into(),
                database: "dualwrite".into(),
                tls: crate::tls::TlsConfig::DISABLED,
            }
        );
        assert_eq!(endpoint.to_string(), "mysql://dualwrite@[::1]:3306/dualwrite");

        let endpoint = Endpoint::from_dsn("mysql://app%40ops@h:1/db", "x").expect("valid");
        assert_eq!(endpoint.user, "app@ops");
    }

    #[test]
    fn rejects_a_gap_between_shards() {
        assert_eq!(
            must_fail(&cluster_toml(&["-40", "40-80", "90-"])),
            "shards: gap between shards[1] \"40-80\" and shards[2] \"90-\": keyspace ids from 80 to 90 are in no shard"
        );
        assert!(must_fail(&cluster_toml(&["40-"])).starts_with("shards: gap before shards[0] \"40-\""));
        assert!(must_fail(&cluster_toml(&["-40", "40-c0"])).starts_with("shards: gap after shards[1] \"40-c0\""));
    }

    #[test]
    fn rejects_overlapping_shards() {
        assert_eq!(
            must_fail(&cluster_toml(&["-40", "40-90", "40-80", "80-"])),
            "shards[2].range: \"40-80\" overlaps shards[1] \"40-90\""
        );
        assert_eq!(must_fail(&cluster_toml(&["-", "80-"])), "shards[1].range: \"80-\" overlaps shards[0] \"-\"");
    }

    #[test]
    fn rejects_bad_hex_in_a_range() {
        let message = must_fail(&cluster_toml(&["-40", "40-8g", "80-"]));
        assert!(message.starts_with("shards[1].range: \"40-8g\": end bound \"8g\" contains 'g'"), "{message}");
        let message = must_fail(&cluster_toml(&["-4", "4-"]));
        assert!(message.starts_with("shards[0].range:") && message.contains("odd number"), "{message}");
        let message = must_fail(&cluster_toml(&["0"]));
        assert!(message.starts_with("shards[0].range: \"0\" is not a key range"), "{message}");
        let message = must_fail(&cluster_toml(&["80-40"]));
        assert_eq!(message, "shards[0].range: \"80-40\" is empty: its start is not below its end");
    }

    #[test]
    fn rejects_a_dsn_with_a_password_without_echoing_it() {
        let text =
            cluster_toml(&["-80", "80-"]).replace("mysql://127.0.0.1:33302/", "mysql://dw:hunter2@127.0.0.1:33302/");
        let message = must_fail(&text);
        assert!(message.starts_with("shards[1].dsn: contains a password"), "{message}");
        assert!(message.contains("auth.password_file or auth.password_env"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");

        let text = cluster_toml(&["-"]) + "[control]\ndsn = \"mysql://:hunter2@h/control\"\n";
        let message = must_fail(&text);
        assert!(message.starts_with("control.dsn: contains a password"), "{message}");
    }

    #[test]
    fn rejects_a_dsn_without_database() {
        for dsn in ["mysql://127.0.0.1:33301", "mysql://127.0.0.1:33301/"] {
            let text = cluster_toml(&["-"]).replace("mysql://127.0.0.1:33301/dualwrite", dsn);
            assert_eq!(
                must_fail(&text),
                "shards[0].dsn: has no database: expected mysql://user@host:port/database",
                "{dsn}"
            );
        }
        let text = cluster_toml(&["-"]).replace("/dualwrite\"", "/dual-write\"");
        assert!(must_fail(&text).starts_with("shards[0].dsn: database: must match"));
    }

    #[test]
    fn rejects_other_bad_dsns() {
        let cases = [
            ("postgres://h/db", "shards[0].dsn: scheme must be mysql, got \"postgres\""),
            ("mysql:///db", "shards[0].dsn: has no host"),
            ("mysql://h/db?ssl-mode=required", "shards[0].dsn: query parameters are not supported"),
            ("mysql://h/db#x", "shards[0].dsn: fragments are not supported"),
            ("mysql://h:0/db", "shards[0].dsn: port 0"),
            ("127.0.0.1:3306/db", "shards[0].dsn: not a valid URL"),
        ];
        for (dsn, want) in cases {
            let text = cluster_toml(&["-"]).replace("mysql://127.0.0.1:33301/dualwrite", dsn);
            let message = must_fail(&text);
            assert!(message.starts_with(want), "{dsn}: {message}");
        }
    }

    #[test]
    fn rejects_unknown_fields_everywhere() {
        for (from, to, field) in [
            ("name = \"new\"\n", "name = \"new\"\nshard_count = 4\n", "shard_count"),
            ("user = \"dualwrite\"\n", "user = \"dualwrite\"\npassword = \"x\"\n", "password"),
            ("range = \"-\"\n", "range = \"-\"\nweight = 2\n", "weight"),
        ] {
            let message = must_fail(&cluster_toml(&["-"]).replace(from, to));
            assert!(message.starts_with("invalid cluster file:"), "{message}");
            assert!(message.contains(&format!("unknown field `{field}`")), "{message}");
        }
        let message = must_fail(&(cluster_toml(&["-"]) + "[control]\ndsn = \"mysql://h/c\"\nuser = \"x\"\n"));
        assert!(message.contains("unknown field `user`"), "{message}");
    }

    #[test]
    fn rejects_bad_names_and_users() {
        for name in ["Old", "old-cluster", "", "caf\u{e9}", &"x".repeat(65)] {
            let message = must_fail(&cluster_toml(&["-"]).replace("name = \"new\"", &format!("name = \"{name}\"")));
            assert!(message.starts_with("name: must match [a-z0-9_]+"), "{name}: {message}");
        }
        let message = must_fail(&cluster_toml(&["-"]).replace("user = \"dualwrite\"", "user = \"\""));
        assert_eq!(message, "auth.user: must not be empty");
    }

    #[test]
    fn rejects_unusable_password_sources() {
        let with_auth = |lines: &str| {
            cluster_toml(&["-"]).replace("user = \"dualwrite\"\n", &format!("user = \"dualwrite\"\n{lines}\n"))
        };
        let message = must_fail(&with_auth("password_file = \"secrets/mysql_password\""));
        assert!(
            message.starts_with("auth.password_file: cannot read /nonexistent/secrets/mysql_password: No such file"),
            "{message}"
        );
        let message = must_fail(&with_auth("password_env = \"DW_UNSET\""));
        assert_eq!(message, "auth.password_env: environment variable DW_UNSET is not set");
        let message = must_fail(&with_auth("password_env = \"DW_PW\"\npassword_file = \"f\""));
        assert!(message.starts_with("auth.password_env: cannot be combined with password_file"), "{message}");
    }

    #[test]
    fn rejects_a_cluster_without_shards() {
        assert_eq!(must_fail(&cluster_toml(&[])), "shards: at least one [[shards]] entry is needed");
    }

    #[test]
    fn reports_an_unreadable_cluster_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let message = ClusterConfig::load(dir.path().join("missing.toml")).expect_err("missing").to_string();
        assert!(message.starts_with("cannot read cluster file "), "{message}");
    }

    #[test]
    fn routes_keyspace_ids_over_four_shards() {
        let config = cluster(&["c0-", "-40", "80-c0", "40-80"]);
        let cases: [(&[u8], usize); 10] = [
            (&[0x00; 8], 0),
            (&[0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 0),
            (&[0x40, 0, 0, 0, 0, 0, 0, 0], 1),
            (&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 1),
            (&[0x80, 0, 0, 0, 0, 0, 0, 0], 2),
            (&[0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 2),
            (&[0xc0, 0, 0, 0, 0, 0, 0, 0], 3),
            (&[0xff; 8], 3),
            (&[], 0),
            (&[0x80], 2),
        ];
        for (ksid, want) in cases {
            assert_eq!(config.shard_index_for(ksid), want, "{ksid:02x?}");
        }
    }

    #[test]
    fn routes_keyspace_ids_over_eight_shards() {
        let config = cluster(&EIGHT);
        for (i, shard) in config.shards.iter().enumerate() {
            let start = u8::try_from(i * 0x20).expect("fits");
            let last = start.wrapping_add(0x1f);
            assert_eq!(config.shard_index_for(&[start, 0, 0, 0, 0, 0, 0, 0]), i);
            assert_eq!(config.shard_index_for(&[last, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), i);
            assert_eq!(shard.range.to_string(), EIGHT[i]);
        }
    }

    #[test]
    fn routes_database_ids_through_the_vindex() {
        let four = cluster(&FOUR);
        let eight = cluster(&EIGHT);
        // Keyspace ids from Vitess's hash vindex tests (see vindex.rs):
        // 1 -> 16…, 2 -> 06…, 3 -> 4e…, 4 -> d2…, 5 -> 70…, 6 -> f0…, 0 -> 8c….
        for (id, on_four, on_eight) in [(1, 0, 0), (2, 0, 0), (3, 1, 2), (4, 3, 6), (5, 1, 3), (6, 3, 7), (0, 2, 4)] {
            assert_eq!(four.shard_index_for_database_id(id), on_four, "id {id} on 4 shards");
            assert_eq!(eight.shard_index_for_database_id(id), on_eight, "id {id} on 8 shards");
        }
        // Every id lands on the shard that contains it, and the 8-shard map
        // splits each of the 4 old shards in two.
        for id in (0..5_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) {
            let ksid = vindex::keyspace_id(id);
            let (i4, i8) = (four.shard_index_for(&ksid), eight.shard_index_for(&ksid));
            assert!(four.shards[i4].range.contains(&ksid));
            assert!(eight.shards[i8].range.contains(&ksid));
            assert_eq!(i8 / 2, i4);
        }
    }

    #[test]
    fn with_database_repoints_shards_only() {
        let text = cluster_toml(&FOUR) + "[control]\ndsn = \"mysql://127.0.0.1:33300/dualwrite_control\"\n";
        let config = parse(&text).expect("valid");

        let copy = config.with_database("dw_test_1a2b").expect("valid name");
        assert!(copy.shards.iter().all(|s| s.endpoint.database == "dw_test_1a2b"));
        assert_eq!(copy.control, config.control);
        assert_eq!(config.shards[0].endpoint.database, "dualwrite", "original untouched");

        let copy = config.with_control_database("dw_ctl_1a2b").expect("valid name");
        assert_eq!(copy.control.as_ref().map(|c| c.database.as_str()), Some("dw_ctl_1a2b"));
        assert_eq!(copy.shards, config.shards);

        let message = config.with_database("x`; DROP DATABASE y").expect_err("injection").to_string();
        assert!(message.starts_with("database: must match"), "{message}");
        assert!(config.with_control_database("1abc").is_err());
    }

    #[test]
    fn validates_identifiers() {
        for ok in ["a", "_", "dualwrite", "stats_minute", "Db_2", &"x".repeat(64)] {
            assert_eq!(validate_identifier(ok), Ok(()), "{ok}");
        }
        for bad in ["", "1abc", "a-b", "a b", "a`b", "caf\u{e9}", "a$", &"x".repeat(65)] {
            assert_eq!(validate_identifier(bad), Err(IdentifierError { value: bad.to_owned() }), "{bad}");
        }
    }
}
