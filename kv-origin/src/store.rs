//! Building the object store from a URL, and calling it with timeouts,
//! bounded retries and counters.
//!
//! Every call takes the request's [`Deadline`]: an attempt waits for the
//! configured timeout or what is left of the deadline, whichever is less,
//! and no attempt starts once the deadline has passed.
//!
//! Writes are conditional ([`Store::put_if`]) on every store that can
//! compare and swap (S3, GCS, Azure, memory), so several origin processes
//! can share one bucket. A local directory cannot: there, the store takes an
//! exclusive lock file at start, so a second origin process refuses to start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use kv_runtime::deadline::Deadline;
use kv_runtime::metrics::{Metrics, StoreCalls};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};
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
    /// The call failed after its retries, or timed out. A write that fails
    /// this way was not applied.
    #[error("object store {op} failed: {message}")]
    Unavailable {
        /// The operation.
        op: &'static str,
        /// The last cause.
        message: String,
    },
    /// A write failed after an attempt that may have reached the store: it
    /// may or may not be applied.
    #[error("object store {op} outcome unknown: {message}")]
    OutcomeUnknown {
        /// The operation.
        op: &'static str,
        /// The last cause.
        message: String,
    },
    /// The deadline passed before the call (or its next attempt) could start.
    #[error("deadline passed before the object store {op} call")]
    Expired {
        /// The operation.
        op: &'static str,
    },
}

impl StoreError {
    /// For a read, nothing is left unknown by a failure: it simply failed.
    fn settled(self) -> Self {
        match self {
            Self::OutcomeUnknown { op, message } => Self::Unavailable { op, message },
            other => other,
        }
    }
}

/// What a write is conditional on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// The object does not exist.
    Absent,
    /// The object is still the version that was read.
    Unchanged(UpdateVersion),
}

/// How a conditional write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The store holds the new object.
    Written,
    /// The object changed since it was read; nothing was written.
    Conflict,
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
    /// How writes are kept from racing: compare-and-swap in the store, or
    /// an exclusive lock on a local directory.
    exclusion: Exclusion,
    deleter: Option<Deleter>,
    /// Whether the store really honours a conditional delete: found out
    /// once, by [`Store::probe_conditional_delete`].
    deletes_honoured: Arc<tokio::sync::OnceCell<bool>>,
}

/// How concurrent writers of one key are kept apart.
#[derive(Debug, Clone)]
enum Exclusion {
    /// The store compares and swaps: any number of processes may write.
    CompareAndSwap,
    /// This process holds the directory's lock file, and is its only writer.
    /// The lock lasts as long as the file is open.
    LockFile { _held: Arc<std::fs::File> },
}

impl Store {
    /// Builds the store `config` describes. Local directories are created.
    pub fn from_config(config: &StoreConfig) -> Result<Self, StoreError> {
        let built = build(config)?;
        let mut store = Self::new(built.store, built.root, built.lists_sorted, config);
        store.deleter = built.deleter;
        if let Some(lock) = built.lock {
            store.exclusion = Exclusion::LockFile {
                _held: Arc::new(lock),
            };
        }
        Ok(store)
    }

    /// Wraps an already built store (a throttled one, in loadgen), which must
    /// support conditional puts. `lists_sorted` says whether its LIST returns
    /// paths in order (every cloud store does; a local directory does not).
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
            exclusion: Exclusion::CompareAndSwap,
            deleter: None,
            deletes_honoured: Arc::default(),
        }
    }

    /// Whether writes are compare-and-swap, so that several processes may
    /// share the store; otherwise this process is the only writer.
    pub fn compares_and_swaps(&self) -> bool {
        matches!(self.exclusion, Exclusion::CompareAndSwap)
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

    /// Reads a whole object and the version a conditional write of it names;
    /// `None` when it does not exist.
    pub async fn get(
        &self,
        path: &Path,
        deadline: &Deadline,
    ) -> Result<Option<(Bytes, UpdateVersion)>, StoreError> {
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        self.read("get", path, None, deadline).await
    }

    /// Reads the first `max_len` bytes of an object (all of it, if shorter)
    /// and the version a conditional write of it names; `None` when it does
    /// not exist. A write reads just the head of the object it replaces, and
    /// LIST the head of each object it lists.
    pub async fn get_head(
        &self,
        path: &Path,
        max_len: u64,
        deadline: &Deadline,
    ) -> Result<Option<(Bytes, UpdateVersion)>, StoreError> {
        self.stats.head_reads.fetch_add(1, Ordering::Relaxed);
        let range = GetRange::Bounded(0..max_len);
        self.read("get_range", path, Some(range), deadline).await
    }

    async fn read(
        &self,
        op: &'static str,
        path: &Path,
        range: Option<GetRange>,
        deadline: &Deadline,
    ) -> Result<Option<(Bytes, UpdateVersion)>, StoreError> {
        self.call(op, deadline, Option::is_some, || async {
            let options = GetOptions {
                range: range.clone(),
                ..GetOptions::default()
            };
            match self.inner.get_opts(path, options).await {
                Ok(result) => {
                    let version = UpdateVersion {
                        e_tag: result.meta.e_tag.clone(),
                        version: result.meta.version.clone(),
                    };
                    result.bytes().await.map(|bytes| Some((bytes, version)))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(StoreError::settled)
    }

    /// Writes an object from chunks, without joining them, if `precondition`
    /// still holds. On a store without compare-and-swap the caller holds the
    /// key's lock, and the write replaces whatever is there.
    ///
    /// An attempt that timed out may still land; the retry after it then
    /// finds the object changed and reports a conflict, which the caller
    /// settles by reading the object again.
    pub async fn put_if(
        &self,
        path: &Path,
        chunks: Vec<Bytes>,
        precondition: Precondition,
        deadline: &Deadline,
    ) -> Result<PutOutcome, StoreError> {
        self.stats.puts.fetch_add(1, Ordering::Relaxed);
        let payload: PutPayload = chunks.into_iter().collect();
        let mode = match (&self.exclusion, precondition) {
            (Exclusion::LockFile { .. }, _) => {
                return self.put_local(path, payload, deadline).await;
            }
            (Exclusion::CompareAndSwap, Precondition::Absent) => PutMode::Create,
            (Exclusion::CompareAndSwap, Precondition::Unchanged(v)) => PutMode::Update(v),
        };
        self.call(
            "put",
            deadline,
            |_| true,
            || async {
                let options = PutOptions::from(mode.clone());
                match self.inner.put_opts(path, payload.clone(), options).await {
                    Ok(_) => Ok(PutOutcome::Written),
                    Err(
                        object_store::Error::Precondition { .. }
                        | object_store::Error::AlreadyExists { .. },
                    ) => Ok(PutOutcome::Conflict),
                    Err(e) => Err(e),
                }
            },
        )
        .await
    }

    /// Deletes an object, unconditionally. Only safe where this process is
    /// the store's only writer and holds the key's lock: no object store
    /// offers a conditional delete through `object_store`, so on a shared
    /// bucket a delete could remove a write that landed just before it.
    pub async fn delete_exclusive(
        &self,
        path: &Path,
        deadline: &Deadline,
    ) -> Result<(), StoreError> {
        if self.compares_and_swaps() {
            return Err(StoreError::Config(
                "an unconditional delete is refused on a shared store".into(),
            ));
        }
        self.stats.deletes.fetch_add(1, Ordering::Relaxed);
        self.call(
            "delete",
            deadline,
            |_| true,
            || async {
                match self.inner.delete(path).await {
                    Err(object_store::Error::NotFound { .. }) => Ok(()),
                    other => other,
                }
            },
        )
        .await
        .map_err(StoreError::settled)
    }

    /// Deletes an object if it is still `version`: on a local directory
    /// (whose only writer is this process, holding the key's lock) simply;
    /// on S3 with `If-Match`; elsewhere not at all ([`DeleteOutcome::Unsupported`]),
    /// since an unconditional delete could remove a write another origin
    /// process made a moment before.
    pub async fn delete_if_unchanged(
        &self,
        path: &Path,
        version: &UpdateVersion,
        deadline: &Deadline,
    ) -> Result<DeleteOutcome, StoreError> {
        if !self.compares_and_swaps() {
            self.delete_exclusive(path, deadline).await?;
            return Ok(DeleteOutcome::Deleted);
        }
        let (Some(deleter), Some(e_tag)) = (&self.deleter, &version.e_tag) else {
            return Ok(DeleteOutcome::Unsupported);
        };
        if !self.probe_conditional_delete(deadline).await {
            return Ok(DeleteOutcome::Unsupported);
        }
        self.conditional_delete(deleter, path, e_tag, deadline)
            .await
    }

    /// Whether the store honours `If-Match` on a delete, found out once: a
    /// store that ignored it would delete unconditionally, so its tombstones
    /// are kept instead. The probe writes an object of its own beside the
    /// namespaces, asks to delete it with a wrong ETag (which must be
    /// refused), then with the right one.
    pub async fn probe_conditional_delete(&self, deadline: &Deadline) -> bool {
        let Some(deleter) = &self.deleter else {
            return false;
        };
        *self
            .deletes_honoured
            .get_or_init(|| async {
                let honoured = self.run_delete_probe(deleter, deadline).await;
                match honoured {
                    Ok(true) => tracing::info!("the store honours conditional deletes"),
                    Ok(false) => tracing::warn!(
                        "the store ignores If-Match on delete: old tombstones are kept"
                    ),
                    Err(ref e) => tracing::warn!(error = %e, "conditional-delete probe failed; old tombstones are kept"),
                }
                honoured.unwrap_or(false)
            })
            .await
    }

    async fn run_delete_probe(
        &self,
        deleter: &Deleter,
        deadline: &Deadline,
    ) -> Result<bool, StoreError> {
        let probe = self.root.clone().join(format!(
            ".tierkv-delete-probe-{}",
            kv_proto::WriteId::random()
        ));
        let written = self
            .inner
            .put(&probe, PutPayload::from_static(b"probe"))
            .await
            .map_err(|e| StoreError::Unavailable {
                op: "put",
                message: e.to_string(),
            })?;
        let right = written.e_tag.unwrap_or_default();
        let wrong = "\"00000000000000000000000000000000\"";
        let refused = self
            .conditional_delete(deleter, &probe, wrong, deadline)
            .await?
            == DeleteOutcome::Changed;
        let still_there = self.get_head(&probe, 1, deadline).await?.is_some();
        let deleted = self
            .conditional_delete(deleter, &probe, &right, deadline)
            .await?
            == DeleteOutcome::Deleted;
        Ok(refused && still_there && deleted)
    }

    #[cfg(feature = "aws")]
    async fn conditional_delete(
        &self,
        deleter: &Deleter,
        path: &Path,
        e_tag: &str,
        deadline: &Deadline,
    ) -> Result<DeleteOutcome, StoreError> {
        use crate::conditional_delete::Deleted;
        self.stats.deletes.fetch_add(1, Ordering::Relaxed);
        let timeout = deadline.remaining().min(self.timeout);
        if timeout.is_zero() {
            return Err(StoreError::Expired { op: "delete" });
        }
        let started = Instant::now();
        let result = deleter.delete_if(path, e_tag, timeout).await;
        let status = match &result {
            Ok(Deleted::Yes) => "ok",
            Ok(Deleted::Changed) => "not_found",
            Err(_) => "error",
        };
        self.observe("delete", status, started);
        match result {
            Ok(Deleted::Yes) => Ok(DeleteOutcome::Deleted),
            Ok(Deleted::Changed) => Ok(DeleteOutcome::Changed),
            Err(message) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::Unavailable {
                    op: "delete",
                    message,
                })
            }
        }
    }

    #[cfg(not(feature = "aws"))]
    async fn conditional_delete(
        &self,
        deleter: &Deleter,
        _: &Path,
        _: &str,
        _: &Deadline,
    ) -> Result<DeleteOutcome, StoreError> {
        match *deleter {}
    }

    /// A write to a local directory, which this process alone writes (under
    /// the key's lock). It runs on a blocking thread that a timeout could
    /// not stop, so it is awaited to the end, never abandoned: an abandoned
    /// write could land after a later write of the key and put an older
    /// version back.
    async fn put_local(
        &self,
        path: &Path,
        payload: PutPayload,
        deadline: &Deadline,
    ) -> Result<PutOutcome, StoreError> {
        if deadline.is_expired() {
            return Err(StoreError::Expired { op: "put" });
        }
        let started = Instant::now();
        let result = self.inner.put(path, payload).await;
        self.observe("put", if result.is_ok() { "ok" } else { "error" }, started);
        result.map(|_| PutOutcome::Written).map_err(|e| {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(op = "put", error = %e, "local store write failed");
            // The file is written aside and renamed into place: a failed
            // write left the old object.
            StoreError::Unavailable {
                op: "put",
                message: e.to_string(),
            }
        })
    }

    /// Lists objects under `dir` whose paths sort after `offset`. Each item
    /// has its own timeout, within the deadline; the stream is not retried (a
    /// caller restarts it).
    pub fn list_after(
        &self,
        dir: &Path,
        offset: &Path,
        deadline: &Deadline,
    ) -> BoxStream<'static, Result<ObjectMeta, StoreError>> {
        self.stats.lists.fetch_add(1, Ordering::Relaxed);
        let deadline = deadline.capped(self.timeout);
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
                let item = match deadline.run(inner.next()).await {
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
                        Err("no answer within the deadline".to_string())
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

    /// Runs `call` with a timeout per attempt and bounded, backed-off retries,
    /// all within `deadline`. `found` tells a successful answer from a "not
    /// found" one, for the metrics. A failure after an attempt that timed out
    /// or failed in transit is [`StoreError::OutcomeUnknown`]: for a write,
    /// that attempt may have landed.
    async fn call<T, F, Fut>(
        &self,
        op: &'static str,
        deadline: &Deadline,
        found: impl Fn(&T) -> bool,
        call: F,
    ) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let mut backoff = Duration::from_millis(25);
        let mut attempt = 0;
        let mut maybe_sent = false;
        let failed = |maybe_sent: bool, message: String| {
            if maybe_sent {
                StoreError::OutcomeUnknown { op, message }
            } else {
                StoreError::Unavailable { op, message }
            }
        };
        loop {
            if deadline.is_expired() {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                return Err(match attempt {
                    0 => StoreError::Expired { op },
                    _ => failed(maybe_sent, "deadline passed between retries".into()),
                });
            }
            let started = Instant::now();
            let outcome = deadline.capped(self.timeout).run(call()).await;
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
                    return Err(failed(maybe_sent, e.to_string()));
                }
                Ok(Err(e)) => {
                    maybe_sent = true;
                    e.to_string()
                }
                Err(_) => {
                    maybe_sent = true;
                    "no answer within the attempt's time limit".to_string()
                }
            };
            if attempt >= self.retries {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(op, attempts = attempt + 1, %message, "object store call failed");
                return Err(failed(maybe_sent, message));
            }
            tracing::warn!(op, attempt, %message, "object store call failed; retrying");
            tokio::time::sleep(backoff.min(deadline.remaining())).await;
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

/// A store as built from its URL.
struct Built {
    store: Arc<dyn ObjectStore>,
    root: Path,
    lists_sorted: bool,
    /// The exclusive lock on a local directory.
    lock: Option<std::fs::File>,
    /// Conditional deletes, where the store takes them.
    deleter: Option<Deleter>,
}

impl Built {
    fn shared(store: Arc<dyn ObjectStore>, root: Path) -> Self {
        Self {
            store,
            root,
            lists_sorted: true,
            lock: None,
            deleter: None,
        }
    }
}

/// Deletes an object only if it is unchanged: S3's `If-Match` delete.
#[cfg(feature = "aws")]
type Deleter = crate::conditional_delete::S3Deleter;
/// No store of this build offers a conditional delete.
#[cfg(not(feature = "aws"))]
type Deleter = std::convert::Infallible;

/// How a conditional delete ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The object was the version read, and is gone.
    Deleted,
    /// The object changed since it was read: nothing was deleted.
    Changed,
    /// This store cannot delete conditionally; nothing was deleted.
    Unsupported,
}

/// The lock file a local store's one origin process holds.
pub const LOCK_FILE: &str = ".tierkv-origin.lock";

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
        "memory" => Ok(Built::shared(
            Arc::new(object_store::memory::InMemory::new()),
            prefix,
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
            Ok(Built::shared(Arc::new(store), prefix))
        }
        #[cfg(feature = "azure")]
        "az" | "abfs" | "abfss" | "azure" => {
            let store = object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .with_client_options(client_options(config))
                .with_retry(retry_config(config))
                .build()
                .map_err(|e| bad(e.to_string()))?;
            Ok(Built::shared(Arc::new(store), prefix))
        }
        other => Err(bad(format!(
            "unsupported store scheme {other:?}: expected file, memory, s3{}{}",
            if cfg!(feature = "gcp") { ", gs" } else { "" },
            if cfg!(feature = "azure") { ", az" } else { "" },
        ))),
    }
}

/// A local directory. It cannot compare and swap, so one origin process owns
/// it: the one holding its lock file. The lock is released when the process
/// ends, however it ends, so a killed origin never leaves it stale.
fn build_local(dir: &std::path::Path) -> Result<Built, StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", dir.display())))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Config(format!("cannot open {}: {e}", lock_path.display())))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(StoreError::Config(format!(
                "{} is in use by another origin process (it holds {LOCK_FILE}); a local \
                 directory cannot compare and swap, so only one origin may write it. \
                 Run several origins on an object store (s3://, gs://, az://) instead",
                dir.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(StoreError::Config(format!(
                "cannot lock {}: {e}",
                lock_path.display()
            )));
        }
    }
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| StoreError::Config(e.to_string()))?
        .with_automatic_cleanup(true);
    Ok(Built {
        store: Arc::new(store),
        root: Path::default(),
        lists_sorted: false,
        lock: Some(lock),
        deleter: None,
    })
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
    let store = Arc::new(
        builder
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?,
    );
    Ok(Built {
        deleter: Some(crate::conditional_delete::S3Deleter::new(store.clone())),
        ..Built::shared(store, prefix)
    })
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
