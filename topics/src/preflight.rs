//! The Kafka preflight: before a job consumes or produces, connect with its
//! `[kafka]` settings and read the cluster's metadata, so a misconfiguration
//! is one line and a non-zero exit at start, not a client that retries for
//! ever while it looks alive.
//!
//! librdkafka reports authentication and TLS failures as error events (the
//! client context's `error` and `log` callbacks), not as the result of the
//! request that then times out, so [`Seen`] records the first error whose
//! class is fatal and the loop polls metadata until it succeeds or such an
//! error is seen (within a second or two of reaching a broker); while no
//! broker answers it backs off and waits (daemons) or gives up after a
//! deadline (reports). What is fatal (a setting to fix):
//! authentication failed, a mechanism the broker does not offer, a broker
//! certificate the CA does not sign, a host name the certificate does not
//! name, a plaintext client on a TLS listener (or the reverse), a topic that
//! does not exist or may not be read. What is not (an outage, waited out
//! with backoff): connection refused, all brokers down, name resolution,
//! timeouts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

/// How long a report retries unreachable brokers before it goes on without them.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// One metadata request's timeout; errors are read between requests.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// A topic missing from the metadata for this long is unknown (a topic
/// created a moment ago may take a few metadata rounds to show).
const UNKNOWN_TOPIC_GRACE: Duration = Duration::from_secs(3);
/// Events served after each attempt (librdkafka's errors and log lines of
/// one connection attempt are a handful).
const EVENTS_PER_ATTEMPT: usize = 256;
/// Longest pause between attempts while the brokers are unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A misconfiguration, in the words of the `[kafka]` setting that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The broker rejected the SASL credentials.
    Authentication,
    /// The broker does not offer the configured SASL mechanism.
    MechanismNotOffered,
    /// The broker's certificate is not signed by a trusted CA.
    CertificateNotTrusted,
    /// The broker's certificate does not name the host connected to.
    HostnameMismatch,
    /// A plaintext (or SASL plaintext) client on a TLS listener.
    PlaintextOnTls,
    /// A TLS client on a plaintext listener.
    TlsOnPlaintext,
    /// A SASL client on a listener without SASL.
    SaslNotEnabled,
    /// Another TLS handshake failure.
    Tls,
    /// The user may not describe or read a topic, or the cluster.
    NotAuthorized,
    /// A topic the job needs does not exist.
    UnknownTopic(String),
    /// librdkafka refused a property.
    InvalidProperty,
}

impl Cause {
    /// The setting to fix, as the operator finds it.
    pub fn setting(&self) -> &'static str {
        match self {
            Cause::Authentication => "kafka.sasl_username and kafka.sasl_password_file (or sasl_password_env)",
            Cause::MechanismNotOffered => "kafka.sasl_mechanism",
            Cause::CertificateNotTrusted => "kafka.ssl_ca_file (the CA that signed the brokers' certificates)",
            Cause::HostnameMismatch => "kafka.bootstrap (use a host name the broker's certificate names)",
            Cause::PlaintextOnTls => "kafka.security_protocol (the listener speaks TLS: ssl or sasl_ssl)",
            Cause::TlsOnPlaintext => "kafka.security_protocol (the listener is plaintext)",
            Cause::SaslNotEnabled => "kafka.security_protocol (the listener has no SASL: ssl or plaintext)",
            Cause::Tls => "kafka.security_protocol and kafka.ssl_ca_file",
            Cause::NotAuthorized => "kafka.sasl_username (the user's ACLs on the broker)",
            Cause::UnknownTopic(_) => "--topic-prefix, or create the topics (dualwrite-topics create)",
            Cause::InvalidProperty => "kafka.properties",
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Authentication => f.write_str("authentication failed"),
            Cause::MechanismNotOffered => f.write_str("the broker does not offer this SASL mechanism"),
            Cause::CertificateNotTrusted => f.write_str("broker certificate not trusted"),
            Cause::HostnameMismatch => f.write_str("broker certificate does not match the host name"),
            Cause::PlaintextOnTls => f.write_str("plaintext client on a TLS listener"),
            Cause::TlsOnPlaintext => f.write_str("TLS client on a plaintext listener"),
            Cause::SaslNotEnabled => f.write_str("SASL client on a listener without SASL"),
            Cause::Tls => f.write_str("TLS handshake failed"),
            Cause::NotAuthorized => f.write_str("not authorized"),
            Cause::UnknownTopic(topic) => write!(f, "unknown topic {topic}"),
            Cause::InvalidProperty => f.write_str("invalid client property"),
        }
    }
}

/// Whether an error reported by librdkafka is a misconfiguration (`Some`)
/// or an outage to wait out (`None`). `reason` is librdkafka's text.
pub fn classify(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<Cause> {
    let text = reason.to_ascii_lowercase();
    let has = |needle: &str| text.contains(needle);
    if has("unsupported sasl mechanism") {
        return Some(Cause::MechanismNotOffered);
    }
    if has("mechanism handshake failed") && has("not valid in current sasl state") {
        return Some(Cause::SaslNotEnabled);
    }
    if has("hostname mismatch") {
        return Some(Cause::HostnameMismatch);
    }
    if has("certificate verify failed")
        || has("failed to verify broker certificate")
        || has("unable to get local issuer certificate")
        || has("self-signed certificate")
        || has("self signed certificate")
    {
        return Some(Cause::CertificateNotTrusted);
    }
    // librdkafka's own hint when a plaintext ApiVersion request is answered
    // by a disconnect; a TLS alert read as a Kafka frame is an absurd size.
    if has("connecting to a ssl listener?")
        || has("invalid response size")
        || (has("in state apiversion_query") && (has("disconnected") || has("connection closed")))
    {
        return Some(Cause::PlaintextOnTls);
    }
    if has("connecting to a plaintext broker listener?") || has("wrong version number") || has("packet length too long")
    {
        return Some(Cause::TlsOnPlaintext);
    }
    if has("authorization failed") {
        return Some(Cause::NotAuthorized);
    }
    if matches!(code, Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed))
        || has("sasl authentication error")
        || has("authentication failed")
        || has("invalid-proof")
        || has("sasl handshake failed")
        || has("mechanism handshake failed")
    {
        return Some(Cause::Authentication);
    }
    if matches!(
        code,
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
        )
    ) {
        return Some(Cause::NotAuthorized);
    }
    // Other TLS failures are settings, except a connection dropped mid-handshake.
    if (code == Some(RDKafkaErrorCode::SSL) || has("ssl handshake failed"))
        && !(has("unexpected eof") || has("connection reset") || has("disconnected"))
    {
        return Some(Cause::Tls);
    }
    None
}

/// Why a job cannot start with its Kafka settings. One line, naming the
/// broker, the cause and the setting; never a password (librdkafka's text
/// holds none).
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// A setting is wrong: retrying will not help.
    #[error("kafka {broker}: {cause}: check {setting} [{detail}]", setting = cause.setting())]
    Misconfigured {
        /// The broker that said so (`sasl_ssl://host:port/id`), else the bootstrap list.
        broker: String,
        /// What is wrong.
        cause: Cause,
        /// librdkafka's own words, one line.
        detail: String,
    },
    /// Shutdown was requested while waiting for the brokers.
    #[error("kafka preflight interrupted by shutdown")]
    Cancelled,
}

/// How long to wait, and for what.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// The topics the job needs (empty: only connect, as `topics create` does).
    pub topics: Vec<String>,
    /// How long unreachable brokers are retried before a report goes on
    /// without them (see [`DEFAULT_DEADLINE`]); a misconfiguration is fatal
    /// as soon as a broker says so, whatever the deadline.
    pub deadline: Duration,
    /// Whether to keep waiting, with backoff, for brokers that are down
    /// (daemons, and jobs that need Kafka to do anything), or return
    /// [`Reach::Unreachable`] after the deadline (reports that can say so
    /// and go on).
    pub wait_while_unreachable: bool,
}

impl Preflight {
    /// A daemon's preflight: waits out an outage, fails on a misconfiguration.
    pub fn waiting(topics: Vec<String>) -> Self {
        Self { topics, deadline: DEFAULT_DEADLINE, wait_while_unreachable: true }
    }

    /// A report's preflight: gives up on unreachable brokers after the deadline.
    pub fn bounded(topics: Vec<String>) -> Self {
        Self { topics, deadline: DEFAULT_DEADLINE, wait_while_unreachable: false }
    }
}

/// The verdict when no setting is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Connected, authenticated, every topic listed.
    Ready,
    /// No broker answered within the deadline (only when not waiting): the
    /// last error seen.
    Unreachable(String),
}

/// The first fatal-class error librdkafka reported, and the last other one.
#[derive(Default)]
struct Seen {
    /// (broker, cause, detail) of the first misconfiguration seen.
    fatal: Mutex<Option<(Option<String>, Cause, String)>>,
    /// The last transient error, for the logs and [`Reach::Unreachable`].
    last: Mutex<Option<String>>,
}

impl Seen {
    fn note(&self, code: Option<RDKafkaErrorCode>, reason: &str) {
        let reason = reason.replace(['\n', '\r'], " ");
        match classify(code, &reason) {
            Some(cause) => {
                if let Ok(mut fatal) = self.fatal.lock() {
                    if fatal.is_none() {
                        let (broker, detail) = split_broker(&reason);
                        *fatal = Some((broker, cause, detail));
                    }
                }
            }
            None => {
                if let Ok(mut last) = self.last.lock() {
                    *last = Some(without_thread(&reason).to_owned());
                }
            }
        }
    }
}

/// librdkafka prefixes a broker's errors with its name
/// (`sasl_ssl://127.0.0.1:9093/bootstrap: ...`, `127.0.0.1:9092/1: ...`),
/// and its log lines with the thread (`[thrd:...]: `): split the name off.
fn split_broker(reason: &str) -> (Option<String>, String) {
    let reason = without_thread(reason);
    match reason.split_once(": ") {
        Some((broker, rest)) if broker.contains('/') && broker.contains(':') && !broker.contains(' ') => {
            (Some(broker.to_owned()), rest.to_owned())
        }
        _ => (None, reason.to_owned()),
    }
}

/// `reason` without librdkafka's `[thrd:...]: ` log prefix.
fn without_thread(reason: &str) -> &str {
    match reason.strip_prefix("[thrd:").and_then(|rest| rest.split_once("]: ")) {
        Some((_, rest)) => rest,
        None => reason,
    }
}

struct PreflightContext(Seen);

impl ClientContext for PreflightContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.note(error.rdkafka_error_code(), reason);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        // Some failures are only logged (a second TLS error line, a
        // protocol hint); errors and warnings are classified as well.
        use RDKafkaLogLevel::{Alert, Critical, Emerg, Error, Warning};
        if matches!(level, Emerg | Alert | Critical | Error | Warning) || fac == "FAIL" {
            self.0.note(None, log_message);
        }
        tracing::debug!(facility = fac, message = log_message, "librdkafka (preflight)");
    }
}

impl ConsumerContext for PreflightContext {}

/// Shared with a running preflight: a stop request in, its state out.
#[derive(Debug, Default)]
pub struct Signals {
    /// Set to end a wait for unreachable brokers ([`PreflightError::Cancelled`]).
    pub cancel: AtomicBool,
    /// Set once the brokers were found unreachable and the preflight waits
    /// for them (what the metric and the logs say).
    pub waiting: AtomicBool,
}

/// Checks `client` (a job's full client configuration) against the brokers.
/// Blocking: run it off the async workers (see [`run_async`]).
pub fn run(client: &ClientConfig, preflight: &Preflight, signals: &Signals) -> Result<Reach, PreflightError> {
    let cancel = &signals.cancel;
    let bootstrap = client.get("bootstrap.servers").unwrap_or("?").to_owned();
    let misconfigured = |broker: Option<String>, cause: Cause, detail: String| PreflightError::Misconfigured {
        broker: broker.unwrap_or_else(|| bootstrap.clone()),
        cause,
        detail,
    };
    let mut config = client.clone();
    // A probe: no group, nothing consumed; its own logs go through `log` above.
    config.remove("group.id");
    config.set("statistics.interval.ms", "0");
    let consumer: BaseConsumer<PreflightContext> = config
        .create_with_context(PreflightContext(Seen::default()))
        .map_err(|e| misconfigured(None, Cause::InvalidProperty, e.to_string().replace(['\n', '\r'], " ")))?;
    let seen = &consumer.context().0;
    let started = Instant::now();
    let mut missing_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(500);
    let mut waiting = false;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err(PreflightError::Cancelled);
        }
        let metadata = consumer.fetch_metadata(None, ATTEMPT_TIMEOUT);
        // Serve the error and log events the attempt raised. A log event is
        // consumed without a result (poll answers None), so drain by count.
        for _ in 0..EVENTS_PER_ATTEMPT {
            consumer.poll(Duration::ZERO);
        }
        if let Some((broker, cause, detail)) = seen.fatal.lock().ok().and_then(|mut f| f.take()) {
            crate::metrics::preflight_waiting(false);
            // OpenSSL says "certificate verify failed" for an unknown CA and
            // a host name mismatch alike: a handshake of our own tells them apart.
            let cause = match (&cause, broker.as_deref(), client.get("ssl.ca.location")) {
                (Cause::CertificateNotTrusted, Some(broker), Some(ca)) => {
                    certificate_cause(broker, std::path::Path::new(ca)).unwrap_or(cause)
                }
                _ => cause,
            };
            // A connection dropped while asking for the API versions is also
            // what a broker going away looks like: only a listener that
            // answers a TLS hello makes it a plaintext client on TLS.
            let confirmed = cause != Cause::PlaintextOnTls || broker.as_deref().is_some_and(speaks_tls);
            if confirmed {
                return Err(misconfigured(broker, cause, detail));
            }
            if let Ok(mut last) = seen.last.lock() {
                *last = Some(detail);
            }
        }
        match metadata {
            Ok(metadata) => {
                let listed: Vec<(&str, Option<RDKafkaErrorCode>)> =
                    metadata.topics().iter().map(|t| (t.name(), t.error().map(RDKafkaErrorCode::from))).collect();
                let problem =
                    preflight.topics.iter().find_map(|wanted| match listed.iter().find(|(name, _)| name == wanted) {
                        None => Some((wanted.clone(), None)),
                        Some((_, None)) => None,
                        Some((_, Some(code))) => Some((wanted.clone(), Some(*code))),
                    });
                crate::metrics::preflight_waiting(false);
                match problem {
                    None => {
                        if waiting {
                            tracing::info!(%bootstrap, waited_s = started.elapsed().as_secs(), "kafka reachable");
                        }
                        return Ok(Reach::Ready);
                    }
                    Some((topic, Some(code))) if classify(Some(code), "").is_some() => {
                        return Err(misconfigured(None, Cause::NotAuthorized, format!("topic {topic}: {code}")));
                    }
                    Some((topic, Some(code))) if code != RDKafkaErrorCode::UnknownTopicOrPartition => {
                        // Listed, but not usable yet (a leader being elected): the job's own client waits.
                        if started.elapsed() >= preflight.deadline {
                            tracing::warn!(%topic, error = %code, "topic not ready; going on");
                            return Ok(Reach::Ready);
                        }
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                    Some((topic, code)) => {
                        let since = *missing_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= UNKNOWN_TOPIC_GRACE || started.elapsed() >= preflight.deadline {
                            let detail = match code {
                                Some(code) => format!("metadata for {topic}: {code}"),
                                None => format!("the cluster's metadata does not list {topic}"),
                            };
                            return Err(misconfigured(None, Cause::UnknownTopic(topic), detail));
                        }
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                }
            }
            Err(error) => {
                let code = error.rdkafka_error_code();
                if let Some(cause) = classify(code, &error.to_string()) {
                    return Err(misconfigured(None, cause, error.to_string()));
                }
                let last = seen.last.lock().ok().and_then(|l| l.clone()).unwrap_or_else(|| error.to_string());
                if !preflight.wait_while_unreachable && started.elapsed() >= preflight.deadline {
                    crate::metrics::preflight_waiting(false);
                    tracing::warn!(%bootstrap, error = %last, "kafka unreachable; going on without it");
                    return Ok(Reach::Unreachable(last));
                }
                waiting = true;
                signals.waiting.store(true, Ordering::SeqCst);
                crate::metrics::preflight_waiting(true);
                tracing::warn!(
                    %bootstrap,
                    waited_s = started.elapsed().as_secs(),
                    retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                    error = %last,
                    "kafka unreachable (an outage, not a setting): waiting"
                );
                sleep_unless(backoff, cancel);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Why `broker`'s certificate is refused, from a rustls handshake against
/// the CA bundle `ca`: [`Cause::HostnameMismatch`] when the CA signs it but
/// for other names, [`Cause::CertificateNotTrusted`] when it does not sign
/// it; `None` when the handshake cannot say (unreadable CA, no connection).
/// `broker` is librdkafka's name (`sasl_ssl://host:port/bootstrap`).
fn certificate_cause(broker: &str, ca: &std::path::Path) -> Option<Cause> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::net::ToSocketAddrs;
    let address = broker.split_once("://").map_or(broker, |(_, rest)| rest);
    let address = address.split('/').next()?;
    let (host, _port) = address.rsplit_once(':')?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).ok()? {
        roots.add(cert.ok()?).ok()?;
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_owned()).ok()?;
    let mut connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).ok()?;
    let target = address.to_socket_addrs().ok()?.next()?;
    let mut socket = std::net::TcpStream::connect_timeout(&target, ATTEMPT_TIMEOUT * 5).ok()?;
    socket.set_read_timeout(Some(ATTEMPT_TIMEOUT * 5)).ok()?;
    socket.set_write_timeout(Some(ATTEMPT_TIMEOUT * 5)).ok()?;
    while connection.is_handshaking() {
        match connection.complete_io(&mut socket) {
            Ok(_) => {}
            Err(error) => {
                let tls = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
                return match tls {
                    Some(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::NotValidForName
                        | rustls::CertificateError::NotValidForNameContext { .. },
                    )) => Some(Cause::HostnameMismatch),
                    Some(rustls::Error::InvalidCertificate(_)) => Some(Cause::CertificateNotTrusted),
                    _ => None,
                };
            }
        }
    }
    None
}

/// Whether `broker` (librdkafka's name, `host:port/id`) answers a TLS
/// hello: any certificate verdict (none is trusted here) means it does.
fn speaks_tls(broker: &str) -> bool {
    use std::net::ToSocketAddrs;
    let address = broker.split_once("://").map_or(broker, |(_, rest)| rest);
    let Some(address) = address.split('/').next() else { return false };
    let Some((host, _)) = address.rsplit_once(':') else { return false };
    let config = match rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth(),
        Err(_) => return false,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let Ok(name) = rustls::pki_types::ServerName::try_from(host) else { return false };
    let Ok(mut connection) = rustls::ClientConnection::new(std::sync::Arc::new(config), name) else { return false };
    let Some(target) = address.to_socket_addrs().ok().and_then(|mut a| a.next()) else { return false };
    let Ok(mut socket) = std::net::TcpStream::connect_timeout(&target, ATTEMPT_TIMEOUT * 5) else { return false };
    if socket.set_read_timeout(Some(ATTEMPT_TIMEOUT * 5)).is_err() {
        return false;
    }
    while connection.is_handshaking() {
        if let Err(error) = connection.complete_io(&mut socket) {
            let tls = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
            return matches!(tls, Some(rustls::Error::InvalidCertificate(_)));
        }
    }
    true
}

/// Sleeps `duration` in short steps, returning early once `cancel` is set.
fn sleep_unless(duration: Duration, cancel: &AtomicBool) {
    let until = Instant::now() + duration;
    while !cancel.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// [`run`] on a blocking thread; `shutdown` ends a wait for unreachable brokers.
pub async fn run_async(
    client: ClientConfig,
    preflight: Preflight,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<Reach, PreflightError> {
    let signals = std::sync::Arc::new(Signals::default());
    let flag = signals.clone();
    let watcher = tokio::spawn(async move {
        shutdown.cancelled().await;
        flag.cancel.store(true, Ordering::SeqCst);
    });
    let check = tokio::task::spawn_blocking(move || run(&client, &preflight, &signals)).await;
    watcher.abort();
    // A panic in the probe is a bug; say so rather than pretend a verdict.
    check.unwrap_or_else(|e| {
        Err(PreflightError::Misconfigured {
            broker: "?".to_owned(),
            cause: Cause::InvalidProperty,
            detail: format!("preflight task failed: {e}"),
        })
    })
}

impl crate::kafka::KafkaConfig {
    /// [`run_async`] with these settings alone (jobs whose client adds no
    /// properties of its own that could change the connection).
    pub async fn preflight(&self, preflight: Preflight) -> Result<Reach, PreflightError> {
        run_async(self.client(), preflight, tokio_util::sync::CancellationToken::new()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_reports_are_classified_by_the_setting_that_fixes_them() {
        let fatal = [
            (
                Some(RDKafkaErrorCode::Authentication),
                "sasl_ssl://127.0.0.1:40001/bootstrap: SASL authentication error: Authentication failed during \
                 authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 3ms in state \
                 AUTH_REQ)",
                Cause::Authentication,
            ),
            (None, "SASL SCRAM SHA512 mechanism handshake failed: invalid-proof", Cause::Authentication),
            (
                Some(RDKafkaErrorCode::Authentication),
                "sasl_ssl://h:1/bootstrap: SASL PLAIN mechanism handshake failed: Broker: Unsupported SASL \
                 mechanism: broker's supported mechanisms: SCRAM-SHA-256,SCRAM-SHA-512",
                Cause::MechanismNotOffered,
            ),
            (
                Some(RDKafkaErrorCode::SSL),
                "ssl://127.0.0.1:40001/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate \
                 verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly \
                 configured or root CA certificates are installed (install ca-certificates package) (after 2ms in \
                 state SSL_HANDSHAKE)",
                Cause::CertificateNotTrusted,
            ),
            (
                Some(RDKafkaErrorCode::SSL),
                "ssl://localhost:1/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify \
                 failed: Verify error:hostname mismatch",
                Cause::HostnameMismatch,
            ),
            (
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                "127.0.0.1:40001/bootstrap: Disconnected while requesting ApiVersion: might be caused by incorrect \
                 security.protocol configuration (connecting to a SSL listener?) or broker version is < 0.10 (see \
                 api.version.request) (after 1ms in state APIVERSION_QUERY)",
                Cause::PlaintextOnTls,
            ),
            (
                None,
                "[thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Disconnected: connection closed by peer: receive \
                 0 after POLLIN (after 1ms in state APIVERSION_QUERY)",
                Cause::PlaintextOnTls,
            ),
            (
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                "127.0.0.1:1/bootstrap: Receive failed: Invalid response size 352518912 (0..100000000): increase \
                 receive.message.max.bytes",
                Cause::PlaintextOnTls,
            ),
            (
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                "ssl://127.0.0.1:1/bootstrap: SSL handshake failed: Disconnected: connecting to a PLAINTEXT broker \
                 listener? (after 0ms in state SSL_HANDSHAKE)",
                Cause::TlsOnPlaintext,
            ),
            (
                Some(RDKafkaErrorCode::SSL),
                "ssl://127.0.0.1:1/bootstrap: SSL handshake failed: error:0A00010B:SSL routines::wrong version number",
                Cause::TlsOnPlaintext,
            ),
            (
                None,
                "sasl_ssl://127.0.0.1:1/bootstrap: SASL PLAIN mechanism handshake failed: Broker: Request not valid in \
                 current SASL state: broker's supported mechanisms:  (after 0ms in state AUTH_HANDSHAKE)",
                Cause::SaslNotEnabled,
            ),
            (
                Some(RDKafkaErrorCode::TopicAuthorizationFailed),
                "Broker: Topic authorization failed",
                Cause::NotAuthorized,
            ),
        ];
        for (code, reason, want) in fatal {
            assert_eq!(classify(code, reason), Some(want.clone()), "{reason}");
        }
        let outages = [
            (
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                "127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused (after 0ms in state \
                 CONNECT)",
            ),
            (Some(RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down"),
            (
                Some(RDKafkaErrorCode::Resolve),
                "nowhere.invalid:9092/bootstrap: Failed to resolve 'nowhere.invalid:9092'",
            ),
            (Some(RDKafkaErrorCode::OperationTimedOut), "Local: Timed out"),
            (
                Some(RDKafkaErrorCode::SSL),
                "ssl://h:1/bootstrap: SSL handshake failed: unexpected eof while reading (after 5ms in state \
                 SSL_HANDSHAKE)",
            ),
        ];
        for (code, reason) in outages {
            assert_eq!(classify(code, reason), None, "{reason}");
        }
    }

    #[test]
    fn the_broker_is_split_off_librdkafkas_text() {
        let (broker, detail) = split_broker("sasl_ssl://127.0.0.1:1/bootstrap: SASL authentication error: x: y");
        assert_eq!(broker.as_deref(), Some("sasl_ssl://127.0.0.1:1/bootstrap"));
        assert_eq!(detail, "SASL authentication error: x: y");
        assert_eq!(split_broker("1/1 brokers are down"), (None, "1/1 brokers are down".to_owned()));
        let (broker, detail) = split_broker(
            "[thrd:127.0.0.1:9/bootstrap]: 127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused",
        );
        assert_eq!(broker.as_deref(), Some("127.0.0.1:9/bootstrap"));
        assert_eq!(detail, "Connect to ipv4#127.0.0.1:9 failed: Connection refused");
    }

    #[test]
    fn a_misconfiguration_is_one_line_naming_broker_cause_and_setting() {
        let error = PreflightError::Misconfigured {
            broker: "sasl_ssl://127.0.0.1:1/bootstrap".to_owned(),
            cause: Cause::Authentication,
            detail: "SASL authentication error: invalid-proof".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "kafka sasl_ssl://127.0.0.1:1/bootstrap: authentication failed: check kafka.sasl_username and \
             kafka.sasl_password_file (or sasl_password_env) [SASL authentication error: invalid-proof]"
        );
    }

    fn mock_topic(mock: &rdkafka::mocking::MockCluster<'_, rdkafka::producer::DefaultProducerContext>) -> String {
        let topic = "preflight-known".to_owned();
        mock.create_topic(&topic, 1, 1).expect("topic on the mock");
        topic
    }

    #[test]
    fn the_mock_broker_passes_and_an_unknown_topic_fails_with_the_remedy() {
        let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        let known = mock_topic(&mock);
        let kafka = crate::kafka::KafkaConfig::plaintext(mock.bootstrap_servers());
        let never = Signals::default();
        let reach = run(&kafka.client(), &Preflight::waiting(vec![known.clone()]), &never).expect("ready");
        assert_eq!(reach, Reach::Ready);
        let error = run(&kafka.client(), &Preflight::waiting(vec![known, "nope".into()]), &never)
            .expect_err("unknown topic")
            .to_string();
        assert!(
            error.starts_with(&format!("kafka {}: unknown topic nope: check --topic-prefix", mock.bootstrap_servers())),
            "{error}"
        );
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn a_sasl_client_against_the_mock_fails_with_one_line_and_no_password() {
        // The mock has no SASL listener: the handshake fails as against a broker that rejects it.
        let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        let text = format!(
            "[kafka]\nbootstrap = \"{}\"\nsecurity_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"SCRAM-SHA-256\"\n\
             sasl_username = \"dualwrite\"\nsasl_password_env = \"KAFKA_PW\"\n",
            mock.bootstrap_servers()
        );
        let env = |name: &str| (name == "KAFKA_PW").then(|| "hunter2-kafka".to_owned());
        let kafka = crate::kafka::KafkaConfig::from_toml_str(&text, std::path::Path::new("."), &env)
            .expect("valid")
            .expect("[kafka]");
        let never = Signals::default();
        let error = run(&kafka.client(), &Preflight::waiting(Vec::new()), &never).expect_err("no SASL on the mock");
        let message = error.to_string();
        assert!(matches!(error, PreflightError::Misconfigured { .. }), "{message}");
        assert!(!message.contains('\n') && !message.contains("hunter2"), "{message}");
    }

    #[test]
    fn unreachable_brokers_are_not_a_misconfiguration() {
        // A port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let kafka = crate::kafka::KafkaConfig::plaintext(format!("127.0.0.1:{port}"));
        let never = Signals::default();
        let bounded = Preflight { deadline: Duration::from_secs(2), ..Preflight::bounded(vec!["t".into()]) };
        let reach = run(&kafka.client(), &bounded, &never).expect("an outage is not fatal");
        assert!(matches!(reach, Reach::Unreachable(_)), "{reach:?}");
        // Waiting: past the deadline it keeps waiting; only the cancel flag ends it.
        let signals = std::sync::Arc::new(Signals::default());
        let waiting = Preflight { deadline: Duration::from_millis(100), ..Preflight::waiting(vec!["t".into()]) };
        let waiter = {
            let (signals, client) = (signals.clone(), kafka.client());
            std::thread::spawn(move || run(&client, &waiting, &signals))
        };
        let until = Instant::now() + Duration::from_secs(30);
        while !signals.waiting.load(Ordering::SeqCst) {
            assert!(Instant::now() < until, "never reported waiting");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!waiter.is_finished(), "an outage must be waited out");
        signals.cancel.store(true, Ordering::SeqCst);
        assert!(matches!(waiter.join().expect("joined"), Err(PreflightError::Cancelled)));
    }
}
