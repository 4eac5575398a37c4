//! Versions from a hybrid logical clock.
//!
//! A version is `unix_millis << 16 | counter`: it follows wall-clock time, so
//! versions stay meaningful across restarts, yet strictly increases even when
//! many writes land in one millisecond or the clock steps back. Versions
//! read from storage are observed, so a clock that went back after a restart
//! still issues versions above every stored one it has seen.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonic version source.
#[derive(Debug, Default)]
pub struct Hlc {
    last: AtomicU64,
}

impl Hlc {
    /// A version greater than every one issued or observed before.
    pub fn next(&self) -> u64 {
        self.next_at(kv_runtime::time::unix_millis())
    }

    fn next_at(&self, now_millis: u64) -> u64 {
        let physical = now_millis << 16;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = physical.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    /// Records a version seen in storage.
    pub fn observe(&self, version: u64) {
        self.last.fetch_max(version, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increases_within_a_millisecond_and_when_the_clock_steps_back() {
        let clock = Hlc::default();
        let a = clock.next_at(1_000);
        let b = clock.next_at(1_000);
        let c = clock.next_at(500);
        assert!(a < b && b < c, "{a} {b} {c}");
        assert!(clock.next_at(2_000) >= 2_000 << 16);
    }

    #[test]
    fn observed_versions_are_exceeded() {
        let clock = Hlc::default();
        clock.observe(9_000 << 16);
        assert!(clock.next_at(1_000) > 9_000 << 16);
    }
}
