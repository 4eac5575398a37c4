//! An async Rust client for the tierkv HTTP API (what `kv-edge` serves).
//!
//! ```no_run
//! # async fn demo() -> Result<(), kv_client::Error> {
//! use kv_client::{Client, PutOptions};
//!
//! let kv = Client::new("http://127.0.0.1:8787")?;
//! let version = kv.put("app", "user/1", "hello").await?;
//! assert_eq!(kv.get("app", "user/1").await?.as_deref(), Some(&b"hello"[..]));
//!
//! let options = PutOptions::new().expiration_ttl(3600).metadata(serde_json::json!({"plan": "pro"}));
//! kv.put_with("app", "user/2", "hi", &options).await?;
//! if let Some(found) = kv.get_with_metadata("app", "user/2").await? {
//!     println!("v{} from {} with {:?}", found.version, found.tier, found.metadata);
//! }
//! # let _ = version;
//! # Ok(()) }
//! ```
//!
//! Listing, one page at a time or as a stream over every page:
//!
//! ```no_run
//! # async fn demo(kv: kv_client::Client) -> Result<(), kv_client::Error> {
//! use futures::TryStreamExt;
//!
//! let page = kv.list("app", &kv_client::ListOptions::prefix("user/")).await?;
//! println!("{} keys, complete: {}", page.keys.len(), page.list_complete);
//! let every_key: Vec<_> = kv.list_all("app", "user/").try_collect().await?;
//! # let _ = every_key;
//! # Ok(()) }
//! ```
//!
//! Connections are pooled and reused by the underlying `reqwest` client;
//! clone a [`Client`] freely, clones share the pool.
//!
//! # Retries
//!
//! A call that fails in a way a retry can fix (the service or an upstream
//! tier unavailable, a deadline passed, a lost connection) is tried again,
//! with backoff, up to [`RetryPolicy::attempts`] times. Every write carries
//! an `Idempotency-Key` (one of its own, unless [`PutOptions::idempotency_key`]
//! names one), and each retry of it sends the same key: the service applies
//! a write at most once and answers a retry with the first version, so a
//! write whose answer was lost (`outcome_unknown`) is safe to retry.
//!
//! # Read-your-writes
//!
//! A client remembers the version of each write it made (its [`Session`]),
//! and its reads of those keys ask the edge for that version or newer
//! (`kv-min-version`). Any edge honours it, so a write is read back from any
//! edge; share one session between the clients of several edges with
//! [`Client::with_session`]. An edge that cannot provide the version in
//! time answers `version_unavailable`, which is retried.
//!
//! # Layout
//!
//! Everything is in this file: [`Client`] and its options, the returned
//! types, and [`Error`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use serde::Deserialize;

/// Characters escaped in path segments: all but the unreserved ones.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The base URL is not an http(s) URL.
    #[error("invalid base URL {0:?}")]
    InvalidUrl(String),
    /// The request did not complete (connection refused, timeout, …).
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// The service answered with an error.
    #[error("{status} {code}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error code from the body, such as `bad_request`, `unavailable`,
        /// `timeout` or `outcome_unknown`.
        code: String,
        /// The error message.
        message: String,
        /// Whether the service says a retry may succeed.
        retryable: bool,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer: {0}")]
    Decode(String),
}

impl Error {
    /// Whether retrying might succeed: the service says so (an upstream tier
    /// was unavailable, a deadline passed, a write's outcome is unknown), or
    /// the request did not complete. Writes are retried with the same
    /// idempotency key, so a retry never applies a write twice.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(e) => !e.is_builder() && !e.is_decode() && !e.is_redirect(),
            Self::Api { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// Whether this failure leaves a write's outcome unknown: it may or may
    /// not have been applied (retrying with the same idempotency key settles it).
    pub fn is_outcome_unknown(&self) -> bool {
        match self {
            Self::Transport(e) => !e.is_connect() && !e.is_builder(),
            Self::Api { code, .. } => code == "outcome_unknown",
            _ => false,
        }
    }
}

/// How calls are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included; 1 turns retries off.
    pub attempts: u32,
    /// The pause before the first retry; it doubles after each (with jitter).
    pub initial_backoff: Duration,
    /// The longest pause between two tries.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// One try, no retries.
    pub fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }
}

/// A value with what the service knows about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// The value.
    pub value: Bytes,
    /// Its version (the ETag).
    pub version: u64,
    /// Its metadata.
    pub metadata: Option<serde_json::Value>,
    /// When it expires, in unix seconds.
    pub expiration: Option<u64>,
    /// The tier that answered: `edge`, `regional-memory`, `regional-disk` or `origin`.
    pub tier: String,
}

/// Options of a write.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    expiration: Option<u64>,
    expiration_ttl: Option<u64>,
    metadata: Option<serde_json::Value>,
    idempotency_key: Option<String>,
}

impl PutOptions {
    /// No expiration, no metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Expire at this unix time, in seconds.
    pub fn expiration(mut self, unix_seconds: u64) -> Self {
        self.expiration = Some(unix_seconds);
        self
    }

    /// Expire this many seconds from now (at least 60 by default).
    pub fn expiration_ttl(mut self, seconds: u64) -> Self {
        self.expiration_ttl = Some(seconds);
        self
    }

    /// Attach JSON metadata (at most 1024 bytes serialized).
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Name the write (1–255 visible ASCII characters): a write with the
    /// same key, from this client or any other, is applied at most once.
    /// Without one, each call gets a fresh key, shared by its retries.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// Options of a LIST page.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only keys starting with this.
    pub prefix: String,
    /// The cursor of the previous page.
    pub cursor: Option<String>,
    /// Most keys per page, 1–1000 (the service's default is 1000).
    pub limit: Option<u16>,
}

impl ListOptions {
    /// The first page of keys under `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            ..Self::default()
        }
    }
}

/// One key of a listing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ListedKey {
    /// The key.
    pub name: String,
    /// When it expires, in unix seconds.
    pub expiration: Option<u64>,
    /// Its metadata.
    pub metadata: Option<serde_json::Value>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ListPage {
    /// Keys in lexicographic order.
    pub keys: Vec<ListedKey>,
    /// Whether this is the last page.
    pub list_complete: bool,
    /// Where the next page starts.
    pub cursor: Option<String>,
}

#[derive(Deserialize)]
struct Written {
    version: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
    retryable: Option<bool>,
}

/// How many keys a session remembers, and for how long: past the longest
/// cache TTL an edge allows, every edge has the write anyway.
const SESSION_KEYS: u64 = 100_000;
const SESSION_TTL: Duration = Duration::from_secs(3600);

/// The versions a client's writes got, so that its later reads of those
/// keys ask for them or newer. Cheap to clone; clones share the versions.
#[derive(Debug, Clone)]
pub struct Session {
    written: moka::sync::Cache<String, u64>,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            written: moka::sync::Cache::builder()
                .max_capacity(SESSION_KEYS)
                .time_to_live(SESSION_TTL)
                .build(),
        }
    }
}

impl Session {
    /// An empty session.
    pub fn new() -> Self {
        Self::default()
    }

    /// The newest version this session wrote of a key, if it remembers one.
    pub fn version_of(&self, namespace: &str, key: &str) -> Option<u64> {
        self.written.get(&session_key(namespace, key))
    }

    /// Remembers that a write of the key got `version` (the newest wins).
    pub fn record(&self, namespace: &str, key: &str, version: u64) {
        self.written
            .entry(session_key(namespace, key))
            .and_compute_with(|known| match known {
                Some(known) if *known.value() >= version => moka::ops::compute::Op::Nop,
                _ => moka::ops::compute::Op::Put(version),
            });
    }
}

fn session_key(namespace: &str, key: &str) -> String {
    format!("{namespace}/{key}")
}

/// A client of one tierkv edge.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    retry: RetryPolicy,
    retries: Arc<AtomicU64>,
    session: Session,
}

impl Client {
    /// A client of the edge at `base_url`, such as `http://127.0.0.1:8787`.
    pub fn new(base_url: &str) -> Result<Self, Error> {
        Self::with_http_client(base_url, reqwest::Client::new())
    }

    /// As [`Client::new`], with a `reqwest` client configured by the caller
    /// (timeouts, pool sizes).
    pub fn with_http_client(base_url: &str, http: reqwest::Client) -> Result<Self, Error> {
        let base = base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.len() < 10 {
            return Err(Error::InvalidUrl(base_url.to_string()));
        }
        Ok(Self {
            http,
            base: base.to_string(),
            retry: RetryPolicy::default(),
            retries: Arc::default(),
            session: Session::default(),
        })
    }

    /// The same client, remembering its writes in `session` (which other
    /// clients, of other edges, may share).
    pub fn with_session(mut self, session: Session) -> Self {
        self.session = session;
        self
    }

    /// The versions this client's writes got.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The same client with another retry policy.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Retries made so far by this client and its clones.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Runs `call` until it succeeds, fails for good, or runs out of tries.
    async fn with_retries<T, F, Fut>(&self, mut call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut backoff = self.retry.initial_backoff;
        let mut attempt = 1;
        loop {
            match call().await {
                Err(e) if e.is_retryable() && attempt < self.retry.attempts => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(jittered(backoff)).await;
                    backoff = (backoff * 2).min(self.retry.max_backoff);
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn key_url(&self, namespace: &str, key: &str) -> String {
        format!(
            "{}/v1/{}/{}",
            self.base,
            utf8_percent_encode(namespace, SEGMENT),
            utf8_percent_encode(key, SEGMENT)
        )
    }

    /// Reads a value; `None` when the key does not exist.
    pub async fn get(&self, namespace: &str, key: &str) -> Result<Option<Bytes>, Error> {
        Ok(self
            .get_with_metadata(namespace, key)
            .await?
            .map(|v| v.value))
    }

    /// Reads a value with its version, metadata, expiration and answering tier.
    pub async fn get_with_metadata(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<Value>, Error> {
        self.with_retries(|| self.get_once(namespace, key)).await
    }

    async fn get_once(&self, namespace: &str, key: &str) -> Result<Option<Value>, Error> {
        let mut request = self.http.get(self.key_url(namespace, key));
        if let Some(version) = self.session.version_of(namespace, key) {
            request = request.header("kv-min-version", version);
        }
        let response = request.send().await?;
        if response.status() == StatusCode::NOT_FOUND {
            // A missing key and an unknown route are both 404: tell them apart.
            let body: Option<ErrorBody> = response.json().await.ok();
            return match body {
                Some(b) if b.error.code == "not_found" && b.error.message == "key not found" => {
                    Ok(None)
                }
                Some(b) => Err(Error::Api {
                    status: 404,
                    code: b.error.code,
                    message: b.error.message,
                    retryable: false,
                }),
                None => Err(Error::Decode("404 without an error body".into())),
            };
        }
        let response = check(response).await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let version = header("etag")
            .and_then(|e| e.trim_matches('"').parse().ok())
            .ok_or_else(|| Error::Decode("missing or bad etag".into()))?;
        let metadata = match header("kv-metadata") {
            Some(text) => Some(
                serde_json::from_str(&text)
                    .map_err(|e| Error::Decode(format!("kv-metadata: {e}")))?,
            ),
            None => None,
        };
        let expiration = header("kv-expiration").and_then(|e| e.parse().ok());
        let tier = header("kv-tier").unwrap_or_default();
        let value = response.bytes().await?;
        Ok(Some(Value {
            value,
            version,
            metadata,
            expiration,
            tier,
        }))
    }

    /// Writes a value; returns its version once the origin holds it.
    pub async fn put(
        &self,
        namespace: &str,
        key: &str,
        value: impl Into<Bytes>,
    ) -> Result<u64, Error> {
        self.put_with(namespace, key, value, &PutOptions::default())
            .await
    }

    /// Writes a value with an expiration, metadata or an idempotency key.
    pub async fn put_with(
        &self,
        namespace: &str,
        key: &str,
        value: impl Into<Bytes>,
        options: &PutOptions,
    ) -> Result<u64, Error> {
        let mut query = Vec::new();
        if let Some(at) = options.expiration {
            query.push(("expiration", at));
        }
        if let Some(ttl) = options.expiration_ttl {
            query.push(("expiration_ttl", ttl));
        }
        let value = value.into();
        let idempotency_key = options
            .idempotency_key
            .clone()
            .unwrap_or_else(new_idempotency_key);
        let url = self.key_url(namespace, key);
        self.with_retries(|| async {
            let mut request = self
                .http
                .put(&url)
                .query(&query)
                .header("idempotency-key", &idempotency_key)
                .body(value.clone());
            if let Some(metadata) = &options.metadata {
                request = request.header("kv-metadata", metadata.to_string());
            }
            let response = check(request.send().await?).await?;
            let written: Written = response
                .json()
                .await
                .map_err(|e| Error::Decode(e.to_string()))?;
            self.session.record(namespace, key, written.version);
            Ok(written.version)
        })
        .await
    }

    /// Deletes a key, and returns the delete's version (deleting a missing
    /// key succeeds). Retries carry one idempotency key.
    pub async fn delete(&self, namespace: &str, key: &str) -> Result<u64, Error> {
        let idempotency_key = new_idempotency_key();
        let url = self.key_url(namespace, key);
        self.with_retries(|| async {
            let request = self
                .http
                .delete(&url)
                .header("idempotency-key", &idempotency_key);
            let response = check(request.send().await?).await?;
            let version = response
                .headers()
                .get("kv-version")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::Decode("delete answered without kv-version".into()))?;
            self.session.record(namespace, key, version);
            Ok(version)
        })
        .await
    }

    /// One page of the keys of `namespace`.
    pub async fn list(&self, namespace: &str, options: &ListOptions) -> Result<ListPage, Error> {
        let mut query = vec![("prefix", options.prefix.clone())];
        if let Some(cursor) = &options.cursor {
            query.push(("cursor", cursor.clone()));
        }
        if let Some(limit) = options.limit {
            query.push(("limit", limit.to_string()));
        }
        let url = format!(
            "{}/v1/{}",
            self.base,
            utf8_percent_encode(namespace, SEGMENT)
        );
        self.with_retries(|| async {
            let response = check(self.http.get(&url).query(&query).send().await?).await?;
            response
                .json()
                .await
                .map_err(|e| Error::Decode(e.to_string()))
        })
        .await
    }

    /// Every key under `prefix`, page after page.
    pub fn list_all<'a>(
        &'a self,
        namespace: &'a str,
        prefix: &'a str,
    ) -> impl Stream<Item = Result<ListedKey, Error>> + 'a {
        let first = Some(ListOptions::prefix(prefix));
        let pages = futures::stream::try_unfold(first, move |next| async move {
            let Some(options) = next else {
                return Ok::<_, Error>(None);
            };
            let page = self.list(namespace, &options).await?;
            let following = match (page.list_complete, page.cursor.clone()) {
                (false, Some(cursor)) => Some(ListOptions {
                    cursor: Some(cursor),
                    ..options
                }),
                _ => None,
            };
            Ok(Some((
                futures::stream::iter(page.keys.into_iter().map(Ok)),
                following,
            )))
        });
        futures::TryStreamExt::try_flatten(pages)
    }
}

/// Passes a successful response through; turns an error answer into [`Error::Api`].
async fn check(response: reqwest::Response) -> Result<reqwest::Response, Error> {
    let status = response.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    // An answer from something other than tierkv (a proxy) has no
    // `retryable`: a 502, 503 or 504 is then worth another try.
    let by_status = matches!(status.as_u16(), 502..=504);
    let (code, message, retryable) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => (
            body.error.code,
            body.error.message,
            body.error.retryable.unwrap_or(by_status),
        ),
        Err(_) => ("unknown".to_string(), text, by_status),
    };
    Err(Error::Api {
        status: status.as_u16(),
        code,
        message,
        retryable,
    })
}

/// A fresh idempotency key: 32 hex digits, which the edge takes as the write
/// id itself.
fn new_idempotency_key() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

/// `backoff` scaled by a random factor in [0.5, 1.5), so that clients that
/// failed together do not retry together.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(0.5 + (random_u64() % 1000) as f64 / 1000.0)
}

/// A random u64 without a dependency on `rand`: std's randomly keyed hasher
/// fed a process-wide counter.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}
