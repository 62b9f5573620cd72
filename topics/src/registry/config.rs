//! The `[registry]` table: where the schema registry is and how to log in.
//!
//! ```toml
//! [registry]
//! url = "https://registry.internal:8081"
//! username = "dualwrite"                          # basic auth...
//! password_file = "secrets/registry_password"     # ...or password_env = "VAR"
//! # token_file = "secrets/registry_token"         # or a bearer token instead
//! ca_file = "tls/registry-ca.pem"                 # else the built-in web PKI roots
//! timeout = "10s"                                 # per request
//! ```
//!
//! It sits next to `[kafka]`: in the cluster file or in the `--kafka-config`
//! file. Secrets come from files or the environment, never argv, and print
//! as `***`; credentials inside the URL are refused (URLs are logged).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::kafka::{read_secret_file, Password};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the client proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    None,
    /// HTTP basic auth (Confluent Cloud API key and secret, or a registry's users).
    Basic {
        username: String,
        password: Password,
    },
    /// `Authorization: Bearer` (OAuth fronted registries).
    Bearer(Password),
}

/// A validated `[registry]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Base URL, without credentials; ids and subjects are paths below it.
    pub url: reqwest::Url,
    pub auth: RegistryAuth,
    /// PEM bundle of the CAs that sign the registry's certificate; it
    /// replaces the public roots (as `[tls] ca_file` does for MySQL).
    pub ca_file: Option<PathBuf>,
    /// Bound on one request, so an unresponsive registry is an outage to
    /// retry, not a stuck consumer.
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    url: String,
    username: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    timeout: Option<String>,
}

/// Why a `[registry]` table is unusable; messages start with the field and
/// never hold a secret or the TOML line it was on.
#[derive(Debug, thiserror::Error)]
pub enum RegistryConfigError {
    #[error("cannot read {}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("invalid registry config: {0}")]
    Toml(String),
    #[error("registry.{field}: {message}")]
    Field { field: &'static str, message: String },
}

fn field(field: &'static str, message: impl Into<String>) -> RegistryConfigError {
    RegistryConfigError::Field { field, message: message.into() }
}

impl RegistryConfig {
    /// A registry without credentials or a private CA (tests, local setups).
    pub fn plain(url: &str) -> Result<Self, RegistryConfigError> {
        let url = parse_url(url, false)?;
        Ok(Self { url, auth: RegistryAuth::None, ca_file: None, timeout: DEFAULT_TIMEOUT })
    }

    /// The `[registry]` table of the TOML file at `path`; `None` if it has
    /// none. Relative paths are relative to the file's directory.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, RegistryConfigError> {
        let (text, base_dir) = crate::config_file::read(path)
            .map_err(|error| RegistryConfigError::Read { path: path.to_owned(), error })?;
        Self::from_toml_str(&text, &base_dir, env)
    }

    /// Where every job looks, like `[kafka]`: the `--kafka-config` file,
    /// else the cluster file. `None`: no registry, the schema directory.
    pub fn resolve(
        kafka_config: Option<&Path>,
        cluster_file: Option<&Path>,
    ) -> Result<Option<Self>, RegistryConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        for path in [kafka_config, cluster_file].into_iter().flatten() {
            if let Some(config) = Self::load(path, &env)? {
                return Ok(Some(config));
            }
        }
        Ok(None)
    }

    /// Parses the `[registry]` table of a TOML text (other tables are ignored).
    pub fn from_toml_str(
        text: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, RegistryConfigError> {
        let Some(raw) =
            crate::config_file::table::<RawRegistry>(text, "registry").map_err(RegistryConfigError::Toml)?
        else {
            return Ok(None);
        };
        raw.validate(base_dir, env).map(Some)
    }
}

impl RawRegistry {
    fn validate(
        self,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<RegistryConfig, RegistryConfigError> {
        let has_secret = self.password_file.is_some() || self.password_env.is_some() || self.token_file.is_some();
        let url = parse_url(&self.url, has_secret)?;
        let password = match (self.password_file, self.password_env) {
            (Some(_), Some(_)) => {
                return Err(field("password_env", "cannot be combined with password_file, set only one"))
            }
            (Some(path), None) => {
                Some(read_secret_file(&base_dir.join(path)).map_err(|message| field("password_file", message))?)
            }
            (None, Some(var)) => match env(&var) {
                Some(value) if !value.is_empty() => Some(Password(value)),
                Some(_) => return Err(field("password_env", format!("environment variable {var} is empty"))),
                None => return Err(field("password_env", format!("environment variable {var} is not set"))),
            },
            (None, None) => None,
        };
        let auth = match (self.username, password, self.token_file) {
            (Some(_), _, Some(_)) => return Err(field("token_file", "cannot be combined with username, set only one")),
            (Some(username), Some(password), None) if !username.is_empty() => {
                RegistryAuth::Basic { username, password }
            }
            (Some(_), Some(_), None) => return Err(field("username", "is empty")),
            (Some(_), None, None) => return Err(field("password_file", "(or password_env) is required with username")),
            (None, Some(_), _) => return Err(field("username", "is required with password_file or password_env")),
            (None, None, Some(path)) => RegistryAuth::Bearer(
                read_secret_file(&base_dir.join(path)).map_err(|message| field("token_file", message))?,
            ),
            (None, None, None) => RegistryAuth::None,
        };
        let ca_file = match self.ca_file {
            Some(_) if url.scheme() != "https" => return Err(field("ca_file", "is set but url is not https://")),
            Some(path) => {
                let path = base_dir.join(path);
                let pem = std::fs::read(&path)
                    .map_err(|error| field("ca_file", format!("cannot read {}: {error}", path.display())))?;
                if reqwest::Certificate::from_pem_bundle(&pem).map_or(true, |certs| certs.is_empty()) {
                    return Err(field("ca_file", format!("{} holds no PEM certificate", path.display())));
                }
                Some(path)
            }
            None => None,
        };
        let timeout = match self.timeout {
            Some(text) => match humantime::parse_duration(&text) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => return Err(field("timeout", "must be positive")),
                Err(e) => return Err(field("timeout", format!("{text:?} is not a duration (e.g. \"10s\"): {e}"))),
            },
            None => DEFAULT_TIMEOUT,
        };
        Ok(RegistryConfig { url, auth, ca_file, timeout })
    }
}

/// An http(s) URL without credentials; plain http carries a password only to loopback.
fn parse_url(text: &str, has_secret: bool) -> Result<reqwest::Url, RegistryConfigError> {
    // Not echoed: a URL with credentials in it is exactly what is refused.
    let mut url = reqwest::Url::parse(text).map_err(|e| field("url", format!("is not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(field("url", "must not hold credentials (they would be logged): use username and password_file"));
    }
    let Some(host) = url.host() else {
        return Err(field("url", "has no host"));
    };
    let loopback = match host {
        url::Host::Domain(name) => name == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    match url.scheme() {
        "https" => {}
        "http" if has_secret && !loopback => {
            return Err(field(
                "url",
                "is http:// to a non-loopback host: the credentials would cross the network in clear; use https://",
            ))
        }
        "http" => {}
        other => return Err(field("url", format!("scheme must be http or https, got {other:?}"))),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(field("url", "must not have a query or fragment"));
    }
    // Paths are appended below the base (a registry behind a path prefix).
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "REG_PW").then(|| "hunter2-registry".to_owned())
    }

    fn parse(text: &str) -> Result<Option<RegistryConfig>, RegistryConfigError> {
        RegistryConfig::from_toml_str(text, Path::new("/nonexistent"), &env)
    }

    const BASIC: &str =
        "[registry]\nurl = \"https://reg.internal:8081\"\nusername = \"dw\"\npassword_env = \"REG_PW\"\n";

    #[test]
    fn basic_auth_is_parsed_and_never_debugged() {
        let config = parse(BASIC).expect("valid").expect("has [registry]");
        assert_eq!(config.url.as_str(), "https://reg.internal:8081/");
        assert!(matches!(&config.auth, RegistryAuth::Basic { username, password }
            if username == "dw" && password.expose_secret() == "hunter2-registry"));
        assert_eq!(config.timeout, DEFAULT_TIMEOUT);
        assert!(!format!("{config:?}").contains("hunter2"), "{config:?}");
        assert_eq!(parse("name = \"old\"\n[kafka]\nbootstrap = \"h:1\"\n").expect("valid"), None);
    }

    #[test]
    fn errors_name_the_field_and_hold_no_secret() {
        let cases = [
            (
                BASIC.replace("https://reg.internal:8081", "https://dw:hunter2@reg:8081"),
                "registry.url: must not hold credentials",
            ),
            (BASIC.replace("https://", "http://"), "registry.url: is http:// to a non-loopback host"),
            (BASIC.replace("https://", "ftp://"), "registry.url: scheme must be http or https"),
            (BASIC.replace("https://reg.internal:8081", "not a url"), "registry.url: is not a URL"),
            (BASIC.replace("username = \"dw\"\n", ""), "registry.username: is required with password_file"),
            (BASIC.replace("password_env = \"REG_PW\"\n", ""), "registry.password_file: (or password_env) is required"),
            (BASIC.replace("REG_PW", "UNSET_PW"), "registry.password_env: environment variable UNSET_PW is not set"),
            (
                BASIC.replace("password_env = \"REG_PW\"", "password_file = \"pw\""),
                "registry.password_file: cannot read /nonexistent/pw",
            ),
            (BASIC.to_owned() + "token_file = \"t\"\n", "registry.token_file: cannot be combined with username"),
            (BASIC.to_owned() + "ca_file = \"ca.pem\"\n", "registry.ca_file: cannot read /nonexistent/ca.pem"),
            (BASIC.to_owned() + "timeout = \"soon\"\n", "registry.timeout: \"soon\" is not a duration"),
            (BASIC.to_owned() + "password = \"hunter2\"\n", "invalid registry config: unknown field `password`"),
            (
                "[registry]\nurl = \"http://127.0.0.1:1\"\nca_file = \"ca.pem\"\n".to_owned(),
                "registry.ca_file: is set but url is not https://",
            ),
        ];
        for (text, want) in cases {
            let message = parse(&text).expect_err(want).to_string();
            assert!(message.starts_with(want), "{want}: {message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn plain_http_is_fine_without_secrets_or_on_loopback() {
        let config = parse("[registry]\nurl = \"http://registry:8081/prefix\"\n").expect("valid").expect("table");
        assert_eq!(config.url.as_str(), "http://registry:8081/prefix/");
        assert_eq!(config.auth, RegistryAuth::None);
        let local = parse(&BASIC.replace("https://reg.internal:8081", "http://127.0.0.1:8081")).expect("loopback");
        assert!(local.is_some());
    }
}
