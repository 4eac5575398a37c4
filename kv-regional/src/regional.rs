//! The regional service: read-through caching in front of the origin.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use kv_proto::{Body, DeleteRequest, Entry, Op, PutRequest, Request, Response, Status, Tier};
use kv_runtime::deadline::Deadline;
use kv_runtime::feed::{Publisher, TrustFloor};
use kv_runtime::freshness::Freshness;
use kv_runtime::metrics::{CacheAnswers, CacheLookups, FeedMetrics, Metrics};
use kv_runtime::quic::{Attempts, Handler, Peers};
use kv_runtime::singleflight::SingleFlight;
use kv_runtime::time::unix_millis;
use kv_runtime::watermarks::Watermarks;
use prometheus::IntCounter;

use crate::cache::{RegionalCache, cache_key};
use crate::cached::Cached;

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
pub(crate) struct FillError(pub(crate) Response);

/// A regional node.
#[derive(Debug)]
pub struct Regional {
    pub(crate) cache: RegionalCache,
    pub(crate) origins: Arc<Origins>,
    pub(crate) fills: SingleFlight<String, Result<Cached, FillError>>,
    pub(crate) freshness: Freshness,
    /// The deadline of a background refresh, which no caller waits for.
    pub(crate) refresh_deadline: Duration,
    /// The highest version seen of each recent key, written, filled or
    /// announced by the feed: no older copy is cached or served.
    pub(crate) recent_writes: Watermarks,
    /// Copies fetched before the last gap in the origins' feeds are checked
    /// with the origin before use.
    pub(crate) floor: TrustFloor,
    /// The feed this node relays to its edges: what it applied from the origins'.
    pub(crate) feed: Arc<Publisher>,
    pub(crate) feed_metrics: FeedMetrics,
    pub(crate) stats: Arc<RegionalStats>,
    pub(crate) memory: CacheLookups,
    pub(crate) disk: CacheLookups,
    pub(crate) answers: CacheAnswers,
    pub(crate) coalesced: prometheus::IntCounter,
}

impl Regional {
    /// A node caching in `cache` by the rules of `freshness`, filling from
    /// the origin processes `origins`, relaying their feeds with a backlog
    /// of `feed_backlog` events, and counting cache lookups and statuses,
    /// coalesced fills, failovers and its feeds in `metrics`. Background
    /// refreshes get `refresh_deadline`.
    pub fn with_metrics(
        cache: RegionalCache,
        origins: Peers,
        freshness: Freshness,
        (feed_backlog, refresh_deadline): (usize, Duration),
        metrics: &Metrics,
    ) -> Self {
        let feed_metrics = metrics.feed("regional");
        Self {
            cache,
            origins: Arc::new(Origins {
                peers: origins,
                failovers: metrics.failovers("regional"),
            }),
            fills: SingleFlight::new(),
            freshness,
            refresh_deadline,
            recent_writes: Watermarks::default(),
            floor: TrustFloor::new(),
            feed: Publisher::new(feed_backlog, feed_metrics.clone()),
            feed_metrics,
            stats: Arc::default(),
            memory: metrics.cache(Tier::RegionalMemory.as_str()),
            disk: metrics.cache(Tier::RegionalDisk.as_str()),
            answers: metrics.cache_answers("regional"),
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

    /// The feed this node publishes to its subscribers.
    pub fn feed(&self) -> &Arc<Publisher> {
        &self.feed
    }

    /// The change-feed metrics of this node.
    pub fn feed_metrics(&self) -> &FeedMetrics {
        &self.feed_metrics
    }

    /// The links to the origins, whose feeds this node follows.
    pub fn origin_links(&self) -> &[kv_runtime::quic::Link] {
        self.origins.peers.links()
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
        let keep_for = self.freshness.keep_for(self.freshness.ttl);
        self.cache.insert(
            cache_key(&request.namespace, &request.key),
            Cached::new(version, Some(entry), unix_millis(), keep_for),
        );
    }

    /// Caches the miss an acknowledged DELETE left, at its version, unless
    /// something newer is known.
    fn after_delete(&self, request: &DeleteRequest, response: &Response) {
        let Some(version) = self.newest_written(&request.namespace, &request.key, response) else {
            return;
        };
        let keep_for = self.freshness.keep_for(self.freshness.negative_ttl);
        self.cache.insert(
            cache_key(&request.namespace, &request.key),
            Cached::new(version, None, unix_millis(), keep_for),
        );
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
pub(crate) struct Origins {
    peers: Peers,
    failovers: [IntCounter; 5],
}

impl Origins {
    /// Sends `request` to the origins in its key's order until one answers,
    /// within `deadline`; always answers.
    pub(crate) async fn send(&self, request: &Request, deadline: &Deadline) -> Response {
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

impl Handler for Regional {
    async fn handle(&self, request: Request) -> Response {
        self.answer(request).await
    }
}
