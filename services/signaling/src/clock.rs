//! Wall-clock time as the wire and Redis carry it: unix milliseconds (seat
//! records, chat entries, grants) and microseconds (an envelope's send time, for
//! the relay latency histogram), and durations in the milliseconds the wire uses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn unix_ms() -> u64 {
    unix_us() / 1000
}

pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `d` in whole milliseconds, saturating: a setting of centuries stays finite.
pub fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
