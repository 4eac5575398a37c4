//! The HTTP API.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/{namespace}/{key}` | 200 with the value, or 404; `?cache_ttl=` (30 s to the maximum, 3600 s by default); `kv-min-version` header or `?min_version=`: that version or newer, else 412 `version_unavailable`; answers carry `kv-version`, `kv-tier`, `kv-cache-status` (hit, miss, revalidated, stale) and `age` |
//! | `PUT /v1/{namespace}/{key}` | 200 `{"version": N}` once the origin holds it; `?expiration=` or `?expiration_ttl=` (≥ 60 s), `kv-metadata` header |
//! | `DELETE /v1/{namespace}/{key}` | 204 |
//! | `GET /v1/{namespace}?prefix=&cursor=&limit=` | `{"keys": [...], "list_complete": bool, "cursor": ...}` |
//! | `GET /healthz`, `GET /readyz` | the process is up; an upstream is reachable |
//! | `GET /metrics` | Prometheus metrics (every tier this process runs) |
//!
//! Keys are percent-decoded from the path and may contain `/`. Every error
//! is JSON: `{"error": {"code": "...", "message": "..."}}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kv_proto::limits::{MAX_KEY_LEN, MAX_LIST_LIMIT, MAX_VALUE_LEN};
use kv_proto::{
    ErrorSource, Key, ListRequest, Metadata, Namespace, PutRequest, RequestId, Status, WriteId,
};
use kv_runtime::deadline::Deadline;
use kv_runtime::metrics::{Metrics, Served};
use kv_runtime::time::unix_seconds;
use serde_json::json;
use tracing::Instrument;

use crate::edge::{Edge, EdgeError, Written};
use crate::read::{Read, ReadOptions};

/// Rules of the API that an operator may tune.
#[derive(Debug, Clone, Copy)]
pub struct ApiOptions {
    /// Shortest per-read cache TTL, seconds (Workers KV: 30).
    pub min_cache_ttl: u64,
    /// Longest per-read cache TTL, seconds.
    pub max_cache_ttl: u64,
    /// Shortest expiration TTL, and how far ahead an absolute expiration
    /// must be, seconds (Workers KV: 60).
    pub min_expiration_ttl: u64,
    /// How long each request may take.
    pub deadlines: Deadlines,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            min_cache_ttl: 30,
            max_cache_ttl: 3600,
            min_expiration_ttl: 60,
            deadlines: Deadlines::default(),
        }
    }
}

/// How long a request may take, end to end: every tier behind the edge
/// answers within what is left of it.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// A read or list, from its arrival.
    pub read: Duration,
    /// A write, from when its body has arrived.
    pub write: Duration,
    /// Added to a write's deadline for each MiB of its value.
    pub write_per_mib: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            read: Duration::from_secs(2),
            write: Duration::from_secs(2),
            write_per_mib: Duration::from_millis(500),
        }
    }
}

impl Deadlines {
    fn read(&self) -> Deadline {
        Deadline::after(self.read)
    }

    fn write(&self, value_len: usize) -> Deadline {
        let mib = value_len as f64 / (1024.0 * 1024.0);
        Deadline::after(self.write + self.write_per_mib.mul_f64(mib))
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
static KV_CACHE_STATUS: HeaderName = HeaderName::from_static("kv-cache-status");
static KV_MIN_VERSION: HeaderName = HeaderName::from_static("kv-min-version");
static KV_EXPIRATION: HeaderName = HeaderName::from_static("kv-expiration");
static KV_METADATA: HeaderName = HeaderName::from_static("kv-metadata");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
static KV_WRITE_ID: HeaderName = HeaderName::from_static("kv-write-id");
static KV_VERSION: HeaderName = HeaderName::from_static("kv-version");
static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

const LIST_ROUTE: &str = "/v1/{namespace}";
const KEY_ROUTE: &str = "/v1/{namespace}/{*key}";

/// The API's routes over `edge`; `/metrics` serves `metrics`.
pub fn router(edge: Arc<Edge>, options: ApiOptions, metrics: Arc<Metrics>) -> Router {
    let served = metrics.served("edge");
    let scraped = edge.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(move || async move {
                // The hot cache's size gauges read moka's bookkeeping: settle it first.
                scraped.hot().settle().await;
                kv_runtime::metrics_server::render(&metrics)
            }),
        )
        .route(LIST_ROUTE, get(list))
        .route(KEY_ROUTE, get(get_key).put(put_key).delete(delete_key))
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
        .layer(middleware::from_fn_with_state(served, count_request))
        .with_state(Arc::new(Api { edge, options }))
}

/// Counts every API request (not health checks or scrapes) in
/// `tierkv_requests_total{tier="edge"}` and its duration.
async fn count_request(State(served): State<Served>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let op = match (route.as_deref(), request.method()) {
        (Some("/healthz" | "/readyz" | "/metrics"), _) => return next.run(request).await,
        (Some(LIST_ROUTE), &Method::GET) => "list",
        // A HEAD is a GET without the body (axum serves it with the GET route).
        (Some(KEY_ROUTE), &Method::GET | &Method::HEAD) => "get",
        (Some(KEY_ROUTE), &Method::PUT) => "put",
        (Some(KEY_ROUTE), &Method::DELETE) => "delete",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let _in_flight = served.start();
    let response = next.run(request).await;
    let status = response
        .extensions()
        .get::<Status>()
        .copied()
        .unwrap_or_else(|| status_of(response.status()));
    served.observe(op, status, started.elapsed());
    response
}

/// The protocol status an HTTP answer stands for, when the answer does not
/// carry one (errors carry theirs, so 504s tell `timeout` from `outcome_unknown`).
fn status_of(code: StatusCode) -> Status {
    match code {
        StatusCode::NOT_FOUND => Status::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => Status::TooLarge,
        StatusCode::SERVICE_UNAVAILABLE => Status::Unavailable,
        StatusCode::GATEWAY_TIMEOUT => Status::Timeout,
        code if code.is_success() || code.is_redirection() => Status::Ok,
        code if code.is_client_error() => Status::BadRequest,
        _ => Status::Internal,
    }
}

/// An error answer: `{"error": {"code", "message", "retryable"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retryable: bool,
    kind: Status,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let kind = status_of(status);
        Self {
            status,
            code,
            message: message.into(),
            retryable: kind.is_retryable(),
            kind,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        } });
        let mut response = (self.status, axum::Json(body)).into_response();
        response.extensions_mut().insert(self.kind);
        response
    }
}

impl From<EdgeError> for ApiError {
    /// Every kind of failure has its own HTTP status and code. A write whose
    /// outcome is unknown is a 504 with the code `outcome_unknown`, never a
    /// plain failure: retrying it with the same `Idempotency-Key` is safe.
    fn from(error: EdgeError) -> Self {
        let (status, code) = match error.status {
            Status::BadRequest => (StatusCode::BAD_REQUEST, "bad_request"),
            Status::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Status::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Status::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Status::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Status::OutcomeUnknown => (StatusCode::GATEWAY_TIMEOUT, "outcome_unknown"),
            Status::VersionUnavailable => (StatusCode::PRECONDITION_FAILED, "version_unavailable"),
            Status::Internal if error.blame == ErrorSource::Upstream => {
                (StatusCode::BAD_GATEWAY, "upstream_error")
            }
            Status::Ok | Status::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self {
            status,
            code,
            message: error.message,
            retryable: error.retryable,
            kind: error.status,
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

/// The span of one API request. The namespace and key hash are recorded
/// once the path is parsed; `cache` (the hot cache's result) by the edge;
/// `answered_by` and `status` when the answer is ready.
fn span(id: RequestId, op: &'static str) -> tracing::Span {
    tracing::info_span!(
        "request",
        request_id = %id,
        tier = "edge",
        op,
        namespace = tracing::field::Empty,
        key_hash = tracing::field::Empty,
        cache = tracing::field::Empty,
        answered_by = tracing::field::Empty,
        status = tracing::field::Empty,
    )
}

fn record_target(span: &tracing::Span, namespace: &Namespace, key: Option<&Key>) {
    span.record("namespace", namespace.as_str());
    if let Some(key) = key {
        span.record("key_hash", kv_runtime::telemetry::key_hash(key.as_str()));
    }
}

/// Turns a handler's result into the answer: the request id header, the
/// span's status, and one debug line per request.
fn finish(span: &tracing::Span, id: RequestId, result: Result<Response, ApiError>) -> Response {
    let response = with_request_id(result.unwrap_or_else(IntoResponse::into_response), id);
    span.record("status", response.status().as_u16());
    span.in_scope(|| tracing::debug!("answered"));
    response
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
    let deadline = api.options.deadlines.read();
    let span = span(id, "get");
    let result = async {
        let (ns, key) = target(path)?;
        record_target(&tracing::Span::current(), &ns, Some(&key));
        let params = params(query)?;
        let options = ReadOptions {
            cache_ttl: cache_ttl(&params, &api.options)?,
            min_version: min_version(&params, &headers)?,
        };
        let read = api.edge.get(id, deadline, ns, key, options).await?;
        tracing::Span::current().record("answered_by", read.tier.as_str());
        let Some(entry) = read.entry.clone() else {
            let mut response =
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "key not found").into_response();
            read_headers(response.headers_mut(), &read);
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
        let headers = response.headers_mut();
        if !matches {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
        }
        headers.insert(header::ETAG, header_value(&etag));
        read_headers(headers, &read);
        if let Some(expiration) = entry.expiration {
            headers.insert(KV_EXPIRATION.clone(), HeaderValue::from(expiration));
        }
        if let Some(metadata) = &entry.metadata {
            headers.insert(KV_METADATA.clone(), header_value(metadata.as_str()));
        }
        Ok(response)
    }
    .instrument(span.clone())
    .await;
    finish(&span, id, result)
}

/// The headers every read answer carries: its version, the tier that
/// answered, its cache status and its age.
fn read_headers(headers: &mut HeaderMap, read: &Read) {
    let version = read
        .entry
        .as_ref()
        .map(|e| e.version)
        .or(read.absent_version);
    if let Some(version) = version {
        headers.insert(KV_VERSION.clone(), HeaderValue::from(version));
    }
    headers.insert(
        KV_TIER.clone(),
        HeaderValue::from_static(read.tier.as_str()),
    );
    headers.insert(
        KV_CACHE_STATUS.clone(),
        HeaderValue::from_static(read.cache.as_str()),
    );
    headers.insert(header::AGE, HeaderValue::from(read.age.as_secs()));
}

/// A read's `cache_ttl`: within the edge's minimum and maximum.
fn cache_ttl(
    params: &HashMap<String, String>,
    options: &ApiOptions,
) -> Result<Option<u32>, ApiError> {
    match number(params, "cache_ttl")? {
        Some(ttl) if ttl < options.min_cache_ttl => Err(ApiError::bad_request(format!(
            "cache_ttl must be at least {}",
            options.min_cache_ttl
        ))),
        Some(ttl) if ttl > options.max_cache_ttl => Err(ApiError::bad_request(format!(
            "cache_ttl must be at most {}",
            options.max_cache_ttl
        ))),
        Some(ttl) => Ok(Some(u32::try_from(ttl).unwrap_or(u32::MAX))),
        None => Ok(None),
    }
}

/// A read's minimum version: the `kv-min-version` header or the
/// `min_version` parameter (the higher, when both are given).
fn min_version(
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Option<u64>, ApiError> {
    let from_query = number(params, "min_version")?;
    let from_header = headers
        .get(&KV_MIN_VERSION)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("kv-min-version must be a whole number"))
        })
        .transpose()?;
    Ok(from_query.max(from_header))
}

/// The write id of a PUT or DELETE: from its `Idempotency-Key` header (1 to
/// 255 visible ASCII characters; 32 hex digits, such as a `kv-write-id` this
/// edge answered with, are taken as they are), or a fresh one.
fn write_id(headers: &HeaderMap) -> Result<WriteId, ApiError> {
    let Some(raw) = headers.get(&IDEMPOTENCY_KEY) else {
        return Ok(WriteId::random());
    };
    let bytes = raw.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !bytes.iter().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        )));
    }
    Ok(WriteId::from_idempotency_key(
        std::str::from_utf8(bytes).unwrap_or_default(),
    ))
}

/// Tells the client the write's id, so that it can retry the write safely
/// (as its `Idempotency-Key`) when the answer was lost or unknown.
fn with_write_id(mut response: Response, write_id: WriteId) -> Response {
    response
        .headers_mut()
        .insert(KV_WRITE_ID.clone(), header_value(&write_id.to_string()));
    response
}

/// The version a write got (`kv-version`): the value's etag, or the
/// delete's version; and `idempotent-replayed: true` when the write was
/// applied before, by an earlier request with the same idempotency key.
fn with_version(mut response: Response, written: Written) -> Response {
    let headers = response.headers_mut();
    headers.insert(KV_VERSION.clone(), HeaderValue::from(written.version));
    if written.replayed {
        headers.insert(
            IDEMPOTENT_REPLAYED.clone(),
            HeaderValue::from_static("true"),
        );
    }
    response
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
    let span = span(id, "put");
    let result = async {
        let write_id = write_id(&headers)?;
        let (ns, key) = target(path)?;
        record_target(&tracing::Span::current(), &ns, Some(&key));
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
        let deadline = api.options.deadlines.write(value.len());
        let mut put = PutRequest::new(ns, key, value).map_err(|e| too_large(e.to_string()))?;
        put.expiration = expiration;
        put.metadata = metadata;
        put.write_id = write_id;
        // Failed or not, the answer names the write id, so the client can retry it.
        let response = match api.edge.put(id, deadline, put).await {
            Ok(written) => with_version(
                axum::Json(json!({ "version": written.version })).into_response(),
                written,
            ),
            Err(e) => ApiError::from(e).into_response(),
        };
        Ok(with_write_id(response, write_id))
    }
    .instrument(span.clone())
    .await;
    finish(&span, id, result)
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
    let deadline = api.options.deadlines.write(0);
    let span = span(id, "delete");
    let result = async {
        let write_id = write_id(&headers)?;
        let (ns, key) = target(path)?;
        record_target(&tracing::Span::current(), &ns, Some(&key));
        let response = match api.edge.delete(id, deadline, ns, key, write_id).await {
            Ok(written) => with_version(StatusCode::NO_CONTENT.into_response(), written),
            Err(e) => ApiError::from(e).into_response(),
        };
        Ok::<_, ApiError>(with_write_id(response, write_id))
    }
    .instrument(span.clone())
    .await;
    finish(&span, id, result)
}

async fn list(
    State(api): Shared,
    path: Result<Path<String>, PathRejection>,
    query: Params,
    headers: HeaderMap,
) -> Response {
    let id = request_id(&headers);
    let deadline = api.options.deadlines.read();
    let span = span(id, "list");
    let result = async {
        let Path(ns) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
        let ns = namespace(&ns)?;
        record_target(&tracing::Span::current(), &ns, None);
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
                deadline,
                ListRequest {
                    namespace: ns,
                    prefix,
                    cursor,
                    limit,
                },
            )
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
    .instrument(span.clone())
    .await;
    finish(&span, id, result)
}
