//! TLS against real mariadbd shards started with `stack up --tls`
//! (`require_secure_transport=ON`, a CA of the stack's own). The stack is
//! found at `DUALWRITE_TLS_STACK_DIR` (compose/local/test starts one at
//! `compose/local/.state-tls`).

use std::path::{Path, PathBuf};
use std::process::Command;

use cluster::config::ClusterConfig;
use cluster::pool::{preflight, ShardPools};
use mysql_async::prelude::Queryable;

fn tls_stack_dir() -> PathBuf {
    std::env::var_os("DUALWRITE_TLS_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/local/.state-tls"))
}

/// The TLS stack's `old` cluster file, with `edit` applied to its text.
fn old_cluster(edit: impl Fn(String) -> String) -> ClusterConfig {
    let path = tls_stack_dir().join("clusters/old.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; start a TLS stack first: DUALWRITE_STACK_DIR={} compose/local/stack up --tls --no-broker",
            path.display(),
            tls_stack_dir().display()
        )
    });
    assert!(text.contains("[tls]"), "{} has no [tls]: not a TLS stack", path.display());
    ClusterConfig::from_toml_str(&edit(text), Path::new("/"), &cluster::secret::process_env)
        .expect("valid cluster file")
}

fn password() -> String {
    std::fs::read_to_string(tls_stack_dir().join("secrets/mysql_password")).expect("stack password")
}

/// A one-line connection error that names the cluster, the first shard and
/// the cause, and never the password.
async fn refused(config: &ClusterConfig) -> String {
    let message = preflight(config).await.expect_err("must be refused").to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(message.starts_with("cluster old, shard "), "{message}");
    assert!(!message.contains(&password()), "the password leaked: {message}");
    message
}

/// A CA nobody signed the servers' certificates with.
fn other_ca(dir: &Path) -> PathBuf {
    let (key, cert) = (dir.join("other-key.pem"), dir.join("other-ca.pem"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=another CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(status.status.success(), "openssl: {}", String::from_utf8_lossy(&status.stderr));
    cert
}

#[tokio::test]
async fn every_shard_and_control_answer_over_verified_tls() {
    let config = old_cluster(|text| text);
    preflight(&config).await.expect("verify-identity against the stack's CA");
    let pools = ShardPools::new(&config);
    for pool in pools.shards().iter().chain(pools.control()) {
        let mut conn = pool.get_conn().await.expect("connect");
        let version: Option<(String, String)> =
            conn.query_first("SHOW SESSION STATUS LIKE 'Ssl_version'").await.expect("status");
        let version = version.map(|(_, v)| v).unwrap_or_default();
        assert!(version.starts_with("TLSv1."), "session is not encrypted: {version:?}");
    }
    pools.disconnect().await;
}

#[tokio::test]
async fn a_wrong_ca_is_refused_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = other_ca(dir.path());
    let config = old_cluster(|text| {
        let start = text.find("ca_file = ").expect("ca_file");
        let end = start + text[start..].find('\n').expect("line end");
        format!("{}ca_file = \"{}\"{}", &text[..start], ca.display(), &text[end..])
    });
    let message = refused(&config).await;
    assert!(message.contains("not signed by a trusted CA (check tls.ca_file)"), "{message}");

    // `required` encrypts without checking the chain: the same CA connects.
    let config = old_cluster(|text| {
        text.replace("mode = \"verify-identity\"", "mode = \"required\"")
            .replace(&format!("ca_file = \"{}\"", tls_stack_dir().join("tls/ca.pem").display()), "")
    });
    preflight(&config).await.expect("required accepts any certificate");
}

#[tokio::test]
async fn a_wrong_host_name_is_refused_in_one_line() {
    let config = old_cluster(|text| text.replace("[tls]\n", "[tls]\nserver_name = \"db.example.com\"\n"));
    let message = refused(&config).await;
    assert!(message.contains("does not name this host"), "{message}");

    // A name the certificate does hold passes, whatever the DSN host says.
    let config = old_cluster(|text| text.replace("[tls]\n", "[tls]\nserver_name = \"localhost\"\n"));
    preflight(&config).await.expect("the certificate names localhost");

    // The DSN host itself: the certificate names 127.0.0.1 and localhost only.
    let config = old_cluster(|text| text.replace("[tls]\n", "[tls]\nserver_name = \"127.0.0.2\"\n"));
    assert!(refused(&config).await.contains("does not name this host"));
}

#[tokio::test]
async fn a_plaintext_client_is_refused_in_one_line() {
    let config = old_cluster(|text| {
        let start = text.find("[tls]").expect("[tls]");
        let end = start + text[start..].find("\n\n").expect("section end");
        format!("{}[tls]\nmode = \"disabled\"{}", &text[..start], &text[end..])
    });
    assert!(config.shards.iter().all(|s| s.endpoint.tls.mode == cluster::tls::TlsMode::Disabled));
    let message = refused(&config).await;
    assert!(message.contains("access denied in plaintext"), "{message}");
    assert!(message.contains("set [tls] mode"), "{message}");
}

#[tokio::test]
async fn a_server_without_tls_is_refused_when_tls_is_asked_for() {
    let dir = std::env::var_os("DUALWRITE_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/local/.state"));
    let text = std::fs::read_to_string(dir.join("clusters/old.toml")).expect("the plaintext stack's old.toml");
    assert!(!text.contains("[tls]"), "DUALWRITE_STACK_DIR must be the plaintext stack");
    let text = text.replace("[control]", "[tls]\nmode = \"required\"\n\n[control]");
    let config = ClusterConfig::from_toml_str(&text, Path::new("/"), &cluster::secret::process_env).expect("valid");
    let message = preflight(&config).await.expect_err("plaintext server").to_string();
    assert!(message.starts_with("cluster old, shard "), "{message}");
    assert!(message.contains("the server does not offer TLS"), "{message}");
}
