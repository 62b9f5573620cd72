//! One Kafka client configuration for every job: a `[kafka]` table, either
//! in the cluster file or in a file of its own (`--kafka-config FILE`).
//!
//! ```toml
//! [kafka]
//! bootstrap = "b-1.kafka.internal:9096,b-2.kafka.internal:9096"
//! security_protocol = "sasl_ssl"          # plaintext | ssl | sasl_plaintext | sasl_ssl
//! sasl_mechanism = "SCRAM-SHA-512"        # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
//! sasl_username = "dualwrite"
//! sasl_password_file = "secrets/kafka_password"   # or sasl_password_env = "VAR"
//! ssl_ca_file = "tls/kafka-ca.pem"        # else the system trust store
//! [kafka.properties]                      # any other librdkafka property
//! "client.dns.lookup" = "use_all_dns_ips"
//! ```
//!
//! The password never appears on a command line, in `Debug` output or in a
//! log line: it is read from a file or the environment at load time and only
//! handed to librdkafka. Secrets are refused in `properties` for the same
//! reason. (`topics` does not depend on `cluster`, so it has its own small
//! redacting wrapper rather than `cluster::secret::Secret`.)

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rdkafka::config::ClientConfig;
use serde::Deserialize;

/// librdkafka properties with a field of their own here, or holding
/// secrets: never accepted in `properties`.
const RESERVED: [&str; 9] = [
    "bootstrap.servers",
    "metadata.broker.list",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
];

/// A password that prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub(crate) String);

impl Password {
    /// The password, for the one place that hands it to librdkafka.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The Kafka flags every binary takes, in one place (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers: plaintext, or the bootstrap list replacing
    /// the one of --kafka-config / the cluster file's [kafka].
    #[arg(long, env = "DUALWRITE_BROKERS")]
    pub brokers: Option<String>,
    /// Kafka settings file with a [kafka] table: bootstrap, security_protocol,
    /// sasl_*, ssl_ca_file, properties (a cluster file works too); default:
    /// the cluster file's [kafka], if any. A [registry] table beside it is
    /// read too.
    #[arg(long, env = "DUALWRITE_KAFKA_CONFIG")]
    pub kafka_config: Option<PathBuf>,
    #[arg(long, env = "DUALWRITE_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
}

impl KafkaArgs {
    /// [`KafkaConfig::resolve`] of these flags, with `cluster_file`'s `[kafka]` as the fallback.
    pub fn resolve(&self, cluster_file: Option<&Path>) -> Result<KafkaConfig, KafkaConfigError> {
        KafkaConfig::resolve(self.kafka_config.as_deref(), cluster_file, self.brokers.as_deref())
    }

    /// [`KafkaArgs::resolve`], `None` when nothing names a broker (for
    /// reports that can do without one).
    pub fn resolve_if_configured(&self, cluster_file: Option<&Path>) -> Result<Option<KafkaConfig>, KafkaConfigError> {
        match self.resolve(cluster_file) {
            Ok(kafka) => Ok(Some(kafka)),
            Err(KafkaConfigError::Unconfigured) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// A validated `[kafka]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// `security.protocol`, lowercase.
    pub security_protocol: String,
    /// SASL mechanism, username and password, for the `sasl_*` protocols.
    pub sasl: Option<(String, String, Password)>,
    /// `ssl.ca.location`: the CA bundle that signed the brokers' certificates.
    pub ssl_ca_file: Option<PathBuf>,
    /// Any other librdkafka properties, applied last.
    pub properties: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    bootstrap: String,
    #[serde(default = "plaintext")]
    security_protocol: String,
    sasl_mechanism: Option<String>,
    sasl_username: Option<String>,
    sasl_password_file: Option<PathBuf>,
    sasl_password_env: Option<String>,
    ssl_ca_file: Option<PathBuf>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

fn plaintext() -> String {
    "plaintext".to_owned()
}

/// Why a `[kafka]` table is unusable. Messages start with the field and never
/// hold a password or the TOML line it was on.
#[derive(Debug, thiserror::Error)]
pub enum KafkaConfigError {
    /// The file cannot be read.
    #[error("cannot read kafka config {}: {error}", path.display())]
    Read {
        /// The path given.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// Not TOML, or a missing, mistyped or unknown field. Only the position
    /// and the parser's message: its usual snippet would print the line,
    /// which may be a password someone put in the wrong place.
    #[error("invalid kafka config: {0}")]
    Toml(String),
    /// Neither `--brokers`, `--kafka-config` nor a `[kafka]` table.
    #[error("kafka: no broker configured: pass --brokers or --kafka-config FILE, or add [kafka] to the cluster file")]
    Unconfigured,
    /// No `[kafka]` table where one was expected.
    #[error("kafka: no [kafka] table in {}", .0.display())]
    Missing(PathBuf),
    /// A field's value is not allowed.
    #[error("kafka.{field}: {message}")]
    Field {
        /// The field.
        field: &'static str,
        /// Why.
        message: String,
    },
}

fn field(field: &'static str, message: impl Into<String>) -> KafkaConfigError {
    KafkaConfigError::Field { field, message: message.into() }
}

impl KafkaConfig {
    /// Plain bootstrap servers, as `--brokers` gives them (development brokers).
    pub fn plaintext(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            security_protocol: plaintext(),
            sasl: None,
            ssl_ca_file: None,
            properties: BTreeMap::new(),
        }
    }

    /// The `[kafka]` table of the TOML file at `path` (a kafka file or a
    /// cluster file); `None` if it has none. Relative paths in it are
    /// relative to the file's directory.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, KafkaConfigError> {
        let (text, base_dir) =
            crate::config_file::read(path).map_err(|error| KafkaConfigError::Read { path: path.to_owned(), error })?;
        Self::from_toml_str(&text, &base_dir, env)
    }

    /// [`KafkaConfig::load`], requiring the table (for `--kafka-config`).
    pub fn load_required(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, KafkaConfigError> {
        Self::load(path, env)?.ok_or_else(|| KafkaConfigError::Missing(path.to_owned()))
    }

    /// Parses the `[kafka]` table of a TOML text (other tables are ignored:
    /// the same text may be a cluster file).
    pub fn from_toml_str(
        text: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, KafkaConfigError> {
        let Some(raw) = crate::config_file::table::<RawKafka>(text, "kafka").map_err(KafkaConfigError::Toml)? else {
            return Ok(None);
        };
        raw.validate(base_dir, env).map(Some)
    }

    /// What a job's flags add up to, in this order: `--kafka-config FILE`,
    /// else the cluster file's `[kafka]`, else plaintext `--brokers`; when
    /// both a table and `--brokers` are given, `--brokers` replaces only the
    /// bootstrap list (a development broker with production settings is
    /// never what anyone means, so say `--brokers` alone for that).
    pub fn resolve(
        kafka_config: Option<&Path>,
        cluster_file: Option<&Path>,
        brokers: Option<&str>,
    ) -> Result<Self, KafkaConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        let table = match (kafka_config, cluster_file) {
            (Some(path), _) => Some(Self::load_required(path, &env)?),
            (None, Some(path)) => Self::load(path, &env)?,
            (None, None) => None,
        };
        match (table, brokers) {
            (Some(mut config), Some(brokers)) => {
                config.bootstrap = brokers.to_owned();
                Ok(config)
            }
            (Some(config), None) => Ok(config),
            (None, Some(brokers)) => Ok(Self::plaintext(brokers)),
            (None, None) => Err(KafkaConfigError::Unconfigured),
        }
    }

    /// Sets these properties on `client`.
    pub fn apply(&self, client: &mut ClientConfig) {
        client.set("bootstrap.servers", &self.bootstrap).set("security.protocol", &self.security_protocol);
        if let Some((mechanism, username, password)) = &self.sasl {
            client
                .set("sasl.mechanisms", mechanism)
                .set("sasl.username", username)
                .set("sasl.password", password.expose_secret());
        }
        if let Some(ca) = &self.ssl_ca_file {
            client.set("ssl.ca.location", ca.to_string_lossy());
        }
        for (key, value) in &self.properties {
            client.set(key, value);
        }
    }

    /// A fresh client configuration with these properties.
    pub fn client(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        self.apply(&mut client);
        client
    }
}

impl RawKafka {
    fn validate(self, base_dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<KafkaConfig, KafkaConfigError> {
        if self.bootstrap.trim().is_empty() {
            return Err(field("bootstrap", "must list at least one host:port"));
        }
        let protocol = self.security_protocol.to_ascii_lowercase();
        let (sasl, tls) = match protocol.as_str() {
            "plaintext" => (false, false),
            "ssl" => (false, true),
            "sasl_plaintext" => (true, false),
            "sasl_ssl" => (true, true),
            other => {
                return Err(field(
                    "security_protocol",
                    format!("must be plaintext, ssl, sasl_plaintext or sasl_ssl, got {other:?}"),
                ))
            }
        };
        let password = match (self.sasl_password_file, self.sasl_password_env) {
            (Some(_), Some(_)) => {
                return Err(field("sasl_password_env", "cannot be combined with sasl_password_file, set only one"))
            }
            (Some(path), None) => Some(read_password(&base_dir.join(path))?),
            (None, Some(var)) => match env(&var) {
                Some(value) if !value.is_empty() => Some(Password(value)),
                Some(_) => return Err(field("sasl_password_env", format!("environment variable {var} is empty"))),
                None => return Err(field("sasl_password_env", format!("environment variable {var} is not set"))),
            },
            (None, None) => None,
        };
        let sasl = match (sasl, self.sasl_mechanism, self.sasl_username, password) {
            (true, Some(mechanism), Some(username), Some(password)) => {
                let mechanism = mechanism.to_ascii_uppercase();
                if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mechanism.as_str()) {
                    return Err(field(
                        "sasl_mechanism",
                        format!("must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got {mechanism:?}"),
                    ));
                }
                Some((mechanism, username, password))
            }
            (true, None, _, _) => return Err(field("sasl_mechanism", format!("is required with {protocol}"))),
            (true, _, None, _) => return Err(field("sasl_username", format!("is required with {protocol}"))),
            (true, _, _, None) => {
                return Err(field("sasl_password_file", format!("(or sasl_password_env) is required with {protocol}")))
            }
            (false, None, None, None) => None,
            (false, ..) => {
                return Err(field(
                    "security_protocol",
                    format!("is {protocol}, but sasl_* fields are set: use sasl_ssl"),
                ))
            }
        };
        let ssl_ca_file = match self.ssl_ca_file {
            Some(_) if !tls => {
                return Err(field("ssl_ca_file", format!("is set but security_protocol {protocol} has no TLS")))
            }
            Some(path) => {
                let path = base_dir.join(path);
                if let Err(error) = std::fs::File::open(&path) {
                    return Err(field("ssl_ca_file", format!("cannot read {}: {error}", path.display())));
                }
                Some(path)
            }
            None => None,
        };
        if let Some(key) = self.properties.keys().find(|k| RESERVED.contains(&k.as_str())) {
            return Err(field(
                "properties",
                format!("{key:?} has its own field or holds a secret; set it through the [kafka] fields"),
            ));
        }
        Ok(KafkaConfig {
            bootstrap: self.bootstrap,
            security_protocol: protocol,
            sasl,
            ssl_ca_file,
            properties: self.properties,
        })
    }
}

fn read_password(path: &Path) -> Result<Password, KafkaConfigError> {
    read_secret_file(path).map_err(|message| field("sasl_password_file", message))
}

/// A secret file's content without its trailing newline; the error names
/// the file, never its content.
pub(crate) fn read_secret_file(path: &Path) -> Result<Password, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Password(secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "KAFKA_PW").then(|| "hunter2-kafka".to_owned())
    }

    fn parse(text: &str) -> Result<Option<KafkaConfig>, KafkaConfigError> {
        KafkaConfig::from_toml_str(text, Path::new("/nonexistent"), &env)
    }

    #[test]
    fn flags_without_a_broker_resolve_to_none_and_brokers_alone_to_plaintext() {
        let mut args = KafkaArgs { brokers: None, kafka_config: None, topic_prefix: String::new() };
        assert!(matches!(args.resolve(None), Err(KafkaConfigError::Unconfigured)));
        assert_eq!(args.resolve_if_configured(None).expect("no error"), None);
        args.brokers = Some("127.0.0.1:9092".into());
        let kafka = args.resolve_if_configured(None).expect("no error").expect("configured");
        assert_eq!(kafka, KafkaConfig::plaintext("127.0.0.1:9092"));
        args.kafka_config = Some("/nonexistent/kafka.toml".into());
        assert!(args.resolve_if_configured(None).is_err(), "a missing --kafka-config file is an error, not None");
    }

    fn must_fail(text: &str) -> String {
        parse(text).expect_err("must be rejected").to_string()
    }

    const SASL: &str = r#"
[kafka]
bootstrap = "b1:9096,b2:9096"
security_protocol = "SASL_SSL"
sasl_mechanism = "scram-sha-512"
sasl_username = "dualwrite"
sasl_password_env = "KAFKA_PW"
[kafka.properties]
"client.dns.lookup" = "use_all_dns_ips"
"#;

    #[test]
    fn sasl_settings_reach_librdkafka_and_never_debug() {
        let config = parse(SASL).expect("valid").expect("has [kafka]");
        let client = config.client();
        assert_eq!(client.get("bootstrap.servers"), Some("b1:9096,b2:9096"));
        assert_eq!(client.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(client.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(client.get("sasl.username"), Some("dualwrite"));
        assert_eq!(client.get("sasl.password"), Some("hunter2-kafka"));
        assert_eq!(client.get("client.dns.lookup"), Some("use_all_dns_ips"));
        assert!(!format!("{config:?}").contains("hunter2"), "{config:?}");
    }

    #[test]
    fn a_cluster_file_without_kafka_has_none_and_other_tables_are_ignored() {
        assert_eq!(parse("name = \"old\"\n[auth]\nuser = \"x\"\n").expect("valid"), None);
        let config = parse("name = \"old\"\n[kafka]\nbootstrap = \"127.0.0.1:9092\"\n").expect("valid");
        assert_eq!(config, Some(KafkaConfig::plaintext("127.0.0.1:9092")));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (SASL.replace("SASL_SSL", "sasl_tls"), "kafka.security_protocol: must be plaintext, ssl"),
            (SASL.replace("scram-sha-512", "gssapi"), "kafka.sasl_mechanism: must be PLAIN"),
            (SASL.replace("sasl_username = \"dualwrite\"\n", ""), "kafka.sasl_username: is required with sasl_ssl"),
            (SASL.replace("KAFKA_PW", "UNSET_PW"), "kafka.sasl_password_env: environment variable UNSET_PW is not set"),
            (
                SASL.replace("sasl_password_env = \"KAFKA_PW\"", "sasl_password_file = \"pw\""),
                "kafka.sasl_password_file: cannot read /nonexistent/pw",
            ),
            (
                SASL.replace("\"client.dns.lookup\"", "\"sasl.password\""),
                "kafka.properties: \"sasl.password\" has its own field",
            ),
            (SASL.replace("SASL_SSL", "plaintext"), "kafka.security_protocol: is plaintext, but sasl_* fields are set"),
            (
                "[kafka]\nbootstrap = \"h:1\"\nssl_ca_file = \"ca.pem\"\n".to_owned(),
                "kafka.ssl_ca_file: is set but security_protocol plaintext",
            ),
            ("[kafka]\nbootstrap = \"\"\n".to_owned(), "kafka.bootstrap: must list"),
        ];
        for (text, want) in cases {
            let message = must_fail(&text);
            assert!(message.starts_with(want), "{want}: {message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn a_toml_error_never_echoes_the_line() {
        // A password pasted as a bare value (not a string) is a syntax error whose
        // usual report quotes the line.
        let text = "[kafka]\nbootstrap = \"h:1\"\nsasl_password = s3cr3t-pasted\n";
        let message = must_fail(text);
        assert!(message.starts_with("invalid kafka config: line 3, column"), "{message}");
        assert!(!message.contains("s3cr3t"), "{message}");
        let message = must_fail("[kafka]\nbootstrap = \"h:1\"\nsasl_password = \"s3cr3t\"\n");
        assert!(message.contains("unknown field `sasl_password`"), "{message}");
        assert!(!message.contains("s3cr3t"), "{message}");
    }
}
