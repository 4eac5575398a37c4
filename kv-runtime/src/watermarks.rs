//! The highest version a node has seen of each recent key: the floor below
//! which it serves nothing, so a key's version never goes backwards at that
//! node. Edges and regional nodes keep one each.
//!
//! A watermark only rises: the answer to a retried write carries the write's
//! first, older, version and must not lower it. Entries are forgotten after
//! a while (and beyond a capacity); by then every cache's copy has expired.

use std::time::Duration;

use moka::ops::compute::Op;

/// How long a key's watermark is kept.
pub const WATERMARK_TTL: Duration = Duration::from_secs(300);
/// Most keys with a watermark.
const CAPACITY: u64 = 1_000_000;

/// Per-key version floors. Cheap to clone; clones share the table.
#[derive(Debug, Clone)]
pub struct Watermarks {
    versions: moka::sync::Cache<String, u64>,
}

impl Default for Watermarks {
    fn default() -> Self {
        Self {
            versions: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(WATERMARK_TTL)
                .build(),
        }
    }
}

impl Watermarks {
    /// The highest version seen of `key`, if it was seen recently.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.versions.get(key)
    }

    /// Raises `key`'s watermark to `version`, and says whether `version` is
    /// the newest seen (equal counts: it may be the same write seen twice).
    pub fn raise(&self, key: &str, version: u64) -> bool {
        let mut newest = true;
        self.versions
            .entry_by_ref(key)
            .and_compute_with(|known| match known {
                Some(known) if *known.value() > version => {
                    newest = false;
                    Op::Nop
                }
                Some(known) if *known.value() == version => Op::Nop,
                _ => Op::Put(version),
            });
        newest
    }

    /// Whether a copy at `version` is older than what was seen of `key`.
    pub fn is_behind(&self, key: &str, version: u64) -> bool {
        self.get(key).is_some_and(|seen| version < seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watermark_only_rises() {
        let marks = Watermarks::default();
        assert!(marks.raise("k", 5));
        assert!(marks.raise("k", 5));
        assert!(!marks.raise("k", 3));
        assert_eq!(marks.get("k"), Some(5));
        assert!(marks.is_behind("k", 4));
        assert!(!marks.is_behind("k", 5));
        assert!(marks.raise("k", 9));
        assert_eq!(marks.get("k"), Some(9));
        assert!(!marks.is_behind("other", 0));
    }
}
