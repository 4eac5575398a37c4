//! The edge service: the hot cache in front of the upstream tiers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kv_proto::{
    Body, DeleteRequest, Entry, ErrorSource, GetRequest, Key, ListPage, ListRequest, Namespace, Op,
    PutRequest, Request, RequestId, Response, Status, Tier, WriteId,
};
use kv_runtime::deadline::Deadline;
use kv_runtime::metrics::{AnsweredBy, CacheLookups, Metrics};
use kv_runtime::singleflight::{Role, SingleFlight};
use kv_runtime::time::{is_expired, unix_millis, unix_seconds};
use kv_runtime::watermarks::Watermarks;

use crate::hot::{HotCache, HotEntry, Lookup};
use crate::upstream::Upstream;

/// Why an edge operation failed: the error model every tier shares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EdgeError {
    /// What kind of failure: never `ok` or `not_found`.
    pub status: Status,
    /// Who is to blame (the error source; not named `source`, which would
    /// make it the `Error::source` chain).
    pub blame: ErrorSource,
    /// Whether a retry (of a write: with the same write id) might succeed.
    pub retryable: bool,
    /// What failed.
    pub message: String,
}

impl EdgeError {
    /// The deadline passed at this edge, with nothing sent (or only reads).
    fn timeout(what: &str) -> Self {
        Self {
            status: Status::Timeout,
            blame: ErrorSource::Local,
            retryable: true,
            message: format!("no answer within the request's deadline ({what})"),
        }
    }

    /// A failure an upstream tier answered with; an answer that makes no
    /// sense for the request is an internal error.
    fn from_response(response: Response) -> Self {
        let status = response.status;
        let retryable = response.is_retryable();
        match response.body {
            Body::Error(failure) if status.is_failure() => Self {
                status,
                blame: failure.source,
                retryable,
                message: failure.message,
            },
            _ => Self {
                status: Status::Internal,
                blame: ErrorSource::Upstream,
                retryable: false,
                message: format!("unexpected {status} answer from upstream"),
            },
        }
    }
}

/// An acknowledged write or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Its version.
    pub version: u64,
    /// Whether it answers a retry of a write applied before (same write id):
    /// the version is the first attempt's.
    pub replayed: bool,
}

/// A read's outcome.
#[derive(Debug, Clone)]
pub struct Read {
    /// The value, or `None` when the key does not exist.
    pub entry: Option<Entry>,
    /// The tier that answered.
    pub tier: Tier,
    /// For a key that does not exist: the version of the delete (or of the
    /// value that expired), when the answering tier knows it.
    pub absent_version: Option<u64>,
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
    reads: SingleFlight<String, Response>,
    /// The highest version written or read through this edge of each recent
    /// key: reads here never see anything older (read-your-writes, and no
    /// going back), even for values too large for the hot cache.
    recent_writes: Watermarks,
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
            recent_writes: Watermarks::default(),
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
    /// misses of one key share one request. The request stops waiting at
    /// `deadline`; the shared request goes on only while someone waits.
    pub async fn get(
        &self,
        id: RequestId,
        deadline: Deadline,
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
                    absent_version: None,
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
        let floor_key = ck.clone();
        let request = Request {
            id,
            budget: deadline.remaining(),
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
        let flight = self.reads.run(ck.clone(), move || async move {
            let response = upstream.request(&ck, &request, &deadline).await;
            if let (Status::Ok, Body::Entry(entry)) = (response.status, &response.body)
                    && hot.admits(entry.value.len())
                    // A write that landed meanwhile has already cached something newer.
                    && !recent_writes.is_behind(&ck, entry.version)
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
            response
        });
        let (result, role) = deadline
            .run(flight)
            .await
            .map_err(|_| EdgeError::timeout("waiting for a shared upstream read"))?;
        if role == Role::Follower {
            self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
            self.coalesced.inc();
        } else {
            self.stats.upstream_reads.fetch_add(1, Ordering::Relaxed);
        }
        let response = result.map_err(|e| EdgeError {
            status: Status::Internal,
            blame: ErrorSource::Local,
            retryable: true,
            message: e.to_string(),
        })?;
        let tier = response.tier.unwrap_or(Tier::Origin);
        match &response.body {
            Body::Entry(entry) => {
                self.recent_writes.raise(&floor_key, entry.version);
            }
            Body::Deleted { version } => {
                self.recent_writes.raise(&floor_key, *version);
            }
            _ => {}
        }
        let read = match (response.status, response.body) {
            (Status::Ok, Body::Entry(entry)) => Read {
                entry: Some(entry),
                tier,
                absent_version: None,
            },
            (Status::NotFound, Body::Deleted { version }) => Read {
                entry: None,
                tier,
                absent_version: Some(version),
            },
            (Status::NotFound, _) => Read {
                entry: None,
                tier,
                absent_version: None,
            },
            (status, body) => {
                return Err(EdgeError::from_response(Response {
                    id,
                    status,
                    tier: None,
                    body,
                }));
            }
        };
        self.answered_by.inc(tier);
        Ok(read)
    }
}

impl Edge {
    /// Writes a key; answers with its version once the origin holds it. The
    /// hot cache holds the new value before this returns (read-your-writes).
    /// A retry with the same write id, through any edge, gets the same version.
    pub async fn put(
        &self,
        id: RequestId,
        deadline: Deadline,
        put: PutRequest,
    ) -> Result<Written, EdgeError> {
        let ck = cache_key(&put.namespace, &put.key);
        let request = Request {
            id,
            budget: deadline.remaining(),
            op: Op::Put(put.clone()),
        };
        let written = written(self.upstream.request(&ck, &request, &deadline).await)?;
        let version = written.version;
        self.remember_write(&ck, version);
        if written.replayed {
            // A retry of a write applied before: newer writes may have
            // followed it, so its value is no news for the cache.
            return Ok(written);
        }
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
        Ok(written)
    }

    /// Deletes a key; answers with the delete's version.
    pub async fn delete(
        &self,
        id: RequestId,
        deadline: Deadline,
        namespace: Namespace,
        key: Key,
        write_id: WriteId,
    ) -> Result<Written, EdgeError> {
        let ck = cache_key(&namespace, &key);
        let request = Request {
            id,
            budget: deadline.remaining(),
            op: Op::Delete(DeleteRequest {
                namespace,
                key,
                write_id,
            }),
        };
        let written = written(self.upstream.request(&ck, &request, &deadline).await)?;
        self.remember_write(&ck, written.version);
        self.hot.remove_older_than(&ck, written.version).await;
        Ok(written)
    }

    /// One page of a listing.
    pub async fn list(
        &self,
        id: RequestId,
        deadline: Deadline,
        list: ListRequest,
    ) -> Result<ListPage, EdgeError> {
        let routing = list.namespace.to_string();
        let request = Request {
            id,
            budget: deadline.remaining(),
            op: Op::List(list),
        };
        let response = self.upstream.request(&routing, &request, &deadline).await;
        match (response.status, response.body) {
            (Status::Ok, Body::Page(page)) => Ok(page),
            (status, body) => Err(EdgeError::from_response(Response {
                id,
                status,
                tier: None,
                body,
            })),
        }
    }

    /// Remembers a version written through this edge; reads already in
    /// flight may carry the old value, so later ones do not join them.
    fn remember_write(&self, ck: &str, version: u64) {
        self.recent_writes.raise(ck, version);
        self.reads.forget(&ck.to_string());
    }
}

/// An acknowledged write's version, and whether it answers a retry.
fn written(response: Response) -> Result<Written, EdgeError> {
    match (response.status, &response.body) {
        (Status::Ok, Body::Written { version, replayed }) => Ok(Written {
            version: *version,
            replayed: *replayed,
        }),
        _ => Err(EdgeError::from_response(response)),
    }
}

/// When a value fetched now stops being fresh: after the TTL, and never past
/// its expiration.
fn fresh_until(ttl: Duration, expiration: Option<u64>) -> u64 {
    let by_ttl = unix_millis().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    expiration.map_or(by_ttl, |e| by_ttl.min(e.saturating_mul(1000)))
}
