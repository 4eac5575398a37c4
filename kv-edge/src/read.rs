//! The edge's read path: the hot cache, then upstream.
//!
//! - A copy in the hot cache is served when it is fresh for this read
//!   ([`kv_runtime::freshness`]), no older than anything this edge has seen
//!   of the key or the read's minimum version, and fetched since the edge's
//!   feeds last had a gap. A fresh copy in the last part of its TTL is
//!   refreshed in the background, once per key.
//! - Otherwise the read goes upstream; concurrent reads of one key share
//!   one request, which fills the hot cache before it completes.
//! - **Read-your-writes:** a read that names a minimum version (the
//!   `kv-min-version` of a client's own write) gets that version or newer,
//!   or a `version_unavailable` error; never anything older.
//! - **Stale-if-error:** when the upstream fails, or is still silent when
//!   the deadline is near, a copy within the stale grace is served instead,
//!   marked [`CacheStatus::Stale`].

use std::time::Duration;

use kv_proto::{
    Body, Entry, ErrorSource, GetRequest, Key, Namespace, Op, Request, RequestId, Response, Status,
    Tier,
};
use kv_runtime::deadline::{Deadline, Expired};
use kv_runtime::freshness::{CacheStatus, CopyUse, Freshness};
use kv_runtime::singleflight::Role;
use kv_runtime::time::unix_millis;
use kv_runtime::watermarks::Watermarks;

use crate::edge::{Edge, EdgeError, cache_key};
use crate::hot::{HotCache, HotEntry};
use crate::upstream::Upstream;

/// What a read asks for beyond its key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// How old a copy this read accepts, seconds (within the edge's
    /// maximum); the edge's default TTL when absent.
    pub cache_ttl: Option<u32>,
    /// The oldest version this read accepts (its caller's own write, say).
    pub min_version: Option<u64>,
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
    /// How the answer relates to the cache.
    pub cache: CacheStatus,
    /// How long ago the origin read what this answer holds.
    pub age: Duration,
}

impl Read {
    /// The version the answer holds: the value's, or the delete's (0 when
    /// the key was never written).
    pub fn version(&self) -> u64 {
        self.entry
            .as_ref()
            .map_or(self.absent_version.unwrap_or(0), |e| e.version)
    }
}

impl Edge {
    /// Reads a key, within `deadline`.
    pub async fn get(
        &self,
        id: RequestId,
        deadline: Deadline,
        namespace: Namespace,
        key: Key,
        options: ReadOptions,
    ) -> Result<Read, EdgeError> {
        let ck = cache_key(&namespace, &key);
        let seen = self.recent_writes.get(&ck);
        let floor = seen.max(options.min_version);
        let span = tracing::Span::current();
        let now = unix_millis();
        // A copy that may stand in if the upstream fails.
        let mut standby = None;
        // The version held, which upstream may confirm rather than send again.
        let mut held = None;
        let mut checking = false;
        match self.hot.get(&ck).await {
            Some(copy) => {
                let new_enough = floor.is_none_or(|f| copy.version >= f);
                let trusted = self.floor.trusts(copy.fetched_at_ms);
                let usable = (new_enough, trusted);
                match self
                    .freshness
                    .use_of(copy.age(), options.cache_ttl, now, usable)
                {
                    CopyUse::Serve { refresh } => {
                        if refresh {
                            self.refresh(&ck, (&namespace, &key), &options, seen, &copy);
                        }
                        return Ok(self.hit(copy, now));
                    }
                    CopyUse::Fetch {
                        standby: stands_in,
                        checking: checks,
                    } => {
                        self.lookups.stale.inc();
                        if !trusted {
                            self.feed_metrics.revalidations.inc();
                        }
                        checking = checks;
                        held = Some(copy.clone());
                        standby = stands_in.then_some(copy);
                    }
                }
            }
            None => self.lookups.miss.inc(),
        }
        span.record("cache", if checking { "revalidate" } else { "miss" });

        let wait = match standby {
            Some(_) => deadline.keeping_back_for_a_stand_in(),
            None => deadline,
        };
        // Upstream copies count their age from the origin's read too: ask
        // for one fresh for this read's whole TTL.
        let ttl = self.freshness.ttl_for(options.cache_ttl, false);
        let request = Request {
            id,
            budget: wait.remaining(),
            op: Op::Get(GetRequest {
                namespace,
                key,
                min_version: floor,
                cache_ttl: Some(secs(ttl)),
                unless_version: held.as_ref().map(|h: &HotEntry| h.version),
            }),
        };
        let fetched = self.fetch(&ck, request, (wait, floor), held).await;
        let response = match (fetched, standby) {
            (Ok(response), standby) if response.read_version().is_some() => {
                let version = response.read_version().unwrap_or_default();
                match (floor, standby) {
                    (Some(floor), Some(copy)) if version < floor => {
                        return Ok(self.serve_stale(copy, "upstream is behind"));
                    }
                    (Some(floor), None) if version < floor => {
                        return Err(version_unavailable(floor, version));
                    }
                    _ => response,
                }
            }
            (Ok(failure), Some(copy)) if failure.is_retryable() => {
                return Ok(self.serve_stale(copy, failure.message().unwrap_or("upstream failed")));
            }
            (Ok(failure), _) => return Err(EdgeError::from_response(failure)),
            (Err(Expired), Some(copy)) => return Ok(self.serve_stale(copy, "deadline near")),
            (Err(Expired), None) => {
                return Err(EdgeError::timeout("waiting for a shared upstream read"));
            }
        };
        let read = self.answer(response, checking, options.cache_ttl)?;
        self.recent_writes.raise(&ck, read.version());
        self.answered_by.inc(read.tier);
        self.answers.count(read.cache);
        span.record("cache", read.cache.as_str());
        Ok(read)
    }

    /// Sends `request` upstream, or joins the same key's request in flight.
    /// A shared request asked for less than `floor` may answer with less:
    /// then the read asks again once, on its own. `Err` when `deadline`
    /// passed first.
    async fn fetch(
        &self,
        ck: &str,
        request: Request,
        (deadline, floor): (Deadline, Option<u64>),
        held: Option<HotEntry>,
    ) -> Result<Response, Expired> {
        let mut tries = 0;
        loop {
            tries += 1;
            let fill = fill(
                self,
                ck.to_string(),
                request.clone(),
                deadline,
                held.clone(),
            );
            let (result, role) = deadline.run(self.reads.run(ck.to_string(), fill)).await?;
            if role == Role::Follower {
                self.stats
                    .coalesced
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.coalesced.inc();
            } else {
                self.stats
                    .upstream_reads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let response = result.unwrap_or_else(|e| {
                Response::failure(
                    request.id,
                    Status::Internal,
                    ErrorSource::Local,
                    true,
                    e.to_string(),
                )
            });
            let short = response
                .read_version()
                .zip(floor)
                .is_some_and(|(got, floor)| got < floor);
            if !(short && role == Role::Follower && tries == 1) {
                return Ok(response);
            }
            self.reads.forget(&ck.to_string());
        }
    }

    /// The read a fresh hot copy answers.
    fn hit(&self, copy: HotEntry, now: u64) -> Read {
        self.stats
            .hot_hits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lookups.hit.inc();
        self.answered_by.inc(Tier::Edge);
        self.answers.count(CacheStatus::Hit);
        tracing::Span::current().record("cache", "hit");
        Read {
            absent_version: (copy.entry.is_none() && copy.version > 0).then_some(copy.version),
            entry: copy.entry,
            tier: Tier::Edge,
            cache: CacheStatus::Hit,
            age: Duration::from_millis(now.saturating_sub(copy.read_at_ms)),
        }
    }

    /// The read a copy past its freshness answers when upstream cannot.
    fn serve_stale(&self, copy: HotEntry, why: &str) -> Read {
        tracing::debug!(why, version = copy.version, "serving a stale copy");
        self.answered_by.inc(Tier::Edge);
        self.answers.count(CacheStatus::Stale);
        tracing::Span::current().record("cache", "stale");
        Read {
            absent_version: (copy.entry.is_none() && copy.version > 0).then_some(copy.version),
            entry: copy.entry,
            tier: Tier::Edge,
            cache: CacheStatus::Stale,
            age: Duration::from_millis(unix_millis().saturating_sub(copy.read_at_ms)),
        }
    }

    /// The read an upstream answer gives.
    fn answer(
        &self,
        response: Response,
        checking: bool,
        cache_ttl: Option<u32>,
    ) -> Result<Read, EdgeError> {
        let tier = response.tier.unwrap_or(Tier::Origin);
        let age = Duration::from_millis(response.age_ms.into());
        let (entry, absent_version) = match (response.status, response.body) {
            (Status::Ok, Body::Entry(entry)) => (Some(entry), None),
            (Status::NotFound, Body::Deleted { version }) => (None, Some(version)),
            (Status::NotFound, _) => (None, None),
            (status, body) => {
                return Err(EdgeError::from_response(Response {
                    id: response.id,
                    status,
                    tier: response.tier,
                    age_ms: response.age_ms,
                    body,
                }));
            }
        };
        // An upstream tier that served its own copy stale says so by its age.
        let ttl = self.freshness.ttl_for(cache_ttl, entry.is_none());
        let cache = match (age >= ttl, checking) {
            (true, _) => CacheStatus::Stale,
            (false, true) => CacheStatus::Revalidated,
            (false, false) => CacheStatus::Miss,
        };
        Ok(Read {
            entry,
            tier,
            absent_version,
            cache,
            age,
        })
    }

    /// Refreshes `copy` in the background, unless a refresh of the key is
    /// already running. Upstream is asked for a copy younger than the point
    /// where refreshing starts (else the refreshed copy would be due again at
    /// once), and may confirm `copy` without sending it again.
    fn refresh(
        &self,
        ck: &str,
        (namespace, key): (&Namespace, &Key),
        options: &ReadOptions,
        seen: Option<u64>,
        copy: &HotEntry,
    ) {
        {
            let mut refreshing = self
                .refreshing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !refreshing.insert(ck.to_string()) {
                return;
            }
        }
        self.answers.refreshes.inc();
        let deadline = Deadline::after(self.refresh_deadline);
        let ttl = self
            .freshness
            .ttl_for(options.cache_ttl, copy.entry.is_none());
        let request = Request {
            id: RequestId::random(),
            budget: deadline.remaining(),
            op: Op::Get(GetRequest {
                namespace: namespace.clone(),
                key: key.clone(),
                min_version: seen,
                cache_ttl: Some(secs(ttl.mul_f64(1.0 - self.freshness.refresh_ahead))),
                unless_version: Some(copy.version),
            }),
        };
        let work = fill(self, ck.to_string(), request, deadline, Some(copy.clone()));
        let (reads, refreshing, ck) = (self.reads.clone(), self.refreshing.clone(), ck.to_string());
        tokio::spawn(async move {
            let _ = reads.run(ck.clone(), work).await;
            refreshing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&ck);
        });
    }
}

/// The shared upstream request of a read (or refresh) of `ck`, which puts
/// what it brings in the hot cache before it completes, so a read that
/// arrives just after finds it there. When upstream confirms `held`, the
/// answer is `held`, fetched anew.
fn fill(
    edge: &Edge,
    ck: String,
    request: Request,
    deadline: Deadline,
    held: Option<HotEntry>,
) -> impl FnOnce() -> futures::future::BoxFuture<'static, Response> + use<> {
    let upstream: std::sync::Arc<Upstream> = edge.upstream.clone();
    let hot: HotCache = edge.hot.clone();
    let recent_writes: Watermarks = edge.recent_writes.clone();
    let freshness: Freshness = edge.freshness;
    move || {
        Box::pin(async move {
            let fetched_at_ms = unix_millis();
            let response = confirmed(upstream.request(&ck, &request, &deadline).await, held);
            let cache_ttl = match &request.op {
                Op::Get(get) => get.cache_ttl,
                _ => None,
            };
            let copy = match (response.status, &response.body) {
                (Status::Ok, Body::Entry(entry)) if hot.admits(entry.value.len()) => {
                    Some((entry.version, Some(entry.clone())))
                }
                (Status::NotFound, Body::Deleted { version }) => Some((*version, None)),
                (Status::NotFound, Body::Empty) => Some((0, None)),
                _ => None,
            };
            // A write that landed meanwhile has already cached something newer.
            if let Some((version, entry)) = copy
                && !recent_writes.is_behind(&ck, version)
            {
                let read_at_ms = fetched_at_ms.saturating_sub(response.age_ms.into());
                let ttl = freshness.ttl_for(cache_ttl, entry.is_none());
                let copy = HotEntry::new(
                    version,
                    entry,
                    (read_at_ms, fetched_at_ms),
                    freshness.keep_for(ttl),
                );
                hot.insert(ck, copy).await;
            }
            response
        })
    }
}

/// `response`, with a confirmation of `held` (`not_modified`) turned into
/// the answer `held` gives, so that every reader of a shared fill gets a
/// whole answer.
fn confirmed(response: Response, held: Option<HotEntry>) -> Response {
    let Body::NotModified { version } = response.body else {
        return response;
    };
    let (id, tier, age) = (
        response.id,
        response.tier.unwrap_or(Tier::Origin),
        Duration::from_millis(response.age_ms.into()),
    );
    match held {
        Some(held) if held.version == version => match held.entry {
            Some(entry) => Response::entry(id, tier, entry),
            None if version > 0 => Response::deleted(id, tier, version),
            None => Response::not_found(id, tier),
        }
        .with_age(age),
        _ => Response::failure(
            id,
            Status::Internal,
            ErrorSource::Upstream,
            true,
            "upstream confirmed a version this edge does not hold",
        ),
    }
}

/// Whole seconds of `d`, for a `cache_ttl` (rounded down: stricter).
fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// No tier could provide the version a read asked for.
fn version_unavailable(floor: u64, got: u64) -> EdgeError {
    EdgeError {
        status: Status::VersionUnavailable,
        blame: ErrorSource::Upstream,
        retryable: true,
        message: format!(
            "no tier could provide version {floor} or newer of this key within the deadline \
             (the newest found is {got})"
        ),
    }
}
