//! The HTTP query API: the reads an Insights page makes, through the router.
//!
//! Every answer is wrapped with the cluster that served it and the routing
//! version it started under:
//! `{"cluster": "new", "version": 7, "waited_ms": 0, "data": ...}`.
//! Times are RFC 3339 or seconds since the epoch; `[from, to)`.

use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::console::ConsoleConfig;
use crate::query::{Answer, Granularity, Query, QueryError, TopBy};
use crate::router::{Routed, Router};

/// Default time range when `from` is not given.
const DEFAULT_RANGE_S: i64 = 24 * 3600;
/// Widest time range one request may ask for (the retention of a default
/// store is 8 days; a month bounds what a typo like a missing `from` digit
/// can make the shards scan).
pub const MAX_RANGE_S: i64 = 31 * 24 * 3600;
const DEFAULT_LIMIT: u32 = 20;

/// The API's routes over `router`, and the migration console's page.
pub fn app(router: Router, console_config: std::sync::Arc<ConsoleConfig>) -> axum::Router {
    axum::Router::new()
        .route(crate::guard::HEALTH_PATH, get(healthz))
        .route("/console", get(console).with_state(console_config))
        .route("/v1/router", get(router_stats))
        .route("/v1/databases/{database_id}/patterns/top", get(top_patterns))
        .route("/v1/databases/{database_id}/patterns/{fingerprint}/series", get(series))
        .route("/v1/databases/{database_id}/slow-queries", get(slow))
        .route("/v1/patterns/search", get(search))
        .with_state(router)
}

#[derive(Debug, Serialize)]
struct Envelope {
    cluster: String,
    version: u64,
    waited_ms: u64,
    data: Answer,
}

impl From<Routed> for Envelope {
    fn from(r: Routed) -> Self {
        Envelope { cluster: r.cluster, version: r.version, waited_ms: r.waited_ms, data: r.answer }
    }
}

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Invalid(_) => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
            _ => ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

#[derive(Debug, Default, Deserialize)]
struct Params {
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
    by: Option<String>,
    granularity: Option<String>,
    step: Option<String>,
    q: Option<String>,
    database_id: Option<u64>,
}

fn parse_time(name: &str, text: &str) -> Result<i64, ApiError> {
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .map_err(|e| bad(format!("{name}: expected RFC 3339 or epoch seconds: {e}")))
}

impl Params {
    fn range(&self) -> Result<(i64, i64), ApiError> {
        let to = match &self.to {
            Some(t) => parse_time("to", t)?,
            None => chrono::Utc::now().timestamp() + 1,
        };
        let from = match &self.from {
            Some(f) => parse_time("from", f)?,
            None => to - DEFAULT_RANGE_S,
        };
        if to.saturating_sub(from) > MAX_RANGE_S {
            return Err(bad(format!(
                "range: {} s from `from` to `to` is more than the {MAX_RANGE_S} s (31 days) one request may read",
                to.saturating_sub(from)
            )));
        }
        Ok((from, to))
    }

    fn granularity(&self) -> Result<Granularity, ApiError> {
        match self.granularity.as_deref() {
            None | Some("hour") => Ok(Granularity::Hour),
            Some("minute") => Ok(Granularity::Minute),
            Some(other) => Err(bad(format!("granularity: expected minute or hour, got {other:?}"))),
        }
    }
}

/// 200 while the router follows the routing state, 503 once it has not
/// read it for a while (then it may be reading the wrong cluster).
async fn healthz(State(router): State<Router>) -> Response {
    let (following, since) = router.following();
    if following {
        return "ok".into_response();
    }
    let message = format!("the router has not read the routing state for {} ms", since.as_millis());
    ApiError(StatusCode::SERVICE_UNAVAILABLE, message).into_response()
}

async fn router_stats(State(router): State<Router>) -> Json<crate::router::RouterStats> {
    Json(router.stats())
}

async fn top_patterns(
    State(router): State<Router>,
    Path(database_id): Path<u64>,
    QueryParams(p): QueryParams<Params>,
) -> Result<Json<Envelope>, ApiError> {
    let (from, to) = p.range()?;
    let by = match p.by.as_deref() {
        None | Some("total_time") => TopBy::TotalTime,
        Some("count") => TopBy::Count,
        Some(other) => return Err(bad(format!("by: expected total_time or count, got {other:?}"))),
    };
    let query = Query::TopPatterns {
        database_id,
        from,
        to,
        by,
        limit: p.limit.unwrap_or(DEFAULT_LIMIT),
        granularity: p.granularity()?,
    };
    let mut routed = router.read(query).await?;
    // Label the patterns with their SQL, read through the routing of the group holding the texts.
    if let Answer::TopPatterns(rows) = &mut routed.answer {
        let fingerprints = rows.iter().map(|r| r.fingerprint.clone()).collect();
        let texts = router.read(Query::PatternTexts { database_id, fingerprints }).await?;
        if let Answer::Texts(texts) = texts.answer {
            for row in rows.iter_mut() {
                row.normalized_sql = texts.get(&row.fingerprint).cloned();
            }
        }
    }
    Ok(Json(routed.into()))
}

async fn series(
    State(router): State<Router>,
    Path((database_id, fingerprint)): Path<(u64, String)>,
    QueryParams(p): QueryParams<Params>,
) -> Result<Json<Envelope>, ApiError> {
    let (from, to) = p.range()?;
    let step = match &p.step {
        Some(s) => Some(
            humantime::parse_duration(s)
                .map_err(|e| bad(format!("step: {e}")))
                .and_then(|d| i64::try_from(d.as_secs()).map_err(|_| bad("step too large")))?,
        ),
        None => None,
    };
    let query = Query::Series { database_id, fingerprint, from, to, granularity: p.granularity()?, step };
    Ok(Json(router.read(query).await?.into()))
}

async fn slow(
    State(router): State<Router>,
    Path(database_id): Path<u64>,
    QueryParams(p): QueryParams<Params>,
) -> Result<Json<Envelope>, ApiError> {
    let (from, to) = p.range()?;
    let query = Query::SlowQueries { database_id, from, to, limit: p.limit.unwrap_or(DEFAULT_LIMIT) };
    Ok(Json(router.read(query).await?.into()))
}

async fn search(State(router): State<Router>, QueryParams(p): QueryParams<Params>) -> Result<Json<Envelope>, ApiError> {
    let needle = p.q.clone().ok_or_else(|| bad("q: the SQL text to search for is required"))?;
    let query = Query::SearchPatterns { needle, database_id: p.database_id, limit: p.limit.unwrap_or(DEFAULT_LIMIT) };
    Ok(Json(router.read(query).await?.into()))
}

/// `GET /console`: JSON when asked for, the page otherwise.
async fn console(State(config): State<std::sync::Arc<ConsoleConfig>>, headers: HeaderMap) -> Response {
    let facts = crate::console::facts(&config).await;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"));
    if wants_json {
        return (StatusCode::OK, Json(facts)).into_response();
    }
    Html(crate::console_page::html(&facts)).into_response()
}
