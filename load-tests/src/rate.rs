//! Open-loop rate control: events follow a fixed schedule computed from the start
//! time, never from replies, so a slow node makes latency grow instead of making
//! the generator politely slow down (coordinated omission).

use std::time::{Duration, Instant};

/// Whether `rate` can drive a schedule: finite and above zero.
pub fn valid_rate(rate: f64) -> bool {
    rate.is_finite() && rate > 0.0
}

/// Event `k` is due at `start + offset + k / rate`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    offset: Duration,
    /// Nanoseconds between two events.
    interval_ns: f64,
    /// No event at or after this time.
    end: Instant,
}

impl Schedule {
    /// `rate` events per second from `start` for `length`.
    pub fn new(start: Instant, rate: f64, length: Duration) -> Self {
        assert!(rate > 0.0 && rate.is_finite(), "rate must be positive");
        Self {
            start,
            offset: Duration::ZERO,
            interval_ns: 1e9 / rate,
            end: start + length,
        }
    }

    /// The share of sender `index` among `senders` that together make `total`
    /// events per second: each runs at `total / senders`, shifted by `index /
    /// total` so that the union is evenly spaced.
    pub fn split(
        start: Instant,
        total: f64,
        senders: usize,
        index: usize,
        length: Duration,
    ) -> Self {
        let senders = senders.max(1);
        let mut s = Self::new(start, total / senders as f64, length);
        s.offset = Duration::from_secs_f64(index as f64 / total);
        s
    }

    /// When event `k` is due.
    pub fn at(&self, k: u64) -> Instant {
        self.start + self.offset + Duration::from_nanos((k as f64 * self.interval_ns) as u64)
    }

    /// Whether event `k` falls inside the schedule.
    pub fn contains(&self, k: u64) -> bool {
        self.at(k) < self.end
    }

    /// How many events are due at `now` (events `0..due(now)`), within the schedule.
    pub fn due(&self, now: Instant) -> u64 {
        let first = self.start + self.offset;
        if now < first {
            return 0;
        }
        let now = now.min(self.end);
        let elapsed = now.duration_since(first).as_nanos() as f64;
        let mut n = (elapsed / self.interval_ns).floor() as u64 + 1;
        // Floating point may put the boundary one off: settle it with `at`.
        while n > 0 && !(self.at(n - 1) <= now && self.contains(n - 1)) {
            n -= 1;
        }
        while self.at(n) <= now && self.contains(n) {
            n += 1;
        }
        n
    }

    /// Total events in the schedule.
    pub fn total(&self) -> u64 {
        let mut n = (self
            .end
            .saturating_duration_since(self.start + self.offset)
            .as_nanos() as f64
            / self.interval_ns)
            .ceil() as u64;
        while n > 0 && !self.contains(n - 1) {
            n -= 1;
        }
        while self.contains(n) {
            n += 1;
        }
        n
    }

    pub fn end(&self) -> Instant {
        self.end
    }
}

/// Walks a schedule: sleeps until the next event is due, then yields every event
/// that is due (a burst when the generator fell behind: the schedule never moves).
pub struct Ticker {
    schedule: Schedule,
    next: u64,
}

impl Ticker {
    pub fn new(schedule: Schedule) -> Self {
        Self { schedule, next: 0 }
    }

    /// The next event number and its due time, after sleeping until it is due;
    /// `None` when the schedule is over.
    pub async fn tick(&mut self) -> Option<(u64, Instant)> {
        let k = self.next;
        if !self.schedule.contains(k) {
            return None;
        }
        let due = self.schedule.at(k);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        self.next += 1;
        Some((k, due))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_evenly_spaced_from_the_start() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 100.0, Duration::from_secs(2));
        assert_eq!(s.at(0), t0);
        assert_eq!(s.at(1) - t0, Duration::from_millis(10));
        assert_eq!(s.at(150) - t0, Duration::from_millis(1500));
        assert_eq!(s.total(), 200);
        assert!(s.contains(199));
        assert!(!s.contains(200));
    }

    #[test]
    fn due_counts_every_event_up_to_now() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 1000.0, Duration::from_secs(1));
        assert_eq!(s.due(t0), 1);
        assert_eq!(s.due(t0 + Duration::from_micros(999)), 1);
        assert_eq!(s.due(t0 + Duration::from_millis(1)), 2);
        assert_eq!(s.due(t0 + Duration::from_millis(500)), 501);
        // After the end: exactly the total, never more.
        assert_eq!(s.due(t0 + Duration::from_secs(5)), 1000);
    }

    #[test]
    fn no_drift_over_long_schedules() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 3.0, Duration::from_secs(3600));
        // 1/3 s does not divide evenly: the millionth-ish event must still be on time.
        let k = 3 * 3000;
        let err = (s.at(k) - t0).as_secs_f64() - 3000.0;
        assert!(err.abs() < 1e-6, "{err}");
        assert_eq!(s.total(), 3 * 3600);
    }

    #[test]
    fn split_senders_add_up_to_the_total_rate() {
        let t0 = Instant::now();
        let len = Duration::from_secs(10);
        let total: u64 = (0..7)
            .map(|i| Schedule::split(t0, 700.0, 7, i, len).total())
            .sum();
        assert_eq!(total, 7000);
        // Interleaved: sender i's first event is i/700 s after the start.
        let s3 = Schedule::split(t0, 700.0, 7, 3, len);
        let gap = (s3.at(0) - t0).as_secs_f64();
        assert!((gap - 3.0 / 700.0).abs() < 1e-9, "{gap}");
        assert!(((s3.at(1) - s3.at(0)).as_secs_f64() - 0.01).abs() < 1e-9);
    }

    #[test]
    fn fractional_rates_below_one_per_second() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 0.5, Duration::from_secs(10));
        assert_eq!(s.total(), 5);
        assert_eq!(s.due(t0 + Duration::from_secs(3)), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn ticker_bursts_to_catch_up_without_moving_the_schedule() {
        let t0 = Instant::now();
        let mut ticker = Ticker::new(Schedule::new(t0, 10.0, Duration::from_secs(1)));
        let (k, due) = ticker.tick().await.expect("first");
        assert_eq!((k, due), (0, t0));
        let mut seen = 1;
        while let Some((k, due)) = ticker.tick().await {
            assert_eq!(due, t0 + Duration::from_millis(100 * k));
            seen += 1;
        }
        assert_eq!(seen, 10);
    }
}
