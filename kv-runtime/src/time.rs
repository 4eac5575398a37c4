//! Wall-clock time as the protocol counts it: unix seconds and milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch (0 if the clock is before it).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds since the unix epoch (0 if the clock is before it).
pub fn unix_seconds() -> u64 {
    unix_millis() / 1000
}

/// Whether an expiration in unix seconds has passed.
pub fn is_expired(expiration: Option<u64>, now_seconds: u64) -> bool {
    expiration.is_some_and(|e| e <= now_seconds)
}
