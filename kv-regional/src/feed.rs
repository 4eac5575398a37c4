//! The origins' change feeds, applied to the cache and relayed to the edges.
//!
//! A change newer than anything this node has seen of its key replaces the
//! cached copy when it carries the value (or is a delete), and drops it
//! otherwise (a key not cached here stays uncached); fills already in
//! flight, which may carry the old copy, are
//! not joined by later reads. Every change is then republished on this
//! node's own feed, after it is applied, so an edge that refetches on
//! hearing of it finds it here.

use kv_proto::{Change, Entry};
use kv_runtime::feed::FeedSink;
use kv_runtime::time::unix_millis;

use crate::cache::cache_key;
use crate::cached::Cached;
use crate::regional::Regional;

impl FeedSink for Regional {
    async fn apply(&self, change: Change) -> bool {
        let key = cache_key(&change.namespace, &change.key);
        // A version this node already knows (it filled or wrote it) is no news.
        let known = self.recent_writes.get(&key);
        let news = known.is_none_or(|known| known < change.version)
            && self.recent_writes.raise(&key, change.version);
        if news {
            self.fills.forget(&key);
            // News of a key not cached here is no reason to cache it.
            if self.cache.contains(&key) {
                match replacement(&change, self) {
                    Some(cached) => {
                        self.cache.insert(key, cached);
                    }
                    None => self.cache.remove(&key),
                }
            }
        }
        self.feed.publish(change);
        news
    }

    fn resync(&self) {
        self.floor.raise();
        self.feed.resync();
    }
}

/// What the cache should hold after `change`, when the change says: the
/// miss a delete leaves, or a value that travelled inline.
fn replacement(change: &Change, regional: &Regional) -> Option<Cached> {
    let freshness = &regional.freshness;
    // The copy's age counts from the commit: a change that arrives late is
    // as old as it is, not fresh.
    let committed = change.commit_ms.min(unix_millis());
    if change.tombstone {
        let keep_for = freshness.keep_for(freshness.negative_ttl);
        return Some(Cached::new(change.version, None, committed, keep_for));
    }
    let inline = change.value.as_ref()?;
    let entry = Entry {
        version: change.version,
        expiration: change.expiration,
        metadata: inline.metadata.clone(),
        value: inline.value.clone(),
    };
    let keep_for = freshness.keep_for(freshness.ttl);
    Some(Cached::new(
        change.version,
        Some(entry),
        committed,
        keep_for,
    ))
}
