//! The in-process hot cache: moka, weighted by bytes, with TinyLFU admission
//! (moka's default policy) so that one-off reads do not evict hot keys.
//! Only values up to a size limit are admitted; an entry lives for its cache
//! TTL and never past its expiration.

use std::time::{Duration, Instant};

use kv_proto::Entry;
use kv_runtime::time::unix_millis;
use moka::Expiry;
use moka::ops::compute::Op;

/// A cached value and when it stops being fresh.
#[derive(Debug, Clone)]
pub struct HotEntry {
    /// The value with its version, expiration and metadata.
    pub entry: Entry,
    /// Unix milliseconds after which it must be fetched again.
    pub fresh_until_ms: u64,
}

impl HotEntry {
    fn weight(&self, key: &str) -> u32 {
        let metadata = self
            .entry
            .metadata
            .as_ref()
            .map_or(0, |m| m.as_bytes().len());
        u32::try_from(key.len() + self.entry.value.len() + metadata + 96).unwrap_or(u32::MAX)
    }
}

struct UntilFresh;

impl Expiry<String, HotEntry> for UntilFresh {
    fn expire_after_create(&self, _: &String, value: &HotEntry, _: Instant) -> Option<Duration> {
        Some(Duration::from_millis(
            value.fresh_until_ms.saturating_sub(unix_millis()),
        ))
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &HotEntry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(Duration::from_millis(
            value.fresh_until_ms.saturating_sub(unix_millis()),
        ))
    }
}

/// The outcome of a lookup.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A fresh entry.
    Hit(HotEntry),
    /// An entry past its cache TTL.
    Stale(HotEntry),
    /// Nothing cached.
    Miss,
}

/// The hot cache; a capacity of 0 turns it off.
#[derive(Debug, Clone)]
pub struct HotCache {
    cache: Option<moka::future::Cache<String, HotEntry>>,
    max_value_bytes: usize,
}

impl HotCache {
    /// A cache of `capacity_bytes` admitting values up to `max_value_bytes`.
    pub fn new(capacity_bytes: u64, max_value_bytes: usize) -> Self {
        let cache = (capacity_bytes > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(capacity_bytes)
                .weigher(|key: &String, value: &HotEntry| value.weight(key))
                .expire_after(UntilFresh)
                .build()
        });
        Self {
            cache,
            max_value_bytes,
        }
    }

    /// Whether a value of this size may be cached.
    pub fn admits(&self, value_len: usize) -> bool {
        self.cache.is_some() && value_len <= self.max_value_bytes
    }

    /// A fresh entry, if cached.
    pub async fn get(&self, key: &str) -> Option<HotEntry> {
        match self.lookup(key).await {
            Lookup::Hit(entry) => Some(entry),
            Lookup::Stale(_) | Lookup::Miss => None,
        }
    }

    /// What the cache holds for `key`: a fresh entry, one past its cache TTL
    /// (not yet evicted), or nothing.
    pub async fn lookup(&self, key: &str) -> Lookup {
        let Some(cache) = &self.cache else {
            return Lookup::Miss;
        };
        match cache.get(key).await {
            Some(hit) if hit.fresh_until_ms > unix_millis() => Lookup::Hit(hit),
            Some(stale) => Lookup::Stale(stale),
            None => Lookup::Miss,
        }
    }

    /// Capacity in bytes (0 when off).
    pub fn capacity(&self) -> u64 {
        self.cache
            .as_ref()
            .and_then(|c| c.policy().max_capacity())
            .unwrap_or(0)
    }

    /// Caches `entry` when its size is admitted; otherwise forgets the key.
    /// A version never goes backwards: an entry older than the one cached
    /// (a fill that raced with a write, say) changes nothing.
    pub async fn insert(&self, key: String, entry: HotEntry) {
        let Some(cache) = &self.cache else { return };
        let admitted = self.admits(entry.entry.value.len());
        cache
            .entry(key)
            .and_compute_with(|cached| async move {
                match cached {
                    Some(cached) if cached.value().entry.version > entry.entry.version => Op::Nop,
                    _ if admitted => Op::Put(entry),
                    _ => Op::Remove,
                }
            })
            .await;
    }

    /// Forgets a key's entry if it is older than `version` (a delete's).
    pub async fn remove_older_than(&self, key: &str, version: u64) {
        let Some(cache) = &self.cache else { return };
        cache
            .entry_by_ref(key)
            .and_compute_with(|cached| async move {
                match cached {
                    Some(cached) if cached.value().entry.version < version => Op::Remove,
                    _ => Op::Nop,
                }
            })
            .await;
    }

    /// Applies moka's pending bookkeeping, so [`HotCache::usage`] is current.
    pub async fn settle(&self) {
        if let Some(cache) = &self.cache {
            cache.run_pending_tasks().await;
        }
    }

    /// Bytes and entries held (approximate until pending work runs).
    pub fn usage(&self) -> (u64, u64) {
        self.cache
            .as_ref()
            .map_or((0, 0), |c| (c.weighted_size(), c.entry_count()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bytes::Bytes;

    use super::*;

    fn hot(value: &'static [u8], fresh_for_ms: u64) -> HotEntry {
        HotEntry {
            entry: Entry {
                version: 1,
                expiration: None,
                metadata: None,
                value: Bytes::from_static(value),
            },
            fresh_until_ms: unix_millis() + fresh_for_ms,
        }
    }

    #[tokio::test]
    async fn admits_small_values_only_and_a_zero_capacity_is_off() {
        let cache = HotCache::new(1 << 20, 4);
        cache.insert("small".into(), hot(b"abcd", 60_000)).await;
        cache.insert("large".into(), hot(b"abcde", 60_000)).await;
        assert!(cache.get("small").await.is_some());
        assert!(cache.get("large").await.is_none());
        let off = HotCache::new(0, 1024);
        off.insert("k".into(), hot(b"v", 60_000)).await;
        assert!(off.get("k").await.is_none());
        assert!(!off.admits(1));
    }

    #[tokio::test]
    async fn stale_entries_are_not_served() {
        let cache = HotCache::new(1 << 20, 1024);
        cache.insert("k".into(), hot(b"v", 0)).await;
        assert!(cache.get("k").await.is_none());
    }

    #[tokio::test]
    async fn a_value_growing_past_the_limit_is_forgotten() {
        let cache = HotCache::new(1 << 20, 4);
        cache.insert("k".into(), hot(b"ab", 60_000)).await;
        cache.insert("k".into(), hot(b"abcdef", 60_000)).await;
        assert!(
            cache.get("k").await.is_none(),
            "the old small value must not linger"
        );
    }
}
