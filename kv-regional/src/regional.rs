//! The regional service: read-through caching in front of the origin.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use foyer::Source;
use kv_proto::{
    Body, DeleteRequest, Entry, GetRequest, Op, PutRequest, Request, RequestId, Response, Status,
    Tier,
};
use kv_runtime::metrics::{CacheLookups, Metrics};
use kv_runtime::quic::{Handler, Link};
use kv_runtime::time::{is_expired, unix_millis, unix_seconds};

use crate::cache::{RegionalCache, cache_key};
use crate::cached::Cached;

/// How long a written version is remembered, to refuse older copies that a
/// read racing with the write could otherwise put in the cache.
const RECENT_WRITES_TTL: Duration = Duration::from_secs(300);
/// How often a fill retries when the origin keeps returning a copy older
/// than a write this node has seen acknowledged.
const STALE_FILL_RETRIES: usize = 3;

/// Freshness settings.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// How long a value stays cached when the read names no cache TTL.
    pub cache_ttl: Duration,
    /// How long a miss stays cached.
    pub negative_ttl: Duration,
}

impl Default for Freshness {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(30),
        }
    }
}

/// Counters of a regional node.
#[derive(Debug, Default)]
pub struct RegionalStats {
    /// Requests sent to the origin to fill the cache.
    pub origin_fetches: AtomicU64,
    /// Reads answered with a value just fetched from the origin (every
    /// waiter of a shared fetch counts; more than `origin_fetches` means
    /// misses were coalesced).
    pub origin_answers: AtomicU64,
    /// Reads answered from memory.
    pub memory_hits: AtomicU64,
    /// Reads answered from disk.
    pub disk_hits: AtomicU64,
    /// Reads that found a stale entry and fetched again.
    pub stale: AtomicU64,
}

/// Why a fill from the origin failed; carried through foyer to every waiter.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
struct FillError {
    status: Status,
    message: String,
}

/// A regional node.
#[derive(Debug)]
pub struct Regional {
    cache: RegionalCache,
    origin: Link,
    freshness: Freshness,
    recent_writes: moka::sync::Cache<String, u64>,
    stats: Arc<RegionalStats>,
    memory: CacheLookups,
    disk: CacheLookups,
    coalesced: prometheus::IntCounter,
}

impl Regional {
    /// A node caching in `cache`, filling from the origin over `origin`.
    pub fn new(cache: RegionalCache, origin: Link, freshness: Freshness) -> Self {
        Self::with_metrics(cache, origin, freshness, &Metrics::new())
    }

    /// As [`Regional::new`], counting cache lookups and coalesced fills in `metrics`.
    pub fn with_metrics(
        cache: RegionalCache,
        origin: Link,
        freshness: Freshness,
        metrics: &Metrics,
    ) -> Self {
        Self {
            cache,
            origin,
            freshness,
            recent_writes: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(RECENT_WRITES_TTL)
                .build(),
            stats: Arc::default(),
            memory: metrics.cache(Tier::RegionalMemory.as_str()),
            disk: metrics.cache(Tier::RegionalDisk.as_str()),
            coalesced: metrics.coalesced("regional"),
        }
    }

    /// Sets the cache size gauges; called before each scrape.
    pub fn report_cache_size(&self, disk_capacity_bytes: u64) {
        let memory = self.cache.memory();
        let as_gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.memory.bytes.set(as_gauge(memory.usage()));
        self.memory.entries.set(as_gauge(memory.entries()));
        self.memory.capacity.set(as_gauge(memory.capacity()));
        self.disk
            .capacity
            .set(i64::try_from(disk_capacity_bytes).unwrap_or(i64::MAX));
    }

    /// The counters.
    pub fn stats(&self) -> &RegionalStats {
        &self.stats
    }

    /// The cache.
    pub fn cache(&self) -> &RegionalCache {
        &self.cache
    }

    /// Answers one request.
    pub async fn answer(&self, request: Request) -> Response {
        let id = request.id;
        match request.op {
            Op::Get(get) => self.get(id, get).await,
            Op::Put(put) => self.put(id, put).await,
            Op::Delete(delete) => self.delete(id, delete).await,
            op @ Op::List(_) => self.forward(Request { id, op }).await,
        }
    }

    async fn get(&self, id: RequestId, request: GetRequest) -> Response {
        let key = cache_key(&request.namespace, &request.key);
        let span = tracing::Span::current();
        let mut saw_stale = false;
        // Twice at most: a stale entry is dropped, and the second pass fetches.
        for _ in 0..2 {
            // Set when this call's fetch runs, i.e. it did not join another's.
            let led = Arc::new(AtomicBool::new(false));
            let fetch = {
                let origin = self.origin.clone();
                let fill = request.clone();
                let freshness = self.freshness;
                let recent = (self.recent_writes.clone(), key.clone());
                let stats = self.stats.clone();
                let led = led.clone();
                move || {
                    led.store(true, Ordering::Relaxed);
                    fill_from_origin(origin, id, fill, freshness, recent, stats)
                }
            };
            let entry = match self.cache.get_or_fetch(&key, fetch).await {
                Ok(entry) => entry,
                Err(e) => return self.fill_failed(id, &request, &e).await,
            };
            let cached = entry.value();
            let source = entry.source();
            if source != Source::Outer && !self.is_fresh(cached, &key, request.min_version) {
                self.stats.stale.fetch_add(1, Ordering::Relaxed);
                if source == Source::Disk {
                    self.memory.miss.inc();
                    self.disk.stale.inc();
                } else {
                    self.memory.stale.inc();
                }
                saw_stale = true;
                self.cache.remove(&key);
                continue;
            }
            let tier = match source {
                Source::Memory => {
                    self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
                    self.memory.hit.inc();
                    Tier::RegionalMemory
                }
                Source::Disk => {
                    self.stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                    self.memory.miss.inc();
                    self.disk.hit.inc();
                    Tier::RegionalDisk
                }
                Source::Outer => {
                    self.stats.origin_answers.fetch_add(1, Ordering::Relaxed);
                    self.memory.miss.inc();
                    self.disk.miss.inc();
                    if !led.load(Ordering::Relaxed) {
                        self.coalesced.inc();
                    }
                    Tier::Origin
                }
            };
            let result = match (saw_stale, source) {
                (true, _) => "stale",
                (false, Source::Outer) => "miss",
                (false, _) => "hit",
            };
            span.record("cache", result);
            return match &cached.entry {
                Some(value) if !is_expired(value.expiration, unix_seconds()) => {
                    Response::entry(id, tier, value.clone())
                }
                _ => Response::not_found(id, tier),
            };
        }
        // Stale twice in a row: another request refilled with an old copy.
        // Ask the origin directly rather than loop.
        self.forward(Request {
            id,
            op: Op::Get(request),
        })
        .await
    }

    /// Whether a cached answer may be served.
    fn is_fresh(&self, cached: &Cached, key: &String, min_version: Option<u64>) -> bool {
        if cached.fresh_until_ms <= unix_millis() {
            return false;
        }
        if min_version.is_some_and(|min| cached.version < min) {
            return false;
        }
        if self
            .recent_writes
            .get(key)
            .is_some_and(|written| cached.version < written)
        {
            return false;
        }
        true
    }

    async fn fill_failed(
        &self,
        id: RequestId,
        request: &GetRequest,
        error: &foyer::Error,
    ) -> Response {
        if let Some(fill) = error.downcast_ref::<FillError>() {
            return Response::error(id, fill.status, fill.message.clone());
        }
        // The disk tier failed (not the origin): serve from the origin.
        tracing::warn!(error = %error, "regional cache read failed; reading through to the origin");
        self.forward(Request {
            id,
            op: Op::Get(request.clone()),
        })
        .await
    }

    async fn put(&self, id: RequestId, request: PutRequest) -> Response {
        let response = self
            .forward(Request {
                id,
                op: Op::Put(request.clone()),
            })
            .await;
        if let (Status::Ok, Body::Written { version }) = (response.status, &response.body) {
            let key = cache_key(&request.namespace, &request.key);
            self.recent_writes.insert(key.clone(), *version);
            let entry = Entry {
                version: *version,
                expiration: request.expiration,
                metadata: request.metadata,
                value: request.value,
            };
            let cached = Cached {
                fresh_until_ms: fresh_until(self.freshness.cache_ttl, entry.expiration),
                version: *version,
                entry: Some(entry),
            };
            self.cache.insert(key, cached);
        }
        response
    }

    async fn delete(&self, id: RequestId, request: DeleteRequest) -> Response {
        let response = self
            .forward(Request {
                id,
                op: Op::Delete(request.clone()),
            })
            .await;
        if let (Status::Ok, Body::Written { version }) = (response.status, &response.body) {
            let key = cache_key(&request.namespace, &request.key);
            self.recent_writes.insert(key.clone(), *version);
            let miss = Cached {
                fresh_until_ms: unix_millis() + millis(self.freshness.negative_ttl),
                version: *version,
                entry: None,
            };
            self.cache.insert(key, miss);
        }
        response
    }

    async fn forward(&self, request: Request) -> Response {
        match self.origin.request(&request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(error = %e, "origin unreachable");
                Response::error(
                    request.id,
                    Status::Unavailable,
                    format!("origin unreachable: {e}"),
                )
            }
        }
    }
}

impl Handler for Regional {
    async fn handle(&self, request: Request) -> Response {
        self.answer(request).await
    }
}

/// Fetches a key from the origin for the cache. A copy older than a write
/// this node saw acknowledged is fetched again, so a read racing with a write
/// cannot cache what the write replaced.
async fn fill_from_origin(
    origin: Link,
    id: RequestId,
    request: GetRequest,
    freshness: Freshness,
    (recent_writes, key): (moka::sync::Cache<String, u64>, String),
    stats: Arc<RegionalStats>,
) -> Result<Cached, FillError> {
    let ttl = request
        .cache_ttl
        .map_or(freshness.cache_ttl, |s| Duration::from_secs(s.into()));
    let upstream = Request {
        id,
        op: Op::Get(GetRequest {
            min_version: None,
            cache_ttl: None,
            ..request
        }),
    };
    let mut attempt = 0;
    loop {
        stats.origin_fetches.fetch_add(1, Ordering::Relaxed);
        let response = origin.request(&upstream).await.map_err(|e| FillError {
            status: Status::Unavailable,
            message: format!("origin unreachable: {e}"),
        })?;
        let cached = match (response.status, response.body) {
            (Status::Ok, Body::Entry(entry)) => Cached {
                fresh_until_ms: fresh_until(ttl, entry.expiration),
                version: entry.version,
                entry: Some(entry),
            },
            (Status::NotFound, _) => Cached {
                fresh_until_ms: unix_millis() + millis(freshness.negative_ttl),
                version: 0,
                entry: None,
            },
            (status, body) => {
                let message = match body {
                    Body::Error { message } => message,
                    _ => format!("unexpected {status} answer from the origin"),
                };
                let status = if status == Status::Ok {
                    Status::Internal
                } else {
                    status
                };
                return Err(FillError { status, message });
            }
        };
        let stale = recent_writes
            .get(&key)
            .is_some_and(|written| cached.version < written);
        if !stale || attempt >= STALE_FILL_RETRIES {
            return Ok(cached);
        }
        attempt += 1;
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// When a value fetched now stops being fresh: after the TTL, and never past
/// its expiration.
fn fresh_until(ttl: Duration, expiration: Option<u64>) -> u64 {
    let by_ttl = unix_millis().saturating_add(millis(ttl));
    expiration.map_or(by_ttl, |e| by_ttl.min(e.saturating_mul(1000)))
}
