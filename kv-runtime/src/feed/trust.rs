//! Which cached copies a tier may serve on trust.
//!
//! While a tier's feeds are continuous, every change reaches its cache, so a
//! copy within its TTL is current. When a feed has a gap, changes may have
//! been missed: every copy fetched before that moment is suspect until it is
//! checked upstream. [`TrustFloor`] records the moment; each copy records
//! when its fetch started.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::time::unix_millis;

/// The fetch time, unix milliseconds, before which cached copies are not
/// trusted. Cheap to clone; clones share the floor.
#[derive(Debug, Clone, Default)]
pub struct TrustFloor(Arc<AtomicU64>);

impl TrustFloor {
    /// A floor that trusts every copy, until the first gap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Distrusts every copy whose fetch started before now (a fetch that
    /// starts in this same millisecond is distrusted too: it may have read
    /// before the gap).
    pub fn raise(&self) {
        self.0.fetch_max(unix_millis() + 1, Ordering::AcqRel);
    }

    /// Whether a copy whose fetch started at `fetched_at_ms` may be served
    /// without checking upstream.
    pub fn trusts(&self, fetched_at_ms: u64) -> bool {
        fetched_at_ms >= self.0.load(Ordering::Acquire)
    }

    /// The floor, unix milliseconds (0 before the first gap).
    pub fn millis(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_fetched_before_a_gap_are_distrusted() {
        let floor = TrustFloor::new();
        let before = unix_millis();
        assert!(floor.trusts(0));
        floor.raise();
        let raised = floor.millis();
        assert!(raised > before);
        assert!(!floor.trusts(before));
        assert!(!floor.trusts(raised - 1));
        assert!(floor.trusts(raised));
    }
}
