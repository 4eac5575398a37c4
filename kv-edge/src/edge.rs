//! The edge service: the hot cache in front of the upstream tiers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kv_proto::{
    Body, DeleteRequest, Entry, GetRequest, Key, ListPage, ListRequest, Namespace, Op, PutRequest,
    Request, RequestId, Response, Status, Tier,
};
use kv_runtime::metrics::{AnsweredBy, CacheLookups, Metrics};
use kv_runtime::singleflight::{Role, SingleFlight};
use kv_runtime::time::{is_expired, unix_millis, unix_seconds};

use crate::hot::{HotCache, HotEntry, Lookup};
use crate::upstream::Upstream;

/// How long a write's version is remembered, so that reads through this
/// edge never see anything older (read-your-writes) even for values too
/// large for the hot cache, or after the hot entry is evicted.
const RECENT_WRITES_TTL: Duration = Duration::from_secs(300);

/// Why an edge operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EdgeError {
    /// No tier could be reached in time.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// An upstream tier refused or failed the request.
    #[error("{message}")]
    Upstream {
        /// Its status.
        status: Status,
        /// Its message.
        message: String,
    },
}

/// A read's outcome.
#[derive(Debug, Clone)]
pub struct Read {
    /// The value, or `None` when the key does not exist.
    pub entry: Option<Entry>,
    /// The tier that answered.
    pub tier: Tier,
}

/// Counters of an edge.
#[derive(Debug, Default)]
pub struct EdgeStats {
    /// Reads answered from the hot cache.
    pub hot_hits: AtomicU64,
    /// Reads sent upstream.
    pub upstream_reads: AtomicU64,
    /// Reads that waited on another read's upstream request.
    pub coalesced: AtomicU64,
}

/// An edge.
#[derive(Debug)]
pub struct Edge {
    hot: HotCache,
    upstream: Arc<Upstream>,
    default_cache_ttl: Duration,
    reads: SingleFlight<String, Result<Response, EdgeError>>,
    recent_writes: moka::sync::Cache<String, u64>,
    stats: EdgeStats,
    lookups: CacheLookups,
    answered_by: AnsweredBy,
    coalesced: prometheus::IntCounter,
}

fn cache_key(namespace: &Namespace, key: &Key) -> String {
    format!("{namespace}/{key}")
}

impl Edge {
    /// An edge with `hot` in front of `upstream`.
    pub fn new(hot: HotCache, upstream: Upstream, default_cache_ttl: Duration) -> Self {
        Self::with_metrics(hot, upstream, default_cache_ttl, &Metrics::new())
    }

    /// As [`Edge::new`], counting hot-cache lookups, answering tiers and
    /// coalesced reads in `metrics`.
    pub fn with_metrics(
        hot: HotCache,
        upstream: Upstream,
        default_cache_ttl: Duration,
        metrics: &Metrics,
    ) -> Self {
        Self {
            hot,
            upstream: Arc::new(upstream),
            default_cache_ttl,
            reads: SingleFlight::new(),
            recent_writes: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(RECENT_WRITES_TTL)
                .build(),
            stats: EdgeStats::default(),
            lookups: metrics.cache(Tier::Edge.as_str()),
            answered_by: metrics.answered_by(),
            coalesced: metrics.coalesced("edge"),
        }
    }

    /// Sets the hot cache's size gauges; called before each scrape.
    pub fn report_cache_size(&self) {
        let (bytes, entries) = self.hot.usage();
        let as_gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.lookups.bytes.set(as_gauge(bytes));
        self.lookups.entries.set(as_gauge(entries));
        self.lookups.capacity.set(as_gauge(self.hot.capacity()));
    }

    /// The counters.
    pub fn stats(&self) -> &EdgeStats {
        &self.stats
    }

    /// The hot cache.
    pub fn hot(&self) -> &HotCache {
        &self.hot
    }

    /// The upstream tiers.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Reads a key: from the hot cache, else from upstream, where concurrent
    /// misses of one key share one request.
    pub async fn get(
        &self,
        id: RequestId,
        namespace: Namespace,
        key: Key,
        cache_ttl: Option<u32>,
    ) -> Result<Read, EdgeError> {
        let ck = cache_key(&namespace, &key);
        let written = self.recent_writes.get(&ck);
        let span = tracing::Span::current();
        // A value older than this edge's own write, or past its expiration,
        // is as stale as one past its cache TTL.
        let result = match self.hot.lookup(&ck).await {
            Lookup::Hit(hit)
                if written.is_none_or(|w| hit.entry.version >= w)
                    && !is_expired(hit.entry.expiration, unix_seconds()) =>
            {
                self.stats.hot_hits.fetch_add(1, Ordering::Relaxed);
                self.lookups.hit.inc();
                self.answered_by.inc(Tier::Edge);
                span.record("cache", "hit");
                return Ok(Read {
                    entry: Some(hit.entry),
                    tier: Tier::Edge,
                });
            }
            Lookup::Hit(_) | Lookup::Stale(_) => {
                self.lookups.stale.inc();
                "stale"
            }
            Lookup::Miss => {
                self.lookups.miss.inc();
                "miss"
            }
        };
        span.record("cache", result);
        let request = Request {
            id,
            op: Op::Get(GetRequest {
                namespace,
                key,
                min_version: written,
                cache_ttl,
            }),
        };
        // The flight fills the hot cache before it completes, so a read that
        // arrives just after the flight is gone finds the value there rather
        // than starting a second upstream request.
        let upstream = self.upstream.clone();
        let hot = self.hot.clone();
        let recent_writes = self.recent_writes.clone();
        let ttl = cache_ttl.map_or(self.default_cache_ttl, |s| Duration::from_secs(s.into()));
        let (result, role) = self
            .reads
            .run(ck.clone(), move || async move {
                let response = fetch(&upstream, &ck, &request).await?;
                if let (Status::Ok, Body::Entry(entry)) = (response.status, &response.body)
                    && hot.admits(entry.value.len())
                    // A write that landed meanwhile has already cached something newer.
                    && recent_writes.get(&ck).is_none_or(|w| entry.version >= w)
                {
                    let fresh_until_ms = fresh_until(ttl, entry.expiration);
                    hot.insert(
                        ck,
                        HotEntry {
                            entry: entry.clone(),
                            fresh_until_ms,
                        },
                    )
                    .await;
                }
                Ok(response)
            })
            .await;
        if role == Role::Follower {
            self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
            self.coalesced.inc();
        } else {
            self.stats.upstream_reads.fetch_add(1, Ordering::Relaxed);
        }
        let response = result.map_err(|e| EdgeError::Unavailable(e.to_string()))??;
        let tier = response.tier.unwrap_or(Tier::Origin);
        let read = match (response.status, response.body) {
            (Status::Ok, Body::Entry(entry)) => Read {
                entry: Some(entry),
                tier,
            },
            (Status::NotFound, _) => Read { entry: None, tier },
            (status, body) => return Err(upstream_error(status, body)),
        };
        self.answered_by.inc(tier);
        Ok(read)
    }
}

impl Edge {
    /// Writes a key; answers with its version once the origin holds it. The
    /// hot cache holds the new value before this returns (read-your-writes).
    pub async fn put(&self, id: RequestId, put: PutRequest) -> Result<u64, EdgeError> {
        let ck = cache_key(&put.namespace, &put.key);
        let request = Request {
            id,
            op: Op::Put(put.clone()),
        };
        let version = written(fetch(&self.upstream, &ck, &request).await?)?;
        self.remember_write(&ck, version);
        let entry = Entry {
            version,
            expiration: put.expiration,
            metadata: put.metadata,
            value: put.value,
        };
        let fresh_until_ms = fresh_until(self.default_cache_ttl, entry.expiration);
        self.hot
            .insert(
                ck,
                HotEntry {
                    entry,
                    fresh_until_ms,
                },
            )
            .await;
        Ok(version)
    }

    /// Deletes a key; answers with the delete's version.
    pub async fn delete(
        &self,
        id: RequestId,
        namespace: Namespace,
        key: Key,
    ) -> Result<u64, EdgeError> {
        let ck = cache_key(&namespace, &key);
        let request = Request {
            id,
            op: Op::Delete(DeleteRequest { namespace, key }),
        };
        let version = written(fetch(&self.upstream, &ck, &request).await?)?;
        self.remember_write(&ck, version);
        self.hot.remove(&ck).await;
        Ok(version)
    }

    /// One page of a listing.
    pub async fn list(&self, id: RequestId, list: ListRequest) -> Result<ListPage, EdgeError> {
        let routing = list.namespace.to_string();
        let response = fetch(
            &self.upstream,
            &routing,
            &Request {
                id,
                op: Op::List(list),
            },
        )
        .await?;
        match (response.status, response.body) {
            (Status::Ok, Body::Page(page)) => Ok(page),
            (status, body) => Err(upstream_error(status, body)),
        }
    }

    fn remember_write(&self, ck: &str, version: u64) {
        self.recent_writes.insert(ck.to_string(), version);
        // Reads already in flight may carry the old value; later ones must not join them.
        self.reads.forget(&ck.to_string());
    }
}

async fn fetch(
    upstream: &Upstream,
    routing_key: &str,
    request: &Request,
) -> Result<Response, EdgeError> {
    upstream
        .request(routing_key, request)
        .await
        .map_err(|e| EdgeError::Unavailable(e.last))
}

fn written(response: Response) -> Result<u64, EdgeError> {
    match (response.status, response.body) {
        (Status::Ok, Body::Written { version }) => Ok(version),
        (status, body) => Err(upstream_error(status, body)),
    }
}

fn upstream_error(status: Status, body: Body) -> EdgeError {
    let message = match body {
        Body::Error { message } => message,
        _ => format!("unexpected {status} answer from upstream"),
    };
    match status {
        Status::Unavailable => EdgeError::Unavailable(message),
        Status::Ok | Status::NotFound => EdgeError::Upstream {
            status: Status::Internal,
            message,
        },
        status => EdgeError::Upstream { status, message },
    }
}

/// When a value fetched now stops being fresh: after the TTL, and never past
/// its expiration.
fn fresh_until(ttl: Duration, expiration: Option<u64>) -> u64 {
    let by_ttl = unix_millis().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    expiration.map_or(by_ttl, |e| by_ttl.min(e.saturating_mul(1000)))
}
