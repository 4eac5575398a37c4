//! The origin service: the only code that reads and writes the object store.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use futures::StreamExt;
use kv_proto::{
    DeleteRequest, Entry, GetRequest, Key, ListPage, ListRequest, ListedKey, Op, PutRequest,
    Request, Response, Tier,
};
use kv_runtime::metrics::Metrics;
use kv_runtime::quic::Handler;
use kv_runtime::singleflight::{Role, SingleFlight};
use kv_runtime::time::{is_expired, unix_seconds};
use object_store::path::Path;

use crate::envelope::{self, MAX_HEAD_LEN};
use crate::error::OriginError;
use crate::hlc::Hlc;
use crate::layout::{self, Layout};
use crate::store::Store;

/// Writes to one key are serialized so the store always ends with the
/// highest version; keys share this many locks.
const WRITE_LOCK_STRIPES: usize = 1024;
/// LIST reads this many object heads at once.
const LIST_HEAD_CONCURRENCY: usize = 16;

type ReadResult = Result<Option<Entry>, OriginError>;

/// The origin: versions, envelopes and listing over a [`Store`].
#[derive(Debug)]
pub struct Origin {
    store: Store,
    layout: Layout,
    clock: Hlc,
    reads: SingleFlight<Path, ReadResult>,
    write_locks: Vec<tokio::sync::Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
    coalesced: prometheus::IntCounter,
}

impl Origin {
    /// An origin over `store`, counting only for itself.
    pub fn new(store: Store) -> Self {
        Self::with_metrics(store, &Metrics::new())
    }

    /// An origin over `store` that counts coalesced reads in `metrics`
    /// (the store counts its own calls: see [`Store::observed`]).
    pub fn with_metrics(store: Store, metrics: &Metrics) -> Self {
        let layout = Layout::new(store.root().clone());
        Self {
            store,
            layout,
            clock: Hlc::default(),
            reads: SingleFlight::new(),
            write_locks: (0..WRITE_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: Default::default(),
            coalesced: metrics.coalesced("origin"),
        }
    }

    /// The store, with its call counters.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads that waited on another read of the same key.
    pub fn coalesced(&self) -> u64 {
        self.coalesced.get()
    }

    /// Reads a key; `None` when it is missing or expired. Concurrent reads of
    /// one key share one object-store read.
    pub async fn get(&self, request: &GetRequest) -> ReadResult {
        let path = self.layout.object_path(&request.namespace, &request.key);
        let store = self.store.clone();
        let key = request.key.clone();
        let read_path = path.clone();
        let (result, role) = self
            .reads
            .run(path, move || read_entry(store, read_path, key))
            .await;
        if role == Role::Follower {
            self.coalesced.inc();
        }
        let entry = result.map_err(|e| OriginError::Internal(e.to_string()))??;
        Ok(entry.filter(|entry| {
            self.clock.observe(entry.version);
            !is_expired(entry.expiration, unix_seconds())
        }))
    }

    /// Writes a key and returns its new version once the store holds it.
    pub async fn put(&self, request: &PutRequest) -> Result<u64, OriginError> {
        let path = self.layout.object_path(&request.namespace, &request.key);
        let _guard = self.lock(&path).await;
        let version = self.clock.next();
        let entry = Entry {
            version,
            expiration: request.expiration,
            metadata: request.metadata.clone(),
            value: request.value.clone(),
        };
        let (head, value) = envelope::encode(&request.key, &entry);
        self.store.put(&path, vec![head, value]).await?;
        // Reads already in flight may return the old value to their callers;
        // later reads must not join them.
        self.reads.forget(&path);
        Ok(version)
    }

    /// Deletes a key and returns the delete's version.
    pub async fn delete(&self, request: &DeleteRequest) -> Result<u64, OriginError> {
        let path = self.layout.object_path(&request.namespace, &request.key);
        let _guard = self.lock(&path).await;
        let version = self.clock.next();
        self.store.delete(&path).await?;
        self.reads.forget(&path);
        Ok(version)
    }

    /// One page of the keys under a prefix, in lexicographic order. Expired
    /// keys are left out, so a page may hold fewer than `limit` keys and still
    /// not be the last.
    pub async fn list(&self, request: &ListRequest) -> Result<ListPage, OriginError> {
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
        let mut listing = self.store.list_after(&dir, &offset);
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
                    .get_prefix(&path, size.min(MAX_HEAD_LEN as u64))
                    .await?;
                Ok::<_, OriginError>(head.map(|bytes| (key, path, bytes)))
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
                Ok(head) if is_expired(head.expiration, now) => {}
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

    async fn lock(&self, path: &Path) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = (self.hasher.hash_one(path) % WRITE_LOCK_STRIPES as u64) as usize;
        self.write_locks[stripe].lock().await
    }

    /// Answers one request.
    pub async fn answer(&self, request: Request) -> Response {
        let id = request.id;
        let result = match &request.op {
            Op::Get(get) => self.get(get).await.map(|entry| match entry {
                Some(entry) => Response::entry(id, Tier::Origin, entry),
                None => Response::not_found(id, Tier::Origin),
            }),
            Op::Put(put) => self
                .put(put)
                .await
                .map(|version| Response::written(id, version)),
            Op::Delete(delete) => self
                .delete(delete)
                .await
                .map(|version| Response::written(id, version)),
            Op::List(list) => self.list(list).await.map(|page| Response::page(id, page)),
        };
        result.unwrap_or_else(|e| Response::error(id, e.status(), e.to_string()))
    }
}

impl Handler for Origin {
    async fn handle(&self, request: Request) -> Response {
        self.answer(request).await
    }
}

async fn read_entry(store: Store, path: Path, key: Key) -> ReadResult {
    let Some(bytes) = store.get(&path).await? else {
        return Ok(None);
    };
    let corrupt = |source| OriginError::Corrupt {
        path: path.to_string(),
        source,
    };
    let (stored_key, entry) = envelope::decode(bytes).map_err(|e| {
        tracing::error!(%path, error = %e, "damaged object");
        corrupt(e)
    })?;
    if stored_key != key {
        tracing::error!(%path, "stored object holds another key");
        return Err(corrupt(envelope::EnvelopeError::Invalid(
            "key does not match its path",
        )));
    }
    Ok(Some(entry))
}
