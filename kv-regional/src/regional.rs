//! The regional service: read-through caching in front of the origin.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use foyer::Source;
use kv_proto::{
    Body, DeleteRequest, Entry, ErrorSource, GetRequest, Op, PutRequest, Request, RequestId,
    Response, Status, Tier,
};
use kv_runtime::deadline::Deadline;
use kv_runtime::metrics::{CacheLookups, Metrics};
use kv_runtime::quic::{Attempts, Handler, Peers};
use kv_runtime::singleflight::{Role, SingleFlight};
use kv_runtime::time::{is_expired, unix_millis, unix_seconds};
use kv_runtime::watermarks::Watermarks;
use prometheus::IntCounter;

use crate::cache::{RegionalCache, cache_key};
use crate::cached::Cached;

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
#[error("{}", .0.message().unwrap_or("fill failed"))]
struct FillError(Response);

/// A regional node.
#[derive(Debug)]
pub struct Regional {
    cache: RegionalCache,
    origins: Arc<Origins>,
    fills: SingleFlight<String, Result<Cached, FillError>>,
    freshness: Freshness,
    /// The highest version seen of each recent key, written or filled: no
    /// older copy is cached or served.
    recent_writes: Watermarks,
    stats: Arc<RegionalStats>,
    memory: CacheLookups,
    disk: CacheLookups,
    coalesced: prometheus::IntCounter,
}

impl Regional {
    /// A node caching in `cache`, filling from the origin processes `origins`.
    pub fn new(cache: RegionalCache, origins: Peers, freshness: Freshness) -> Self {
        Self::with_metrics(cache, origins, freshness, &Metrics::new())
    }

    /// As [`Regional::new`], counting cache lookups, coalesced fills and
    /// failovers in `metrics`.
    pub fn with_metrics(
        cache: RegionalCache,
        origins: Peers,
        freshness: Freshness,
        metrics: &Metrics,
    ) -> Self {
        Self {
            cache,
            origins: Arc::new(Origins {
                peers: origins,
                failovers: metrics.failovers("regional"),
            }),
            fills: SingleFlight::new(),
            freshness,
            recent_writes: Watermarks::default(),
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

    /// Answers one request, within its deadline.
    pub async fn answer(&self, request: Request) -> Response {
        let deadline = Deadline::of(&request);
        match request.op {
            Op::Get(get) => self.get(request.id, get, deadline).await,
            Op::Put(ref put) => {
                let response = self.origins.send(&request, &deadline).await;
                self.after_put(put, &response);
                response
            }
            Op::Delete(ref delete) => {
                let response = self.origins.send(&request, &deadline).await;
                self.after_delete(delete, &response);
                response
            }
            Op::List(_) => self.origins.send(&request, &deadline).await,
        }
    }

    /// Reads a key: from memory or disk when the cached copy is fresh, else
    /// from the origin. Concurrent fills of one key share one origin request,
    /// which stops once no reader waits for it any more.
    async fn get(&self, id: RequestId, request: GetRequest, deadline: Deadline) -> Response {
        let key = cache_key(&request.namespace, &request.key);
        let span = tracing::Span::current();
        let looked_up = match deadline.run(self.cache.get(&key)).await {
            Ok(looked_up) => looked_up,
            Err(_) => return timeout(id, "the cache lookup"),
        };
        let mut saw_stale = false;
        match looked_up {
            Ok(Some(entry)) => {
                let (cached, on_disk) = (entry.value(), entry.source() == Source::Disk);
                if self.is_fresh(cached, &key, request.min_version) {
                    let tier = if on_disk {
                        self.stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                        self.memory.miss.inc();
                        self.disk.hit.inc();
                        Tier::RegionalDisk
                    } else {
                        self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
                        self.memory.hit.inc();
                        Tier::RegionalMemory
                    };
                    span.record("cache", "hit");
                    return answer(id, tier, cached);
                }
                self.stats.stale.fetch_add(1, Ordering::Relaxed);
                if on_disk {
                    self.memory.miss.inc();
                    self.disk.stale.inc();
                } else {
                    self.memory.stale.inc();
                }
                saw_stale = true;
            }
            Ok(None) => {
                self.memory.miss.inc();
                self.disk.miss.inc();
            }
            // The disk tier failed (not the origin): fill from the origin.
            Err(e) => {
                tracing::warn!(error = %e, "regional cache read failed; reading through to the origin")
            }
        }
        span.record("cache", if saw_stale { "stale" } else { "miss" });
        let fill = {
            let origins = self.origins.clone();
            let cache = self.cache.clone();
            let freshness = self.freshness;
            let watermarks = self.recent_writes.clone();
            let recent = (watermarks.clone(), key.clone());
            let stats = self.stats.clone();
            let key = key.clone();
            move || async move {
                let cached =
                    fill_from_origin(origins, id, deadline, request, freshness, recent, stats)
                        .await?;
                // Filled before the flight ends, so a read that arrives just
                // after finds it cached rather than starting another fill;
                // unless a write meanwhile made something newer known.
                if watermarks.raise(&key, cached.version) {
                    cache.insert(key, cached.clone());
                }
                Ok(cached)
            }
        };
        let (filled, role) = match deadline.run(self.fills.run(key.clone(), fill)).await {
            Ok(filled) => filled,
            Err(_) => return timeout(id, "the origin's answer"),
        };
        if role == Role::Follower {
            self.coalesced.inc();
        }
        match filled {
            Ok(Ok(cached)) => {
                self.stats.origin_answers.fetch_add(1, Ordering::Relaxed);
                answer(id, Tier::Origin, &cached)
            }
            Ok(Err(FillError(failure))) => Response { id, ..failure },
            Err(e) => Response::error(id, Status::Internal, e.to_string()),
        }
    }

    /// Whether a cached answer may be served.
    fn is_fresh(&self, cached: &Cached, key: &str, min_version: Option<u64>) -> bool {
        if cached.fresh_until_ms <= unix_millis() {
            return false;
        }
        if min_version.is_some_and(|min| cached.version < min) {
            return false;
        }
        !self.recent_writes.is_behind(key, cached.version)
    }

    /// Caches what an acknowledged PUT wrote, unless something newer is known.
    fn after_put(&self, request: &PutRequest, response: &Response) {
        let Some(version) = self.newest_written(&request.namespace, &request.key, response) else {
            return;
        };
        let entry = Entry {
            version,
            expiration: request.expiration,
            metadata: request.metadata.clone(),
            value: request.value.clone(),
        };
        let cached = Cached {
            fresh_until_ms: fresh_until(self.freshness.cache_ttl, entry.expiration),
            version,
            entry: Some(entry),
        };
        self.cache
            .insert(cache_key(&request.namespace, &request.key), cached);
    }

    /// Caches the miss an acknowledged DELETE left, at its version, unless
    /// something newer is known.
    fn after_delete(&self, request: &DeleteRequest, response: &Response) {
        let Some(version) = self.newest_written(&request.namespace, &request.key, response) else {
            return;
        };
        let miss = Cached {
            fresh_until_ms: unix_millis() + millis(self.freshness.negative_ttl),
            version,
            entry: None,
        };
        self.cache
            .insert(cache_key(&request.namespace, &request.key), miss);
    }

    /// For an acknowledged write: raises the key's watermark, stops in-flight
    /// fills from being joined, and returns the write's version if the cache
    /// should take it: not when it answers a retry (newer writes may have
    /// followed), nor when this node already knows a newer version.
    fn newest_written(
        &self,
        namespace: &kv_proto::Namespace,
        key: &kv_proto::Key,
        response: &Response,
    ) -> Option<u64> {
        let (Status::Ok, Body::Written { version, replayed }) = (response.status, &response.body)
        else {
            return None;
        };
        let key = cache_key(namespace, key);
        let newest = self.recent_writes.raise(&key, *version);
        // Fills already in flight may carry the old copy; later reads must not join them.
        self.fills.forget(&key);
        let cached_newer = self
            .cache
            .memory()
            .get(&key)
            .is_some_and(|cached| cached.value().version > *version);
        (newest && !replayed && !cached_newer).then_some(*version)
    }
}

/// The origin processes, any of which can serve any key.
#[derive(Debug)]
struct Origins {
    peers: Peers,
    failovers: [IntCounter; 5],
}

impl Origins {
    /// Sends `request` to the origins in its key's order until one answers,
    /// within `deadline`; always answers.
    async fn send(&self, request: &Request, deadline: &Deadline) -> Response {
        let routing_key = match (request.op.key(), request.op.namespace()) {
            (Some(key), namespace) => format!("{namespace}/{key}"),
            (None, namespace) => namespace.to_string(),
        };
        let mut attempts = Attempts::new(request, *deadline);
        let answer = attempts.send_to(&self.peers, &routing_key).await;
        attempts.count_failovers(&self.failovers);
        answer.unwrap_or_else(|| {
            let failure = attempts.failure();
            tracing::warn!(status = %failure.status, message = failure.message().unwrap_or_default(), "no origin answered");
            failure
        })
    }
}

/// The answer a cached copy gives.
fn answer(id: RequestId, tier: Tier, cached: &Cached) -> Response {
    match &cached.entry {
        Some(value) if !is_expired(value.expiration, unix_seconds()) => {
            Response::entry(id, tier, value.clone())
        }
        _ if cached.version > 0 => Response::deleted(id, tier, cached.version),
        _ => Response::not_found(id, tier),
    }
}

/// A read whose deadline passed while waiting for `what`.
fn timeout(id: RequestId, what: &str) -> Response {
    Response::failure(
        id,
        Status::Timeout,
        ErrorSource::Upstream,
        true,
        format!("no answer within the request's deadline (waiting for {what})"),
    )
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
    origins: Arc<Origins>,
    id: RequestId,
    deadline: Deadline,
    request: GetRequest,
    freshness: Freshness,
    (recent_writes, key): (Watermarks, String),
    stats: Arc<RegionalStats>,
) -> Result<Cached, FillError> {
    let ttl = request
        .cache_ttl
        .map_or(freshness.cache_ttl, |s| Duration::from_secs(s.into()));
    let op = Op::Get(GetRequest {
        min_version: None,
        cache_ttl: None,
        ..request
    });
    let mut attempt = 0;
    loop {
        stats.origin_fetches.fetch_add(1, Ordering::Relaxed);
        let upstream = Request {
            id,
            budget: deadline.remaining(),
            op: op.clone(),
        };
        let response = origins.send(&upstream, &deadline).await;
        let negative = |version| Cached {
            fresh_until_ms: unix_millis() + millis(freshness.negative_ttl),
            version,
            entry: None,
        };
        let cached = match (response.status, &response.body) {
            (Status::Ok, Body::Entry(entry)) => Cached {
                fresh_until_ms: fresh_until(ttl, entry.expiration),
                version: entry.version,
                entry: Some(entry.clone()),
            },
            // A deleted (or expired) key is a miss at its delete's version.
            (Status::NotFound, Body::Deleted { version }) => negative(*version),
            (Status::NotFound, _) => negative(0),
            (Status::Ok, _) => {
                return Err(FillError(Response::failure(
                    id,
                    Status::Internal,
                    ErrorSource::Upstream,
                    false,
                    "unexpected answer from the origin",
                )));
            }
            _ => return Err(FillError(response)),
        };
        let stale = recent_writes.is_behind(&key, cached.version);
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
