//! The edge service: the hot cache in front of the upstream tiers.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kv_proto::{
    Body, DeleteRequest, Entry, ErrorSource, Key, ListPage, ListRequest, Namespace, Op, PutRequest,
    Request, RequestId, Response, Status, Tier, WriteId,
};
use kv_runtime::deadline::Deadline;
use kv_runtime::feed::TrustFloor;
use kv_runtime::freshness::Freshness;
use kv_runtime::metrics::{AnsweredBy, CacheAnswers, CacheLookups, FeedMetrics, Metrics};
use kv_runtime::singleflight::SingleFlight;
use kv_runtime::watermarks::Watermarks;

use crate::hot::{HotCache, HotEntry};
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
    pub(crate) fn timeout(what: &str) -> Self {
        Self {
            status: Status::Timeout,
            blame: ErrorSource::Local,
            retryable: true,
            message: format!("no answer within the request's deadline ({what})"),
        }
    }

    /// A failure an upstream tier answered with; an answer that makes no
    /// sense for the request is an internal error.
    pub(crate) fn from_response(response: Response) -> Self {
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
    pub(crate) hot: HotCache,
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) freshness: Freshness,
    /// The deadline of a background refresh, which no caller waits for.
    pub(crate) refresh_deadline: Duration,
    pub(crate) reads: SingleFlight<String, Response>,
    /// Keys being refreshed in the background: one refresh per key at a time.
    pub(crate) refreshing: Arc<Mutex<HashSet<String>>>,
    /// The highest version written, read or announced by the feed at this
    /// edge of each recent key: reads here never see anything older
    /// (read-your-writes, and no going back), even for values too large for
    /// the hot cache.
    pub(crate) recent_writes: Watermarks,
    /// Copies fetched before the last gap in this edge's feeds are checked
    /// upstream before use.
    pub(crate) floor: TrustFloor,
    pub(crate) feed_metrics: FeedMetrics,
    pub(crate) stats: EdgeStats,
    pub(crate) lookups: CacheLookups,
    pub(crate) answered_by: AnsweredBy,
    pub(crate) answers: CacheAnswers,
    pub(crate) coalesced: prometheus::IntCounter,
}

pub(crate) fn cache_key(namespace: &Namespace, key: &Key) -> String {
    format!("{namespace}/{key}")
}

impl Edge {
    /// An edge with `hot` in front of `upstream`, serving copies as
    /// `freshness` allows and refreshing them in the background within
    /// `refresh_deadline`, counting hot-cache lookups, cache statuses,
    /// answering tiers, coalesced reads and its feeds in `metrics`.
    pub fn with_metrics(
        hot: HotCache,
        upstream: Upstream,
        freshness: Freshness,
        refresh_deadline: Duration,
        metrics: &Metrics,
    ) -> Self {
        Self {
            hot,
            upstream: Arc::new(upstream),
            freshness,
            refresh_deadline,
            reads: SingleFlight::new(),
            refreshing: Arc::default(),
            recent_writes: Watermarks::default(),
            floor: TrustFloor::new(),
            feed_metrics: metrics.feed("edge"),
            stats: EdgeStats::default(),
            lookups: metrics.cache(Tier::Edge.as_str()),
            answered_by: metrics.answered_by(),
            answers: metrics.cache_answers("edge"),
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

    /// The freshness settings.
    pub fn freshness(&self) -> &Freshness {
        &self.freshness
    }

    /// The cache-status counters of this edge's answers.
    pub fn answers(&self) -> &CacheAnswers {
        &self.answers
    }

    /// The change-feed metrics of this edge.
    pub fn feed_metrics(&self) -> &FeedMetrics {
        &self.feed_metrics
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
        let keep_for = self.freshness.keep_for(self.freshness.ttl);
        self.hot
            .insert(ck, HotEntry::current(version, Some(entry), keep_for))
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
        let keep_for = self.freshness.keep_for(self.freshness.negative_ttl);
        self.hot
            .insert(ck, HotEntry::current(written.version, None, keep_for))
            .await;
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
        match response.body {
            Body::Page(page) if response.status == Status::Ok => Ok(page),
            _ => Err(EdgeError::from_response(response)),
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
