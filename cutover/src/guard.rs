//! The guard around every route of the query API (and any route added to
//! the same server later, such as a console page): a bearer token on all but
//! `/healthz`, a limit on requests in flight, a deadline per request and a
//! cap on response bytes.
//!
//! It is one layer over the whole `axum::Router`, applied last in
//! [`crate::serve`], so a route cannot be added without it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cluster::secret::Secret;
use tokio::sync::Semaphore;

/// The one route answered without a token: load balancers and probes.
pub const HEALTH_PATH: &str = "/healthz";

/// Limits of the guard; defaults are what `dualwrite-cutover serve` uses.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// The bearer token every route but `/healthz` requires (read from a file).
    pub token: Secret,
    /// Longest a request may take, end to end; then 504. Each SQL read is
    /// also bounded by the server ([`crate::query::STATEMENT_TIMEOUT`]).
    pub request_timeout: Duration,
    /// Requests handled at once; more get 503 at once rather than queueing
    /// behind slow reads (the shards serve the consumers first).
    pub max_in_flight: usize,
    /// Largest response body; a larger answer is refused with 503 instead of
    /// being streamed to the client.
    pub max_response_bytes: usize,
}

impl GuardConfig {
    /// The defaults with `token`.
    pub fn new(token: Secret) -> Self {
        Self { token, request_timeout: Duration::from_secs(10), max_in_flight: 32, max_response_bytes: 8 << 20 }
    }
}

/// Why the token could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file cannot be read.
    #[error("--token-file: cannot read {}: {error}", path.display())]
    Read {
        /// The path given.
        path: std::path::PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// Too short to resist guessing.
    #[error("--token-file: {} holds fewer than 16 characters (after trimming newlines)", .0.display())]
    Short(std::path::PathBuf),
}

/// Reads a bearer token from `path` (trailing newlines dropped).
pub fn load_token(path: &std::path::Path) -> Result<Secret, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|error| TokenError::Read { path: path.to_owned(), error })?;
    let token = text.trim_end_matches(['\n', '\r']);
    if token.len() < 16 {
        return Err(TokenError::Short(path.to_owned()));
    }
    Ok(Secret::new(token))
}

struct Guard {
    config: GuardConfig,
    in_flight: Semaphore,
}

/// `app` with the guard around every route it has.
pub fn guard(app: axum::Router, config: GuardConfig) -> axum::Router {
    let state = Arc::new(Guard { in_flight: Semaphore::new(config.max_in_flight.max(1)), config });
    app.layer(axum::middleware::from_fn_with_state(state, check))
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    if request.uri().path() != HEALTH_PATH && !authorized(&request, &guard.config.token) {
        metrics::counter!("dualwrite_api_refused_total", "reason" => "unauthorized").increment(1);
        let mut response = refuse(StatusCode::UNAUTHORIZED, "a bearer token is required (Authorization: Bearer ...)");
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let Ok(_permit) = guard.in_flight.try_acquire() else {
        metrics::counter!("dualwrite_api_refused_total", "reason" => "busy").increment(1);
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many requests in flight, retry later");
    };
    let limit = guard.config.max_response_bytes;
    let handled = async {
        let response = next.run(request).await;
        let (parts, body) = response.into_parts();
        match axum::body::to_bytes(body, limit).await {
            Ok(bytes) => Response::from_parts(parts, Body::from(bytes)),
            Err(_) => {
                metrics::counter!("dualwrite_api_refused_total", "reason" => "too_large").increment(1);
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("the answer exceeds {limit} bytes: narrow the time range or lower limit"),
                )
            }
        }
    };
    match tokio::time::timeout(guard.config.request_timeout, handled).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("dualwrite_api_refused_total", "reason" => "timeout").increment(1);
            refuse(StatusCode::GATEWAY_TIMEOUT, "the request took too long: narrow the time range")
        }
    }
}

/// Whether the request carries the token. Compared in constant time so the
/// answer's timing says nothing about how much of a guess was right.
fn authorized(request: &Request, token: &Secret) -> bool {
    let Some(value) = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(given) = value.strip_prefix("Bearer ") else {
        return false;
    };
    let (given, want) = (given.trim().as_bytes(), token.expose_secret().as_bytes());
    if given.len() != want.len() {
        return false;
    }
    given.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn app(config: GuardConfig) -> axum::Router {
        let routes = axum::Router::new()
            .route(HEALTH_PATH, get(|| async { "ok" }))
            .route("/v1/fast", get(|| async { "fast" }))
            .route("/v1/big", get(|| async { "x".repeat(4096) }))
            .route("/v1/never", get(|| std::future::pending::<&'static str>()));
        guard(routes, config)
    }

    async fn call(app: &axum::Router, path: &str, token: Option<&str>) -> (StatusCode, String) {
        use tower::ServiceExt;
        let mut request = Request::builder().uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = app.clone().oneshot(request.body(Body::empty()).expect("request")).await.expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn every_route_but_healthz_needs_the_token() {
        let app = app(GuardConfig::new(Secret::new(TOKEN)));
        assert_eq!(call(&app, HEALTH_PATH, None).await, (StatusCode::OK, "ok".to_owned()));
        assert_eq!(call(&app, "/v1/fast", None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(call(&app, "/v1/fast", Some("0123456789abcdef-tokeN")).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(call(&app, "/v1/fast", Some("short")).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(call(&app, "/no/such/route", None).await.0, StatusCode::UNAUTHORIZED, "unknown routes too");
        assert_eq!(call(&app, "/v1/fast", Some(TOKEN)).await, (StatusCode::OK, "fast".to_owned()));
    }

    #[tokio::test]
    async fn a_request_past_its_deadline_is_answered_504() {
        let config = GuardConfig { request_timeout: Duration::from_millis(50), ..GuardConfig::new(Secret::new(TOKEN)) };
        let (status, body) = call(&app(config), "/v1/never", Some(TOKEN)).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert!(body.contains("took too long"), "{body}");
    }

    #[tokio::test]
    async fn an_answer_over_the_byte_cap_is_refused() {
        let config = GuardConfig { max_response_bytes: 1024, ..GuardConfig::new(Secret::new(TOKEN)) };
        let app = app(config);
        let (status, body) = call(&app, "/v1/big", Some(TOKEN)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("exceeds 1024 bytes"), "{body}");
        assert_eq!(call(&app, "/v1/fast", Some(TOKEN)).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn requests_beyond_the_in_flight_limit_are_refused_not_queued() {
        let config = GuardConfig { max_in_flight: 1, ..GuardConfig::new(Secret::new(TOKEN)) };
        let app = app(config);
        let stuck = tokio::spawn({
            let app = app.clone();
            async move { call(&app, "/v1/never", Some(TOKEN)).await }
        });
        // The stuck request holds the only permit once it is inside the handler.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, _) = call(&app, "/v1/fast", Some(TOKEN)).await;
            if status == StatusCode::SERVICE_UNAVAILABLE {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the second request was never refused");
            tokio::task::yield_now().await;
        }
        stuck.abort();
        let _ = stuck.await;
    }

    #[test]
    fn loads_a_token_and_refuses_a_short_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, format!("{TOKEN}\n")).expect("write");
        assert_eq!(load_token(&path).expect("valid").expose_secret(), TOKEN);
        std::fs::write(&path, "abc\n").expect("write");
        assert!(load_token(&path).expect_err("short").to_string().contains("fewer than 16"));
    }
}
