//! The change feeds of the nodes this edge reads from, applied to the hot
//! cache.
//!
//! A change newer than anything this edge has seen of its key replaces the
//! cached copy when it carries the value (or is a delete: the miss is
//! cached at its version), and drops it otherwise; a key not cached here
//! stays uncached; reads in flight, which
//! may carry the old copy, are not joined by later ones. The edge follows
//! every regional node it routes to (each relays every origin's changes),
//! or the origins when there is no regional tier, so it hears of each
//! change once per node it follows: applying one is idempotent.

use kv_proto::{Change, Entry};
use kv_runtime::feed::FeedSink;
use kv_runtime::time::unix_millis;

use crate::edge::Edge;
use crate::hot::HotEntry;

impl FeedSink for Edge {
    async fn apply(&self, change: Change) -> bool {
        let ck = format!("{}/{}", change.namespace, change.key);
        // A version this edge already knows (it read or wrote it) is no news.
        let known = self.recent_writes.get(&ck);
        if known.is_some_and(|known| known >= change.version)
            || !self.recent_writes.raise(&ck, change.version)
        {
            return false;
        }
        self.reads.forget(&ck);
        let freshness = &self.freshness;
        // The copy's age counts from the commit: a change that arrives late
        // is as old as it is, not fresh.
        let committed = change.commit_ms.min(unix_millis());
        let at = (committed, committed);
        let replacement = if change.tombstone {
            let keep_for = freshness.keep_for(freshness.negative_ttl);
            Some(HotEntry::new(change.version, None, at, keep_for))
        } else {
            change.value.map(|inline| {
                let entry = Entry {
                    version: change.version,
                    expiration: change.expiration,
                    metadata: inline.metadata,
                    value: inline.value,
                };
                let keep_for = freshness.keep_for(freshness.ttl);
                HotEntry::new(change.version, Some(entry), at, keep_for)
            })
        };
        match replacement {
            Some(entry) => self.hot.replace(&ck, entry).await,
            None => self.hot.remove_older_than(&ck, change.version).await,
        }
        true
    }

    fn resync(&self) {
        self.floor.raise();
    }
}
