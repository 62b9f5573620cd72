//! Passwords: where they come from, and a type that never prints them.
//!
//! A cluster file never holds a password (nor may a DSN). It names an
//! environment variable (`password_env`) or a file (`password_file`, the
//! Docker/Kubernetes secret convention), read once at load time.

use std::fmt;
use std::path::{Path, PathBuf};

/// A password. `Debug` and `Display` print `***` so a secret inside a config
/// struct can't leak through `{:?}` or a log field; reading it takes the
/// explicit, greppable [`Secret::expose_secret`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// The password itself, for the one place that must send it (the MySQL
    /// handshake). Never log the result.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where the password comes from, as the cluster file's `[auth]` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `password_env`: the name of an environment variable.
    Env(String),
    /// `password_file`: a file whose content (minus trailing newlines) is
    /// the password; a relative path is relative to the cluster file's
    /// directory, so a checkout can ship `secrets/…` next to its config.
    File(PathBuf),
}

/// Why the password could not be loaded. Messages name the `[auth]` field
/// and never include the password.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Both fields are set: which one wins would be a guess.
    #[error("password_env: cannot be combined with password_file, set only one")]
    BothSet,

    /// `password_env = ""`.
    #[error("password_env: must name an environment variable, got an empty string")]
    EmptyEnvName,

    /// The named variable is not set (or not UTF-8).
    #[error("password_env: environment variable {0} is not set")]
    EnvUnset(String),

    /// The named variable is set to the empty string: almost always a
    /// deployment mistake, and an empty password would fail later and further
    /// from the cause.
    #[error("password_env: environment variable {0} is empty")]
    EnvEmpty(String),

    /// The file cannot be read.
    #[error("password_file: cannot read {}: {error}", path.display())]
    FileUnreadable {
        /// The resolved path.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },

    /// The file is empty (or only newlines).
    #[error("password_file: {} is empty", .0.display())]
    FileEmpty(PathBuf),
}

impl PasswordSource {
    /// The source named by the two optional `[auth]` fields; `None` when
    /// neither is set (a passwordless user, as in local test stacks).
    pub fn from_fields(
        password_env: Option<String>,
        password_file: Option<PathBuf>,
    ) -> Result<Option<Self>, SecretError> {
        match (password_env, password_file) {
            (Some(_), Some(_)) => Err(SecretError::BothSet),
            (Some(var), None) if var.is_empty() => Err(SecretError::EmptyEnvName),
            (Some(var), None) => Ok(Some(Self::Env(var))),
            (None, Some(path)) => Ok(Some(Self::File(path))),
            (None, None) => Ok(None),
        }
    }

    /// Reads the password. `base_dir` resolves a relative `password_file`;
    /// `env` looks variables up (the process environment in production, a
    /// map in tests, so tests never touch global state).
    pub fn load(&self, base_dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Secret, SecretError> {
        match self {
            Self::Env(var) => {
                let value = env(var).ok_or_else(|| SecretError::EnvUnset(var.clone()))?;
                if value.is_empty() {
                    return Err(SecretError::EnvEmpty(var.clone()));
                }
                Ok(Secret(value))
            }
            Self::File(path) => {
                let path = base_dir.join(path);
                let mut text = match std::fs::read_to_string(&path) {
                    Ok(text) => text,
                    Err(error) => return Err(SecretError::FileUnreadable { path, error }),
                };
                // Editors and `echo` add a final newline that is never part of
                // the password; anything else (spaces included) is kept.
                let len = text.trim_end_matches(['\n', '\r']).len();
                text.truncate(len);
                if text.is_empty() {
                    return Err(SecretError::FileEmpty(path));
                }
                Ok(Secret(text))
            }
        }
    }
}

/// The process environment, for [`PasswordSource::load`] outside tests.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn scratch_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("create scratch dir");
        std::fs::create_dir(dir.path().join("secrets")).expect("create secrets dir");
        dir
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn never_prints_the_password() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(***)");
        assert_eq!(secret.expose_secret(), "hunter2");
    }

    #[test]
    fn picks_at_most_one_source() {
        assert!(matches!(PasswordSource::from_fields(None, None), Ok(None)));
        assert!(matches!(
            PasswordSource::from_fields(Some("X".into()), None),
            Ok(Some(PasswordSource::Env(v))) if v == "X"
        ));
        let both = PasswordSource::from_fields(Some("X".into()), Some("f".into()));
        assert!(matches!(both, Err(SecretError::BothSet)));
        assert!(matches!(PasswordSource::from_fields(Some(String::new()), None), Err(SecretError::EmptyEnvName)));
    }

    #[test]
    fn reads_env_through_the_injected_lookup() {
        let vars = HashMap::from([("DW_PW".to_owned(), "s3cret".to_owned()), ("DW_EMPTY".to_owned(), String::new())]);
        let env = |name: &str| vars.get(name).cloned();
        let base = Path::new("/nonexistent");

        let secret = PasswordSource::Env("DW_PW".into()).load(base, &env).expect("set");
        assert_eq!(secret.expose_secret(), "s3cret");

        let err = PasswordSource::Env("DW_MISSING".into()).load(base, &env).expect_err("unset");
        assert_eq!(err.to_string(), "password_env: environment variable DW_MISSING is not set");

        let err = PasswordSource::Env("DW_EMPTY".into()).load(base, &env).expect_err("empty");
        assert!(matches!(err, SecretError::EnvEmpty(_)), "{err}");
    }

    #[test]
    fn reads_file_relative_to_base_dir_and_trims_trailing_newline() {
        let dir = scratch_dir();
        std::fs::write(dir.path().join("secrets/mysql_password"), "p@ss word \r\n\n").expect("write");

        let source = PasswordSource::File("secrets/mysql_password".into());
        let secret = source.load(dir.path(), &no_env).expect("readable");
        assert_eq!(secret.expose_secret(), "p@ss word ");

        // An absolute path ignores the base directory.
        let absolute = PasswordSource::File(dir.path().join("secrets/mysql_password"));
        let secret = absolute.load(Path::new("/elsewhere"), &no_env).expect("readable");
        assert_eq!(secret.expose_secret(), "p@ss word ");
    }

    #[test]
    fn names_the_missing_or_empty_file() {
        let dir = scratch_dir();
        let err = PasswordSource::File("secrets/nope".into()).load(dir.path(), &no_env).expect_err("missing");
        let message = err.to_string();
        let resolved = dir.path().join("secrets/nope");
        assert!(message.starts_with(&format!("password_file: cannot read {}: ", resolved.display())), "{message}");
        assert!(message.contains("No such file"), "{message}");

        std::fs::write(dir.path().join("secrets/empty"), "\n").expect("write");
        let err = PasswordSource::File("secrets/empty".into()).load(dir.path(), &no_env).expect_err("empty");
        assert!(matches!(err, SecretError::FileEmpty(_)), "{err}");
    }
}
