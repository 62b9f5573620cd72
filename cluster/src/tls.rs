//! TLS to the MySQL servers: the `[tls]` section of a cluster file, how it
//! turns into `mysql_async`'s (rustls) options, and what a failed handshake
//! means in words an operator can act on.
//!
//! ```toml
//! [tls]                                   # every endpoint of the cluster
//! mode = "verify-identity"                # disabled | required | verify-ca | verify-identity
//! ca_file = "tls/ca.pem"                  # else the built-in web PKI roots
//! cert_file = "tls/client.pem"            # optional client certificate...
//! key_file = "tls/client-key.pem"         # ...and its key (both or neither)
//! server_name = "db.internal"             # optional: the name to verify instead of the DSN host
//!
//! [[shards]]
//! range = "-80"
//! dsn = "mysql://dualwrite@10.0.0.5:3306/dualwrite"
//! tls = { server_name = "shard-0.db.internal" }   # per-shard override, field by field
//! ```
//!
//! Without a `mode`, an endpoint whose host is loopback (`127.0.0.0/8`,
//! `::1`, `localhost`) and that names no `ca_file` connects in plaintext (the
//! local stack); every other endpoint defaults to `verify-identity`, so
//! plaintext to a remote server is only ever something a file says explicitly.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use mysql_async::{ClientIdentity, SslOpts};
use serde::Deserialize;

/// How a connection is secured, as MySQL's own `--ssl-mode` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Plaintext. Only the default for loopback hosts.
    Disabled,
    /// Encrypted, but any certificate is accepted (protects against passive
    /// sniffing only).
    Required,
    /// Encrypted; the certificate must chain to a trusted CA, any name.
    VerifyCa,
    /// Encrypted; trusted CA and the certificate names the host.
    VerifyIdentity,
}

impl TlsMode {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "disabled" => Some(Self::Disabled),
            "required" => Some(Self::Required),
            "verify-ca" => Some(Self::VerifyCa),
            "verify-identity" => Some(Self::VerifyIdentity),
            _ => None,
        }
    }

    /// The spelling used in cluster files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Required => "required",
            Self::VerifyCa => "verify-ca",
            Self::VerifyIdentity => "verify-identity",
        }
    }
}

/// The resolved TLS settings of one endpoint (cluster `[tls]` overlaid with
/// the shard's or control's own `tls`). Holds paths, never key material, so
/// its `Debug` is safe to print.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsConfig {
    /// How the connection is secured.
    pub mode: TlsMode,
    /// PEM file of the CA(s) to trust instead of the built-in web PKI roots
    /// (self-managed CAs; managed MySQL services usually chain to public roots).
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key, for servers that require `X509`.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Name to verify the certificate against instead of the DSN host: for
    /// tunnels and proxies that are reached by another name or address.
    pub server_name: Option<String>,
}

impl TlsConfig {
    /// Plaintext: what a loopback endpoint gets when nothing is said.
    pub const DISABLED: Self =
        Self { mode: TlsMode::Disabled, ca_file: None, client_identity: None, server_name: None };

    /// `mysql_async`'s options for these settings; `None` for plaintext.
    pub fn ssl_opts(&self) -> Option<SslOpts> {
        if self.mode == TlsMode::Disabled {
            return None;
        }
        let mut opts = SslOpts::default()
            .with_danger_accept_invalid_certs(self.mode == TlsMode::Required)
            .with_danger_skip_domain_validation(self.mode != TlsMode::VerifyIdentity)
            .with_danger_tls_hostname_override(self.server_name.clone());
        if let Some(ca) = &self.ca_file {
            // A private CA replaces the public roots: a certificate some
            // public CA issued for the same name must not be accepted.
            opts = opts.with_root_certs(vec![ca.clone().into()]).with_disable_built_in_roots(true);
        }
        if let Some((cert, key)) = &self.client_identity {
            opts = opts.with_client_identity(Some(ClientIdentity::new(cert.clone().into(), key.clone().into())));
        }
        Some(opts)
    }
}

/// A `tls` table as written (cluster-wide or per endpoint); every field is
/// optional so an endpoint can override just one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    mode: Option<String>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    server_name: Option<String>,
}

/// Why a `tls` section is unusable. The config error prefixes the field
/// path (`tls`, `shards[1].tls`, `control.tls`).
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// Not one of the four modes.
    #[error("mode: must be disabled, required, verify-ca or verify-identity, got {0:?}")]
    Mode(String),
    /// Only one of `cert_file` / `key_file`.
    #[error("{0}: cert_file and key_file go together, set both or neither")]
    HalfIdentity(&'static str),
    /// Files or a server name given with `mode = "disabled"`: one of the two
    /// is a mistake, and guessing which would be worse.
    #[error("mode: is disabled but {0} is set; remove it or choose a TLS mode")]
    DisabledWith(&'static str),
    /// A named file cannot be read now, so it would fail at the first
    /// connection instead, possibly hours later.
    #[error("{field}: cannot read {}: {error}", path.display())]
    File {
        /// `ca_file`, `cert_file` or `key_file`.
        field: &'static str,
        /// The resolved path.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// `verify-ca` cannot be honoured by this build: mysql_async 0.37.1's
    /// rustls verifier decides "name mismatch only" by the error's text,
    /// which rustls 0.23 no longer renders that way, so it would check the
    /// name anyway (blackbeam/mysql_async#404, fixed by #408, not released).
    /// Refused rather than silently stricter; `server_name` covers the need.
    #[error(
        "mode: verify-ca is not supported yet (mysql_async 0.37.1 still checks the name on its rustls path, \
         blackbeam/mysql_async#404); use verify-identity with server_name set to a name the certificate holds"
    )]
    VerifyCaUnsupported,
    /// `server_name = ""`.
    #[error("server_name: must not be empty")]
    EmptyServerName,
}

impl RawTls {
    /// This table's fields, each falling back to `base`'s.
    pub(crate) fn over(&self, base: &RawTls) -> RawTls {
        RawTls {
            mode: self.mode.clone().or_else(|| base.mode.clone()),
            ca_file: self.ca_file.clone().or_else(|| base.ca_file.clone()),
            cert_file: self.cert_file.clone().or_else(|| base.cert_file.clone()),
            key_file: self.key_file.clone().or_else(|| base.key_file.clone()),
            server_name: self.server_name.clone().or_else(|| base.server_name.clone()),
        }
    }

    /// The settings for an endpoint on `host`; relative paths are relative
    /// to `base_dir` (the cluster file's directory).
    pub(crate) fn resolve(&self, host: &str, base_dir: &Path) -> Result<TlsConfig, TlsConfigError> {
        let mode = match self.mode.as_deref() {
            Some("verify-ca") => return Err(TlsConfigError::VerifyCaUnsupported),
            Some(text) => TlsMode::parse(text).ok_or_else(|| TlsConfigError::Mode(text.to_owned()))?,
            None if is_loopback(host) && self.ca_file.is_none() => TlsMode::Disabled,
            None => TlsMode::VerifyIdentity,
        };
        if mode == TlsMode::Disabled {
            for (field, set) in [
                ("ca_file", self.ca_file.is_some()),
                ("cert_file", self.cert_file.is_some()),
                ("key_file", self.key_file.is_some()),
                ("server_name", self.server_name.is_some()),
            ] {
                if set {
                    return Err(TlsConfigError::DisabledWith(field));
                }
            }
            return Ok(TlsConfig::DISABLED);
        }
        if self.server_name.as_deref() == Some("") {
            return Err(TlsConfigError::EmptyServerName);
        }
        let ca_file = self.ca_file.as_ref().map(|p| readable("ca_file", base_dir.join(p))).transpose()?;
        let client_identity = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                Some((readable("cert_file", base_dir.join(cert))?, readable("key_file", base_dir.join(key))?))
            }
            (None, None) => None,
            (Some(_), None) => return Err(TlsConfigError::HalfIdentity("key_file")),
            (None, Some(_)) => return Err(TlsConfigError::HalfIdentity("cert_file")),
        };
        Ok(TlsConfig { mode, ca_file, client_identity, server_name: self.server_name.clone() })
    }
}

fn readable(field: &'static str, path: PathBuf) -> Result<PathBuf, TlsConfigError> {
    // Opened, not read: the key file's bytes have no business in this process
    // before the handshake needs them.
    match std::fs::File::open(&path) {
        Ok(_) => Ok(path),
        Err(error) => Err(TlsConfigError::File { field, path, error }),
    }
}

/// Whether `host` is this machine: the only place plaintext is the default.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What a connection error means when it is about TLS, in one phrase
/// (`None` for any other error). Used to name the cause next to the shard:
/// rustls' and the server's own messages are accurate but say neither what
/// to check nor which side refused.
pub fn explain(error: &mysql_async::Error, tls: &TlsConfig) -> Option<&'static str> {
    if let mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) = error {
        return Some("the server does not offer TLS (its ssl_cert/ssl_key are not set), but tls.mode requires it");
    }
    if let mysql_async::Error::Server(server) = error {
        // MySQL 8 says so (3159); MariaDB 10.11 answers a plaintext login to a
        // require_secure_transport server with a plain access denied (1045).
        if server.code == 3159 {
            return Some("the server requires TLS (require_secure_transport=ON): set [tls] mode");
        }
        if server.code == 1045 && tls.mode == TlsMode::Disabled {
            return Some(
                "access denied in plaintext: a wrong user or password, or a server that requires TLS \
                 (MariaDB reports require_secure_transport this way): check [auth], or set [tls] mode",
            );
        }
        return None;
    }
    let text = error.to_string();
    if text.contains("UnknownIssuer") || text.contains("unknown issuer") {
        return Some("the server certificate is not signed by a trusted CA (check tls.ca_file)");
    }
    if text.contains("NotValidForName") || text.contains("not valid for name") {
        return Some(
            "the server certificate does not name this host (check the DSN host, or set tls.server_name \
             to a name it holds)",
        );
    }
    if text.contains("Expired") || text.contains("expired") {
        return Some("the server certificate has expired or is not yet valid");
    }
    if text.contains("HandshakeFailure") || text.contains("tls") || text.contains("TLS") {
        return Some("the TLS handshake failed");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(mode: Option<&str>) -> RawTls {
        RawTls { mode: mode.map(str::to_owned), ..RawTls::default() }
    }

    #[test]
    fn defaults_to_plaintext_only_on_loopback() {
        let here = Path::new(".");
        for host in ["127.0.0.1", "127.1.2.3", "::1", "localhost", "LOCALHOST"] {
            assert_eq!(raw(None).resolve(host, here).expect("valid").mode, TlsMode::Disabled, "{host}");
        }
        for host in ["10.0.0.5", "db.internal", "aws.connect.psdb.cloud", "::2", "localhost.example"] {
            assert_eq!(raw(None).resolve(host, here).expect("valid").mode, TlsMode::VerifyIdentity, "{host}");
        }
        assert_eq!(raw(Some("disabled")).resolve("db.internal", here).expect("explicit").mode, TlsMode::Disabled);
    }

    #[test]
    fn a_ca_file_alone_turns_verification_on_even_on_loopback() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), "x").expect("write");
        let tls = RawTls { ca_file: Some("ca.pem".into()), ..RawTls::default() };
        let resolved = tls.resolve("127.0.0.1", dir.path()).expect("valid");
        assert_eq!(resolved.mode, TlsMode::VerifyIdentity);
        assert_eq!(resolved.ca_file, Some(dir.path().join("ca.pem")));
    }

    #[test]
    fn rejects_contradictions_and_missing_files() {
        let here = Path::new("/nonexistent");
        let message = raw(Some("verify-ca")).resolve("h", here).expect_err("not honoured").to_string();
        assert!(message.starts_with("mode: verify-ca is not supported yet"), "{message}");
        let message = raw(Some("verify")).resolve("h", here).expect_err("bad mode").to_string();
        assert_eq!(message, "mode: must be disabled, required, verify-ca or verify-identity, got \"verify\"");
        let tls = RawTls { ca_file: Some("ca.pem".into()), ..raw(Some("disabled")) };
        let message = tls.resolve("h", here).expect_err("contradiction").to_string();
        assert!(message.starts_with("mode: is disabled but ca_file is set"), "{message}");
        let tls = RawTls { cert_file: Some("c.pem".into()), ..raw(Some("required")) };
        let message = tls.resolve("h", here).expect_err("half").to_string();
        assert!(message.starts_with("key_file: cert_file and key_file go together"), "{message}");
        let tls = RawTls { ca_file: Some("ca.pem".into()), ..raw(Some("verify-identity")) };
        let message = tls.resolve("h", here).expect_err("missing").to_string();
        assert!(message.starts_with("ca_file: cannot read /nonexistent/ca.pem: "), "{message}");
    }

    #[test]
    fn endpoint_fields_override_cluster_fields_one_by_one() {
        let cluster = RawTls { mode: Some("verify-ca".into()), server_name: Some("a".into()), ..RawTls::default() };
        let shard = RawTls { server_name: Some("b".into()), ..RawTls::default() };
        let merged = shard.over(&cluster);
        assert_eq!(merged.mode.as_deref(), Some("verify-ca"));
        assert_eq!(merged.server_name.as_deref(), Some("b"));
    }

    #[test]
    fn modes_map_onto_mysql_async_verification_flags() {
        let with = |mode| TlsConfig { mode, ..TlsConfig::DISABLED }.ssl_opts();
        assert!(with(TlsMode::Disabled).is_none());
        let required = with(TlsMode::Required).expect("tls");
        assert!(required.accept_invalid_certs() && required.skip_domain_validation());
        let ca = with(TlsMode::VerifyCa).expect("tls");
        assert!(!ca.accept_invalid_certs() && ca.skip_domain_validation());
        let identity = with(TlsMode::VerifyIdentity).expect("tls");
        assert!(!identity.accept_invalid_certs() && !identity.skip_domain_validation());
        assert!(!identity.disable_built_in_roots(), "no ca_file: the public roots");

        let private = TlsConfig {
            ca_file: Some("/ca.pem".into()),
            ..TlsConfig { mode: TlsMode::VerifyIdentity, ..TlsConfig::DISABLED }
        };
        let opts = private.ssl_opts().expect("tls");
        assert!(opts.disable_built_in_roots(), "a private CA replaces the public roots");
        assert_eq!(opts.root_certs().len(), 1);
    }
}
