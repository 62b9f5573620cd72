//! Nisshi (Tansu renamed): a separate, persistent Kafka-protocol broker with
//! sqlite storage, offset lookup by time, TLS listeners and SASL SCRAM, for
//! the tests that need what librdkafka's mock cluster lacks.
//!
//! [`Nisshi::start`] gives a plaintext broker; [`Nisshi::start_secured`] one
//! that requires TLS (a throwaway CA and a server certificate for
//! 127.0.0.1, made with openssl) and SCRAM-SHA-512 for the users given. The
//! users are stored in the broker's sqlite storage, so they are created on a
//! plain start, then the broker is restarted with `--authentication`.
//! Passwords never reach a command line: users are created here over the
//! Kafka protocol (AlterUserScramCredentials) rather than with
//! `nisshi user create NAME PASSWORD`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Nisshi binary: `DUALWRITE_NISSHI`, else built (once, cached) by
/// `compose/local/nisshi`.
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("DUALWRITE_NISSHI") {
        return PathBuf::from(bin);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/local/nisshi");
    let out = Command::new(script).output().expect("compose/local/nisshi");
    assert!(out.status.success(), "building nisshi failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A random password (hex), different in every run.
pub fn password() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 12];
    ring::rand::SystemRandom::new().fill(&mut bytes).expect("random");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A port nothing is bound to right now, below the ephemeral range
/// ([`loadtest::ports`] says why).
pub fn free_port() -> u16 {
    loadtest::ports::free_port().expect("free port")
}

/// A running broker in a temporary directory (storage, certificates, log),
/// stopped on drop.
pub struct Nisshi {
    child: Option<Child>,
    port: u16,
    /// `127.0.0.1:PORT`.
    pub bootstrap: String,
    /// The CA that signed the broker's certificate, when it requires TLS.
    pub ca: Option<PathBuf>,
    /// How long an empty group's first rebalance waits (`--group-initial-rebalance-delay`).
    rebalance_delay: String,
    dir: tempfile::TempDir,
}

impl Drop for Nisshi {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A SCRAM-SHA-512 user of a secured broker.
pub struct User<'a> {
    pub name: &'a str,
    pub password: &'a str,
}

impl Nisshi {
    /// A plaintext broker on a free port.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// A plaintext broker on `port`.
    pub fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut broker = Self {
            child: None,
            port,
            bootstrap: format!("127.0.0.1:{port}"),
            ca: None,
            rebalance_delay: "100ms".to_owned(),
            dir,
        };
        broker.spawn(false);
        broker
    }

    /// A broker that requires TLS and SCRAM-SHA-512, with `users` created.
    pub fn start_secured(users: &[&User<'_>]) -> Self {
        let mut broker = Self::start();
        for user in users {
            if let Err(e) = create_user(&broker.bootstrap, user) {
                let status = broker.child.as_mut().map(Child::try_wait);
                panic!("creating user {}: {e}; nisshi: {status:?}; log:\n{}", user.name, broker.log());
            }
        }
        broker.stop();
        let tls = broker.dir.path().join("tls");
        let ca = make_ca(&tls, "ca");
        make_server_cert(&tls, &ca);
        broker.ca = Some(ca);
        broker.spawn(true);
        broker
    }

    /// The working directory: storage, certificates, `nisshi.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nisshi.log")).unwrap_or_default()
    }

    fn spawn(&mut self, secured: bool) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut command = Command::new(binary());
        command.current_dir(self.dir.path()).args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            // Relative to the working directory (an absolute path is joined to it).
            "--storage-engine",
            "sqlite://nisshi.db",
            "--group-initial-rebalance-delay",
            &self.rebalance_delay,
        ]);
        if secured {
            command.args(["--authentication", "--cert", "tls/server.pem", "--key", "tls/server-key.pem"]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nisshi.log"))
            .expect("log file");
        let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn().expect("spawn nisshi");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&self.bootstrap).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("nisshi exited ({status}) before listening; log:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "nisshi did not start listening; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
            panic!("nisshi exited ({status}) right after listening; log:\n{}", self.log());
        }
    }

    /// SIGTERM, then SIGKILL if it lingers; the storage stays for a restart.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Writes a `[kafka]` file (and its password file, 0600) for `user`
    /// into this broker's directory, `extra` lines appended to the table.
    pub fn kafka_file(&self, name: &str, user: &User<'_>, extra: &str) -> PathBuf {
        let password = self.dir.path().join(format!("{name}.password"));
        write_secret(&password, user.password);
        let ca = self.ca.as_ref().expect("a secured broker");
        let text = format!(
            "[kafka]\nbootstrap = \"{}\"\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\n\
             sasl_username = \"{}\"\nsasl_password_file = \"{}\"\nssl_ca_file = \"{}\"\n{extra}",
            self.bootstrap,
            user.name,
            password.display(),
            ca.display()
        );
        let file = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, text).expect("write kafka file");
        file
    }
}

fn write_secret(path: &Path, secret: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .expect("secret file");
    file.write_all(secret.as_bytes()).expect("write secret");
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`NAME.pem`, `NAME-key.pem`) in `dir`: its certificate's path.
/// X.509 v3 with basicConstraints, as rustls and OpenSSL 3 insist.
pub fn make_ca(dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("tls dir");
    let (cert, key) = (format!("{name}.pem"), format!("{name}-key.pem"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=dualwrite test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &key,
            "-out",
            &cert,
        ],
    );
    dir.join(cert)
}

/// `server.pem` / `server-key.pem` in `dir`, signed by `ca`, naming only
/// 127.0.0.1 (so a client that connects to `localhost` sees a host name
/// mismatch).
fn make_server_cert(dir: &Path, ca: &Path) {
    let ca_key =
        ca.with_file_name(format!("{}-key.pem", ca.file_stem().and_then(|s| s.to_str()).expect("ca file name")));
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server-key.pem",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n",
    )
    .expect("ext file");
    let (ca, ca_key) = (ca.display().to_string(), ca_key.display().to_string());
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// Creates (or replaces) a SCRAM-SHA-512 user over the Kafka protocol:
/// AlterUserScramCredentials v0, the salted password computed here.
fn create_user(bootstrap: &str, user: &User<'_>) -> std::io::Result<()> {
    use ring::rand::SecureRandom;
    const ITERATIONS: u32 = 8192;
    let mut salt = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut salt).expect("random salt");
    let mut salted = [0u8; 64];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA512,
        std::num::NonZeroU32::new(ITERATIONS).expect("non-zero"),
        &salt,
        user.password.as_bytes(),
        &mut salted,
    );
    // Request header v2: api key 51, version 0, correlation id, client id, no tags.
    let mut body = Vec::new();
    body.extend_from_slice(&51i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    let client_id = b"dualwrite-testkit";
    body.extend_from_slice(&i16::try_from(client_id.len()).expect("short").to_be_bytes());
    body.extend_from_slice(client_id);
    body.push(0);
    // Deletions: none. Upsertions: one.
    body.push(1);
    body.push(2);
    compact_bytes(&mut body, user.name.as_bytes());
    body.push(2); // SCRAM-SHA-512
    body.extend_from_slice(&i32::try_from(ITERATIONS).expect("fits").to_be_bytes());
    compact_bytes(&mut body, &salt);
    compact_bytes(&mut body, &salted);
    body.push(0);
    body.push(0);
    let mut stream = std::net::TcpStream::connect(bootstrap)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut frame = i32::try_from(body.len()).expect("small").to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let mut response = vec![0u8; usize::try_from(i32::from_be_bytes(size)).expect("size")];
    stream.read_exact(&mut response)?;
    // Header v1: correlation id, tags (0); then throttle, results[1]: user, error code.
    let mut at = 4 + 1 + 4;
    assert_eq!(response[at], 2, "one result: {response:?}");
    at += 1;
    let name_len = usize::from(response[at]) - 1;
    at += 1 + name_len;
    let code = i16::from_be_bytes([response[at], response[at + 1]]);
    assert_eq!(code, 0, "creating user {}: error code {code}", user.name);
    Ok(())
}

/// A compact (varint length + 1) byte string; lengths here are below 127.
fn compact_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(u8::try_from(bytes.len() + 1).expect("short"));
    out.extend_from_slice(bytes);
}
