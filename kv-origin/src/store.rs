//! Building the object store from a URL, and calling it with timeouts,
//! bounded retries and counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use kv_runtime::metrics::{Metrics, StoreCalls};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use url::Url;

/// Where objects live, and how to reach them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `file:///path`, `memory:///`, `s3://bucket[/prefix]`, and with the
    /// `gcp` / `azure` features `gs://bucket` and `az://container`.
    pub url: String,
    /// S3 endpoint, for S3-compatible servers (else `AWS_ENDPOINT` or AWS itself).
    pub s3_endpoint: Option<String>,
    /// S3 region (else `AWS_REGION` / `AWS_DEFAULT_REGION`).
    pub s3_region: Option<String>,
    /// S3 access key id (else `AWS_ACCESS_KEY_ID`).
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key (else `AWS_SECRET_ACCESS_KEY`).
    pub s3_secret_access_key: Option<String>,
    /// Allow plain-HTTP endpoints (a local S3-compatible server).
    pub s3_allow_http: bool,
    /// Time limit of one object-store call, in milliseconds.
    pub timeout_ms: u64,
    /// Retries of a failed call, after the first attempt.
    pub retries: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "file://./.tierkv/origin".into(),
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: false,
            timeout_ms: 10_000,
            retries: 3,
        }
    }
}

/// Why a store could not be built or called.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The URL or options do not describe a store this build supports.
    #[error("invalid store config: {0}")]
    Config(String),
    /// The call failed after its retries, or timed out.
    #[error("object store {op} failed: {message}")]
    Unavailable {
        /// The operation.
        op: &'static str,
        /// The last cause.
        message: String,
    },
}

/// Counts of object-store calls, by operation. Every call goes through [`Store`].
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Whole-object reads.
    pub gets: AtomicU64,
    /// Ranged head reads (LIST).
    pub head_reads: AtomicU64,
    /// Writes.
    pub puts: AtomicU64,
    /// Deletes.
    pub deletes: AtomicU64,
    /// List calls.
    pub lists: AtomicU64,
    /// Calls that failed after every retry.
    pub failures: AtomicU64,
}

/// The object store, with the calls tierkv makes of it.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    root: Path,
    lists_sorted: bool,
    timeout: Duration,
    retries: u32,
    stats: Arc<StoreStats>,
    calls: Option<StoreCalls>,
}

impl Store {
    /// Builds the store `config` describes. Local directories are created.
    pub fn from_config(config: &StoreConfig) -> Result<Self, StoreError> {
        let (inner, root, lists_sorted) = build(config)?;
        Ok(Self::new(inner, root, lists_sorted, config))
    }

    /// Wraps an already built store (a throttled one, in loadgen). `lists_sorted`
    /// says whether its LIST returns paths in order (every cloud store does; a
    /// local directory does not).
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        root: Path,
        lists_sorted: bool,
        config: &StoreConfig,
    ) -> Self {
        Self {
            inner,
            root,
            lists_sorted,
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
            retries: config.retries,
            stats: Arc::default(),
            calls: None,
        }
    }

    /// Counts every call (each attempt) and its duration in `metrics`.
    pub fn observed(mut self, metrics: &Metrics) -> Self {
        self.calls = Some(metrics.store_calls());
        self
    }

    fn observe(&self, op: &'static str, status: &'static str, started: Instant) {
        if let Some(calls) = &self.calls {
            calls.observe(op, status, started.elapsed());
        }
    }

    /// The path prefix every key lives under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether LIST returns paths in lexicographic order.
    pub fn lists_sorted(&self) -> bool {
        self.lists_sorted
    }

    /// Call counters.
    pub fn stats(&self) -> &Arc<StoreStats> {
        &self.stats
    }

    /// Reads a whole object; `None` when it does not exist.
    pub async fn get(&self, path: &Path) -> Result<Option<Bytes>, StoreError> {
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        self.call("get", Option::is_some, || async {
            match self.inner.get(path).await {
                Ok(result) => result.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Reads the first `len` bytes of an object; `None` when it does not exist.
    pub async fn get_prefix(&self, path: &Path, len: u64) -> Result<Option<Bytes>, StoreError> {
        self.stats.head_reads.fetch_add(1, Ordering::Relaxed);
        self.call("get_range", Option::is_some, || async {
            match self.inner.get_range(path, 0..len).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Writes an object from chunks, without joining them.
    pub async fn put(&self, path: &Path, chunks: Vec<Bytes>) -> Result<(), StoreError> {
        self.stats.puts.fetch_add(1, Ordering::Relaxed);
        let payload: PutPayload = chunks.into_iter().collect();
        self.call(
            "put",
            |_| true,
            || async { self.inner.put(path, payload.clone()).await.map(drop) },
        )
        .await
    }

    /// Deletes an object; deleting a missing one succeeds.
    pub async fn delete(&self, path: &Path) -> Result<(), StoreError> {
        self.stats.deletes.fetch_add(1, Ordering::Relaxed);
        self.call(
            "delete",
            |_| true,
            || async {
                match self.inner.delete(path).await {
                    Err(object_store::Error::NotFound { .. }) => Ok(()),
                    other => other,
                }
            },
        )
        .await
    }

    /// Lists objects under `dir` whose paths sort after `offset`. Each item
    /// has its own timeout; the stream is not retried (a caller restarts it).
    pub fn list_after(
        &self,
        dir: &Path,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta, StoreError>> {
        self.stats.lists.fetch_add(1, Ordering::Relaxed);
        let timeout = self.timeout;
        let stats = self.stats.clone();
        let calls = self.calls.clone();
        let inner = self.inner.list_with_offset(Some(dir), offset);
        // One LIST call is counted when its stream ends or fails.
        let started = Instant::now();
        futures::stream::unfold(Some(inner), move |state| {
            let stats = stats.clone();
            let calls = calls.clone();
            async move {
                let mut inner = state?;
                let count = |status| {
                    if let Some(calls) = &calls {
                        calls.observe("list", status, started.elapsed());
                    }
                };
                let item = match tokio::time::timeout(timeout, inner.next()).await {
                    Ok(None) => {
                        count("ok");
                        return None;
                    }
                    Ok(Some(Ok(meta))) => Ok(meta),
                    Ok(Some(Err(e))) => {
                        count("error");
                        Err(e.to_string())
                    }
                    Err(_) => {
                        count("timeout");
                        Err(format!("no answer within {timeout:?}"))
                    }
                };
                match item {
                    Ok(meta) => Some((Ok(meta), Some(inner))),
                    Err(message) => {
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(op = "list", %message, "object store call failed");
                        Some((
                            Err(StoreError::Unavailable {
                                op: "list",
                                message,
                            }),
                            None,
                        ))
                    }
                }
            }
        })
        .boxed()
    }

    /// Runs `call` with a timeout per attempt and bounded, backed-off retries.
    /// `found` tells a successful answer from a "not found" one, for the metrics.
    async fn call<T, F, Fut>(
        &self,
        op: &'static str,
        found: impl Fn(&T) -> bool,
        call: F,
    ) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let mut backoff = Duration::from_millis(25);
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let outcome = tokio::time::timeout(self.timeout, call()).await;
            let status = match &outcome {
                Ok(Ok(value)) if found(value) => "ok",
                Ok(Ok(_)) => "not_found",
                Ok(Err(_)) => "error",
                Err(_) => "timeout",
            };
            self.observe(op, status, started);
            let message = match outcome {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if !is_transient(&e) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(op, error = %e, "object store call failed");
                    return Err(StoreError::Unavailable {
                        op,
                        message: e.to_string(),
                    });
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {:?}", self.timeout),
            };
            if attempt >= self.retries {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(op, attempts = attempt + 1, %message, "object store call failed");
                return Err(StoreError::Unavailable { op, message });
            }
            tracing::warn!(op, attempt, %message, "object store call failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            attempt += 1;
        }
    }
}

/// Errors that a retry cannot fix.
fn is_transient(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::UnknownConfigurationKey { .. }
    )
}

type Built = (Arc<dyn ObjectStore>, Path, bool);

fn build(config: &StoreConfig) -> Result<Built, StoreError> {
    let bad = |m: String| StoreError::Config(m);
    // `file://./dir` is accepted as a relative path, for local runs.
    if let Some(rest) = config
        .url
        .strip_prefix("file://")
        .filter(|r| !r.starts_with('/'))
    {
        return build_local(std::path::Path::new(rest));
    }
    let url = Url::parse(&config.url).map_err(|e| bad(format!("{}: {e}", config.url)))?;
    let prefix = Path::parse(url.path().trim_start_matches('/')).map_err(|e| bad(e.to_string()))?;
    match url.scheme() {
        "file" => {
            let dir = url
                .to_file_path()
                .map_err(|()| bad(format!("not a file path: {url}")))?;
            build_local(&dir)
        }
        "memory" => Ok((
            Arc::new(object_store::memory::InMemory::new()),
            prefix,
            true,
        )),
        "s3" | "s3a" => build_s3(config, &url, prefix),
        #[cfg(feature = "gcp")]
        "gs" => {
            let store = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .with_client_options(client_options(config))
                .with_retry(retry_config(config))
                .build()
                .map_err(|e| bad(e.to_string()))?;
            Ok((Arc::new(store), prefix, true))
        }
        #[cfg(feature = "azure")]
        "az" | "abfs" | "abfss" | "azure" => {
            let store = object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .with_client_options(client_options(config))
                .with_retry(retry_config(config))
                .build()
                .map_err(|e| bad(e.to_string()))?;
            Ok((Arc::new(store), prefix, true))
        }
        other => Err(bad(format!(
            "unsupported store scheme {other:?}: expected file, memory, s3{}{}",
            if cfg!(feature = "gcp") { ", gs" } else { "" },
            if cfg!(feature = "azure") { ", az" } else { "" },
        ))),
    }
}

fn build_local(dir: &std::path::Path) -> Result<Built, StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", dir.display())))?;
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| StoreError::Config(e.to_string()))?
        .with_automatic_cleanup(true);
    Ok((Arc::new(store), Path::default(), false))
}

#[cfg(feature = "aws")]
fn build_s3(config: &StoreConfig, url: &Url, prefix: Path) -> Result<Built, StoreError> {
    // Client options first: they carry allow-http, which a later call would reset.
    let mut builder = object_store::aws::AmazonS3Builder::from_env()
        .with_client_options(client_options(config))
        .with_url(url.as_str())
        .with_allow_http(config.s3_allow_http)
        .with_retry(retry_config(config));
    if let Some(endpoint) = &config.s3_endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = &config.s3_region {
        builder = builder.with_region(region);
    }
    if let Some(id) = &config.s3_access_key_id {
        builder = builder.with_access_key_id(id);
    }
    if let Some(secret) = &config.s3_secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    let store = builder
        .build()
        .map_err(|e| StoreError::Config(e.to_string()))?;
    Ok((Arc::new(store), prefix, true))
}

#[cfg(not(feature = "aws"))]
fn build_s3(_: &StoreConfig, _: &Url, _: Path) -> Result<Built, StoreError> {
    Err(StoreError::Config(
        "this build has no S3 support (feature `aws`)".into(),
    ))
}

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn client_options(config: &StoreConfig) -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_timeout(Duration::from_millis(config.timeout_ms.max(1)))
        .with_connect_timeout(Duration::from_secs(5))
}

/// The cloud clients retry on their own; ours is the outer bound. Keep theirs
/// to one quick retry so the two do not multiply into long waits.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn retry_config(config: &StoreConfig) -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 1,
        retry_timeout: Duration::from_millis(config.timeout_ms.max(1)),
        ..Default::default()
    }
}
