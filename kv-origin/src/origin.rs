//! The origin service: the only code that reads and writes the object store.
//!
//! # How a write is applied
//!
//! A PUT or DELETE reads the key's object (value or tombstone), and then:
//!
//! 1. if the object's write log holds the request's write id, the write was
//!    applied before (this is a retry): it answers with that version;
//! 2. otherwise it picks a version above both the stored one and its clock
//!    (`max(clock, stored + 1)`), and writes the new object on condition
//!    that the object is still the one it read (compare-and-swap);
//! 3. if another writer got there first, it reads again and starts over,
//!    for as long as the request's deadline allows.
//!
//! So versions of a key strictly increase whichever origin process writes
//! it, a retried write is applied at most once, and a delete leaves a
//! tombstone that no older write can go below. No write is applied after
//! its deadline: an answer of `timeout` means it was not applied, and
//! `outcome_unknown` that a store write was sent but not confirmed.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kv_proto::{
    DeleteRequest, Entry, GetRequest, Key, ListPage, ListRequest, ListedKey, Metadata, Namespace,
    Op, PutRequest, Request, Response, Tier, WriteId,
};
use kv_runtime::deadline::Deadline;
use kv_runtime::feed::Publisher;
use kv_runtime::metrics::Metrics;
use kv_runtime::quic::Handler;
use kv_runtime::singleflight::{Role, SingleFlight};
use kv_runtime::time::{is_expired, unix_millis, unix_seconds};
use object_store::path::Path;

use crate::envelope::{self, Head, LoggedWrite, MAX_HEAD_LEN, Object};
use crate::error::OriginError;
use crate::hlc::{Hlc, WallClock};
use crate::layout::{self, Layout};
use crate::store::{Precondition, PutOutcome, Store, StoreError};

/// On a store without compare-and-swap, writes to one key are serialized
/// in this process (the only writer); keys share this many locks.
const WRITE_LOCK_STRIPES: usize = 1024;
/// LIST reads this many object heads at once.
const LIST_HEAD_CONCURRENCY: usize = 16;
/// The longest pause between two tries of a write that lost a race.
const MAX_CONFLICT_BACKOFF: Duration = Duration::from_millis(50);

/// A key's state as a read finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A live value.
    Value(Entry),
    /// No value: deleted or expired at `version`, or never written (`None`).
    Absent {
        /// The version of the delete, or of the value that expired.
        version: Option<u64>,
    },
}

impl Found {
    /// The version the key is at: the value's, the delete's, 0 when never written.
    pub fn version(&self) -> u64 {
        match self {
            Self::Value(entry) => entry.version,
            Self::Absent { version } => version.unwrap_or(0),
        }
    }
}

type ReadResult = Result<Found, OriginError>;

/// An applied write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The write's version.
    pub version: u64,
    /// Whether the write was applied before, by an earlier attempt with the
    /// same write id: `version` is that attempt's, and newer writes of the
    /// key may have followed it.
    pub replayed: bool,
}

impl Applied {
    fn to_response(self, id: kv_proto::RequestId) -> Response {
        match self.replayed {
            true => Response::replayed(id, self.version),
            false => Response::written(id, self.version),
        }
    }
}

/// How the origin behaves, beyond its store.
#[derive(Clone)]
pub struct OriginOptions {
    /// How long a write's id is kept in its key's object, so that a retry
    /// of it is recognised. The newest [`envelope::MAX_WRITE_LOG`] writes of
    /// a key are kept at most.
    pub write_id_window: Duration,
    /// Where versions read wall-clock time; tests inject one.
    pub wall_clock: Option<WallClock>,
    /// Change-feed events kept for subscribers that reconnect.
    pub feed_backlog: usize,
    /// Largest value a change-feed event carries inline, bytes.
    pub feed_inline_max_bytes: usize,
}

impl std::fmt::Debug for OriginOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginOptions")
            .field("write_id_window", &self.write_id_window)
            .field("wall_clock", &self.wall_clock.as_ref().map(|_| "injected"))
            .field("feed_backlog", &self.feed_backlog)
            .field("feed_inline_max_bytes", &self.feed_inline_max_bytes)
            .finish()
    }
}

impl Default for OriginOptions {
    fn default() -> Self {
        Self {
            write_id_window: Duration::from_secs(3600),
            wall_clock: None,
            feed_backlog: kv_runtime::feed::DEFAULT_BACKLOG,
            feed_inline_max_bytes: 4096,
        }
    }
}

/// What a write does to its key.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    Put {
        expiration: Option<u64>,
        metadata: Option<Metadata>,
        value: Bytes,
    },
    Delete,
}

/// The origin: versions, envelopes and listing over a [`Store`].
#[derive(Debug)]
pub struct Origin {
    pub(crate) store: Store,
    pub(crate) layout: Layout,
    pub(crate) clock: Hlc,
    write_id_window: Duration,
    feed: Arc<Publisher>,
    feed_inline_max_bytes: usize,
    reads: SingleFlight<Path, ReadResult>,
    write_locks: Vec<tokio::sync::Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
    coalesced: prometheus::IntCounter,
    conflicts: prometheus::IntCounter,
    replays: prometheus::IntCounter,
}

impl Origin {
    /// An origin over `store`, counting only for itself.
    pub fn new(store: Store) -> Self {
        Self::with_metrics(store, &Metrics::new())
    }

    /// An origin over `store` that counts in `metrics` (the store counts its
    /// own calls: see [`Store::observed`]).
    pub fn with_metrics(store: Store, metrics: &Metrics) -> Self {
        Self::with_options(store, metrics, OriginOptions::default())
    }

    /// As [`Origin::with_metrics`], with options.
    pub fn with_options(store: Store, metrics: &Metrics, options: OriginOptions) -> Self {
        let layout = Layout::new(store.root().clone());
        let clock = options
            .wall_clock
            .map_or_else(Hlc::default, Hlc::with_wall_clock);
        Self {
            store,
            layout,
            clock,
            write_id_window: options.write_id_window,
            feed: Publisher::new(options.feed_backlog, metrics.feed("origin")),
            feed_inline_max_bytes: options.feed_inline_max_bytes,
            reads: SingleFlight::new(),
            write_locks: (0..WRITE_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: Default::default(),
            coalesced: metrics.coalesced("origin"),
            conflicts: metrics.write_conflicts(),
            replays: metrics.write_replays(),
        }
    }

    /// The store, with its call counters.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The change feed: every write and delete this process applies.
    pub fn feed(&self) -> &Arc<Publisher> {
        &self.feed
    }

    /// Reads that waited on another read of the same key.
    pub fn coalesced(&self) -> u64 {
        self.coalesced.get()
    }

    /// Reads a key. Concurrent reads of one key share one object-store read.
    pub async fn get(&self, request: &GetRequest, deadline: &Deadline) -> ReadResult {
        let path = self.layout.object_path(&request.namespace, &request.key);
        let store = self.store.clone();
        let key = request.key.clone();
        let read_path = path.clone();
        let read_deadline = *deadline;
        let (result, role) = self
            .reads
            .run(path, move || async move {
                let object = read_object(&store, &read_path, &key, &read_deadline).await?;
                Ok(match object {
                    None => Found::Absent { version: None },
                    Some(object) => {
                        let version = object.entry.version;
                        match object.live_entry() {
                            Some(entry) => Found::Value(entry),
                            None => Found::Absent {
                                version: Some(version),
                            },
                        }
                    }
                })
            })
            .await;
        if role == Role::Follower {
            self.coalesced.inc();
        }
        let found = result.map_err(|e| OriginError::Internal(e.to_string()))??;
        Ok(match found {
            Found::Value(entry) => {
                self.clock.observe(entry.version);
                if is_expired(entry.expiration, unix_seconds()) {
                    Found::Absent {
                        version: Some(entry.version),
                    }
                } else {
                    Found::Value(entry)
                }
            }
            absent => absent,
        })
    }

    /// Whether the key is still at the read's `unless_version` (and that is
    /// no older than its minimum), read from the head of its object alone.
    /// Any doubt (a failure, a damaged head) answers no: a full read follows.
    async fn is_unchanged(&self, request: &GetRequest, deadline: &Deadline) -> bool {
        let Some(held) = request.unless_version else {
            return false;
        };
        if request.min_version.is_some_and(|min| held < min) {
            return false;
        }
        let path = self.layout.object_path(&request.namespace, &request.key);
        let current = match self
            .store
            .get_head(&path, MAX_HEAD_LEN as u64, deadline)
            .await
        {
            Ok(None) => 0,
            Ok(Some((bytes, _))) => match decode_stored_head(&path, &request.key, &bytes) {
                Ok(head) => head.version,
                Err(_) => return false,
            },
            Err(_) => return false,
        };
        current == held
    }

    /// Reads a key, at the request's minimum version or newer. A read that
    /// joined one started before the write it knows of reads again, once;
    /// if the store still holds something older, the read fails with
    /// `version_unavailable` rather than answer with it.
    async fn get_at_least(&self, request: &GetRequest, deadline: &Deadline) -> ReadResult {
        let found = self.get(request, deadline).await?;
        let Some(min) = request.min_version.filter(|min| found.version() < *min) else {
            return Ok(found);
        };
        self.reads
            .forget(&self.layout.object_path(&request.namespace, &request.key));
        let found = self.get(request, deadline).await?;
        match found.version() {
            got if got < min => Err(OriginError::VersionUnavailable { min, got }),
            _ => Ok(found),
        }
    }

    /// Writes a key and returns its new version once the store holds it. A
    /// retry of a write already applied returns the version it got then.
    pub async fn put(
        &self,
        request: &PutRequest,
        deadline: &Deadline,
    ) -> Result<Applied, OriginError> {
        let change = Change::Put {
            expiration: request.expiration,
            metadata: request.metadata.clone(),
            value: request.value.clone(),
        };
        self.write(
            &request.namespace,
            &request.key,
            request.write_id,
            change,
            deadline,
        )
        .await
    }

    /// Deletes a key, leaving a tombstone, and returns the delete's version.
    pub async fn delete(
        &self,
        request: &DeleteRequest,
        deadline: &Deadline,
    ) -> Result<Applied, OriginError> {
        self.write(
            &request.namespace,
            &request.key,
            request.write_id,
            Change::Delete,
            deadline,
        )
        .await
    }

    async fn write(
        &self,
        namespace: &Namespace,
        key: &Key,
        write_id: WriteId,
        change: Change,
        deadline: &Deadline,
    ) -> Result<Applied, OriginError> {
        let path = self.layout.object_path(namespace, key);
        let _guard = match self.store.compares_and_swaps() {
            true => None,
            false => Some(
                deadline
                    .run(self.lock(&path))
                    .await
                    .map_err(|_| OriginError::Timeout("waiting for the key's write lock"))?,
            ),
        };
        // Set once a store write was sent that may have landed: from then on
        // a failure leaves the outcome unknown.
        let mut in_doubt = false;
        let mut backoff = Duration::from_millis(1);
        loop {
            let undecided = |e: StoreError, in_doubt: bool| match e {
                StoreError::OutcomeUnknown { .. } => OriginError::OutcomeUnknown(e.to_string()),
                e if in_doubt => OriginError::OutcomeUnknown(e.to_string()),
                StoreError::Expired { .. } => OriginError::Timeout("the write could not start"),
                e => OriginError::Store(e),
            };
            // The head holds the version and the write log: a write reads
            // no more of the object it replaces.
            let current = match self
                .store
                .get_head(&path, MAX_HEAD_LEN as u64, deadline)
                .await
            {
                Ok(current) => current,
                Err(e) => return Err(undecided(e, in_doubt)),
            };
            let (previous, precondition) = match current {
                None => (None, Precondition::Absent),
                Some((bytes, version)) => (
                    Some(decode_stored_head(&path, key, &bytes)?),
                    Precondition::Unchanged(version),
                ),
            };
            if let Some(logged) = previous
                .as_ref()
                .and_then(|p| p.writes.iter().find(|w| w.id == write_id))
            {
                self.replays.inc();
                self.reads.forget(&path);
                // Announced again, without its value: when an earlier
                // attempt's outcome was in doubt, this process never
                // announced it. Newer writes may have followed it, so the
                // announcement only drops older copies; it never passes the
                // old value off as news.
                self.announce(namespace, key, &change, logged.version, false);
                return Ok(Applied {
                    version: logged.version,
                    replayed: true,
                });
            }
            let object = self.next_object(key, write_id, &change, previous);
            let version = object.entry.version;
            let (head, value) = envelope::encode(&object);
            match self
                .store
                .put_if(&path, vec![head, value], precondition, deadline)
                .await
            {
                Ok(PutOutcome::Written) => {
                    // Reads already in flight may return the old value to
                    // their callers; later reads must not join them.
                    self.reads.forget(&path);
                    self.announce(namespace, key, &change, version, true);
                    return Ok(Applied {
                        version,
                        replayed: false,
                    });
                }
                Ok(PutOutcome::Conflict) => {
                    // Another writer (or an earlier attempt of this one)
                    // changed the object: read it again.
                    self.conflicts.inc();
                    let pause = jittered(backoff).min(deadline.remaining());
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(MAX_CONFLICT_BACKOFF);
                }
                Err(e @ StoreError::OutcomeUnknown { .. }) if !deadline.is_expired() => {
                    // Settle it by reading the object again: either it
                    // carries this write's id, or this write is tried anew
                    // against what is there (the lost attempt, conditional on
                    // the old object, can no longer land).
                    tracing::warn!(error = %e, "write outcome unknown; reading back to settle it");
                    in_doubt = true;
                }
                Err(e) => return Err(undecided(e, in_doubt)),
            }
        }
    }

    /// Publishes an applied write on the change feed, with its value inline
    /// when it is small enough and `with_value`.
    fn announce(
        &self,
        namespace: &Namespace,
        key: &Key,
        change: &Change,
        version: u64,
        with_value: bool,
    ) {
        let (tombstone, expiration, value) = match change {
            Change::Put {
                expiration,
                metadata,
                value,
            } => (
                false,
                *expiration,
                (with_value && value.len() <= self.feed_inline_max_bytes).then(|| {
                    kv_proto::InlineValue {
                        metadata: metadata.clone(),
                        value: value.clone(),
                    }
                }),
            ),
            Change::Delete => (true, None, None),
        };
        self.feed.publish(kv_proto::Change {
            namespace: namespace.clone(),
            key: key.clone(),
            version,
            tombstone,
            expiration,
            commit_ms: unix_millis(),
            value,
        });
    }

    /// The object that applies `change` on top of `previous`: a version
    /// above both the stored one and the clock, and the write log with this
    /// write added and entries past the window dropped.
    pub(crate) fn next_object(
        &self,
        key: &Key,
        write_id: WriteId,
        change: &Change,
        previous: Option<Head>,
    ) -> Object {
        let mut writes = Vec::new();
        if let Some(previous) = previous {
            self.clock.observe(previous.version);
            writes = previous.writes;
        }
        let version = self.clock.next();
        let now = self.clock.now_millis();
        let window = u64::try_from(self.write_id_window.as_millis()).unwrap_or(u64::MAX);
        writes.retain(|w| now.saturating_sub(w.at_millis) < window);
        writes.push(LoggedWrite {
            id: write_id,
            version,
            at_millis: now,
        });
        let (entry, tombstone) = match change {
            Change::Put {
                expiration,
                metadata,
                value,
            } => (
                Entry {
                    version,
                    expiration: *expiration,
                    metadata: metadata.clone(),
                    value: value.clone(),
                },
                false,
            ),
            Change::Delete => (
                Entry {
                    version,
                    expiration: None,
                    metadata: None,
                    value: Bytes::new(),
                },
                true,
            ),
        };
        Object {
            key: key.clone(),
            entry,
            tombstone,
            writes,
        }
    }

    /// One page of the keys under a prefix, in lexicographic order. Expired
    /// keys are left out, so a page may hold fewer than `limit` keys and still
    /// not be the last.
    pub async fn list(
        &self,
        request: &ListRequest,
        deadline: &Deadline,
    ) -> Result<ListPage, OriginError> {
        let after = match request.cursor.as_str() {
            "" => None,
            cursor => Some(layout::decode_cursor(cursor).ok_or(OriginError::BadCursor)?),
        };
        let dir = self.layout.namespace_dir(&request.namespace);
        let prefix_path = self.layout.prefix_path(&request.namespace, &request.prefix);
        let offset = match &after {
            Some(key) => prefix_path
                .clone()
                .max(self.layout.object_path(&request.namespace, key)),
            None => prefix_path,
        };
        let limit = usize::from(request.limit);
        let sorted = self.store.lists_sorted();

        // The `limit + 1` smallest matching keys: one more than a page, to
        // know whether another page follows. A backend that lists in order
        // can stop as soon as it has them.
        let mut picked = BTreeMap::<Key, (Path, u64)>::new();
        let mut listing = self.store.list_after(&dir, &offset, deadline);
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            let Some(key) = self.layout.key_of(&dir, &meta.location) else {
                continue;
            };
            if !key.as_str().starts_with(request.prefix.as_str()) {
                if sorted && key.as_str() > request.prefix.as_str() {
                    break;
                }
                continue;
            }
            if after.as_ref().is_some_and(|after| &key <= after) {
                continue;
            }
            picked.insert(key, (meta.location, meta.size));
            if picked.len() > limit + 1 {
                picked.pop_last();
            }
            if sorted && picked.len() == limit + 1 {
                break;
            }
        }
        let more = picked.len() > limit;
        let page: Vec<_> = picked.into_iter().take(limit).collect();
        let cursor = more
            .then(|| page.last().map(|(key, _)| layout::encode_cursor(key)))
            .flatten();

        let now = unix_seconds();
        let heads = futures::stream::iter(page)
            .map(|(key, (path, size))| async move {
                let head = self
                    .store
                    .get_head(&path, size.min(MAX_HEAD_LEN as u64), deadline)
                    .await?;
                Ok::<_, OriginError>(head.map(|(bytes, _)| (key, path, bytes)))
            })
            .buffered(LIST_HEAD_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut keys = Vec::with_capacity(heads.len());
        for head in heads {
            // Deleted since it was listed.
            let Some((key, path, bytes)) = head? else {
                continue;
            };
            match envelope::decode_head(&bytes) {
                Ok(head) if head.key != key => {
                    tracing::error!(%path, "stored object holds another key; left out of LIST");
                }
                Ok(head) if head.tombstone || is_expired(head.expiration, now) => {}
                Ok(head) => keys.push(ListedKey {
                    name: key,
                    expiration: head.expiration,
                    metadata: head.metadata,
                }),
                Err(e) => tracing::error!(%path, error = %e, "damaged object left out of LIST"),
            }
        }
        Ok(ListPage { keys, cursor })
    }

    pub(crate) async fn lock(&self, path: &Path) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = (self.hasher.hash_one(path) % WRITE_LOCK_STRIPES as u64) as usize;
        self.write_locks[stripe].lock().await
    }

    /// Answers one request, within its deadline.
    pub async fn answer(&self, request: Request) -> Response {
        let id = request.id;
        let deadline = Deadline::of(&request);
        let result = match &request.op {
            Op::Get(get) if self.is_unchanged(get, &deadline).await => Ok(Response::not_modified(
                id,
                Tier::Origin,
                get.unless_version.unwrap_or_default(),
            )),
            Op::Get(get) => self
                .get_at_least(get, &deadline)
                .await
                .map(|found| match found {
                    Found::Value(entry) => Response::entry(id, Tier::Origin, entry),
                    Found::Absent {
                        version: Some(version),
                    } => Response::deleted(id, Tier::Origin, version),
                    Found::Absent { version: None } => Response::not_found(id, Tier::Origin),
                }),
            Op::Put(put) => self.put(put, &deadline).await.map(|a| a.to_response(id)),
            Op::Delete(delete) => self
                .delete(delete, &deadline)
                .await
                .map(|a| a.to_response(id)),
            Op::List(list) => self
                .list(list, &deadline)
                .await
                .map(|page| Response::page(id, page)),
        };
        result.unwrap_or_else(|e| e.to_response(id))
    }
}

impl Handler for Origin {
    async fn handle(&self, request: Request) -> Response {
        self.answer(request).await
    }
}

async fn read_object(
    store: &Store,
    path: &Path,
    key: &Key,
    deadline: &Deadline,
) -> Result<Option<Object>, OriginError> {
    let bytes = match store.get(path, deadline).await {
        Ok(Some((bytes, _))) => bytes,
        Ok(None) => return Ok(None),
        Err(StoreError::Expired { .. }) => {
            return Err(OriginError::Timeout("the read could not start"));
        }
        Err(e) => return Err(e.into()),
    };
    decode_object(path, key, bytes).map(Some)
}

/// Decodes the head of a key's object, refusing a damaged one or one
/// holding another key.
pub(crate) fn decode_stored_head(
    path: &Path,
    key: &Key,
    bytes: &[u8],
) -> Result<Head, OriginError> {
    let head = envelope::decode_head(bytes).map_err(|source| {
        tracing::error!(%path, error = %source, "damaged object");
        OriginError::Corrupt {
            path: path.to_string(),
            source,
        }
    })?;
    if &head.key != key {
        tracing::error!(%path, "stored object holds another key");
        return Err(OriginError::Corrupt {
            path: path.to_string(),
            source: envelope::EnvelopeError::Invalid("key does not match its path"),
        });
    }
    Ok(head)
}

/// Decodes a key's object, refusing a damaged one or one holding another key.
pub(crate) fn decode_object(path: &Path, key: &Key, bytes: Bytes) -> Result<Object, OriginError> {
    let corrupt = |source| OriginError::Corrupt {
        path: path.to_string(),
        source,
    };
    let object = envelope::decode(bytes).map_err(|e| {
        tracing::error!(%path, error = %e, "damaged object");
        corrupt(e)
    })?;
    if &object.key != key {
        tracing::error!(%path, "stored object holds another key");
        return Err(corrupt(envelope::EnvelopeError::Invalid(
            "key does not match its path",
        )));
    }
    Ok(object)
}

/// `backoff` scaled by a random factor in [0.5, 1.5), so racing writers
/// spread out.
fn jittered(backoff: Duration) -> Duration {
    let unit = (kv_proto::RequestId::random().0 % 1000) as f64 / 1000.0;
    backoff.mul_f64(0.5 + unit)
}
