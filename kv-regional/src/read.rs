//! The regional node's read path: memory, then disk, then the origin.
//!
//! - A cached copy is served when it is fresh for this read
//!   ([`kv_runtime::freshness`]: its age counts from the origin's read, and
//!   the read may name its own TTL), no older than anything this node has
//!   seen of the key or the read's minimum version, and fetched since this
//!   node's feeds last had a gap. The answer carries the copy's age, so the
//!   edge's TTL counts from the origin's read too. A fresh copy in the last
//!   part of its TTL is refreshed in the background, once per key.
//! - Otherwise the origin is asked. Concurrent fills of one key share one
//!   origin request, which stops once no reader waits for it (a background
//!   refresh waits for its own).
//! - A read with a minimum version gets that version or newer, or a
//!   `version_unavailable` failure (which the edge answers by asking the
//!   next tier).
//! - **Stale-if-error:** when the origin fails, or is still silent when the
//!   deadline is near, a copy within the stale grace is served, with its
//!   true age.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use foyer::Source;
use kv_proto::{Body, ErrorSource, GetRequest, Op, Request, RequestId, Response, Status, Tier};
use kv_runtime::deadline::Deadline;
use kv_runtime::freshness::{CacheStatus, CopyUse, Freshness};
use kv_runtime::singleflight::Role;
use kv_runtime::time::{is_expired, unix_millis, unix_seconds};
use kv_runtime::watermarks::Watermarks;

use crate::cache::{RegionalCache, cache_key};
use crate::cached::Cached;
use crate::regional::{FillError, Origins, Regional, RegionalStats};

/// How often a fill retries when the origin keeps returning a copy older
/// than a write this node has seen acknowledged.
const STALE_FILL_RETRIES: usize = 3;

/// A cached copy found for a read, and where it was.
struct Found {
    cached: Cached,
    tier: Tier,
}

impl Regional {
    /// Reads a key, within `deadline`.
    pub(crate) async fn get(
        &self,
        id: RequestId,
        request: GetRequest,
        deadline: Deadline,
    ) -> Response {
        let key = cache_key(&request.namespace, &request.key);
        let span = tracing::Span::current();
        let floor = self.recent_writes.get(&key).max(request.min_version);
        let mut standby = None;
        let mut held = None;
        let mut checking = false;
        match self.look_up(&key, &deadline).await {
            Err(timed_out) => return timed_out.with_id(id),
            Ok(None) => {}
            Ok(Some(found)) => {
                let cached = &found.cached;
                let now = unix_millis();
                let new_enough = floor.is_none_or(|f| cached.version >= f);
                let trusted = self.floor.trusts(cached.fetched_at_ms);
                let usable = (new_enough, trusted);
                match self
                    .freshness
                    .use_of(cached.age(), request.cache_ttl, now, usable)
                {
                    CopyUse::Serve { refresh } => {
                        self.count_hit(found.tier);
                        if refresh {
                            self.refresh(&key, &request, cached);
                        }
                        span.record("cache", "hit");
                        self.answers.count(CacheStatus::Hit);
                        return answer(id, found.tier, cached, now, request.unless_version);
                    }
                    CopyUse::Fetch {
                        standby: stands_in,
                        checking: checks,
                    } => {
                        self.count_stale(found.tier);
                        if !trusted {
                            self.feed_metrics.revalidations.inc();
                        }
                        checking = checks;
                        held = Some((cached.clone(), found.tier));
                        standby = stands_in.then_some(found);
                    }
                }
            }
        }
        span.record("cache", if checking { "revalidate" } else { "miss" });
        let wait = match standby {
            Some(_) => deadline.keeping_back_for_a_stand_in(),
            None => deadline,
        };
        let held_tier = held.as_ref().map(|(cached, tier)| (cached.version, *tier));
        let held = held.map(|(cached, _)| cached);
        let filled = self.fill(&key, id, &request, (wait, floor), held).await;
        let unless = request.unless_version;
        let stale = |found: Found, why: &str| {
            tracing::debug!(why, version = found.cached.version, "serving a stale copy");
            span.record("cache", "stale");
            self.answers.count(CacheStatus::Stale);
            answer(id, found.tier, &found.cached, unix_millis(), unless)
        };
        match (filled, standby) {
            (Ok(cached), standby) => match floor {
                Some(floor) if cached.version < floor => match standby {
                    Some(found) => stale(found, "the origin is behind"),
                    None => version_unavailable(id, floor, cached.version),
                },
                _ => {
                    self.stats.origin_answers.fetch_add(1, Ordering::Relaxed);
                    let status = match checking {
                        true => CacheStatus::Revalidated,
                        false => CacheStatus::Miss,
                    };
                    span.record("cache", status.as_str());
                    self.answers.count(status);
                    // A copy the origin confirmed is answered by where it was.
                    let tier = match held_tier {
                        Some((version, tier)) if version == cached.version => tier,
                        _ => Tier::Origin,
                    };
                    answer(id, tier, &cached, unix_millis(), unless)
                }
            },
            (Err(failure), Some(found)) if failure.is_retryable() => {
                stale(found, failure.message().unwrap_or("the origin failed"))
            }
            (Err(failure), _) => failure.with_id(id),
        }
    }

    /// The cached copy of `key`, from memory or disk. A disk that fails is
    /// read as a miss (the origin is asked instead).
    async fn look_up(&self, key: &str, deadline: &Deadline) -> Result<Option<Found>, Response> {
        let looked_up = deadline
            .run(self.cache.get(key))
            .await
            .map_err(|_| timeout("the cache lookup"))?;
        match looked_up {
            Ok(Some(entry)) if entry.value().keep_until_ms > unix_millis() => {
                let tier = match entry.source() {
                    Source::Disk => Tier::RegionalDisk,
                    _ => Tier::RegionalMemory,
                };
                Ok(Some(Found {
                    cached: entry.value().clone(),
                    tier,
                }))
            }
            Ok(_) => {
                self.memory.miss.inc();
                self.disk.miss.inc();
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(error = %e, "regional cache read failed; reading through to the origin");
                Ok(None)
            }
        }
    }

    fn count_hit(&self, tier: Tier) {
        if tier == Tier::RegionalDisk {
            self.stats.disk_hits.fetch_add(1, Ordering::Relaxed);
            self.memory.miss.inc();
            self.disk.hit.inc();
        } else {
            self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
            self.memory.hit.inc();
        }
    }

    fn count_stale(&self, tier: Tier) {
        self.stats.stale.fetch_add(1, Ordering::Relaxed);
        if tier == Tier::RegionalDisk {
            self.memory.miss.inc();
            self.disk.stale.inc();
        } else {
            self.memory.stale.inc();
        }
    }

    /// Fills `key` from the origin, or joins the fill in flight; `held` is
    /// the copy this node has, which the origin may confirm rather than
    /// send again. A shared fill may bring less than `floor` (it started
    /// before the write the read knows of): then the read fills again once,
    /// on its own. A failure is the response to relay.
    async fn fill(
        &self,
        key: &str,
        id: RequestId,
        request: &GetRequest,
        (deadline, floor): (Deadline, Option<u64>),
        held: Option<Cached>,
    ) -> Result<Cached, Response> {
        let mut tries = 0;
        loop {
            tries += 1;
            let work = fill_work(
                self,
                key.to_string(),
                id,
                request.clone(),
                deadline,
                held.clone(),
            );
            let (filled, role) = deadline
                .run(self.fills.run(key.to_string(), work))
                .await
                .map_err(|_| timeout("the origin's answer"))?;
            if role == Role::Follower {
                self.coalesced.inc();
            }
            let cached = match filled {
                Ok(Ok(cached)) => cached,
                Ok(Err(FillError(failure))) => return Err(failure),
                Err(e) => return Err(Response::error(id, Status::Internal, e.to_string())),
            };
            let short = floor.is_some_and(|floor| cached.version < floor);
            if !(short && role == Role::Follower && tries == 1) {
                return Ok(cached);
            }
            self.fills.forget(&key.to_string());
        }
    }

    /// Refreshes `held` in the background, unless a fill of the key is
    /// already in flight (which refreshes it anyway). The origin confirms
    /// an unchanged copy without sending it again.
    fn refresh(&self, key: &str, request: &GetRequest, held: &Cached) {
        if self.fills.is_in_flight(&key.to_string()) {
            return;
        }
        self.answers.refreshes.inc();
        let deadline = Deadline::after(self.refresh_deadline);
        let work = fill_work(
            self,
            key.to_string(),
            RequestId::random(),
            request.clone(),
            deadline,
            Some(held.clone()),
        );
        let (fills, key) = (self.fills.clone(), key.to_string());
        tokio::spawn(async move {
            let _ = fills.run(key, work).await;
        });
    }
}

/// The shared fill of `key`: the origin's answer, cached before the fill
/// completes so that a read that arrives just after finds it; unless a
/// write meanwhile made something newer known.
fn fill_work(
    regional: &Regional,
    key: String,
    id: RequestId,
    request: GetRequest,
    deadline: Deadline,
    held: Option<Cached>,
) -> impl FnOnce() -> futures::future::BoxFuture<'static, Result<Cached, FillError>> + use<> {
    let origins = regional.origins.clone();
    let cache: RegionalCache = regional.cache.clone();
    let freshness = regional.freshness;
    let watermarks: Watermarks = regional.recent_writes.clone();
    let stats = regional.stats.clone();
    move || {
        Box::pin(async move {
            let cached = fill_from_origin(
                &origins,
                (id, deadline),
                request,
                held,
                &freshness,
                (&watermarks, &key),
                &stats,
            )
            .await?;
            if watermarks.raise(&key, cached.version) {
                cache.insert(key, cached.clone());
            }
            Ok(cached)
        })
    }
}

/// Fetches a key from the origin for the cache; when the origin confirms
/// that `held` is current, `held` is the answer, fetched anew. A copy older
/// than a write this node saw acknowledged is fetched again, so a read
/// racing with a write cannot cache what the write replaced.
async fn fill_from_origin(
    origins: &Arc<Origins>,
    (id, deadline): (RequestId, Deadline),
    request: GetRequest,
    mut held: Option<Cached>,
    freshness: &Freshness,
    (recent_writes, key): (&Watermarks, &str),
    stats: &RegionalStats,
) -> Result<Cached, FillError> {
    let cache_ttl = request.cache_ttl;
    // The fill is shared, so it asks for the truth, not for one reader's
    // minimum: each reader checks its own.
    let get = GetRequest {
        min_version: None,
        cache_ttl: None,
        unless_version: None,
        ..request
    };
    let mut attempt = 0;
    loop {
        stats.origin_fetches.fetch_add(1, Ordering::Relaxed);
        let fetched_at_ms = unix_millis();
        let upstream = Request {
            id,
            budget: deadline.remaining(),
            op: Op::Get(GetRequest {
                unless_version: held.as_ref().map(|h| h.version),
                ..get.clone()
            }),
        };
        let response = origins.send(&upstream, &deadline).await;
        let (version, entry) = match (response.status, &response.body) {
            (Status::Ok, Body::Entry(entry)) => (entry.version, Some(entry.clone())),
            (Status::Ok, Body::NotModified { version }) => match held.take() {
                Some(held) if held.version == *version => (*version, held.entry),
                _ => {
                    return Err(FillError(Response::failure(
                        id,
                        Status::Internal,
                        ErrorSource::Upstream,
                        true,
                        "the origin confirmed a version this node does not hold",
                    )));
                }
            },
            // A deleted (or expired) key is a miss at its delete's version.
            (Status::NotFound, Body::Deleted { version }) => (*version, None),
            (Status::NotFound, _) => (0, None),
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
        let ttl = freshness.ttl_for(cache_ttl, entry.is_none());
        let cached = Cached::new(version, entry, fetched_at_ms, freshness.keep_for(ttl));
        let stale = recent_writes.is_behind(key, cached.version);
        if !stale || attempt >= STALE_FILL_RETRIES {
            return Ok(cached);
        }
        attempt += 1;
    }
}

/// The answer a cached copy gives at `now_ms`, with its age: just its
/// version when that is the one the reader holds (`unless`).
fn answer(
    id: RequestId,
    tier: Tier,
    cached: &Cached,
    now_ms: u64,
    unless: Option<u64>,
) -> Response {
    let response = match &cached.entry {
        _ if unless == Some(cached.version) => Response::not_modified(id, tier, cached.version),
        Some(value) if !is_expired(value.expiration, unix_seconds()) => {
            Response::entry(id, tier, value.clone())
        }
        _ if cached.version > 0 => Response::deleted(id, tier, cached.version),
        _ => Response::not_found(id, tier),
    };
    response.with_age(Duration::from_millis(
        now_ms.saturating_sub(cached.fetched_at_ms),
    ))
}

/// A read whose deadline passed while waiting for `what`.
fn timeout(what: &str) -> Response {
    Response::failure(
        RequestId::default(),
        Status::Timeout,
        ErrorSource::Upstream,
        true,
        format!("no answer within the request's deadline (waiting for {what})"),
    )
}

/// The origin holds an older version than the read's minimum.
fn version_unavailable(id: RequestId, floor: u64, got: u64) -> Response {
    Response::failure(
        id,
        Status::VersionUnavailable,
        ErrorSource::Upstream,
        true,
        format!("the origin holds version {got} of this key, older than the {floor} asked for"),
    )
}
