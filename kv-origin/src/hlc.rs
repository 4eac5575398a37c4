//! Versions from a hybrid logical clock.
//!
//! A version is `unix_millis << 16 | counter`: it follows wall-clock time, so
//! versions stay meaningful across restarts and across origin processes, yet
//! strictly increases even when many writes land in one millisecond or the
//! clock steps back. Every write also observes the version it replaces
//! ([`Hlc::observe`]), so the version it picks is above the stored one
//! whatever this process's clock says.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where the clock reads wall-clock time, in unix milliseconds. Tests inject
/// one that steps back.
pub type WallClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A monotonic version source.
pub struct Hlc {
    last: AtomicU64,
    wall: WallClock,
}

impl std::fmt::Debug for Hlc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hlc")
            .field("last", &self.last.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Hlc {
    fn default() -> Self {
        Self::with_wall_clock(Arc::new(kv_runtime::time::unix_millis))
    }
}

impl Hlc {
    /// A clock that reads wall-clock time from `wall`.
    pub fn with_wall_clock(wall: WallClock) -> Self {
        Self {
            last: AtomicU64::new(0),
            wall,
        }
    }

    /// Wall-clock time as this clock reads it, in unix milliseconds.
    pub fn now_millis(&self) -> u64 {
        (self.wall)()
    }

    /// A version greater than every one issued or observed before.
    pub fn next(&self) -> u64 {
        let physical = self.now_millis() << 16;
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

/// The wall-clock time a version was issued at, in unix milliseconds.
pub fn version_millis(version: u64) -> u64 {
    version >> 16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: &'static AtomicU64) -> Hlc {
        Hlc::with_wall_clock(Arc::new(move || millis.load(Ordering::Relaxed)))
    }

    #[test]
    fn strictly_increases_within_a_millisecond_and_when_the_clock_steps_back() {
        static NOW: AtomicU64 = AtomicU64::new(1_000);
        let clock = at(&NOW);
        let a = clock.next();
        let b = clock.next();
        NOW.store(500, Ordering::Relaxed);
        let c = clock.next();
        assert!(a < b && b < c, "{a} {b} {c}");
        NOW.store(2_000, Ordering::Relaxed);
        let d = clock.next();
        assert!(d >= 2_000 << 16 && d > c);
        assert_eq!(version_millis(d), 2_000);
    }

    #[test]
    fn observed_versions_are_exceeded() {
        static NOW: AtomicU64 = AtomicU64::new(1_000);
        let clock = at(&NOW);
        clock.observe(9_000 << 16);
        assert!(clock.next() > 9_000 << 16);
    }
}
