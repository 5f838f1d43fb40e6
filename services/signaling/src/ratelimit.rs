//! Per-session limits: a token bucket for the message rate and a strike counter
//! that turns repeated misbehaviour into a closed socket.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(per_second: f64, burst: u32, now: Instant) -> Self {
        Self {
            capacity: f64::from(burst),
            per_second,
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counts client-caused errors in a sliding window.
#[derive(Debug)]
pub struct Strikes {
    limit: usize,
    window: Duration,
    times: VecDeque<Instant>,
}

impl Strikes {
    pub fn new(limit: u32, window: Duration) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX).max(1);
        Self {
            limit,
            window,
            times: VecDeque::with_capacity(limit.min(64)),
        }
    }

    /// Records a strike; true when the limit is reached within the window.
    pub fn record(&mut self, now: Instant) -> bool {
        while let Some(&oldest) = self.times.front() {
            if now.saturating_duration_since(oldest) > self.window {
                self.times.pop_front();
            } else {
                break;
            }
        }
        self.times.push_back(now);
        self.times.len() >= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 5, start);
        for _ in 0..5 {
            assert!(bucket.try_take(start));
        }
        assert!(!bucket.try_take(start));
        // 10 per second: one token after 100 ms, not before.
        assert!(!bucket.try_take(start + Duration::from_millis(50)));
        assert!(bucket.try_take(start + Duration::from_millis(150)));
        // Never more than the burst, however long the pause.
        let later = start + Duration::from_secs(3600);
        for _ in 0..5 {
            assert!(bucket.try_take(later));
        }
        assert!(!bucket.try_take(later));
    }

    #[test]
    fn strikes_expire_out_of_the_window() {
        let start = Instant::now();
        let mut strikes = Strikes::new(3, Duration::from_secs(10));
        assert!(!strikes.record(start));
        assert!(!strikes.record(start + Duration::from_secs(1)));
        // Both earlier strikes are older than the window by now.
        assert!(!strikes.record(start + Duration::from_secs(12)));
        assert!(!strikes.record(start + Duration::from_secs(13)));
        assert!(strikes.record(start + Duration::from_secs(14)));
    }
}
