//! The registry's REST calls this project uses (Confluent Schema Registry
//! API v1, also served by Karapace, Redpanda and Apicurio's ccompat API):
//! `GET /schemas/ids/{id}`, `GET /subjects/{s}/versions/latest`,
//! `POST /compatibility/subjects/{s}/versions/latest` and
//! `POST /subjects/{s}/versions`.

use serde::Deserialize;

use super::config::{RegistryAuth, RegistryConfig};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
const ACCEPT: &str = "application/vnd.schemaregistry.v1+json, application/json;q=0.9";
/// Error bodies are quoted in messages up to this many bytes.
const MAX_QUOTED_BODY: usize = 300;

/// Confluent error codes this client tells apart.
const SUBJECT_NOT_FOUND: i64 = 40401;
const VERSION_NOT_FOUND: i64 = 40402;
const SCHEMA_NOT_FOUND: i64 = 40403;

/// Why a registry call failed. Every message names the registry's URL and
/// never a secret.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Could not connect, timed out, or the registry answered 5xx/429/408:
    /// try again later (the consumer backs off; nothing is dead-lettered).
    #[error("registry {url}: unavailable: {why}")]
    Unavailable { url: String, why: String },
    /// The TLS handshake failed (an untrusted or mismatched certificate):
    /// a configuration error, not an outage.
    #[error("registry {url}: TLS: {why} (check [registry] ca_file and the URL's host)")]
    Tls { url: String, why: String },
    /// 401/403: the credentials are wrong or lack a permission.
    #[error("registry {url}: {status} {message}: check [registry] username and password_file (or token_file)")]
    Unauthorized { url: String, status: u16, message: String },
    /// The registry refuses the schema as incompatible with the subject's latest version.
    #[error("registry {url}: subject {subject}: the schema is incompatible with the latest version: {message}")]
    Incompatible { url: String, subject: String, message: String },
    /// Any other refusal (invalid schema, bad request, unexpected answer).
    #[error("registry {url}: {what}: {status} {message}")]
    Refused { url: String, what: String, status: u16, message: String },
    /// The client could not be built (the CA file).
    #[error("registry {url}: {why}")]
    Setup { url: String, why: String },
}

impl RegistryError {
    /// Worth retrying: the registry may answer later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RegistryError::Unavailable { .. })
    }
}

/// A schema as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RegisteredSchema {
    /// Global schema id (what messages carry).
    #[serde(default)]
    pub id: Option<u32>,
    /// The schema text (Avro: JSON).
    pub schema: String,
    /// Absent for Avro (the registry's default), else `PROTOBUF` or `JSON`.
    #[serde(default, rename = "schemaType")]
    pub schema_type: Option<String>,
    /// Schema references; this project's records use none.
    #[serde(default)]
    pub references: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: i64,
    message: String,
}

#[derive(Deserialize)]
struct IdBody {
    id: u32,
}

#[derive(Deserialize)]
struct CompatibilityBody {
    is_compatible: bool,
    #[serde(default)]
    messages: Vec<String>,
}

/// A registry client: one connection pool, the credentials, the timeout.
#[derive(Debug, Clone)]
pub struct Registry {
    config: RegistryConfig,
    http: reqwest::Client,
}

/// A non-2xx answer: its status, Confluent error code and message.
struct Answer {
    status: u16,
    code: Option<i64>,
    message: String,
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        let setup = |why: String| RegistryError::Setup { url: config.url.to_string(), why };
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("dualwrite/", env!("CARGO_PKG_VERSION")))
            // The URL is the registry: never follow a redirect elsewhere with the credentials.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| setup(format!("cannot read ca_file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| setup(format!("ca_file {}: {e}", path.display())))?;
            // A private CA replaces the public roots, as `[tls] ca_file` does for MySQL.
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| setup(format!("building the HTTP client: {e}")))?;
        Ok(Self { config, http })
    }

    /// The base URL (never holds credentials).
    pub fn url(&self) -> &reqwest::Url {
        &self.config.url
    }

    /// `GET /schemas/ids/{id}`; `None` when the registry does not know the id.
    pub async fn schema_by_id(&self, id: u32) -> Result<Option<RegisteredSchema>, RegistryError> {
        let what = format!("schema id {id}");
        let request = self.http.get(self.endpoint(&["schemas", "ids", &id.to_string()]));
        match self.send(request, &what).await? {
            Ok(body) => Ok(Some(self.json(&body, &what)?)),
            Err(a) if a.status == 404 && a.code.is_none_or(|c| c == SCHEMA_NOT_FOUND) => Ok(None),
            Err(a) => Err(self.refused(what, a)),
        }
    }

    /// `GET /subjects/{subject}/versions/latest`; `None` when the subject has no version.
    pub async fn latest(&self, subject: &str) -> Result<Option<RegisteredSchema>, RegistryError> {
        let what = format!("subject {subject}");
        let request = self.http.get(self.endpoint(&["subjects", subject, "versions", "latest"]));
        match self.send(request, &what).await? {
            Ok(body) => Ok(Some(self.json(&body, &what)?)),
            Err(a) if is_no_version(&a) => Ok(None),
            Err(a) => Err(self.refused(what, a)),
        }
    }

    /// `POST /compatibility/subjects/{subject}/versions/latest?verbose=true`:
    /// `Err(messages)` when the registry finds `schema` incompatible under
    /// the subject's compatibility level. A subject without versions accepts anything.
    pub async fn check_compatibility(&self, subject: &str, schema: &str) -> Result<Result<(), String>, RegistryError> {
        let what = format!("compatibility of subject {subject}");
        let mut url = self.endpoint(&["compatibility", "subjects", subject, "versions", "latest"]);
        url.set_query(Some("verbose=true"));
        let request = self.http.post(url).header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE).body(avro_body(schema));
        match self.send(request, &what).await? {
            Ok(body) => {
                let answer: CompatibilityBody = self.json(&body, &what)?;
                if answer.is_compatible {
                    Ok(Ok(()))
                } else if answer.messages.is_empty() {
                    Ok(Err("the registry gave no details (compatibility level of the subject)".to_owned()))
                } else {
                    Ok(Err(answer.messages.join("; ")))
                }
            }
            Err(a) if is_no_version(&a) => Ok(Ok(())),
            Err(a) => Err(self.refused(what, a)),
        }
    }

    /// `POST /subjects/{subject}/versions`: the schema's global id (the
    /// existing one if this exact schema is registered already).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let what = format!("registering under subject {subject}");
        let request = self
            .http
            .post(self.endpoint(&["subjects", subject, "versions"]))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(avro_body(schema));
        match self.send(request, &what).await? {
            Ok(body) => Ok(self.json::<IdBody>(&body, &what)?.id),
            Err(a) if a.status == 409 => Err(RegistryError::Incompatible {
                url: self.config.url.to_string(),
                subject: subject.to_owned(),
                message: a.message,
            }),
            Err(a) => Err(self.refused(what, a)),
        }
    }

    /// The base URL with `segments` appended, each percent-encoded (subjects
    /// may hold any character).
    fn endpoint(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.config.url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends with the credentials; transport errors, 5xx, 429 and 408 are
    /// [`RegistryError::Unavailable`], 401/403 [`RegistryError::Unauthorized`];
    /// other answers are returned: the body (2xx) or the error.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Result<Vec<u8>, Answer>, RegistryError> {
        let request = match &self.config.auth {
            RegistryAuth::None => request,
            RegistryAuth::Basic { username, password } => request.basic_auth(username, Some(password.expose_secret())),
            RegistryAuth::Bearer(token) => request.bearer_auth(token.expose_secret()),
        };
        let url = self.config.url.to_string();
        let unavailable = |why: String| RegistryError::Unavailable { url: url.clone(), why: format!("{what}: {why}") };
        let response =
            request.header(reqwest::header::ACCEPT, ACCEPT).send().await.map_err(|e| match tls_error(&e) {
                Some(why) => RegistryError::Tls { url: url.clone(), why },
                None => unavailable(chain(&e)),
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| unavailable(chain(&e)))?;
        if status.is_success() {
            return Ok(Ok(body.to_vec()));
        }
        let answer = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => Answer { status: status.as_u16(), code: Some(e.error_code), message: one_line(&e.message) },
            Err(_) => Answer {
                status: status.as_u16(),
                code: None,
                message: one_line(&String::from_utf8_lossy(&body[..body.len().min(MAX_QUOTED_BODY)])),
            },
        };
        let described = match answer.code {
            Some(code) => format!("{} {}: {} (error_code {code})", status.as_u16(), reason(status), answer.message),
            None => format!("{} {}: {}", status.as_u16(), reason(status), answer.message),
        };
        match status.as_u16() {
            401 | 403 => Err(RegistryError::Unauthorized {
                url,
                status: status.as_u16(),
                message: format!("{} ({what})", reason(status)),
            }),
            408 | 429 | 500..=599 => Err(unavailable(described)),
            _ => Ok(Err(answer)),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self, body: &[u8], what: &str) -> Result<T, RegistryError> {
        serde_json::from_slice(body).map_err(|e| RegistryError::Refused {
            url: self.config.url.to_string(),
            what: what.to_owned(),
            status: 200,
            message: format!("unexpected answer: {e}"),
        })
    }

    fn refused(&self, what: String, a: Answer) -> RegistryError {
        let message = match a.code {
            Some(code) => format!("{} (error_code {code})", a.message),
            None => a.message,
        };
        RegistryError::Refused { url: self.config.url.to_string(), what, status: a.status, message }
    }
}

/// The request body of the schema calls (`schemaType` omitted: Avro is the default).
fn avro_body(schema: &str) -> Vec<u8> {
    serde_json::json!({ "schema": schema }).to_string().into_bytes()
}

fn is_no_version(a: &Answer) -> bool {
    a.status == 404 && matches!(a.code, Some(SUBJECT_NOT_FOUND | VERSION_NOT_FOUND))
}

fn reason(status: reqwest::StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("")
}

/// An error with its causes, on one line (reqwest's top error says only
/// "error sending request"; the cause says refused, timed out or the TLS failure).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    one_line(&text)
}

/// The rustls error under `error`, if the failure was the TLS handshake
/// (hyper-rustls and tokio-rustls wrap it in `io::Error`s, whose `source()`
/// skips what they wrap, so those are opened with `get_ref`).
fn tls_error(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(one_line(&tls.to_string()));
        }
        next = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}
