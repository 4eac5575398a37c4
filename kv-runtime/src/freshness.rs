//! When a cached copy may be served, the same at every tier.
//!
//! A copy's age counts from the origin's read of it, not from when this
//! tier fetched it: a tier below passes the age of what it answers with
//! (`Response::age_ms`), so a TTL bounds staleness end to end instead of
//! adding up tier by tier.
//!
//! - A read may name its own cache TTL (`cache_ttl`), between the tier's
//!   minimum and maximum; it applies to that read only. A copy is fresh for
//!   a read while its age is under the read's TTL (or the tier's default),
//!   and never past the value's expiration. Misses use the negative TTL.
//! - **Stale-while-revalidate:** a fresh copy read in the last part of its
//!   TTL ([`Freshness::refresh_ahead`], a fraction) is refreshed in the
//!   background, once per key, so a hot key never expires into a miss.
//! - **Stale-if-error:** a copy past its TTL by less than
//!   [`Freshness::stale_if_error`] may be served when the upstream fails or
//!   the deadline is near. A value past its expiration never is.
//!
//! Every answer says which of these it was: [`CacheStatus`].

use std::time::Duration;

/// How an answer relates to the answering tier's cache; the
/// `kv-cache-status` header of the edge's HTTP answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// A fresh copy from this tier's cache.
    Hit,
    /// Nothing usable was cached: fetched upstream.
    Miss,
    /// A copy that could not be served on trust (past its TTL, or cached
    /// before a gap in the change feed) was checked upstream: the answer is
    /// what upstream holds now.
    Revalidated,
    /// The upstream failed (or the deadline was near) and a copy past its
    /// TTL, within the stale-if-error grace, was served instead.
    Stale,
}

impl CacheStatus {
    /// Every status, in the order metrics list them.
    pub const ALL: [Self; 4] = [Self::Hit, Self::Miss, Self::Revalidated, Self::Stale];

    /// The name in headers, spans and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Revalidated => "revalidated",
            Self::Stale => "stale",
        }
    }
}

impl std::fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tier's freshness settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Freshness {
    /// How long a value stays fresh when a read names no cache TTL.
    pub ttl: Duration,
    /// How long a miss stays fresh.
    pub negative_ttl: Duration,
    /// The longest cache TTL a read may name.
    pub max_ttl: Duration,
    /// The last part of a TTL, as a fraction (0 turns it off), in which a
    /// read refreshes the copy in the background.
    pub refresh_ahead: f64,
    /// How long past its TTL a copy may still be served when the upstream
    /// fails or the deadline is near (zero turns it off).
    pub stale_if_error: Duration,
}

impl Default for Freshness {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(3600),
            refresh_ahead: 0.2,
            stale_if_error: Duration::from_secs(60),
        }
    }
}

/// What a cached copy is good for, for one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it; `refresh` when it is in the last part of its TTL.
    Fresh {
        /// Whether to refresh it in the background.
        refresh: bool,
    },
    /// Past its TTL: fetch again, but it may stand in if the fetch fails.
    Stale {
        /// Whether it is within the stale-if-error grace.
        usable_on_error: bool,
    },
    /// A value past its expiration: it no longer exists.
    Expired,
}

/// What a read may do with a cached copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyUse {
    /// Serve it, and refresh it in the background when `refresh`.
    Serve {
        /// Whether it is in the last part of its TTL.
        refresh: bool,
    },
    /// Ask upstream.
    Fetch {
        /// Whether the copy may stand in if the upstream fails.
        standby: bool,
        /// Whether the fetch checks the copy (anything but a value past its
        /// expiration, which no longer exists).
        checking: bool,
    },
}

/// A cached copy's timing, as a verdict needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyAge {
    /// Unix milliseconds when the origin read it.
    pub read_at_ms: u64,
    /// When the value expires, unix seconds.
    pub expiration: Option<u64>,
    /// Whether it is a miss (the negative TTL applies).
    pub is_miss: bool,
}

impl Freshness {
    /// The TTL a read gets: its own `cache_ttl` (seconds) within the
    /// maximum, or the default. A miss gets the negative TTL, or the read's
    /// own if that is shorter (a tier below asks for its own TTL, and must
    /// not be handed a miss older than that).
    pub fn ttl_for(&self, cache_ttl: Option<u32>, is_miss: bool) -> Duration {
        let asked = cache_ttl.map(|s| Duration::from_secs(s.into()));
        match (asked, is_miss) {
            (None, false) => self.ttl,
            (None, true) => self.negative_ttl,
            (Some(asked), false) => asked.min(self.max_ttl),
            (Some(asked), true) => asked.min(self.negative_ttl),
        }
    }

    /// How long a copy is worth keeping after the origin read it: past the
    /// longest TTL a read may name (or `ttl`, if longer) and the stale grace.
    pub fn keep_for(&self, ttl: Duration) -> Duration {
        ttl.max(self.ttl) + self.stale_if_error
    }

    /// What `copy` is good for at `now_ms`, for a read with `cache_ttl`.
    pub fn judge(&self, copy: CopyAge, cache_ttl: Option<u32>, now_ms: u64) -> Verdict {
        let expires_ms = copy.expiration.map(|e| e.saturating_mul(1000));
        if expires_ms.is_some_and(|at| at <= now_ms) {
            return Verdict::Expired;
        }
        let ttl = millis(self.ttl_for(cache_ttl, copy.is_miss));
        let age = now_ms.saturating_sub(copy.read_at_ms);
        if age < ttl {
            let ahead = (ttl as f64 * self.refresh_ahead) as u64;
            let refresh = ahead > 0 && age >= ttl - ahead;
            return Verdict::Fresh { refresh };
        }
        Verdict::Stale {
            usable_on_error: age < ttl.saturating_add(millis(self.stale_if_error)),
        }
    }
}

impl Freshness {
    /// What a read with `cache_ttl` may do with `copy` at `now_ms`.
    /// `new_enough`: the copy is no older than what the read must see (the
    /// tier's watermark, the read's minimum version); `trusted`: it was
    /// fetched since the tier's feeds last had a gap.
    pub fn use_of(
        &self,
        copy: CopyAge,
        cache_ttl: Option<u32>,
        now_ms: u64,
        (new_enough, trusted): (bool, bool),
    ) -> CopyUse {
        let verdict = self.judge(copy, cache_ttl, now_ms);
        match verdict {
            Verdict::Fresh { refresh } if new_enough && trusted => CopyUse::Serve { refresh },
            Verdict::Expired => CopyUse::Fetch {
                standby: false,
                checking: false,
            },
            Verdict::Fresh { .. } | Verdict::Stale { .. } => CopyUse::Fetch {
                standby: new_enough
                    && !matches!(
                        verdict,
                        Verdict::Stale {
                            usable_on_error: false
                        }
                    ),
                checking: true,
            },
        }
    }

    /// The rules from their settings in seconds (and a percentage).
    pub fn from_secs(
        (ttl, negative_ttl, max_ttl): (u64, u64, u64),
        refresh_ahead_percent: u8,
        stale_if_error: u64,
    ) -> Self {
        Self {
            ttl: Duration::from_secs(ttl),
            negative_ttl: Duration::from_secs(negative_ttl),
            max_ttl: Duration::from_secs(max_ttl),
            refresh_ahead: f64::from(refresh_ahead_percent) / 100.0,
            stale_if_error: Duration::from_secs(stale_if_error),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1000;

    fn value(read_at_ms: u64) -> CopyAge {
        CopyAge {
            read_at_ms,
            expiration: None,
            is_miss: false,
        }
    }

    #[test]
    fn a_copy_is_fresh_then_refreshed_ahead_then_stale_then_useless() {
        let f = Freshness::default(); // 60 s, last 20 %, 60 s grace
        let copy = value(1_000 * SEC);
        let at = |s: u64| f.judge(copy, None, (1_000 + s) * SEC);
        assert_eq!(at(0), Verdict::Fresh { refresh: false });
        assert_eq!(at(47), Verdict::Fresh { refresh: false });
        assert_eq!(at(48), Verdict::Fresh { refresh: true });
        assert_eq!(at(59), Verdict::Fresh { refresh: true });
        assert_eq!(
            at(60),
            Verdict::Stale {
                usable_on_error: true
            }
        );
        assert_eq!(
            at(119),
            Verdict::Stale {
                usable_on_error: true
            }
        );
        assert_eq!(
            at(120),
            Verdict::Stale {
                usable_on_error: false
            }
        );
    }

    #[test]
    fn a_read_names_its_own_ttl_within_the_maximum() {
        let f = Freshness {
            max_ttl: Duration::from_secs(300),
            ..Freshness::default()
        };
        let copy = value(0);
        assert_eq!(
            f.judge(copy, Some(10), 11 * SEC),
            Verdict::Stale {
                usable_on_error: true
            }
        );
        assert!(matches!(
            f.judge(copy, Some(200), 100 * SEC),
            Verdict::Fresh { .. }
        ));
        // Asking for more than the maximum gets the maximum.
        assert_eq!(f.ttl_for(Some(u32::MAX), false), Duration::from_secs(300));
        assert!(matches!(
            f.judge(copy, Some(u32::MAX), 301 * SEC),
            Verdict::Stale { .. }
        ));
        // Misses keep the negative TTL whatever the read asks.
        let miss = CopyAge {
            is_miss: true,
            ..copy
        };
        assert!(matches!(
            f.judge(miss, Some(200), 31 * SEC),
            Verdict::Stale { .. }
        ));
    }

    #[test]
    fn a_copy_is_served_only_when_fresh_new_enough_and_trusted() {
        let f = Freshness::default();
        let copy = value(0);
        let fresh = 10 * SEC;
        let stale = 90 * SEC;
        let useless = 200 * SEC;
        let fetch = |standby| CopyUse::Fetch {
            standby,
            checking: true,
        };
        assert_eq!(
            f.use_of(copy, None, fresh, (true, true)),
            CopyUse::Serve { refresh: false }
        );
        assert_eq!(
            f.use_of(copy, None, fresh, (true, false)),
            fetch(true),
            "distrusted"
        );
        assert_eq!(
            f.use_of(copy, None, fresh, (false, true)),
            fetch(false),
            "too old a version"
        );
        assert_eq!(f.use_of(copy, None, stale, (true, true)), fetch(true));
        assert_eq!(f.use_of(copy, None, useless, (true, true)), fetch(false));
        let expired = CopyAge {
            expiration: Some(5),
            ..copy
        };
        assert_eq!(
            f.use_of(expired, None, fresh, (true, true)),
            CopyUse::Fetch {
                standby: false,
                checking: false
            }
        );
    }

    #[test]
    fn an_expired_value_is_never_served_even_stale() {
        let f = Freshness::default();
        let copy = CopyAge {
            expiration: Some(10),
            ..value(0)
        };
        assert!(matches!(
            f.judge(copy, None, 9 * SEC),
            Verdict::Fresh { .. }
        ));
        assert_eq!(f.judge(copy, None, 10 * SEC), Verdict::Expired);
    }

    #[test]
    fn refresh_ahead_and_stale_serving_can_be_turned_off() {
        let f = Freshness {
            refresh_ahead: 0.0,
            stale_if_error: Duration::ZERO,
            ..Freshness::default()
        };
        let copy = value(0);
        assert_eq!(
            f.judge(copy, None, 59 * SEC),
            Verdict::Fresh { refresh: false }
        );
        assert_eq!(
            f.judge(copy, None, 60 * SEC),
            Verdict::Stale {
                usable_on_error: false
            }
        );
    }
}
