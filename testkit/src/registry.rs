//! A test double of a Confluent Schema Registry: exactly the REST calls the
//! registry client uses (`GET /schemas/ids/{id}`, `GET
//! /subjects/{s}/versions/latest`, `POST /subjects/{s}/versions`, `POST
//! /compatibility/subjects/{s}/versions/latest[?verbose=true]`), with HTTP
//! basic auth and Confluent's error bodies (`{"error_code":..,"message":..}`).
//!
//! Like the real one: ids are global and one schema has one id whatever the
//! subject; registering a schema already registered under the subject
//! answers its id; compatibility is BACKWARD (the new schema reads data
//! written with the latest version), checked with apache-avro's resolver;
//! registering an incompatible schema answers 409. For tests it also counts
//! lookups per id, can be taken down (503 on every call, as a registry whose
//! Kafka store is unreachable answers), and can be handed a schema under a
//! chosen id.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Default)]
struct Store {
    /// Schema text by id (ids start at 1 and are never reused).
    schemas: BTreeMap<u32, String>,
    /// Versions of each subject, oldest first, as schema ids.
    subjects: BTreeMap<String, Vec<u32>>,
    /// `GET /schemas/ids/{id}` calls per id.
    lookups: HashMap<u32, u32>,
    /// Answer 503 to everything.
    down: bool,
    /// Calls answered 503 because of `down`.
    refused: u32,
}

struct Inner {
    store: Mutex<Store>,
    /// `Authorization` header value every call must carry, if any.
    expected_auth: Option<String>,
}

/// A running test registry on 127.0.0.1 (a random port).
pub struct TestRegistry {
    pub url: String,
    inner: Arc<Inner>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestRegistry {
    /// A registry without authentication.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A registry that requires HTTP basic auth with these credentials.
    pub async fn start_with_basic_auth(username: &str, password: &str) -> Self {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        Self::start_with(Some(format!("Basic {token}"))).await
    }

    /// A registry that requires `Authorization: Bearer <token>`.
    pub async fn start_with_bearer(token: &str) -> Self {
        Self::start_with(Some(format!("Bearer {token}"))).await
    }

    /// A registry without authentication serving HTTPS with this
    /// certificate chain and key (PEM files, e.g. [`make_certificates`]).
    pub async fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Self {
        use rustls_pki_types::pem::PemObject;
        let chain: Vec<rustls_pki_types::CertificateDer<'static>> =
            rustls_pki_types::CertificateDer::pem_file_iter(cert)
                .expect("certificate file")
                .collect::<Result<_, _>>()
                .expect("certificates");
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).expect("key file");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind test registry");
        let url = format!("https://{}", tcp.local_addr().expect("local addr"));
        let listener = TlsListener { tcp, acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)) };
        Self::serve(listener, url, None)
    }

    async fn start_with(expected_auth: Option<String>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind test registry");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        Self::serve(listener, url, expected_auth)
    }

    fn serve<L>(listener: L, url: String, expected_auth: Option<String>) -> Self
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let inner = Arc::new(Inner { store: Mutex::new(Store::default()), expected_auth });
        let app = Router::new()
            .route("/schemas/ids/{id}", get(schema_by_id))
            .route("/subjects/{subject}/versions/latest", get(latest))
            .route("/subjects/{subject}/versions", post(register))
            .route("/compatibility/subjects/{subject}/versions/latest", post(compatibility))
            .with_state(inner.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(stopped.cancelled_owned()).await.expect("test registry");
        });
        Self { url, inner, stop, task: Some(task) }
    }

    /// While down, every call answers 503 (error_code 50003).
    pub fn set_down(&self, down: bool) {
        self.store().down = down;
    }

    /// Calls answered 503 while down.
    pub fn refused(&self) -> u32 {
        self.store().refused
    }

    /// How many times `GET /schemas/ids/{id}` was answered.
    pub fn lookups(&self, id: u32) -> u32 {
        self.store().lookups.get(&id).copied().unwrap_or(0)
    }

    /// Every id looked up, with its count.
    pub fn all_lookups(&self) -> HashMap<u32, u32> {
        self.store().lookups.clone()
    }

    /// The ids registered under `subject`, oldest first.
    pub fn versions(&self, subject: &str) -> Vec<u32> {
        self.store().subjects.get(subject).cloned().unwrap_or_default()
    }

    /// Stores `schema` under `id` without a subject (a schema another
    /// producer registered with an id of its own).
    pub fn insert(&self, id: u32, schema: &str) {
        self.store().schemas.insert(id, schema.to_owned());
    }

    /// Stops the server and joins its task.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("test registry task");
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.inner.store.lock().expect("registry store")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// HTTPS: the handshake runs on accept, one at a time (a test's few
/// connections); a client that refuses the certificate is skipped.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else { continue };
            if let Ok(Ok(tls)) =
                tokio::time::timeout(std::time::Duration::from_secs(5), self.acceptor.accept(tcp)).await
            {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// PEM files of a throwaway CA and a server certificate it signed for
/// 127.0.0.1 and localhost.
pub struct Certificates {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Makes [`Certificates`] in `dir` with openssl, as `compose/local/stack
/// --tls` does (rustls wants X.509 v3: basicConstraints, a subjectAltName).
pub fn make_certificates(dir: &std::path::Path) -> Certificates {
    let run = |args: &[&str]| {
        let output = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=dualwrite test registry CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ]);
    run(&[
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
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("server.ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    Certificates { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server-key.pem") }
}

fn error(status: StatusCode, code: u32, message: impl Into<String>) -> Response {
    let body = json!({ "error_code": code, "message": message.into() }).to_string();
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
}

/// Authentication and the outage switch, as the real registry's filters
/// run before any handler: the refusal to answer, if any.
fn refusal(inner: &Inner, headers: &HeaderMap) -> Option<Response> {
    if let Some(expected) = &inner.expected_auth {
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return Some(error(StatusCode::UNAUTHORIZED, 40101, "Unauthorized"));
        }
    }
    let mut store = inner.store.lock().expect("registry store");
    if store.down {
        store.refused += 1;
        return Some(error(StatusCode::SERVICE_UNAVAILABLE, 50003, "Error while forwarding the request to the leader"));
    }
    None
}

async fn schema_by_id(State(inner): State<Arc<Inner>>, Path(id): Path<u32>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&inner, &headers) {
        return refused;
    }
    let mut store = inner.store.lock().expect("registry store");
    *store.lookups.entry(id).or_default() += 1;
    match store.schemas.get(&id) {
        Some(schema) => ok(json!({ "schema": schema })),
        None => error(StatusCode::NOT_FOUND, 40403, format!("Schema {id} not found")),
    }
}

async fn latest(State(inner): State<Arc<Inner>>, Path(subject): Path<String>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&inner, &headers) {
        return refused;
    }
    let store = inner.store.lock().expect("registry store");
    match store.subjects.get(&subject).and_then(|v| v.last().map(|id| (v.len(), *id))) {
        Some((version, id)) => {
            ok(json!({ "subject": subject, "version": version, "id": id, "schema": store.schemas[&id] }))
        }
        None => error(StatusCode::NOT_FOUND, 40401, format!("Subject '{subject}' not found.")),
    }
}

#[derive(serde::Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
}

/// The schema of a request the registry admits (boxed: a response is large).
fn admitted_schema(inner: &Inner, headers: &HeaderMap, body: &str) -> Result<Schema, Box<Response>> {
    if let Some(refused) = refusal(inner, headers) {
        return Err(Box::new(refused));
    }
    parse_body(body).map_err(|why| Box::new(error(StatusCode::UNPROCESSABLE_ENTITY, 42201, why)))
}

/// The schema of a request body, or why it is invalid (422, error_code 42201).
fn parse_body(body: &str) -> Result<Schema, String> {
    let request: SchemaBody = serde_json::from_str(body).map_err(|e| format!("Invalid request: {e}"))?;
    if request.schema_type.as_deref().is_some_and(|t| t != "AVRO") {
        return Err("Only AVRO is served by this test registry".to_owned());
    }
    Schema::parse_str(&request.schema).map_err(|e| format!("Invalid schema: {e}"))
}

/// BACKWARD: the new schema must read what the latest version wrote.
fn incompatibility(store: &Store, subject: &str, new: &Schema) -> Option<String> {
    let latest_id = store.subjects.get(subject)?.last()?;
    let latest = Schema::parse_str(&store.schemas[latest_id]).ok()?;
    // apache-avro 0.22 answers `Partial` where reading may fail (a reader
    // field without a default among them): only `Full` is BACKWARD compatible.
    let why = match SchemaCompatibility::can_read(&latest, new) {
        Ok(Compatibility::Full) => return None,
        Ok(Compatibility::Partial) => "only partially compatible (reading may fail)".to_owned(),
        Err(e) => e.to_string(),
    };
    Some(format!("{why}, reader: {}, writer: {}", new.canonical_form(), latest.canonical_form()))
}

#[derive(serde::Deserialize)]
struct Verbose {
    #[serde(default)]
    verbose: bool,
}

async fn compatibility(
    State(inner): State<Arc<Inner>>,
    Path(subject): Path<String>,
    Query(verbose): Query<Verbose>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let new = match admitted_schema(&inner, &headers, &body) {
        Ok(schema) => schema,
        Err(refused) => return *refused,
    };
    let store = inner.store.lock().expect("registry store");
    if !store.subjects.contains_key(&subject) {
        return error(StatusCode::NOT_FOUND, 40401, format!("Subject '{subject}' not found."));
    }
    match (incompatibility(&store, &subject, &new), verbose.verbose) {
        (None, _) => ok(json!({ "is_compatible": true })),
        (Some(why), true) => ok(json!({ "is_compatible": false, "messages": [why] })),
        (Some(_), false) => ok(json!({ "is_compatible": false })),
    }
}

async fn register(
    State(inner): State<Arc<Inner>>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let new = match admitted_schema(&inner, &headers, &body) {
        Ok(schema) => schema,
        Err(refused) => return *refused,
    };
    let mut store = inner.store.lock().expect("registry store");
    let canonical = new.canonical_form();
    let same = |text: &String| Schema::parse_str(text).is_ok_and(|s| s.canonical_form() == canonical);
    let existing = store.schemas.iter().find(|(_, text)| same(text)).map(|(id, _)| *id);
    if let Some(id) = existing.filter(|id| store.subjects.get(&subject).is_some_and(|v| v.contains(id))) {
        return ok(json!({ "id": id }));
    }
    if let Some(why) = incompatibility(&store, &subject, &new) {
        return error(
            StatusCode::CONFLICT,
            409,
            format!("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{why}]"),
        );
    }
    let id = existing.unwrap_or_else(|| store.schemas.keys().next_back().map_or(1, |last| last + 1));
    let text = serde_json::from_str::<SchemaBody>(&body).map(|b| b.schema).unwrap_or_default();
    store.schemas.entry(id).or_insert(text);
    store.subjects.entry(subject).or_default().push(id);
    ok(json!({ "id": id }))
}
