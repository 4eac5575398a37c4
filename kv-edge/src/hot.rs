//! The in-process hot cache: moka, weighted by bytes, with TinyLFU admission
//! (moka's default policy) so that one-off reads do not evict hot keys.
//! Only values up to a size limit are admitted. Misses are cached too, at
//! the version of the delete that caused them, so that the change feed can
//! tell a newer write from an older one.
//!
//! The cache keeps a copy for as long as any read might use it: its TTL and
//! the stale-if-error grace after it, counted from the origin's read, and
//! never past its expiration. Whether a copy is fresh for a given read is
//! decided by the edge ([`kv_runtime::freshness`]), not here.

use std::time::{Duration, Instant};

use kv_proto::Entry;
use kv_runtime::freshness::CopyAge;
use kv_runtime::time::unix_millis;
use moka::Expiry;
use moka::ops::compute::Op;

/// A cached answer: a value, or the knowledge that there is none.
#[derive(Debug, Clone)]
pub struct HotEntry {
    /// The value's version; for a miss, its delete's (0 when unknown).
    pub version: u64,
    /// The value with its expiration and metadata; `None` for a miss.
    pub entry: Option<Entry>,
    /// Unix milliseconds when the origin read this copy: the fetch's start
    /// less the age the upstream tier reported.
    pub read_at_ms: u64,
    /// Unix milliseconds when this edge's fetch started (or the feed
    /// delivered it): a copy fetched before the edge's feeds last had a gap
    /// is checked upstream before use.
    pub fetched_at_ms: u64,
    /// Unix milliseconds after which no read can use it.
    pub keep_until_ms: u64,
}

impl HotEntry {
    /// A copy the origin read at `read_at_ms`, fetched at `fetched_at_ms`,
    /// worth keeping for `keep_for` after the origin's read (never past its
    /// expiration).
    pub fn new(
        version: u64,
        entry: Option<Entry>,
        (read_at_ms, fetched_at_ms): (u64, u64),
        keep_for: Duration,
    ) -> Self {
        let kept =
            read_at_ms.saturating_add(u64::try_from(keep_for.as_millis()).unwrap_or(u64::MAX));
        let expires = entry
            .as_ref()
            .and_then(|e| e.expiration)
            .map(|at| at.saturating_mul(1000));
        Self {
            version,
            entry,
            read_at_ms,
            fetched_at_ms,
            keep_until_ms: expires.map_or(kept, |at| kept.min(at)),
        }
    }

    /// A value or miss known now (written through this edge, or announced by
    /// the feed), kept for `keep_for`.
    pub fn current(version: u64, entry: Option<Entry>, keep_for: Duration) -> Self {
        let now = unix_millis();
        Self::new(version, entry, (now, now), keep_for)
    }

    /// Its timing, for a freshness verdict.
    pub fn age(&self) -> CopyAge {
        CopyAge {
            read_at_ms: self.read_at_ms,
            expiration: self.entry.as_ref().and_then(|e| e.expiration),
            is_miss: self.entry.is_none(),
        }
    }

    /// Bytes of value this entry holds.
    pub fn value_len(&self) -> usize {
        self.entry.as_ref().map_or(0, |e| e.value.len())
    }

    fn weight(&self, key: &str) -> u32 {
        let metadata = self
            .entry
            .as_ref()
            .and_then(|e| e.metadata.as_ref())
            .map_or(0, |m| m.as_bytes().len());
        u32::try_from(key.len() + self.value_len() + metadata + 96).unwrap_or(u32::MAX)
    }
}

struct UntilUseless;

impl UntilUseless {
    fn left(value: &HotEntry) -> Option<Duration> {
        Some(Duration::from_millis(
            value.keep_until_ms.saturating_sub(unix_millis()),
        ))
    }
}

impl Expiry<String, HotEntry> for UntilUseless {
    fn expire_after_create(&self, _: &String, value: &HotEntry, _: Instant) -> Option<Duration> {
        Self::left(value)
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &HotEntry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Self::left(value)
    }
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
                .expire_after(UntilUseless)
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

    /// The copy held for `key`, fresh or not.
    pub async fn get(&self, key: &str) -> Option<HotEntry> {
        let cache = self.cache.as_ref()?;
        cache
            .get(key)
            .await
            .filter(|held| held.keep_until_ms > unix_millis())
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
        let admitted = self.admits(entry.value_len());
        cache
            .entry(key)
            .and_compute_with(|cached| async move {
                match cached {
                    Some(cached) if cached.value().version > entry.version => Op::Nop,
                    _ if admitted => Op::Put(entry),
                    _ => Op::Remove,
                }
            })
            .await;
    }

    /// Replaces a cached copy older than `entry` (with `entry`, when its
    /// size is admitted; else drops it). A key not cached stays so: news of
    /// a key nobody reads here is no reason to cache it.
    pub async fn replace(&self, key: &str, entry: HotEntry) {
        let Some(cache) = &self.cache else { return };
        let admitted = self.admits(entry.value_len());
        cache
            .entry_by_ref(key)
            .and_compute_with(|cached| async move {
                match cached {
                    Some(cached) if cached.value().version < entry.version => match admitted {
                        true => Op::Put(entry),
                        false => Op::Remove,
                    },
                    _ => Op::Nop,
                }
            })
            .await;
    }

    /// Forgets a key's entry if it is older than `version`.
    pub async fn remove_older_than(&self, key: &str, version: u64) {
        let Some(cache) = &self.cache else { return };
        cache
            .entry_by_ref(key)
            .and_compute_with(|cached| async move {
                match cached {
                    Some(cached) if cached.value().version < version => Op::Remove,
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

    fn value(version: u64, value: &'static [u8]) -> Option<Entry> {
        Some(Entry {
            version,
            expiration: None,
            metadata: None,
            value: Bytes::from_static(value),
        })
    }

    fn hot(bytes: &'static [u8], keep_for_ms: u64) -> HotEntry {
        HotEntry::current(1, value(1, bytes), Duration::from_millis(keep_for_ms))
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
    async fn a_copy_past_every_use_is_gone() {
        let cache = HotCache::new(1 << 20, 1024);
        cache.insert("k".into(), hot(b"v", 0)).await;
        assert!(cache.get("k").await.is_none());
        let expired = Entry {
            expiration: Some(1),
            ..value(2, b"v").unwrap()
        };
        let entry = HotEntry::current(2, Some(expired), Duration::from_secs(60));
        assert_eq!(entry.keep_until_ms, 1000, "never kept past its expiration");
        cache.insert("e".into(), entry).await;
        assert!(cache.get("e").await.is_none());
    }

    #[tokio::test]
    async fn misses_are_cached_and_never_replace_a_newer_value() {
        let cache = HotCache::new(1 << 20, 4);
        let minute = Duration::from_secs(60);
        cache
            .insert("k".into(), HotEntry::current(3, None, minute))
            .await;
        let held = cache.get("k").await.unwrap();
        assert_eq!((held.version, held.entry.is_none()), (3, true));
        cache
            .insert("k".into(), HotEntry::current(5, value(5, b"v"), minute))
            .await;
        cache
            .insert("k".into(), HotEntry::current(4, None, minute))
            .await;
        let held = cache.get("k").await.unwrap();
        assert_eq!((held.version, held.entry.is_some()), (5, true));
        cache.remove_older_than("k", 6).await;
        assert!(cache.get("k").await.is_none());
    }

    #[tokio::test]
    async fn news_replaces_older_copies_only_and_caches_nothing_new() {
        let cache = HotCache::new(1 << 20, 4);
        let minute = Duration::from_secs(60);
        cache
            .replace("absent", HotEntry::current(2, value(2, b"v"), minute))
            .await;
        assert!(cache.get("absent").await.is_none());
        cache
            .insert("k".into(), HotEntry::current(5, value(5, b"v5"), minute))
            .await;
        cache.replace("k", HotEntry::current(4, None, minute)).await;
        assert_eq!(
            cache.get("k").await.unwrap().version,
            5,
            "older news changes nothing"
        );
        cache.replace("k", HotEntry::current(6, None, minute)).await;
        let held = cache.get("k").await.unwrap();
        assert_eq!((held.version, held.entry.is_none()), (6, true));
        cache
            .replace("k", HotEntry::current(7, value(7, b"too long"), minute))
            .await;
        assert!(
            cache.get("k").await.is_none(),
            "a value over the limit drops the copy"
        );
    }

    #[tokio::test]
    async fn a_value_growing_past_the_limit_is_forgotten() {
        let cache = HotCache::new(1 << 20, 4);
        cache.insert("k".into(), hot(b"ab", 60_000)).await;
        let grown = HotEntry::current(2, value(2, b"abcdef"), Duration::from_secs(60));
        cache.insert("k".into(), grown).await;
        assert!(
            cache.get("k").await.is_none(),
            "the old small value must not linger"
        );
    }
}
