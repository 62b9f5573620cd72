//! Cluster files for shards laid out on consecutive ports of one host (the
//! local stack's layout): written from [`KeyRange::even`] and checked by
//! loading them back as a [`ClusterConfig`], so the stack's shell script only
//! starts and stops processes and never spells a key range or a TOML file.

use std::path::PathBuf;

use crate::config::ClusterConfig;
use crate::keyrange::KeyRange;

/// One cluster of the layout.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    /// The cluster's name (`old`, `new`).
    pub name: String,
    /// Shard count, a power of two.
    pub shards: usize,
    /// Port of shard 0; shard i listens on `first_port + i`.
    pub first_port: u16,
    /// Host every shard listens on.
    pub host: String,
    /// The database each shard holds.
    pub database: String,
    /// Login the jobs use.
    pub user: String,
    /// File holding that login's password (never the password itself).
    pub password_file: PathBuf,
    /// DSN of the control database, if the layout has one.
    pub control_dsn: Option<String>,
    /// CA of TLS-only shards (`stack up --tls`): the file then gets
    /// `[tls] mode = "verify-identity"` with it.
    pub tls_ca_file: Option<PathBuf>,
    /// Replicas (`stack up --replicas`): the first `replica_shards` shards
    /// each name one replica, shard i's on `first_port + i` of this.
    pub replica_first_port: Option<u16>,
    /// How many shards (from the first) have a replica.
    pub replica_shards: usize,
}

/// A TOML basic string: quotes and backslashes escaped.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl LocalCluster {
    /// The cluster file's text, validated by parsing it back.
    pub fn render(&self) -> Result<String, String> {
        let ranges = KeyRange::even(self.shards).map_err(|e| format!("cluster {}: {e}", self.name))?;
        let last = u32::from(self.first_port) + self.shards as u32 - 1;
        if last > u32::from(u16::MAX) {
            return Err(format!("cluster {}: ports run past 65535", self.name));
        }
        let mut out = format!(
            "# written by dualwrite-cluster local-layout; cluster \"{}\", {} shard{}\nname = {}\n\n[auth]\nuser = {}\npassword_file = {}\n",
            self.name,
            self.shards,
            if self.shards == 1 { "" } else { "s" },
            toml_str(&self.name),
            toml_str(&self.user),
            toml_str(&self.password_file.to_string_lossy()),
        );
        if let Some(ca) = &self.tls_ca_file {
            out.push_str(&format!(
                "\n[tls]\nmode = \"verify-identity\"\nca_file = {}\n",
                toml_str(&ca.to_string_lossy())
            ));
        }
        if let Some(dsn) = &self.control_dsn {
            out.push_str(&format!("\n[control]\ndsn = {}\n", toml_str(dsn)));
        }
        for (i, range) in ranges.iter().enumerate() {
            let dsn = format!(
                "mysql://{}@{}:{}/{}",
                self.user,
                self.host,
                u32::from(self.first_port) + i as u32,
                self.database
            );
            out.push_str(&format!(
                "\n[[shards]]\nrange = {}\ndsn = {}\n",
                toml_str(&range.to_string()),
                toml_str(&dsn)
            ));
            if let Some(first) = self.replica_first_port.filter(|_| i < self.replica_shards) {
                let replica =
                    format!("mysql://{}@{}:{}/{}", self.user, self.host, u32::from(first) + i as u32, self.database);
                out.push_str(&format!("replicas = [{}]\n", toml_str(&replica)));
            }
        }
        // The password file is absolute (or relative to the working directory).
        ClusterConfig::from_toml_str(&out, std::path::Path::new("."), &|_| None)
            .map_err(|e| format!("cluster {}: the written file does not load: {e}", self.name))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(shards: usize, password_file: &std::path::Path) -> LocalCluster {
        LocalCluster {
            name: "new".into(),
            shards,
            first_port: 33305,
            host: "127.0.0.1".into(),
            database: "dualwrite".into(),
            user: "dualwrite".into(),
            password_file: password_file.to_owned(),
            control_dsn: Some("mysql://dualwrite@127.0.0.1:33300/dualwrite_control".into()),
            tls_ca_file: None,
            replica_first_port: None,
            replica_shards: 0,
        }
    }

    #[test]
    fn replicas_for_the_first_shards_on_their_own_ports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let password = dir.path().join("mysql_password");
        std::fs::write(&password, "secret\n").expect("password file");
        let text = LocalCluster { replica_first_port: Some(33321), replica_shards: 2, ..layout(4, &password) }
            .render()
            .expect("render");
        let config = ClusterConfig::from_toml_str(&text, dir.path(), &|_| None).expect("parse");
        let ports: Vec<Vec<u16>> = config.shards.iter().map(|s| s.replicas.iter().map(|r| r.port).collect()).collect();
        assert_eq!(ports, [vec![33321], vec![33322], vec![], vec![]]);
        let reading = config.reading_from(crate::config::ReadFrom::Replica);
        assert_eq!(reading.shards[1].endpoint.port, 33322);
        assert!(reading.shards[1].reads_replica && !reading.shards[2].reads_replica);
        assert_eq!(reading.shards[2].endpoint.port, 33307, "no replica: the primary");
        let primary = config.reading_from(crate::config::ReadFrom::Primary);
        assert_eq!(primary.shards[1].endpoint.port, 33306);
    }

    #[test]
    fn writes_a_loadable_file_with_even_ranges_on_consecutive_ports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let password = dir.path().join("mysql_password");
        std::fs::write(&password, "secret\n").expect("password file");
        let text = layout(8, &password).render().expect("render");
        let config = ClusterConfig::from_toml_str(&text, dir.path(), &|_| None).expect("parse");
        assert_eq!(config.shards.len(), 8);
        assert_eq!(config.shards[0].range.to_string(), "-20");
        assert_eq!(config.shards[7].range.to_string(), "e0-");
        assert_eq!(config.shards[7].endpoint.port, 33312);
        assert!(config.control.is_some());
    }

    #[test]
    fn a_tls_layout_verifies_every_endpoint_against_its_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (password, ca) = (dir.path().join("mysql_password"), dir.path().join("ca.pem"));
        std::fs::write(&password, "secret\n").expect("password file");
        std::fs::write(&ca, "pem").expect("ca file");
        let text = LocalCluster { tls_ca_file: Some(ca.clone()), ..layout(2, &password) }.render().expect("render");
        let config = ClusterConfig::from_toml_str(&text, dir.path(), &|_| None).expect("parse");
        for endpoint in config.shards.iter().map(|s| &s.endpoint).chain(config.control.as_ref()) {
            assert_eq!(endpoint.tls.mode, crate::tls::TlsMode::VerifyIdentity);
            assert_eq!(endpoint.tls.ca_file.as_ref(), Some(&ca));
        }
    }

    #[test]
    fn refuses_shard_counts_that_are_not_powers_of_two() {
        let missing = std::path::Path::new("/nonexistent/mysql_password");
        assert!(layout(3, missing).render().expect_err("3 shards").contains("power of two"));
    }
}
