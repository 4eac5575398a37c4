//! The HTTP API.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/{namespace}/{key}` | 200 with the value, or 404; `?cache_ttl=` (≥ 30 s) |
//! | `PUT /v1/{namespace}/{key}` | 200 `{"version": N}` once the origin holds it; `?expiration=` or `?expiration_ttl=` (≥ 60 s), `kv-metadata` header |
//! | `DELETE /v1/{namespace}/{key}` | 204 |
//! | `GET /v1/{namespace}?prefix=&cursor=&limit=` | `{"keys": [...], "list_complete": bool, "cursor": ...}` |
//! | `GET /healthz`, `GET /readyz` | the process is up; an upstream is reachable |
//!
//! Keys are percent-decoded from the path and may contain `/`. Every error
//! is JSON: `{"error": {"code": "...", "message": "..."}}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kv_proto::limits::{MAX_KEY_LEN, MAX_LIST_LIMIT, MAX_VALUE_LEN};
use kv_proto::{Key, ListRequest, Metadata, Namespace, PutRequest, RequestId, Status};
use kv_runtime::time::unix_seconds;
use serde_json::json;
use tracing::Instrument;

use crate::edge::{Edge, EdgeError};

/// Rules of the API that an operator may tune.
#[derive(Debug, Clone, Copy)]
pub struct ApiOptions {
    /// Shortest per-read cache TTL, seconds (Workers KV: 30).
    pub min_cache_ttl: u64,
    /// Shortest expiration TTL, and how far ahead an absolute expiration
    /// must be, seconds (Workers KV: 60).
    pub min_expiration_ttl: u64,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            min_cache_ttl: 30,
            min_expiration_ttl: 60,
        }
    }
}

/// What every handler sees.
#[derive(Debug)]
struct Api {
    edge: Arc<Edge>,
    options: ApiOptions,
}

type Shared = State<Arc<Api>>;

static KV_TIER: HeaderName = HeaderName::from_static("kv-tier");
static KV_EXPIRATION: HeaderName = HeaderName::from_static("kv-expiration");
static KV_METADATA: HeaderName = HeaderName::from_static("kv-metadata");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The API's routes over `edge`.
pub fn router(edge: Arc<Edge>, options: ApiOptions) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/{namespace}", get(list))
        .route(
            "/v1/{namespace}/{*key}",
            get(get_key).put(put_key).delete(delete_key),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        // PUT enforces the value limit itself, so it can answer 413 early.
        .layer(DefaultBodyLimit::disable())
        .with_state(Arc::new(Api { edge, options }))
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<EdgeError> for ApiError {
    fn from(error: EdgeError) -> Self {
        match &error {
            EdgeError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                error.to_string(),
            ),
            EdgeError::Upstream { status, .. } => {
                let (code, name) = match status {
                    Status::BadRequest => (StatusCode::BAD_REQUEST, "bad_request"),
                    Status::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
                    Status::NotFound => (StatusCode::NOT_FOUND, "not_found"),
                    Status::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                    Status::Ok | Status::Internal => {
                        (StatusCode::INTERNAL_SERVER_ERROR, "internal")
                    }
                };
                Self::new(code, name, error.to_string())
            }
        }
    }
}

type Params = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

fn params(query: Params) -> Result<HashMap<String, String>, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

fn number(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("{name} must be a whole number")))
        })
        .transpose()
}

fn namespace(raw: &str) -> Result<Namespace, ApiError> {
    Namespace::new(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn target(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(Namespace, Key), ApiError> {
    let Path((ns, key)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if key.len() > MAX_KEY_LEN {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "key_too_long",
            format!(
                "key of {} bytes exceeds the limit of {MAX_KEY_LEN} bytes",
                key.len()
            ),
        ));
    }
    let key = Key::new(key).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((namespace(&ns)?, key))
}

/// The caller's `x-request-id` when it is one of ours (16 hex digits), else a new one.
fn request_id(headers: &HeaderMap) -> RequestId {
    headers
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(RequestId::random)
}

fn with_request_id(mut response: Response, id: RequestId) -> Response {
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}

fn span(id: RequestId, op: &'static str, namespace: &str, key: Option<&str>) -> tracing::Span {
    tracing::info_span!(
        "http",
        request_id = %id,
        op,
        namespace,
        key_hash = key.map(kv_runtime::telemetry::key_hash),
        tier = tracing::field::Empty,
        status = tracing::field::Empty,
    )
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn readyz(State(api): Shared) -> Response {
    if api.edge.upstream().reachable().await {
        axum::Json(json!({ "status": "ready" })).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no upstream tier is reachable",
        )
        .into_response()
    }
}

async fn get_key(
    State(api): Shared,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Params,
    headers: HeaderMap,
) -> Response {
    let id = request_id(&headers);
    let result = async {
        let (ns, key) = target(path)?;
        let span = span(id, "get", ns.as_str(), Some(key.as_str()));
        let params = params(query)?;
        let cache_ttl = match number(&params, "cache_ttl")? {
            Some(ttl) if ttl < api.options.min_cache_ttl => {
                let min = api.options.min_cache_ttl;
                return Err(ApiError::bad_request(format!(
                    "cache_ttl must be at least {min}"
                )));
            }
            Some(ttl) => Some(u32::try_from(ttl).unwrap_or(u32::MAX)),
            None => None,
        };
        let read = api
            .edge
            .get(id, ns, key, cache_ttl)
            .instrument(span.clone())
            .await?;
        span.record("tier", read.tier.as_str());
        let Some(entry) = read.entry else {
            span.record("status", 404);
            let mut response =
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "key not found").into_response();
            response.headers_mut().insert(
                KV_TIER.clone(),
                HeaderValue::from_static(read.tier.as_str()),
            );
            return Ok(response);
        };
        let etag = format!("\"{}\"", entry.version);
        let matches = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().trim_start_matches("W/") == etag || t.trim() == "*")
            });
        let mut response = if matches {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            Body::from(entry.value).into_response()
        };
        span.record("status", response.status().as_u16());
        let headers = response.headers_mut();
        if !matches {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
        }
        headers.insert(header::ETAG, header_value(&etag));
        headers.insert(
            KV_TIER.clone(),
            HeaderValue::from_static(read.tier.as_str()),
        );
        if let Some(expiration) = entry.expiration {
            headers.insert(KV_EXPIRATION.clone(), HeaderValue::from(expiration));
        }
        if let Some(metadata) = &entry.metadata {
            headers.insert(KV_METADATA.clone(), header_value(metadata.as_str()));
        }
        Ok(response)
    }
    .await;
    with_request_id(result.unwrap_or_else(IntoResponse::into_response), id)
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn put_key(
    State(api): Shared,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = request_id(&headers);
    let result = async {
        let (ns, key) = target(path)?;
        let span = span(id, "put", ns.as_str(), Some(key.as_str()));
        let params = params(query)?;
        let min_ttl = api.options.min_expiration_ttl;
        let expiration = match (
            number(&params, "expiration")?,
            number(&params, "expiration_ttl")?,
        ) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "give expiration or expiration_ttl, not both",
                ));
            }
            (_, Some(ttl)) if ttl < min_ttl => {
                return Err(ApiError::bad_request(format!(
                    "expiration_ttl must be at least {min_ttl}"
                )));
            }
            (_, Some(ttl)) => Some(unix_seconds().saturating_add(ttl)),
            (Some(at), None) if at < unix_seconds().saturating_add(min_ttl) => {
                return Err(ApiError::bad_request(format!(
                    "expiration must be at least {min_ttl} seconds ahead"
                )));
            }
            (at, None) => at,
        };
        let metadata = match headers.get(&KV_METADATA) {
            None => None,
            Some(raw) => Some(
                Metadata::new(Bytes::copy_from_slice(raw.as_bytes()))
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            ),
        };
        let value = read_value(&headers, body).await?;
        let mut put = PutRequest::new(ns, key, value).map_err(|e| too_large(e.to_string()))?;
        put.expiration = expiration;
        put.metadata = metadata;
        let version = api.edge.put(id, put).instrument(span).await?;
        Ok(axum::Json(json!({ "version": version })).into_response())
    }
    .await;
    with_request_id(result.unwrap_or_else(IntoResponse::into_response), id)
}

fn too_large(message: String) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "value_too_large", message)
}

/// Reads a value of at most 25 MiB. A declared length over the limit is
/// refused before any of the body is read; an undeclared one is cut off.
async fn read_value(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit_message = || format!("value exceeds the limit of {MAX_VALUE_LEN} bytes");
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_VALUE_LEN as u64) {
        return Err(too_large(limit_message()));
    }
    axum::body::to_bytes(body, MAX_VALUE_LEN)
        .await
        .map_err(|e| {
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over {
                too_large(limit_message())
            } else {
                ApiError::bad_request(format!("cannot read body: {e}"))
            }
        })
}

async fn delete_key(
    State(api): Shared,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let id = request_id(&headers);
    let result = async {
        let (ns, key) = target(path)?;
        let span = span(id, "delete", ns.as_str(), Some(key.as_str()));
        api.edge.delete(id, ns, key).instrument(span).await?;
        Ok::<_, ApiError>(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    with_request_id(result.unwrap_or_else(IntoResponse::into_response), id)
}

async fn list(
    State(api): Shared,
    path: Result<Path<String>, PathRejection>,
    query: Params,
    headers: HeaderMap,
) -> Response {
    let id = request_id(&headers);
    let result = async {
        let Path(ns) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
        let ns = namespace(&ns)?;
        let span = span(id, "list", ns.as_str(), None);
        let params = params(query)?;
        let limit = match number(&params, "limit")? {
            None => MAX_LIST_LIMIT,
            Some(limit) if (1..=u64::from(MAX_LIST_LIMIT)).contains(&limit) => limit as u16,
            Some(_) => return Err(ApiError::bad_request("limit must be between 1 and 1000")),
        };
        let prefix = params.get("prefix").cloned().unwrap_or_default();
        if prefix.len() > MAX_KEY_LEN {
            return Err(ApiError::bad_request("prefix exceeds 512 bytes"));
        }
        let cursor = params.get("cursor").cloned().unwrap_or_default();
        let page = api
            .edge
            .list(
                id,
                ListRequest {
                    namespace: ns,
                    prefix,
                    cursor,
                    limit,
                },
            )
            .instrument(span)
            .await?;
        let keys: Vec<_> = page
            .keys
            .iter()
            .map(|k| {
                let metadata = k
                    .metadata
                    .as_ref()
                    .and_then(|m| serde_json::from_str::<serde_json::Value>(m.as_str()).ok());
                json!({ "name": k.name.as_str(), "expiration": k.expiration, "metadata": metadata })
            })
            .collect();
        let body =
            json!({ "keys": keys, "list_complete": page.cursor.is_none(), "cursor": page.cursor });
        Ok::<_, ApiError>(axum::Json(body).into_response())
    }
    .await;
    with_request_id(result.unwrap_or_else(IntoResponse::into_response), id)
}
